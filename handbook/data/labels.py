"""Item labels (genres, categories) for sanity checks: do similar vectors or shared codes mean similar items?"""

from __future__ import annotations

import numpy as np
import pandas as pd

LABEL_COLUMNS = ("genres", "categories")  # ml-100k, Amazon


def item_labels(items: pd.DataFrame, column: str | None = None) -> list[frozenset[str]]:
    """Each item's set of labels from a ", "-separated column, without labels most items carry.

    A label on more than half of the items ("Beauty" on every Amazon Beauty item) says
    nothing about similarity, so it is dropped.
    """
    column = column or next((c for c in LABEL_COLUMNS if c in items.columns), None)
    if column is None or column not in items.columns:
        raise ValueError(f"no label column: pass column=, one of {list(items.columns)}")
    raw = [
        [label for label in (part.strip() for part in str(text).split(",")) if label]
        for text in items[column]
    ]
    counts = pd.Series([label for labels in raw for label in set(labels)]).value_counts()
    common = set(counts[counts > len(raw) / 2].index)
    return [frozenset(label for label in labels if label not in common) for labels in raw]


def primary_label(items: pd.DataFrame, column: str | None = None) -> np.ndarray:
    """One label per item for colouring plots: its first informative label, or "(none)"."""
    column = column or next((c for c in LABEL_COLUMNS if c in items.columns), None)
    labels = item_labels(items, column)
    firsts = []
    for text, kept in zip(items[column], labels, strict=True):
        ordered = [part.strip() for part in str(text).split(",") if part.strip() in kept]
        firsts.append(ordered[0] if ordered else "(none)")
    return np.array(firsts, dtype=object)


def label_agreement(labels: list[frozenset[str]], a: np.ndarray, b: np.ndarray) -> float:
    """Share of item pairs (a[i], b[i]) (0-based rows) that have at least one label in common."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.size == 0:
        raise ValueError("no pairs given")
    return float(np.mean([bool(labels[i] & labels[j]) for i, j in zip(a, b, strict=True)]))


def random_pairs(n_items: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of distinct random rows: the chance level for `label_agreement`."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_items, n_pairs)
    b = (a + rng.integers(1, n_items, n_pairs)) % n_items  # never equal to a
    return a, b


def pairs_sharing(values: np.ndarray, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs of distinct rows with equal `values` (e.g. the same first code).

    Pairs are drawn uniformly over items that have at least one partner, so that
    `label_agreement` on them asks "do items that share this value share a label?".
    """
    values = np.asarray(values)
    rng = np.random.default_rng(seed)
    _, group, size = np.unique(values, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    has_partner = np.flatnonzero(size[group] > 1)
    if has_partner.size == 0:
        raise ValueError("no two items share a value: nothing to pair")
    members = {g: np.flatnonzero(group == g) for g in np.unique(group[has_partner])}
    a = rng.choice(has_partner, n_pairs)
    b = np.empty_like(a)
    for i, row in enumerate(a):
        others = members[group[row]]
        choice = others[rng.integers(0, others.size - 1)]
        b[i] = choice if choice != row else others[-1]  # skip self: the last member stands in
    return a, b
