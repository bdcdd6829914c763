"""From raw interactions to the sequences every model trains on.

k-core filter -> chronological order -> leave-one-out split -> training samples. Items and
users get internal ids here: item id i + 1 is `item_ids[i]`, and 0 is kept for padding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from handbook.data.datasets import Dataset

PAD = 0  # item id 0 pads histories on the left


def k_core(interactions: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Drop users and items with fewer than k interactions, repeatedly, until none are left."""
    df = interactions
    if k <= 1:
        return df
    while True:
        keep = (df.groupby("user")["item"].transform("size") >= k) & (
            df.groupby("item")["user"].transform("size") >= k
        )
        if keep.all():
            break
        df = df[keep]
    if df.empty:
        warnings.warn(
            f"the {k}-core is empty: every interaction was removed; use a smaller k",
            UserWarning,
            stacklevel=2,
        )
    return df


def _natural_order(values: pd.Series) -> pd.Series:
    """Sort key: numbers as numbers when every id is a number ("2" before "10"), else text."""
    return values.astype(np.int64) if values.str.fullmatch(r"\d+").all() else values


def chronological(interactions: pd.DataFrame) -> pd.DataFrame:
    """Sort by user, then time; equal times keep their file order (a stable sort)."""
    df = interactions.assign(
        _user=_natural_order(interactions["user"]), _row=np.arange(len(interactions))
    )
    df = df.sort_values(["_user", "timestamp", "_row"], kind="stable")
    return df.drop(columns=["_user", "_row"]).reset_index(drop=True)


