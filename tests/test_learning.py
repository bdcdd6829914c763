"""Mechanisms that should learn do, on real MovieLens-100K sequences (seconds each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handbook.data import items_in_order, load_dataset, prepare, training_samples
from handbook.decoding.beam import evaluate_generative
from handbook.embed import embed_texts, item_texts
from handbook.metrics import rank_all, summarize
from handbook.models import RPG, TIGER, ACERec, MostPopular, SASRec
from handbook.paths import cache_dir
from handbook.plateaus import digit_entropy, transitions
from handbook.sid import SemanticIDs
from handbook.tokenizers import OPQ, make_tokenizer
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
    return data, sequences, SemanticIDs.from_codes(codes, 256, dedup=False), X


def _distance_from(weights: torch.Tensor, reference: torch.Tensor | float) -> float:
    """Mean total-variation distance of attention rows (..., m) from `reference`."""
    return float((0.5 * (weights - reference).abs().sum(-1)).mean())


def test_acerec_merger_attention_moves_when_trained(movielens) -> None:
    # With small query and key maps on N(0, 0.02) tokens it once stayed uniform to 6e-6.
    data, sequences, sids, _ = movielens
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


def _valid_ndcg(model, data) -> float:
    histories, targets = data.eval_arrays("valid", MAX_ITEMS)
    if isinstance(model, torch.nn.Module):
        model.eval()
    with torch.no_grad():
        if isinstance(model, TIGER):
            return evaluate_generative(model, histories, targets, ks=(10,), beam_size=10)["ndcg@10"]
        return summarize(rank_all(model.scores, histories, targets), ks=(10,))["ndcg@10"]


@pytest.mark.parametrize("name", ["SASRec", "TIGER", "RPG", "ACERec"])
def test_each_model_beats_most_popular_and_leaves_its_plateau(movielens, name: str) -> None:
    # What the reading chapters once compared: models stopped on the plateau where they rank
    # like most-popular. A few epochs of a small model must already get past it.
    data, sequences, sids, X = movielens
    popular = MostPopular().fit(sequences, data.n_items)
    torch.manual_seed(0)
    plateau = None
    if name == "SASRec":
        model = SASRec(data.n_items, max_len=MAX_ITEMS, hidden=32, n_layers=1, n_heads=2, dropout=0.1)
        batches, epochs, lr = SASRec.make_batches(sequences, MAX_ITEMS, 256, seed=0), 3, 3e-3
    elif name == "TIGER":
        codes = make_tokenizer("rkmeans", n_levels=3, width=32, seed=0).fit_encode(X)
        tiger_sids = SemanticIDs.from_codes(codes, 32, dedup=True)
        torch.manual_seed(0)
        model = TIGER(tiger_sids, max_items=MAX_ITEMS, d_model=32, n_heads=2, head_dim=16, d_ff=64,
                      n_encoder_layers=1, n_decoder_layers=1)  # fmt: skip
        histories, targets = training_samples(sequences, MAX_ITEMS, sliding_window=True)
        batches, epochs, lr = TIGER.make_batches(histories, targets, tiger_sids, 512, seed=0), 2, 5e-3
    else:
        cls = RPG if name == "RPG" else ACERec
        # ACERec without ISA, so that its loss is the MTP loss the plateau is an entropy of
        extra = {} if name == "RPG" else {"n_latents": 2, "isa_weight": 0.0}
        model = cls(sids, max_len=MAX_ITEMS, hidden=32, n_heads=2, ffn=64, dropout=0.1, **extra)
        batches, epochs, lr = RPG.make_batches(sequences, MAX_ITEMS, 256, seed=0), 3, 3e-3
        plateau = float(digit_entropy(sids.codes, transitions(sequences)[1]).mean())
    run = fit(model, batches, epochs=epochs, lr=lr, device="cpu", show_progress=False)
    assert _valid_ndcg(model, data) > _valid_ndcg(popular, data)
    if plateau is not None:  # the MTP loss below what predicting each digit's marginal reaches
        assert run.train_losses[-1] < plateau
