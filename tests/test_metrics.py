"""Metrics against hand-computed values on tiny score matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handbook.metrics import (
    bootstrap_interval,
    evaluate_model,
    metrics_by_group,
    ndcg_at_k,
    per_user_metrics,
    popularity_buckets,
    rank_all,
    rank_of_target,
    ranks_from_topk,
    recall_at_k,
    seed_paired_difference,
    summarize,
)


def test_rank_of_target_by_hand() -> None:
    # Column 0 is padding: its large score must never count.
    scores = torch.tensor(
        [
            [9.0, 0.1, 0.5, 0.3, 0.5],  # target 4 ties item 2 -> pessimistic rank 1
            [9.0, 0.9, 0.8, 0.7, 0.6],  # target 1 is best -> rank 0
            [9.0, 0.9, 0.8, 0.7, 0.6],  # target 4 is worst -> rank 3
            [9.0, 1.0, 1.0, 1.0, 1.0],  # all tied -> worst rank 3
        ]
    )
    targets = torch.tensor([4, 1, 4, 2])
    assert rank_of_target(scores, targets).tolist() == [1, 0, 3, 3]


def test_rank_of_target_without_pad_column() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5]])  # column i = item i + 1
    assert rank_of_target(scores, torch.tensor([3]), pad_column=False).tolist() == [2]


def test_exclude_history_keeps_the_target() -> None:
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6]])
    histories = torch.tensor([[0, 0, 1, 4]])  # left-padded; item 4 is also the target
    assert rank_of_target(scores, torch.tensor([4])).tolist() == [3]
    # Item 1 leaves the ranking, item 4 (the target) stays: only item 2 and 3 beat it.
    assert rank_of_target(scores, torch.tensor([4]), histories).tolist() == [2]
    mask = torch.tensor([[False, True, True, False, False]])
    assert rank_of_target(scores, torch.tensor([4]), mask).tolist() == [1]


def test_rank_of_target_rejects_pad_target() -> None:
    with pytest.raises(ValueError, match="padding"):
        rank_of_target(torch.zeros(1, 4), torch.tensor([0]))


def test_recall_and_ndcg_by_hand() -> None:
    ranks = np.array([0, 1, 4, 9, 10])
    assert recall_at_k(ranks, 5).tolist() == [1, 1, 1, 0, 0]
    assert recall_at_k(ranks, 10).tolist() == [1, 1, 1, 1, 0]
    expected = [1.0, 1 / math.log2(3), 1 / math.log2(6), 0.0, 0.0]
    assert np.allclose(ndcg_at_k(ranks, 5), expected)
    metrics = summarize(ranks, ks=(5, 10))
    assert set(metrics) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10"}
    assert metrics["recall@5"] == pytest.approx(0.6)
    assert metrics["recall@10"] == pytest.approx(0.8)
    assert metrics["ndcg@10"] == pytest.approx((sum(expected) + 1 / math.log2(11)) / 5)
    per_user = per_user_metrics(torch.tensor(ranks), ks=(5,))
    assert per_user["recall@5"].shape == (5,)


def test_ranks_from_topk() -> None:
    topk = torch.tensor([[3, 7, 1], [2, 2, 5], [4, 6, 8], [0, -1, 9]])
    targets = torch.tensor([7, 2, 9, 9])
    ranks = ranks_from_topk(topk, targets)
    assert ranks.tolist() == [1, 0, 3, 2]  # absent -> K = 3, a miss at every k <= K
    assert recall_at_k(ranks, 3).tolist() == [1, 1, 0, 1]


class _Oracle:
    """Scores the true next item highest: a stand-in for a perfect model."""

    def __init__(self, answers: dict[int, int], n_items: int) -> None:
        self.answers, self.n_items = answers, n_items

    def scores(self, histories: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(histories.shape[0], self.n_items + 1)
        out[:, 0] = float("-inf")
        for row, last in enumerate(histories[:, -1].tolist()):
            out[row, self.answers[last]] = 1.0
        return out


def test_perfect_model_scores_one() -> None:
    histories = np.array([[0, 1, 2], [0, 0, 3], [4, 5, 6]])
    targets = np.array([3, 7, 8])
    model = _Oracle({2: 3, 3: 7, 6: 8}, n_items=8)
    metrics = evaluate_model(model, histories, targets, ks=(1, 10), batch_size=2)
    assert metrics == {"recall@1": 1.0, "ndcg@1": 1.0, "recall@10": 1.0, "ndcg@10": 1.0}
    assert rank_all(model.scores, histories, targets, batch_size=2).tolist() == [0, 0, 0]


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_users() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.3, 1.0, 100), rng.normal(0.3, 1.0, 10_000)
    low, high = bootstrap_interval(small)
    assert low < small.mean() < high
    low_l, high_l = bootstrap_interval(large)
    assert low_l < large.mean() < high_l
    # The standard error falls as 1/sqrt(n): 100x the users, about a tenth of the width.
    assert (high_l - low_l) < 0.2 * (high - low)
    assert bootstrap_interval(np.full(50, 0.25)) == pytest.approx((0.25, 0.25))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(small, confidence=1.5)


def test_popularity_buckets_by_hand() -> None:
    groups, names = popularity_buckets(np.array([0, 1, 4, 5, 19, 20, 300]), edges=(1, 5, 20))
    assert names == ["0", "1-4", "5-19", "20+"]
    assert groups.tolist() == [0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="increasing"):
        popularity_buckets(np.array([1]), edges=(5, 5))


def test_metrics_by_group_averages_each_group() -> None:
    ranks = np.array([0, 3, 20, 1])
    groups = np.array([0, 0, 1, 2])
    out = metrics_by_group(ranks, groups, ["a", "b", "c", "empty"], ks=(5,))
    assert out["a"] == {"users": 2, "recall@5": 1.0, "ndcg@5": pytest.approx((1 + 1 / math.log2(5)) / 2)}
    assert out["b"]["recall@5"] == 0.0 and out["c"]["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert out["empty"]["users"] == 0 and math.isnan(out["empty"]["ndcg@5"])
    with pytest.raises(ValueError, match="one per user"):
        metrics_by_group(ranks, groups[:2], ["a"], ks=(5,))


def test_seed_paired_difference_by_hand() -> None:
    # Two seeds, four users; a ranks the target first where b ranks it 3rd or misses it.
    a = [np.array([0, 0, 20, 1]), np.array([0, 2, 20, 0])]
    b = [np.array([2, 20, 20, 1]), np.array([0, 20, 20, 5])]
    out = seed_paired_difference(a, b, "ndcg@10")
    gaps = np.stack([ndcg_at_k(x, 10) - ndcg_at_k(y, 10) for x, y in zip(a, b, strict=True)])
    assert out["difference"] == pytest.approx(gaps.mean())
    assert out["per_seed"] == pytest.approx(list(gaps.mean(axis=1)))
    assert out["std"] == pytest.approx(gaps.mean(axis=1).std(ddof=1))
    assert (out["low"], out["high"]) == pytest.approx(bootstrap_interval(gaps.mean(axis=0)))
    # every seed favours a and the interval excludes 0 -> measured; reversed, measured the other way
    assert out["measured"] and out["low"] > 0
    back = seed_paired_difference(b, a, "ndcg@10")
    assert back["measured"] and back["difference"] == pytest.approx(-out["difference"])


def test_seed_paired_difference_needs_agreeing_seeds_and_restricts_to_users() -> None:
    # One seed says a is better, the other b: never "measured", whatever the interval says.
    a = [np.zeros(50, dtype=int), np.full(50, 30)]
    b = [np.full(50, 30), np.full(50, 1)]
    assert not seed_paired_difference(a, b)["measured"]
    users = np.arange(50) < 10
    sub = seed_paired_difference(a, b, "recall@10", users=users)
    assert sub["difference"] == pytest.approx(0.5 * (1 - 0) + 0.5 * (0 - 1))
    with pytest.raises(ValueError, match="same number"):
        seed_paired_difference(a, b[:1])
    with pytest.raises(ValueError, match="metric must look like"):
        seed_paired_difference(a, b, "mrr")
