"""Graph-constrained parallel decoding (RPG): a beam walks an item k-NN graph instead of the SID space.

RPG predicts all m digits of the next item at once, as m distributions over codes
(`RPG.digit_log_probs`, (B, m, W)); an item's score is the mean of its digits'
log-probabilities. Scoring the whole catalogue is exact but costs O(n_items * m) per
user. Graph decoding visits a few hundred items instead:

1. start from `num_beams` random catalogue items;
2. `propagation_steps` times: gather the neighbours of the beam's items in the item
   graph (`SemanticIDs.knn_graph`, built from the trained token embeddings), score
   them, keep the best `num_beams` distinct items;
3. return the final beam, best first.

Only real items are ever scored, so every output is a valid item (no invalid SIDs, no
trie). Follows the paper (Hou et al., KDD 2025, Sec. 3.3) and, for what it leaves
open, the authors' `graph_propagation` (facebookresearch/RPG_KDD2025,
`genrec/models/RPG/model.py`):

* start items are drawn uniformly *with replacement* per user (`torch.randint`, as the
  reference does, whose comment says "distinct" but whose code does not enforce it);
  here from an explicit CPU `torch.Generator`, so results do not depend on the device;
* the reference graph keeps each item as its own best neighbour, so the beam's items
  stay candidates at every step; `knn_graph` leaves self out, so the beam is added to
  the candidates explicitly, which is the same walk;
* visited items = the start items plus every candidate scored, per user (the count
  the reference reports for its efficiency study).

Differences, all batched in torch rather than a Python loop over users: the start
beam is scored and deduplicated before the first step (the reference returns it
unsorted when `propagation_steps=0`); ties go to the lower item id; if fewer than
`num_beams` distinct items were reached, the missing slots hold item id 0 and score
-inf instead of an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from handbook.metrics import DEFAULT_KS, ranks_from_topk, summarize
from handbook.models.rpg import mean_digit_log_prob


@dataclass
class GraphDecodeResult:
    """Output of `graph_decode` for a batch of B users."""

    items: torch.Tensor  # (B, k) item ids 1..n_items, best first; 0 = empty slot
    scores: torch.Tensor  # (B, k) mean digit log-probability; -inf for empty slots
    n_visited: torch.Tensor  # (B,) distinct items scored per user


def _as_long(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Integer array or tensor -> int64 tensor on `device`."""
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).long().to(device)


