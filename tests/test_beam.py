"""Beam search over SID digits with hand-made step functions: trie constraint, free decoding, exactness."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from handbook.decoding.beam import beam_search, evaluate_generative, generative_ranks
from handbook.sid import BOS_TOKEN, N_SPECIAL_TOKENS, SemanticIDs


def sparse_sids(n_items: int = 20, seed: int = 0) -> SemanticIDs:
    """Random 2-digit codes over 4 x 4 plus a de-dup digit: most of the 4 x 4 x W grid is no item."""
    rng = np.random.default_rng(seed)
    return SemanticIDs.from_codes(rng.integers(0, 4, size=(n_items, 2)), 4)


def markov_step(sids: SemanticIDs, batch: int, seed: int = 0):
    """A step function whose logits depend on the batch row and the last token: (N, vocab)."""
    table = torch.randn(
        batch, sids.vocab_size, sids.vocab_size, generator=torch.Generator().manual_seed(seed)
    )

    def step(rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        last = prefix[:, -1] if prefix.shape[1] else torch.full_like(rows, BOS_TOKEN)
        return table[rows, last] * 3.0

    return step, table


def brute_force_scores(sids: SemanticIDs, table: torch.Tensor, row: int) -> np.ndarray:
    """Constrained log-prob of every item's SID under `markov_step`, renormalised over trie children."""
    tokens = sids.tokens()
    scores = np.zeros(sids.n_items)
    for item in range(sids.n_items):
        last = BOS_TOKEN
        for level in range(sids.n_digits):
            allowed = sids.allowed_next(sids.codes[item, :level], tokens=True)
            logits = table[row, last, allowed] * 3.0
            chosen = int(np.flatnonzero(allowed == tokens[item, level])[0])
            scores[item] += float(torch.log_softmax(logits, 0)[chosen])
            last = int(tokens[item, level])
    return scores


def test_uniform_scores_full_beam_returns_every_item_once() -> None:
    sids = sparse_sids()
    uniform = lambda rows, prefix: torch.zeros(rows.shape[0], sids.vocab_size)  # noqa: E731
    result = beam_search(uniform, batch_size=3, sids=sids, beam_size=sids.n_items + 5)
    assert result.items.shape == (3, sids.n_items + 5)
    for row in result.items:
        assert sorted(row[: sids.n_items].tolist()) == list(range(1, sids.n_items + 1))
        assert (row[sids.n_items :] == 0).all()  # padding after the last item
    assert torch.isinf(result.scores[:, sids.n_items :]).all()
    assert result.invalid_share == 0.0


def test_constrained_beams_are_always_items_and_sorted() -> None:
    sids = sparse_sids(n_items=30, seed=1)
    step, _ = markov_step(sids, batch=64, seed=2)
    result = beam_search(step, batch_size=64, sids=sids, beam_size=8, constrained=True)
    assert result.items.shape == (64, 8) and result.codes.shape == (64, 8, sids.n_digits)
    assert ((result.items >= 1) & (result.items <= sids.n_items)).all()
    assert all(len(set(row.tolist())) == 8 for row in result.items)  # no item twice
    # codes are the items' SIDs, scores best first
    np.testing.assert_array_equal(result.codes.numpy(), sids.codes[result.items.numpy() - 1])
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()
    assert result.n_invalid == 0 and result.invalid_share == 0.0


def test_full_constrained_beam_is_exact() -> None:
    # With a beam as wide as the catalogue nothing is pruned: the ranking is the exhaustive one.
    sids = sparse_sids(n_items=15, seed=3)
    step, table = markov_step(sids, batch=4, seed=4)
    result = beam_search(step, batch_size=4, sids=sids, beam_size=sids.n_items)
    for row in range(4):
        expected = brute_force_scores(sids, table, row)
        got = dict(zip(result.items[row].tolist(), result.scores[row].tolist(), strict=True))
        assert sorted(got) == list(range(1, sids.n_items + 1))
        np.testing.assert_allclose([got[i + 1] for i in range(sids.n_items)], expected, atol=1e-4)


def test_free_decoding_drops_invalid_beams_and_reports_share() -> None:
    sids = sparse_sids(n_items=20, seed=5)
    step, _ = markov_step(sids, batch=32, seed=6)
    result = beam_search(step, batch_size=32, sids=sids, beam_size=6, constrained=False)
    assert 0.0 <= result.invalid_share <= 1.0 and result.n_beams == 32 * 6
    items = result.items
    assert ((items == 0) | ((items >= 1) & (items <= sids.n_items))).all()
    # valid items first, then 0 padding; padding has -inf score
    for row, score in zip(items, result.scores, strict=True):
        n_valid = int((row > 0).sum())
        assert (row[:n_valid] > 0).all() and (row[n_valid:] == 0).all()
        assert torch.isinf(score[n_valid:]).all() and torch.isfinite(score[:n_valid]).all()
    assert result.n_invalid == int((items == 0).sum())


