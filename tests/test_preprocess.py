"""Preprocessing: k-core, chronological order, leave-one-out, training samples, statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from handbook.data.datasets import Dataset
from handbook.data.preprocess import (
    SequenceData,
    chronological,
    items_in_order,
    k_core,
    leave_one_out,
    prepare,
    samples_per_sequence,
    statistics,
    training_samples,
)


def _frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"]).astype({"timestamp": "int64"})


def _pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(df["user"], df["item"], strict=True))


# --------------------------------------------------------------------------- k-core


def test_k_core_iterates_until_stable() -> None:
    # Item c has one interaction; once it goes, u3 is left with one: a single pass would keep u3.
    df = _frame(
        [
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u2", "a", 1),
            ("u2", "b", 2),
            ("u3", "a", 1),
            ("u3", "c", 2),
        ]
    )
    assert _pairs(k_core(df, 2)) == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]


def test_k_core_no_op_cases() -> None:
    df = _frame([("u1", "a", 1), ("u2", "b", 1)])
    pd.testing.assert_frame_equal(k_core(df, 1), df)
    pd.testing.assert_frame_equal(k_core(df, 0), df)
    core = _frame([(u, i, 0) for u in ("u1", "u2") for i in ("a", "b")])
    pd.testing.assert_frame_equal(k_core(core, 2), core)


def test_k_core_that_empties_the_data_warns() -> None:
    with pytest.warns(UserWarning, match="smaller k"):
        assert len(k_core(_frame([("u1", "a", 1)]), 3)) == 0


# --------------------------------------------------------------------------- order


def test_chronological_sorts_users_numerically_and_keeps_tie_order() -> None:
    df = _frame([("2", "x", 5), ("1", "y", 3), ("1", "z", 1), ("1", "w", 3), ("10", "v", 0)])
    out = chronological(df)
    assert out["item"].tolist() == ["z", "y", "w", "x", "v"]  # y before w: same time, row order
    assert out["user"].tolist() == ["1", "1", "1", "2", "10"]
    assert out.index.tolist() == list(range(5))
    pd.testing.assert_frame_equal(chronological(out), out)  # idempotent


# --------------------------------------------------------------------------- leave-one-out


def _toy_sequences() -> SequenceData:
    df = _frame(
        [
            ("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4),
            ("u2", "c", 1), ("u2", "a", 2), ("u2", "e", 3),
            ("u3", "b", 1),
        ]
    )  # fmt: skip
    with pytest.warns(UserWarning, match="dropped 1 of 3 users"):
        return leave_one_out(df, min_length=3)


def test_leave_one_out_ids_and_targets() -> None:
    data = _toy_sequences()
    assert data.item_ids.tolist() == ["a", "b", "c", "d", "e"]  # internal id i + 1
    assert data.user_ids.tolist() == ["u1", "u2"]
    assert (data.n_items, data.n_users, data.dropped_users) == (5, 2, 1)
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3, 4], [3, 1, 5]]
    assert all(s.dtype == np.int64 for s in data.sequences)
    assert [s.tolist() for s in data.train_sequences()] == [[1, 2], [3]]


def test_eval_arrays_left_pad_and_truncate() -> None:
    data = _toy_sequences()
    histories, targets = data.eval_arrays("valid", max_len=3)
    np.testing.assert_array_equal(histories, [[0, 1, 2], [0, 0, 3]])
    np.testing.assert_array_equal(targets, [3, 1])
    histories, targets = data.eval_arrays("test", max_len=2)
    np.testing.assert_array_equal(histories, [[2, 3], [3, 1]])  # last two items kept
    np.testing.assert_array_equal(targets, [4, 5])
    assert histories.dtype == np.int64 and targets.dtype == np.int64
    with pytest.raises(ValueError, match="split"):
        data.eval_arrays("train", max_len=2)


def test_leave_one_out_rejects_unsorted_input() -> None:
    df = _frame([("u1", "a", 3), ("u1", "b", 1), ("u1", "c", 2)])
    with pytest.raises(ValueError, match="chronological"):
        leave_one_out(df)


def test_prepare_and_items_in_order() -> None:
    inter = _frame(
        [
            ("u1", "b", 2),
            ("u1", "a", 1),
            ("u1", "c", 3),
            ("u2", "c", 1),
            ("u2", "b", 2),
            ("u2", "a", 3),
        ]
    )
    items = pd.DataFrame({"title": ["A", "C"]}, index=pd.Index(["a", "c"], name="item"))
    data = prepare(Dataset("toy", inter, items, "memory"), k=2)
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3], [3, 2, 1]]
    table = items_in_order(items, data.item_ids)
    assert table["title"].tolist() == ["A", "", "C"]  # b has no text row
    assert table.index.tolist() == ["a", "b", "c"]


# --------------------------------------------------------------------------- training samples


def test_training_samples_sliding_window() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7])]
    histories, targets = training_samples(seqs, max_len=2)
    np.testing.assert_array_equal(histories, [[0, 1], [1, 2], [2, 3], [0, 5]])
    np.testing.assert_array_equal(targets, [2, 3, 4, 6])


def test_training_samples_one_per_user() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7])]
    histories, targets = training_samples(seqs, max_len=2, sliding_window=False)
    np.testing.assert_array_equal(histories, [[2, 3], [0, 5]])
    np.testing.assert_array_equal(targets, [4, 6])
    histories, _ = training_samples(seqs, max_len=4, sliding_window=False)
    np.testing.assert_array_equal(histories, [[0, 1, 2, 3], [0, 0, 0, 5]])


def test_training_samples_of_nothing() -> None:
    histories, targets = training_samples([np.array([1])], max_len=3)
    assert histories.shape == (0, 3) and targets.shape == (0,)


def test_augmentation_names_the_older_sliding_window_options() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7])]
    for augmentation, sliding_window in (("prefixes", True), ("none", False)):
        new = training_samples(seqs, 2, augmentation=augmentation)
        old = training_samples(seqs, 2, sliding_window=sliding_window)
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], old[1])
    with pytest.raises(ValueError, match="augmentation must be one of"):
        training_samples(seqs, 2, augmentation="windows")
    with pytest.raises(ValueError, match="not both"):
        training_samples(seqs, 2, sliding_window=True, augmentation="prefixes")


def test_subsequences_of_a_four_item_sequence_by_hand() -> None:
    histories, targets = training_samples([np.array([1, 2, 3, 4])], max_len=3, augmentation="subsequences")
    samples = sorted((tuple(int(i) for i in h if i), int(t)) for h, t in zip(histories, targets, strict=True))
    # every contiguous run of >= 2 items, its last item the target (GRID's collate function)
    assert samples == sorted([
        ((1,), 2), ((2,), 3), ((3,), 4),  # pairs
        ((1, 2), 3), ((2, 3), 4),  # triples
        ((1, 2, 3), 4),  # the whole sequence
    ])  # fmt: skip
    # left-padded like the prefixes, not only the prefixes
    assert [0, 2, 3] in histories.tolist() and [0, 0, 3] in histories.tolist()


def test_subsequence_count_is_n_choose_2() -> None:
    lengths = [0, 1, 2, 3, 7, 12]
    seqs = [np.arange(1, n + 1) for n in lengths]
    _, targets = training_samples(seqs, max_len=20, augmentation="subsequences")
    assert len(targets) == sum(n * (n - 1) // 2 for n in lengths) == 91
    np.testing.assert_array_equal(
        samples_per_sequence(lengths, "subsequences"), [n * (n - 1) // 2 for n in lengths]
    )
    for augmentation in ("prefixes", "none"):
        _, targets = training_samples(seqs, max_len=20, augmentation=augmentation)
        assert len(targets) == samples_per_sequence(lengths, augmentation).sum()


def test_subsequences_are_cut_to_the_last_max_len_items() -> None:
    histories, targets = training_samples([np.array([1, 2, 3, 4])], max_len=2, augmentation="subsequences")
    rows = [(tuple(h), int(t)) for h, t in zip(histories.tolist(), targets, strict=True)]
    # (1, 2, 3) -> 4 keeps its last two items, so the window (2, 3) -> 4 appears twice, as in GRID
    assert sorted(rows) == sorted([
        ((0, 1), 2), ((0, 2), 3), ((1, 2), 3), ((0, 3), 4), ((2, 3), 4), ((2, 3), 4),
    ])  # fmt: skip
    empty, none = training_samples([np.array([5])], max_len=2, augmentation="subsequences")
    assert empty.shape == (0, 2) and none.shape == (0,)


# --------------------------------------------------------------------------- statistics


def test_statistics_values() -> None:
    df = _frame([("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "b", 2)])
    stats = statistics(df)
    assert stats[["users", "items", "interactions", "seq_len_max"]].tolist() == [2, 3, 5, 3]
    assert isinstance(stats["users"], int) and isinstance(stats["seq_len_max"], int)
    assert stats["density"] == pytest.approx(5 / 6)
    assert stats["seq_len_mean"] == pytest.approx(2.5)
    assert stats["seq_len_p50"] == pytest.approx(2.5)
    assert stats["seq_len_p90"] == pytest.approx(2.9)
