"""Beam search over SID digits (TIGER, GRID): constrained by the prefix trie, or free.

A model is reached through one function, `step_fn(rows, prefix_tokens) -> (N, vocab_size)`
logits or log-probs of the next token, where `prefix_tokens` (N, t) are the SID tokens
generated so far by N beams (t = 0 at the first digit) and `rows` (N,) says which row of
the batch each beam belongs to (so the model can pick its encoder output or prompt).
The beams of a row are contiguous: `rows` is `arange(B).repeat_interleave(N // B)`.

A step function may also keep state between digits, such as a model's KV cache: if it has
a method `reorder(parent)`, it is called after each digit but the last, with `parent` (N',)
the index of each surviving beam's parent among the N beams just scored, so the state can
follow its beams (`state = state[parent]`); the next call then only needs the last token of
`prefix_tokens`. A plain function is never told, and must read the whole prefix.

At digit t only the tokens of that digit's range are scored, and the log-probs are
renormalised over the tokens that are allowed:

* constrained: the children of the beam's prefix in the trie (`SemanticIDs.allowed_mask`),
  so every finished beam is an item. Renormalising after masking is what GRID's beam
  search does (softmax of the masked logits).
* free: every code of the digit (as GRID's per-digit heads); finished beams whose SID is
  no item are dropped at the end and counted in `invalid_share`.

A beam's score is the sum of its digits' log-probs; items come out best first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from handbook.metrics import DEFAULT_KS, ranks_from_topk, summarize
from handbook.sid import N_SPECIAL_TOKENS, SemanticIDs

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BeamSearchResult:
    """Decoded items of a batch, best first, and how many finished beams were no item."""

    items: torch.Tensor  # (B, beam_size) item ids 1..n_items; 0 where fewer beams are items
    scores: torch.Tensor  # (B, beam_size) log-prob of each item's SID; -inf where items is 0
    codes: torch.Tensor  # (B, beam_size, n_digits) SID codes of `items`; -1 where items is 0
    n_invalid: int  # finished beams whose SID is no item (0 when constrained)
    n_beams: int  # finished beams with a finite score

    @property
    def invalid_share(self) -> float:
        """Share of finished beams whose SID is no item, in [0, 1]."""
        return self.n_invalid / max(self.n_beams, 1)


@torch.no_grad()
def beam_search(
    step_fn: StepFn,
    batch_size: int,
    sids: SemanticIDs,
    beam_size: int,
    constrained: bool = True,
    device: str | torch.device | None = None,
) -> BeamSearchResult:
    """Batched beam search over the `sids.n_digits` digits of a SID; see the module docstring.

    `device` is where the beams live; by default that of the first `step_fn` output.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    token_offsets = torch.as_tensor(sids.offsets + N_SPECIAL_TOKENS, dtype=torch.long)
    dev = None if device is None else torch.device(device)
    codes = torch.zeros(batch_size, 0, dtype=torch.long, device=dev)  # (N, t), N = B * per_row
    scores = torch.zeros(batch_size, device=dev)  # (N,) log-prob of each beam so far
    per_row = 1  # beams per batch row
    for level, size in enumerate(sids.codebook_sizes):
        rows = torch.arange(batch_size, device=codes.device).repeat_interleave(per_row)  # (N,)
        prefix = codes + token_offsets[:level].to(codes.device)  # (N, t) token ids
        out = step_fn(rows, prefix)
        if out.ndim != 2 or out.shape != (codes.shape[0], sids.vocab_size):
            raise ValueError(
                f"step_fn must return ({codes.shape[0]}, vocab_size={sids.vocab_size}) scores, "
                f"got {tuple(out.shape)}"
            )
        if dev is None:
            dev = out.device
            codes, scores = codes.to(dev), scores.to(dev)
        start = int(token_offsets[level])
        logits = out[:, start : start + size].float().to(dev)  # (N, size) this digit's codes
        if constrained:
            allowed = torch.from_numpy(sids.allowed_mask(codes.cpu().numpy())).to(dev)
            logits = logits.masked_fill(~allowed, float("-inf"))
        # A dead beam (no allowed code) has an all -inf row: log_softmax gives NaN, keep -inf.
        logp = torch.log_softmax(logits, dim=-1)
        logp = logp.masked_fill(logp.isnan(), float("-inf"))  # nan_to_num would make -inf finite
        candidates = (scores.unsqueeze(1) + logp).view(batch_size, per_row * size)
        k = min(beam_size, per_row * size)
        top, index = candidates.topk(k, dim=1)  # (B, k), best first
        parent = (
            torch.arange(batch_size, device=dev).unsqueeze(1) * per_row + index // size
        ).reshape(-1)
        codes = torch.cat([codes[parent], (index % size).reshape(-1, 1)], dim=1)
        scores = top.reshape(-1)
        per_row = k
        reorder = getattr(step_fn, "reorder", None)
        if reorder is not None and level < sids.n_digits - 1:
            reorder(parent)

    item = torch.as_tensor(
        np.asarray(sids.lookup(codes.cpu().numpy())), device=dev
    )  # (N,) -1 = none
    alive = torch.isfinite(scores)
    is_item = alive & (item >= 0)
    n_beams = int(alive.sum())
    n_invalid = int((alive & (item < 0)).sum())
    # Drop beams that are no item: move them behind the valid ones, keeping score order.
    scores = scores.masked_fill(~is_item, float("-inf")).view(batch_size, per_row)
    order = scores.argsort(dim=1, descending=True, stable=True)
    scores = scores.gather(1, order)
    items = (item + 1).masked_fill(~is_item, 0).view(batch_size, per_row).gather(1, order)
    codes = codes.view(batch_size, per_row, -1)
    codes = codes.gather(1, order.unsqueeze(-1).expand_as(codes))
    codes = codes.masked_fill((items == 0).unsqueeze(-1), -1)
    if per_row < beam_size:  # fewer candidates than beams (tiny codebooks): pad
        pad = beam_size - per_row
        items = torch.cat([items, items.new_zeros(batch_size, pad)], dim=1)
        scores = torch.cat([scores, scores.new_full((batch_size, pad), float("-inf"))], dim=1)
        codes = torch.cat([codes, codes.new_full((batch_size, pad, codes.shape[2]), -1)], dim=1)
    return BeamSearchResult(items, scores, codes, n_invalid, n_beams)