def test_free_full_enumeration_counts_every_non_item() -> None:
    sids = sparse_sids(n_items=10, seed=7)
    grid = int(np.prod(sids.codebook_sizes))
    uniform = lambda rows, prefix: torch.zeros(rows.shape[0], sids.vocab_size)  # noqa: E731
    result = beam_search(uniform, batch_size=2, sids=sids, beam_size=grid, constrained=False)
    assert result.n_beams == 2 * grid and result.n_invalid == 2 * (grid - sids.n_items)
    assert result.invalid_share == pytest.approx((grid - sids.n_items) / grid)
    for row in result.items:
        assert sorted(row[row > 0].tolist()) == list(range(1, sids.n_items + 1))


def test_free_decoding_follows_the_model_into_a_non_item() -> None:
    sids = SemanticIDs.from_codes(np.array([[0, 0], [1, 1]]), 2, dedup=False)
    missing = sids.tokens(np.array([0, 1]))  # (0, 1) is no item

    def step(rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(rows.shape[0], sids.vocab_size)
        logits[:, missing[prefix.shape[1]]] = 10.0
        return logits

    free = beam_search(step, batch_size=1, sids=sids, beam_size=1, constrained=False)
    assert free.items.tolist() == [[0]] and free.invalid_share == 1.0
    constrained = beam_search(step, batch_size=1, sids=sids, beam_size=1, constrained=True)
    assert constrained.items.tolist() == [[1]]  # (0, 0): the best valid continuation of 0


def test_beam_search_errors() -> None:
    sids = sparse_sids()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(lambda r, p: torch.zeros(len(r), sids.vocab_size), 2, sids, beam_size=0)
    with pytest.raises(ValueError, match="vocab_size"):
        beam_search(lambda r, p: torch.zeros(len(r), 5), 2, sids, beam_size=2)


def test_evaluate_generative_uses_the_top_list() -> None:
    class Fixed:
        def recommend(self, histories, k, beam_size, constrained, users, batch_size):
            return torch.tensor([[3, 1, 2], [2, 0, 0]])[:, :k], 0.25

    metrics = evaluate_generative(Fixed(), np.zeros((2, 1)), np.array([1, 2]), ks=(1, 3))
    assert metrics["recall@1"] == 0.5 and metrics["recall@3"] == 1.0
    assert metrics["invalid_share"] == 0.25
    with pytest.raises(ValueError, match="beam_size"):
        evaluate_generative(Fixed(), np.zeros((2, 1)), np.array([1, 2]), ks=(5,), beam_size=3)
    # Per-user ranks: target 1 is second in row 0; target 3 is not decoded in row 1 -> beam_size.
    ranks, share = generative_ranks(Fixed(), np.zeros((2, 1)), np.array([1, 3]), beam_size=3)
    assert ranks.tolist() == [1, 3] and share == 0.25


def test_token_ranges_match_sid_offsets() -> None:
    # The step function sees tokens, not codes: digit j's code c is token N_SPECIAL + offset_j + c.
    sids = sparse_sids(n_items=8, seed=8)
    seen: list[torch.Tensor] = []

    def step(rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        seen.append(prefix.clone())
        return torch.zeros(rows.shape[0], sids.vocab_size)

    beam_search(step, batch_size=1, sids=sids, beam_size=sids.n_items)
    for level, prefix in enumerate(seen):
        for j in range(level):
            low = N_SPECIAL_TOKENS + sids.offsets[j]
            assert ((prefix[:, j] >= low) & (prefix[:, j] < low + sids.codebook_sizes[j])).all()
    assert len(seen) == sids.n_digits
    assert list(itertools.accumulate(p.shape[1] for p in seen))[-1] == sum(range(sids.n_digits))


def test_stateful_step_is_told_each_beams_parent() -> None:
    # A step with `reorder` keeps per-beam state: after reorder(parent) its state must be the
    # prefixes of the surviving beams, i.e. the next call's prefixes without their last token.
    sids = sparse_sids(n_items=25, seed=9)
    inner, _ = markov_step(sids, batch=3, seed=10)

    class Recording:
        def __init__(self) -> None:
            self.state: torch.Tensor | None = None  # (N, t) prefixes of the last call
            self.n_reorders = 0

        def __call__(self, rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
            if prefix.shape[1]:
                assert self.state is not None and torch.equal(prefix[:, :-1], self.state)
            self.state = prefix
            return inner(rows, prefix)

        def reorder(self, parent: torch.Tensor) -> None:
            self.state = self.state[parent]
            self.n_reorders += 1

    step = Recording()
    result = beam_search(step, batch_size=3, sids=sids, beam_size=5)
    assert step.n_reorders == sids.n_digits - 1  # not after the last digit
    plain = beam_search(inner, batch_size=3, sids=sids, beam_size=5)
    assert torch.equal(result.items, plain.items)
