"""The collision table counts shared codes and the duplicated texts among them."""

from __future__ import annotations

import numpy as np
import pytest

from handbook.collisions import SETTINGS, paper_collisions
from handbook.tokenizers import PQ, RKMeans

# The paper settings at a size a unit test can fit in a second (256-code settings need thousands of items).
SMALL = (
    ("RK-Means 2 x 8", lambda seed: RKMeans(n_levels=2, width=8, seed=seed)),
    ("PQ m = 8", lambda seed: PQ(m=8, nbits=4, seed=seed)),
)


def test_identical_items_collide_in_every_setting_and_are_counted_as_duplicated_text():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    X[1] = X[0]  # one item listed twice, with the same text
    texts = [f"item {i}" for i in range(200)]
    texts[1] = texts[0]
    table = paper_collisions(X, texts, settings=SMALL)
    assert list(table.index) == ["RK-Means 2 x 8", "PQ m = 8"]
    assert (table["colliding_with_duplicated_text"] == 2).all()
    np.testing.assert_allclose(table["collision_rate"], table["colliding_items"] / 200)
    # 200 random points in 16^8 PQ cells: only the duplicate pair shares a code
    assert table.loc["PQ m = 8", "colliding_items"] == 2
    assert table.loc["PQ m = 8", "largest_group"] == 2
    # 64 RK-Means cells for 200 points: many share
    assert table.loc["RK-Means 2 x 8", "colliding_items"] > 100


def test_the_paper_settings_are_the_four_notebook_04_compares():
    assert [label for label, _ in SETTINGS] == ["RK-Means 3 x 256", "RK-Means 4 x 256", "PQ m = 32", "OPQ m = 32"]


def test_texts_must_match_the_embeddings():
    with pytest.raises(ValueError, match="3 texts for 4 embeddings"):
        paper_collisions(np.zeros((4, 64), dtype=np.float32), ["a", "b", "c"])