def generative_ranks(
    model: Any,
    histories: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    *,
    beam_size: int,
    constrained: bool = True,
    users: np.ndarray | torch.Tensor | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, float]:
    """Per-user 0-based ranks of the targets in the decoded top lists, and the invalid share.

    `model.recommend(histories, k, beam_size, constrained, users, batch_size)` gives the top
    lists (TIGER, decoder-only); a target that is not decoded gets rank `beam_size`.
    """
    items, invalid_share = model.recommend(
        histories,
        k=beam_size,
        beam_size=beam_size,
        constrained=constrained,
        users=users,
        batch_size=batch_size,
    )
    return ranks_from_topk(items, targets), float(invalid_share)


def evaluate_generative(
    model: Any,
    histories: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    beam_size: int | None = None,
    constrained: bool = True,
    users: np.ndarray | torch.Tensor | None = None,
    batch_size: int = 256,
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """Recall@K / NDCG@K of a model's beam-search top list, plus "invalid_share" of its beams.

    `beam_size` defaults to max(ks); metrics at k > beam_size are not defined for a top list.
    `return_ranks`: also return the per-user ranks (`beam_size` where not decoded).
    """
    ks = tuple(ks)
    beam_size = max(ks) if beam_size is None else beam_size
    if max(ks) > beam_size:
        raise ValueError(f"metrics @{max(ks)} need beam_size >= {max(ks)}, got {beam_size}")
    ranks, invalid_share = generative_ranks(
        model,
        histories,
        targets,
        beam_size=beam_size,
        constrained=constrained,
        users=users,
        batch_size=batch_size,
    )
    metrics = summarize(ranks, ks)
    metrics["invalid_share"] = invalid_share
    return (metrics, ranks) if return_ranks else metrics