@dataclass
class SequenceData:
    """Every user's chronological item-id sequence; the last item is test, the one before valid."""

    sequences: list[np.ndarray]  # one int64 array of item ids (1..n_items) per user
    user_ids: np.ndarray  # original user id of each sequence
    item_ids: np.ndarray  # original item id of internal id i + 1
    dropped_users: int = 0  # users too short for leave-one-out

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def train_sequences(self) -> list[np.ndarray]:
        """Each sequence without its validation and test items."""
        return [seq[:-2] for seq in self.sequences]

    def eval_arrays(self, split: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(histories (n_users, max_len) left-padded with 0, targets (n_users,)) for "valid" or "test"."""
        if split not in {"valid", "test"}:
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        end = -2 if split == "valid" else -1
        histories = pad_left([seq[:end] for seq in self.sequences], max_len)
        targets = np.array([seq[end] for seq in self.sequences], dtype=np.int64)
        return histories, targets

    def item_counts(self) -> np.ndarray:
        """Training interactions per internal item id (index 0, padding, counts nothing)."""
        train = self.train_sequences()
        return np.bincount(
            np.concatenate(train) if train else np.zeros(0, np.int64), minlength=self.n_items + 1
        )


def pad_left(histories: list[np.ndarray], max_len: int) -> np.ndarray:
    """Keep the last max_len items of each history and left-pad with PAD: (n, max_len) int64."""
    out = np.full((len(histories), max_len), PAD, dtype=np.int64)
    for row, history in enumerate(histories):
        kept = history[-max_len:] if max_len else history[:0]
        out[row, max_len - len(kept) :] = kept
    return out


def leave_one_out(interactions: pd.DataFrame, min_length: int = 3) -> SequenceData:
    """Group chronological interactions into per-user sequences with internal item ids."""
    grouped = interactions.groupby("user", sort=False)
    if not grouped["timestamp"].is_monotonic_increasing.all():
        raise ValueError(
            "interactions are not in chronological order within each user: call chronological() first"
        )
    lengths = grouped.size()
    short = lengths[lengths < min_length].index
    if len(short):
        warnings.warn(
            f"leave-one-out dropped {len(short)} of {len(lengths)} users with fewer than "
            f"{min_length} interactions (one to train, one to validate, one to test)",
            UserWarning,
            stacklevel=2,
        )
    kept = interactions[~interactions["user"].isin(short)]
    items = kept["item"].drop_duplicates()
    item_ids = items.iloc[np.argsort(_natural_order(items).to_numpy(), kind="stable")].to_numpy()
    index = pd.Index(item_ids)
    codes = index.get_indexer(kept["item"]) + 1
    boundaries = np.flatnonzero(kept["user"].to_numpy()[1:] != kept["user"].to_numpy()[:-1]) + 1
    sequences = [s.astype(np.int64) for s in np.split(codes, boundaries)] if len(kept) else []
    users = kept["user"].drop_duplicates().to_numpy()
    return SequenceData(sequences, users, item_ids, dropped_users=len(short))


def prepare(dataset: Dataset, k: int = 5, min_length: int = 3) -> SequenceData:
    """k-core, chronological order and leave-one-out in one call: what every notebook starts from."""
    return leave_one_out(chronological(k_core(dataset.interactions, k)), min_length=min_length)


def items_in_order(items: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """The item text table in internal-id order (row i is item id i + 1); missing rows are ""."""
    return items.reindex(item_ids).fillna("")


AUGMENTATIONS = ("prefixes", "subsequences", "none")


def _check_augmentation(augmentation: str | None, sliding_window: bool | None) -> str:
    """The augmentation name; `sliding_window` (True: "prefixes", False: "none") is the older spelling."""
    if augmentation is not None and sliding_window is not None:
        raise ValueError(
            f"give augmentation ({augmentation!r}) or sliding_window ({sliding_window!r}), not both; "
            'sliding_window=True is augmentation="prefixes", False is "none"'
        )
    if augmentation is None:
        return "none" if sliding_window is False else "prefixes"
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {augmentation!r}")
    return augmentation


def samples_per_sequence(
    lengths: np.ndarray | list[int], augmentation: str = "prefixes"
) -> np.ndarray:
    """How many samples `training_samples` makes of sequences of these lengths, in its order."""
    n = np.asarray(lengths, dtype=np.int64)
    augmentation = _check_augmentation(augmentation, None)
    if augmentation == "prefixes":
        return np.maximum(n - 1, 0)
    if augmentation == "subsequences":
        return n * np.maximum(n - 1, 0) // 2
    return (n > 1).astype(np.int64)


def _subsequence_samples(seq: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every contiguous sub-sequence seq[i : j + 1], i < j, as (history seq[i:j] cut to max_len, seq[j])."""
    n = len(seq)
    ends = np.repeat(np.arange(1, n), np.arange(1, n))  # target position j, once per start i < j
    starts = np.arange(len(ends)) - np.repeat(np.cumsum(np.arange(n - 1)), np.arange(1, n))
    padded = np.concatenate([np.full(max_len, PAD, dtype=np.int64), seq])
    # row k holds the max_len items before position ends[k]; blank the ones before starts[k]
    positions = ends[:, None] - max_len + np.arange(max_len)[None, :]  # (N, max_len) indices into seq
    windows = padded[positions + max_len]
    return np.where(positions >= starts[:, None], windows, PAD), seq[ends]


def training_samples(
    sequences: list[np.ndarray],
    max_len: int,
    sliding_window: bool | None = None,
    *,
    augmentation: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(histories (N, max_len), targets (N,)) of the training sequences, augmented as asked.

    - "prefixes" (default): every prefix -> its next item, n - 1 samples of a sequence
      of n items (TIGER's sliding windows, SASRec-style next-item training);
    - "subsequences": every contiguous sub-sequence of >= 2 items -> its last item,
      n (n - 1) / 2 samples, as GRID's `collate_with_sid_causal_duplicate` builds them
      (GRID then draws a random subset per batch; here the whole set is returned);
    - "none": one sample per sequence, the whole history -> its last item.

    Histories keep their last `max_len` items and are left-padded with 0. A sub-sequence
    longer than max_len + 1 items is cut to the same history as a shorter one, so
    "subsequences" repeats the windows of long sequences (as GRID's does); its count
    grows with the square of the length: MovieLens-100K's 943 training sequences give
    96k prefixes but 9.6M sub-sequences. `sliding_window` is the older spelling
    (True: "prefixes", False: "none").
    """
    augmentation = _check_augmentation(augmentation, sliding_window)
    if augmentation == "subsequences":
        parts = [_subsequence_samples(np.asarray(s, dtype=np.int64), max_len) for s in sequences]
        parts = [p for p in parts if len(p[1])]
        if not parts:
            return np.zeros((0, max_len), dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([h for h, _ in parts]), np.concatenate([t for _, t in parts])
    histories, targets = [], []
    for seq in sequences:
        first = 1 if augmentation == "prefixes" else len(seq) - 1
        for t in range(max(first, 1), len(seq)):
            histories.append(seq[:t])
            targets.append(seq[t])
    return pad_left(histories, max_len), np.array(targets, dtype=np.int64)


def statistics(interactions: pd.DataFrame) -> pd.Series:
    """Users, items, interactions, density and sequence-length percentiles of an interaction table."""
    lengths = interactions.groupby("user").size().to_numpy()
    users, items, n = len(lengths), interactions["item"].nunique(), len(interactions)
    stats = {
        "users": int(users),
        "items": int(items),
        "interactions": int(n),
        "density": n / (users * items) if users and items else 0.0,
        "seq_len_mean": float(lengths.mean()) if users else 0.0,
        "seq_len_p50": float(np.percentile(lengths, 50)) if users else 0.0,
        "seq_len_p90": float(np.percentile(lengths, 90)) if users else 0.0,
        "seq_len_max": int(lengths.max()) if users else 0,
    }
    return pd.Series(stats, dtype=object)
