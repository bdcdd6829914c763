"""Leave-one-out ranking metrics: full ranking over the whole catalogue, Recall@K and NDCG@K.

Conventions used everywhere in the handbook:

- Item ids are 1..n_items and 0 is padding. A score matrix has one column per id,
  ``(B, n_items + 1)``, and its column 0 is never ranked.
- A rank is 0-based: rank 0 means the held-out target is the top recommendation.
- Ties are counted pessimistically: every other item whose score equals the target's
  is placed above it. A model that gives all items the same score therefore gets the
  worst rank, not a lucky one, and the result never depends on sort order.
- History items are *not* removed from the ranking by default (``exclude_history=False``),
  as in the GRID, TIGER and RPG evaluation code: users do re-consume items, and
  generative models are not told to avoid them either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

DEFAULT_KS: tuple[int, ...] = (5, 10)


def _as_numpy(ranks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return ranks as a 1-D NumPy int64 array."""
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.ndim != 1:
        raise ValueError(f"ranks must be 1-D (one rank per user), got shape {ranks.shape}")
    return ranks


def rank_of_target(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
    *,
    pad_column: bool = True,
) -> torch.Tensor:
    """Return the 0-based rank of each target among all items (ties pessimistic), shape (B,).

    scores: (B, n_items + 1) with column i scoring item id i (``pad_column=True``, the
    default; column 0 is ignored), or (B, n_items) with column i scoring item id i + 1
    (``pad_column=False``). targets: (B,) item ids in 1..n_items.
    exclude: optional items to drop from the ranking, either a bool mask shaped like
    ``scores`` (True = drop) or integer item ids (B, L) such as left-padded histories
    (0 entries are ignored). The target itself is never dropped, because in
    leave-one-out data the target may legitimately repeat a history item.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, n_columns), got shape {tuple(scores.shape)}")
    targets = torch.as_tensor(targets, device=scores.device).long().reshape(-1)
    if targets.shape[0] != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} score rows but {targets.shape[0]} targets")
    # Work in float32 at least: bf16/fp16 scores would create spurious ties.
    scores = scores.detach().float().clone()
    if not pad_column:
        # Prepend a pad column so column index == item id from here on.
        scores = torch.cat([scores.new_full((scores.shape[0], 1), float("-inf")), scores], dim=1)
    n_columns = scores.shape[1]
    if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) >= n_columns):
        raise ValueError(f"targets must be item ids in 1..{n_columns - 1}; 0 is padding")
    # NaN compares false with everything; treat it as the lowest possible score instead.
    scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))

    rows = torch.arange(scores.shape[0], device=scores.device)
    if exclude is not None:
        exclude = exclude.to(scores.device)
        if exclude.dtype == torch.bool:
            if not pad_column:
                exclude = torch.cat([exclude.new_zeros((exclude.shape[0], 1)), exclude], dim=1)
            drop = exclude.clone()
        else:
            exclude = exclude.long()
            if exclude.numel() and (int(exclude.min()) < 0 or int(exclude.max()) >= n_columns):
                raise ValueError(f"exclude holds ids outside 0..{n_columns - 1}")
            drop = torch.zeros_like(scores, dtype=torch.bool)
            drop.scatter_(1, exclude, True)  # id 0 (padding) lands on the pad column
        drop[rows, targets] = False
        scores = scores.masked_fill(drop, float("-inf"))
        # Dropped items sit at -inf; mark them so they never count as ties either.
        dropped = drop
    else:
        dropped = torch.zeros_like(scores, dtype=torch.bool)
    dropped[:, 0] = True  # the pad column is never ranked

    target_scores = scores[rows, targets].unsqueeze(1)  # (B, 1)
    above = (scores > target_scores) & ~dropped
    tied = (scores == target_scores) & ~dropped
    tied[rows, targets] = False  # the target does not tie with itself
    return (above.sum(dim=1) + tied.sum(dim=1)).long()


def ranks_from_topk(
    topk_items: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray
) -> np.ndarray:
    """Return the 0-based position of each target in its ranked top-K list, or K when absent.

    topk_items: (B, K) item ids, best first (e.g. a beam search's decoded items; pad
    or invalid entries may be 0 or -1). targets: (B,). A missing target gets rank K,
    which every metric at k <= K counts as a miss; metrics at k > K are not defined
    for a top-K list and must not be asked for.
    """
    topk = torch.as_tensor(topk_items).long()
    if topk.ndim != 2:
        raise ValueError(f"topk_items must be (B, K), got shape {tuple(topk.shape)}")
    targets = torch.as_tensor(targets, device=topk.device).long().reshape(-1, 1)  # (B, 1)
    if targets.shape[0] != topk.shape[0]:
        raise ValueError(f"{topk.shape[0]} top-K lists but {targets.shape[0]} targets")
    k = topk.shape[1]
    if k == 0:
        return np.zeros(topk.shape[0], dtype=np.int64)
    positions = torch.arange(k, device=topk.device).expand_as(topk)  # (B, K)
    # The first occurrence counts, so a beam that repeats an item cannot gain from it.
    first = torch.where(topk == targets, positions, k).min(dim=1).values  # (B,)
    return first.cpu().numpy().astype(np.int64)


def recall_at_k(ranks: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Return per-user Recall@k for one held-out target per user: 1.0 if rank < k else 0.0."""
    ranks = _as_numpy(ranks)
    return (ranks < k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray | torch.Tensor, k: int) -> np.ndarray:
    """Return per-user NDCG@k for one held-out target: 1 / log2(rank + 2) if rank < k else 0."""
    ranks = _as_numpy(ranks)
    # With a single relevant item the ideal DCG is 1, so NDCG is just the DCG.
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def per_user_metrics(
    ranks: np.ndarray | torch.Tensor, ks: Iterable[int] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """Return per-user arrays {"recall@k": (n_users,), "ndcg@k": (n_users,)} for bucketed analysis."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    return out


def bootstrap_interval(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-user `values` (resampling users).

    Pass a per-user difference between two models (same users, same order) to see whether
    a gap is larger than the noise of the test users; it says nothing of seed-to-seed noise.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("bootstrap_interval needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n_resamples, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _per_user_metric(ranks: np.ndarray | torch.Tensor, metric: str) -> np.ndarray:
    """Per-user values of a metric named like "ndcg@10" or "recall@5"."""
    name, _, k = metric.partition("@")
    if name not in ("ndcg", "recall") or not k.isdigit():
        raise ValueError(f"metric must look like 'ndcg@10' or 'recall@5', got {metric!r}")
    return per_user_metrics(ranks, ks=(int(k),))[metric]


def seed_paired_difference(
    ranks_a: Sequence[np.ndarray],
    ranks_b: Sequence[np.ndarray],
    metric: str = "ndcg@10",
    confidence: float = 0.95,
    seed: int = 0,
    users: np.ndarray | None = None,
) -> dict[str, float | bool | list[float]]:
    """Model a minus model b over training seeds: ranks_a[s], ranks_b[s] are seed s's per-user ranks.

    Each user's difference is averaged over the seeds, and the interval is the paired bootstrap of
    the mean of those (resampling users), so it holds the test users' noise of seed-averaged models.
    `per_seed` is each seed's mean difference and `std` their spread. The difference counts as
    measured only when the interval excludes 0 *and* every seed's difference has the same sign.
    `users` (a boolean mask) restricts everything to a subset, e.g. a cold-start bucket.
    """
    if len(ranks_a) != len(ranks_b) or not ranks_a:
        raise ValueError(f"need the same number (>= 1) of seeds for both models, got {len(ranks_a)} and {len(ranks_b)}")
    mask = slice(None) if users is None else np.asarray(users, dtype=bool)
    gaps = []
    for a, b in zip(ranks_a, ranks_b, strict=True):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"both models must rank the same test users, got {np.shape(a)} and {np.shape(b)}")
        gaps.append(_per_user_metric(a, metric)[mask] - _per_user_metric(b, metric)[mask])
    gaps = np.stack(gaps)  # (seeds, users)
    per_seed = gaps.mean(axis=1)
    low, high = bootstrap_interval(gaps.mean(axis=0), confidence=confidence, seed=seed)
    same_sign = bool((per_seed > 0).all() or (per_seed < 0).all())
    return {
        "difference": float(gaps.mean()),
        "low": low,
        "high": high,
        "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
        "per_seed": [float(v) for v in per_seed],
        "measured": bool((low > 0 or high < 0) and same_sign),
    }


def popularity_buckets(counts: np.ndarray, edges: Iterable[int]) -> tuple[np.ndarray, list[str]]:
    """Bucket index of each count, and the bucket names, for increasing `edges` e.g. (1, 5, 20).

    Bucket 0 holds counts below edges[0] (with edges[0] = 1: items never seen in training),
    bucket i counts in [edges[i-1], edges[i]), the last bucket counts >= edges[-1].
    """
    edges = [int(e) for e in edges]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or edges[0] < 1:
        raise ValueError(f"popularity edges must be increasing integers >= 1, got {edges}")
    counts = np.asarray(counts).reshape(-1)
    bounds = [0, *edges]
    names = [
        str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(bounds, bounds[1:], strict=False)
    ] + [f"{edges[-1]}+"]
    return np.searchsorted(edges, counts, side="right"), names


def metrics_by_group(
    ranks: np.ndarray | torch.Tensor,
    groups: np.ndarray,
    names: list[str],
    ks: Iterable[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Mean metrics of the users in each group: {name: {"users": n, "ndcg@10": ...}}; empty groups NaN."""
    ranks, groups = _as_numpy(ranks), np.asarray(groups).reshape(-1)
    if ranks.shape != groups.shape:
        raise ValueError(f"{ranks.size} ranks but {groups.size} group labels: one per user")
    per_user = per_user_metrics(ranks, ks)
    out: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        members = groups == index
        out[name] = {"users": int(members.sum())}
        for metric, values in per_user.items():
            out[name][metric] = float(values[members].mean()) if members.any() else float("nan")
    return out


def summarize(ranks: np.ndarray | torch.Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Return mean metrics over users, e.g. {"recall@5": ..., "ndcg@5": ..., "recall@10": ...}."""
    ranks = _as_numpy(ranks)
    if ranks.size == 0:
        raise ValueError("no ranks to summarise: the evaluation set is empty")
    return {name: float(values.mean()) for name, values in per_user_metrics(ranks, ks).items()}


def _model_device(model: object) -> torch.device:
    """Return the device of a module's parameters, or CPU for parameter-free models."""
    if isinstance(model, torch.nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def rank_all(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    histories: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    exclude_history: bool = False,
) -> np.ndarray:
    """Rank every user's target with `score_fn(histories (B, L) on device) -> (B, n_items + 1)`."""
    histories = torch.as_tensor(histories).long()
    targets = torch.as_tensor(targets).long().reshape(-1)
    if histories.shape[0] != targets.shape[0]:
        raise ValueError(f"{histories.shape[0]} histories but {targets.shape[0]} targets")
    device = torch.device(device)
    ranks = []
    for start in range(0, histories.shape[0], batch_size):
        hist = histories[start : start + batch_size].to(device)  # (B, L)
        tgt = targets[start : start + batch_size].to(device)  # (B,)
        scores = score_fn(hist)  # (B, n_items + 1)
        ranks.append(rank_of_target(scores, tgt, hist if exclude_history else None).cpu())
    return torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)


def evaluate_model(
    model: object,
    histories: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    exclude_history: bool = False,
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """Full-ranking metrics of any model with `.scores(histories) -> (B, n_items + 1)`.

    The device defaults to the model's own; an nn.Module is put in eval mode for the
    call and its previous mode is restored afterwards. `return_ranks`: also return each
    user's 0-based rank of the target, for paired comparisons between models.
    """
    device = _model_device(model) if device is None else torch.device(device)
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        ranks = rank_all(
            model.scores,  # type: ignore[attr-defined]
            histories,
            targets,
            batch_size=batch_size,
            device=device,
            exclude_history=exclude_history,
        )
    finally:
        if was_training:
            model.train()  # type: ignore[union-attr]
    return (summarize(ranks, ks), ranks) if return_ranks else summarize(ranks, ks)