def _keep_best(
    digit_log_probs: torch.Tensor, codes: torch.Tensor, candidates: torch.Tensor, num_beams: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best `num_beams` distinct candidates (B, C) item indices (-1 = none) -> (indices, scores), best first."""
    ordered, _ = candidates.sort(dim=1)  # (B, C), ascending: duplicates side by side, -1 first
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    valid = (ordered >= 0) & ~repeated
    scores = mean_digit_log_prob(digit_log_probs, codes[ordered.clamp(min=0)])  # (B, C)
    # a real item always ranks above an empty slot, even at -inf
    scores = scores.nan_to_num(nan=-torch.finfo(scores.dtype).max)
    scores = scores.clamp(min=-torch.finfo(scores.dtype).max).masked_fill(~valid, float("-inf"))
    # stable sort over ascending ids: equal scores go to the lower item id
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :num_beams]
    keep = valid.gather(1, order)
    beam = torch.where(keep, ordered.gather(1, order), -1)  # (B, K)
    return beam, scores.gather(1, order)


@torch.no_grad()
def graph_decode(
    digit_log_probs: torch.Tensor,
    codes: np.ndarray | torch.Tensor,
    graph: np.ndarray | torch.Tensor,
    *,
    num_beams: int = 10,
    propagation_steps: int = 3,
    k: int | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> GraphDecodeResult:
    """Top-k items per user by a beam walk over the item graph, scored by mean digit log-prob.

    digit_log_probs: (B, m, W) per-user log-probabilities of every code of every digit.
    codes: (n_items, m) SID codes, row i = item id i + 1. graph: (n_items, n_edges)
    neighbour item *indices* (0-based rows of `codes`), e.g. `SemanticIDs.knn_graph`.
    k: items returned (default and at most `num_beams`). Start items come from
    `generator` (a CPU torch.Generator, to continue one stream over many batches)
    or else from a fresh generator seeded with `seed`. `check=False` skips the scan of
    every code and edge for out-of-range values, which costs O(n_items) per call: pass it
    when the same catalogue and graph were checked already (`graph_rank_all` checks once).
    """
    if digit_log_probs.ndim != 3:
        raise ValueError(
            f"digit_log_probs must be (B, m, W), got shape {tuple(digit_log_probs.shape)}"
        )
    device = digit_log_probs.device
    batch, m, width = digit_log_probs.shape
    codes = _as_long(codes, device)
    graph = _as_long(graph, device)
    n_items = codes.shape[0]
    if codes.ndim != 2 or codes.shape[1] != m:
        raise ValueError(
            f"codes must be (n_items, {m}) to match the log-probs, got {tuple(codes.shape)}"
        )
    if check and codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= width):
        raise ValueError(f"codes must lie in [0, {width}), the log-probs' codebook size")
    if graph.ndim != 2 or graph.shape[0] != n_items or graph.shape[1] < 1:
        raise ValueError(
            f"graph must be (n_items={n_items}, n_edges >= 1), got {tuple(graph.shape)}: "
            "build it with SemanticIDs.knn_graph on the same catalogue"
        )
    if check and (int(graph.min()) < 0 or int(graph.max()) >= n_items):
        raise ValueError(
            f"graph holds item indices outside [0, {n_items}): it must list 0-based rows of codes"
        )
    if num_beams < 1 or propagation_steps < 0:
        raise ValueError(
            f"need num_beams >= 1 and propagation_steps >= 0, got {num_beams} and {propagation_steps}"
        )
    k = num_beams if k is None else k
    if not 1 <= k <= num_beams:
        raise ValueError(
            f"k={k} must be in [1, num_beams={num_beams}]: raise num_beams to return more"
        )

    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    start = torch.randint(0, n_items, (batch, num_beams), generator=gen).to(device)  # (B, K)
    # one spare column, n_items, takes the writes of empty (-1) slots
    visited = torch.zeros(batch, n_items + 1, dtype=torch.bool, device=device)
    visited.scatter_(1, start, True)
    beam, scores = _keep_best(digit_log_probs, codes, start, num_beams)
    for _ in range(propagation_steps):
        neighbours = graph[beam.clamp(min=0)]  # (B, K, n_edges)
        neighbours = torch.where(beam.unsqueeze(-1) >= 0, neighbours, -1).reshape(batch, -1)
        candidates = torch.cat([beam, neighbours], dim=1)  # (B, K * (n_edges + 1))
        visited.scatter_(1, torch.where(candidates >= 0, candidates, n_items), True)
        beam, scores = _keep_best(digit_log_probs, codes, candidates, num_beams)
    return GraphDecodeResult(
        items=beam[:, :k] + 1,  # index -> item id; empty slots (-1) become 0, padding
        scores=scores[:, :k],
        n_visited=visited[:, :n_items].sum(dim=1),
    )


def graph_ranks(
    items: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, n_items: int
) -> np.ndarray:
    """0-based rank of each target in a decoded top-k list (B, k); absent targets rank last (n_items - 1).

    A target the walk did not return could sit anywhere after the returned items;
    placing it last is the pessimistic choice (as ties are in `handbook.metrics`), so
    Recall@K and NDCG@K of `summarize` count it as a miss at every K, also K > k.
    """
    ranks = ranks_from_topk(items, targets)
    k = torch.as_tensor(items).shape[1]
    return np.where(ranks >= k, max(n_items - 1, k), ranks)


@torch.no_grad()
def graph_rank_all(
    log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
    histories: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    codes: np.ndarray | torch.Tensor,
    graph: np.ndarray | torch.Tensor,
    *,
    num_beams: int = 10,
    propagation_steps: int = 3,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Graph-decode every user in batches: (ranks (n_users,), distinct items visited (n_users,)).

    log_prob_fn(histories (B, L) on device) -> (B, m, W), e.g. `RPG.digit_log_probs`
    of a model in eval mode. One generator seeded with `seed` serves all batches.
    """
    histories = torch.as_tensor(histories).long()
    targets = torch.as_tensor(targets).long().reshape(-1)
    if histories.shape[0] != targets.shape[0]:
        raise ValueError(f"{histories.shape[0]} histories but {targets.shape[0]} targets")
    device = torch.device(device)
    codes = _as_long(codes, device)
    graph = _as_long(graph, device)
    gen = torch.Generator().manual_seed(seed)
    ranks, visited = [], []
    for start in range(0, histories.shape[0], batch_size):
        log_probs = log_prob_fn(histories[start : start + batch_size].to(device))  # (B, m, W)
        result = graph_decode(
            log_probs,
            codes,
            graph,
            num_beams=num_beams,
            propagation_steps=propagation_steps,
            generator=gen,
            check=start == 0,  # the catalogue and graph are the same for every batch
        )
        ranks.append(graph_ranks(result.items, targets[start : start + batch_size], len(codes)))
        visited.append(result.n_visited.cpu().numpy())
    if not ranks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ranks), np.concatenate(visited)


def evaluate_graph(
    model: torch.nn.Module,
    histories: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    graph: np.ndarray | torch.Tensor,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    num_beams: int = 10,
    propagation_steps: int = 3,
    seed: int = 0,
    batch_size: int = 256,
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """Recall@K / NDCG@K of an RPG model under graph decoding, plus "visited" (mean items scored per user).

    `return_ranks`: also return the per-user ranks (n_items where the walk never reached the target).
    """
    if not hasattr(model, "digit_log_probs") or not hasattr(model, "codes"):
        raise TypeError("evaluate_graph needs an RPG-like model with .digit_log_probs and .codes")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        ranks, visited = graph_rank_all(
            model.digit_log_probs,  # type: ignore[arg-type]
            histories,
            targets,
            model.codes,  # type: ignore[arg-type]
            graph,
            num_beams=num_beams,
            propagation_steps=propagation_steps,
            seed=seed,
            batch_size=batch_size,
            device=device,
        )
    finally:
        model.train(was_training)
    metrics = {**summarize(ranks, ks), "visited": float(visited.mean())}
    return (metrics, ranks) if return_ranks else metrics
