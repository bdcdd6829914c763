"""Mechanisms that should learn do, on real MovieLens-100K sequences (seconds each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handbook.data import items_in_order, load_dataset, prepare
from handbook.embed import embed_texts, item_texts
from handbook.models import RPG, ACERec
from handbook.paths import cache_dir
from handbook.sid import SemanticIDs
from handbook.tokenizers import OPQ
from handbook.train import fit

MAX_ITEMS = 5


@pytest.fixture(scope="module")
def movielens():
    """ml-100k's training sequences and its items' 8-digit OPQ IDs (the embeddings are cached)."""
    ds = load_dataset("ml-100k")
    data = prepare(ds)
    X = embed_texts(item_texts(items_in_order(ds.items, data.item_ids)), cache_dir=cache_dir("embeddings"), show_progress=False)
    sequences = data.train_sequences()
    train_rows = np.unique(np.concatenate(sequences)) - 1
    codes = OPQ(m=8, nbits=8, seed=0).fit_encode(X, train_rows=train_rows)
    return data, sequences, SemanticIDs.from_codes(codes, 256, dedup=False)


def _distance_from(weights: torch.Tensor, reference: torch.Tensor | float) -> float:
    """Mean total-variation distance of attention rows (..., m) from `reference`."""
    return float((0.5 * (weights - reference).abs().sum(-1)).mean())


def test_acerec_merger_attention_moves_when_trained(movielens) -> None:
    # With small query and key maps on N(0, 0.02) tokens it once stayed uniform to 6e-6.
    data, sequences, sids = movielens
    torch.manual_seed(0)
    model = ACERec(sids, n_latents=2, item_counts=data.item_counts(), max_len=MAX_ITEMS, hidden=32,
                   n_heads=4, ffn=64, dropout=0.1)  # fmt: skip
    ids = torch.arange(1, sids.n_items + 1)
    with torch.no_grad():
        start = model.merger_attention(ids)  # (n, H, k, m)
    batches = RPG.make_batches(sequences[:400], MAX_ITEMS, 128, seed=0)  # 400 users' windows
    fit(model, batches, epochs=1, lr=3e-3, device="cpu", show_progress=False)
    with torch.no_grad():
        trained = model.merger_attention(ids)
    assert _distance_from(trained, 1 / sids.n_digits) > 0.05  # not uniform
    assert _distance_from(trained, start) > 0.05  # and not where it started
