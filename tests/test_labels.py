"""Item labels for the sanity checks of embeddings and codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from handbook.data.labels import (
    item_labels,
    label_agreement,
    pairs_sharing,
    primary_label,
    random_pairs,
)

ITEMS = pd.DataFrame(
    {"categories": ["Beauty, Makeup, Lips", "Beauty, Makeup", "Beauty, Hair", "Beauty", "Shoes"]}
)


def test_labels_drop_the_label_most_items_carry() -> None:
    labels = item_labels(ITEMS)
    assert labels[0] == {"Makeup", "Lips"} and labels[3] == frozenset()
    assert primary_label(ITEMS).tolist() == ["Makeup", "Makeup", "Hair", "(none)", "Shoes"]


def test_label_agreement_counts_pairs_sharing_a_label() -> None:
    labels = item_labels(ITEMS)
    assert label_agreement(labels, np.array([0, 0, 2]), np.array([1, 2, 4])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        label_agreement(labels, np.array([]), np.array([]))


def test_random_pairs_are_distinct_rows() -> None:
    a, b = random_pairs(5, 1000, seed=0)
    assert (a != b).all() and a.min() >= 0 and b.max() < 5


def test_missing_label_column_is_named() -> None:
    with pytest.raises(ValueError, match="column"):
        item_labels(pd.DataFrame({"title": ["x"]}))


def test_pairs_sharing_pairs_distinct_items_with_equal_values() -> None:
    values = np.array([3, 1, 3, 2, 1, 3])
    a, b = pairs_sharing(values, 500, seed=0)
    assert (a != b).all() and (values[a] == values[b]).all()
    assert 3 not in a  # the only item with value 2 has no partner
    assert set(a) == {0, 1, 2, 4, 5}
    with pytest.raises(ValueError, match="share"):
        pairs_sharing(np.arange(4), 10, seed=0)
