"""Most-popular and SASRec baselines on tiny hand-built data."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from handbook.baselines import train_sasrec, train_small_tiger
from handbook.data.preprocess import pad_left
from handbook.decoding.beam import evaluate_generative
from handbook.metrics import evaluate_model, rank_of_target
from handbook.models import TIGER, MostPopular, SASRec
from handbook.tokenizers import make_tokenizer


def test_most_popular_ranks_most_frequent_first() -> None:
    sequences = [np.array([1, 2, 3]), np.array([3, 4, 3]), np.array([3, 2])]
    model = MostPopular().fit(sequences, n_items=5)
    assert model.counts.tolist() == [0, 1, 2, 4, 1, 0]
    assert model.top_items(3).tolist() == [3, 2, 1]  # 1 and 4 tie: lower id first
    scores = model.scores(torch.zeros(2, 4, dtype=torch.long))
    assert scores.shape == (2, 6)
    assert torch.isinf(scores[:, 0]).all()
    assert rank_of_target(scores, torch.tensor([3, 5])).tolist() == [0, 4]


def test_most_popular_from_counts_and_unfitted() -> None:
    model = MostPopular().fit(np.array([0, 5, 9, 1]), n_items=3)
    assert model.top_items(1).tolist() == [2]
    with pytest.raises(ValueError, match="n_items"):
        MostPopular().fit(np.array([1, 2]), n_items=3)
    with pytest.raises(RuntimeError, match="fit"):
        MostPopular().scores(torch.zeros(1, 2, dtype=torch.long))


def test_make_batches_left_pads_and_covers_every_transition() -> None:
    batches = SASRec.make_batches(
        [[1, 2, 3, 4, 5, 6], [7, 8], [9]], max_len=3, batch_size=10, seed=0, shuffle=False
    )
    inputs, labels = batches[0]
    # Sequence 1 is cut from the end into windows of 3 labels; [9] gives no pair.
    assert inputs.tolist() == [[3, 4, 5], [0, 1, 2], [0, 0, 7]]
    assert labels.tolist() == [[4, 5, 6], [0, 2, 3], [0, 0, 8]]
    last = SASRec.make_batches(
        [[1, 2, 3, 4, 5, 6]], max_len=3, batch_size=4, seed=0, windows="last"
    )
    assert len(last) == 1 and last[0][0].shape == (1, 3)


def test_sasrec_shapes_padding_and_causality() -> None:
    torch.manual_seed(0)
    model = SASRec(n_items=10, max_len=5, hidden=16, n_layers=2, n_heads=2).eval()
    histories = torch.tensor([[0, 0, 1, 2, 3], [0, 0, 0, 0, 0]])
    scores = model.scores(histories)
    assert scores.shape == (2, 11)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    # Shorter input is left-padded, longer is cut to the last max_len items.
    assert torch.allclose(model.scores(histories[:1, 2:]), scores[:1])
    assert torch.allclose(model.scores(torch.tensor([[7, 8, 0, 0, 1, 2, 3]])), scores[:1])
    # Causal: changing a later item must not change an earlier position's state.
    a = model.encode(torch.tensor([[0, 1, 2, 3, 4]]))
    b = model.encode(torch.tensor([[0, 1, 2, 3, 9]]))
    assert torch.allclose(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4], b[:, 4])
    loss = model.loss(SASRec.make_batches([[1, 2, 3, 4]], 5, 4, seed=0)[0])
    assert torch.isfinite(loss) and loss.item() == pytest.approx(np.log(10), rel=0.2)


# --- handbook.baselines: the notebooks' shared SASRec and small-TIGER training


def _cycle_data(n_items: int = 12, length: int = 6):
    """Every user walks the cycle 1 -> 2 -> ... -> n_items -> 1 from a different start."""

    def successor(item):
        return item % n_items + 1

    sequences = []
    for start in range(1, n_items + 1):
        seq = [start]
        for _ in range(length - 1):
            seq.append(successor(seq[-1]))
        sequences.append(np.array(seq))
    histories = pad_left([np.array([i]) for i in range(1, n_items + 1)], 4)
    return sequences, histories, successor(np.arange(1, n_items + 1))


def test_train_sasrec_learns_the_cycle_and_is_reproducible() -> None:
    sequences, histories, targets = _cycle_data()

    def validate(model):
        return evaluate_model(model, histories, targets, ks=(1, 10))

    def train():
        return train_sasrec(
            sequences, 12, validate, max_len=4, epochs=60, batch_size=4, seed=3, device="cpu",
            hidden=32, dropout=0.0, lr=1e-2,
        )  # fmt: skip

    model, run = train()
    assert run.best_epoch is not None and run.best_metrics["ndcg@10"] > 0.9
    assert evaluate_model(model.eval(), histories, targets, ks=(1,))["recall@1"] >= 0.9
    again, _ = train()
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_train_small_tiger_builds_dedup_rkmeans_ids_and_learns_the_cycle() -> None:
    sequences, histories, targets = _cycle_data()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    embeddings = np.repeat(centres, 3, axis=0) + 0.01 * rng.normal(size=(12, 8))  # 4 clusters of 3
    model, run = train_small_tiger(
        embeddings, sequences, histories, targets, max_items=4, epochs=40, batch_size=8, seed=0, device="cpu",
        width=4, beam_size=10,
    )  # fmt: skip
    codes = model.sids.codes
    assert codes.shape == (12, 4) and len({tuple(c) for c in codes}) == 12  # 3 levels + de-duplication digit
    defaults = inspect.signature(TIGER).parameters  # the baseline is a TIGER with TIGER's defaults
    assert model.config["output"] == defaults["output"].default
    assert model.config["positions"] == defaults["positions"].default
    assert run.train_losses[-1] < 0.2 * run.train_losses[0]
    metrics = evaluate_generative(model.eval(), histories, targets, ks=(1,), beam_size=4)
    assert metrics["recall@1"] >= 0.9 and metrics["invalid_share"] == 0.0


def test_train_small_tiger_passes_the_output_and_position_options() -> None:
    sequences, histories, targets = _cycle_data()
    embeddings = np.random.default_rng(1).normal(size=(12, 8))
    model, _ = train_small_tiger(
        embeddings, sequences, histories, targets, max_items=4, epochs=1, batch_size=8, seed=0, device="cpu",
        width=4, output="full_vocab", positions="absolute",
    )  # fmt: skip
    assert model.config["output"] == "full_vocab" and model.config["positions"] == "absolute"
    assert model.encoder.bias is None and model.embed.digits is not None


def test_train_small_tiger_takes_its_ids_from_the_named_tokenizer() -> None:
    sequences, histories, targets = _cycle_data()
    embeddings = np.random.default_rng(2).normal(size=(12, 8)).astype(np.float32)
    for name in ("rkmeans", "rqvae"):  # notebook 06's baseline and the reading configuration's
        model, _ = train_small_tiger(
            embeddings, sequences, histories, targets, max_items=4, epochs=1, batch_size=8, seed=0, device="cpu",
            width=4, tokenizer=name,
        )  # fmt: skip
        expected = make_tokenizer(name, n_levels=3, width=4, seed=0).fit_encode(embeddings)
        np.testing.assert_array_equal(model.sids.codes[:, :3], expected)
    with pytest.raises(ValueError, match="unknown tokenizer 'kmeans'"):
        train_small_tiger(embeddings, sequences, histories, targets, max_items=4, epochs=1, batch_size=8, seed=0, tokenizer="kmeans")
