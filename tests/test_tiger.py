"""TIGER (encoder-decoder) and GRID's decoder-only model on tiny SID catalogues."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handbook.data.preprocess import pad_left, training_samples
from handbook.decoding.beam import evaluate_generative
from handbook.models.decoder_only import DecoderOnly
from handbook.models.tiger import TIGER
from handbook.sid import PAD_TOKEN, SemanticIDs
from handbook.train import fit

MODELS = [TIGER, DecoderOnly]


def tiny(cls: type, sids: SemanticIDs, seed: int = 0, **kwargs) -> TIGER | DecoderOnly:
    """A small model of either kind, initialised from `seed`."""
    torch.manual_seed(seed)
    depth = {"n_encoder_layers": 1, "n_decoder_layers": 1} if cls is TIGER else {"n_layers": 2}
    config = {"max_items": 4, "d_model": 64, "n_heads": 4, "head_dim": 16, "d_ff": 128}
    return cls(sids, **{**config, "dropout": 0.0, **depth, **kwargs})


@pytest.fixture
def sids() -> SemanticIDs:
    rng = np.random.default_rng(0)
    return SemanticIDs.from_codes(rng.integers(0, 3, size=(12, 2)), 3)  # 12 items, 3 digits


def test_paper_defaults() -> None:
    sids = SemanticIDs.from_codes(np.arange(8).reshape(8, 1), 8)
    model = TIGER(sids)
    assert len(model.encoder.blocks) == 4 and len(model.decoder.blocks) == 4
    attn = model.encoder.blocks[0].self_attn
    assert attn.q.weight.shape == (6 * 64, 128)  # 6 heads of 64: inner width 384 != d_model
    assert model.encoder.blocks[0].ff[0].weight.shape == (1024, 128)
    assert model.max_items == 20 and model.n_user_bins == 0
    assert len(DecoderOnly(sids).stack.blocks) == 8


def test_make_batches_maps_items_to_tokens(sids: SemanticIDs) -> None:
    histories = np.array([[0, 1, 2], [3, 4, 5]])
    batches = TIGER.make_batches(
        histories, np.array([6, 7]), sids, batch_size=1, seed=0, users=[10, 11], shuffle=False
    )
    assert len(batches) == 2 and all(len(b) == 3 for b in batches)
    hist, target, users = batches[0]
    tokens = sids.tokens()
    assert hist.shape == (1, 3 * sids.n_digits) and target.shape == (1, sids.n_digits)
    assert hist[0, : sids.n_digits].tolist() == [PAD_TOKEN] * sids.n_digits
    assert hist[0, sids.n_digits :].tolist() == tokens[[0, 1]].reshape(-1).tolist()
    assert target[0].tolist() == tokens[5].tolist() and users.tolist() == [10]
    assert len(TIGER.make_batches(histories, [6, 7], sids, 8, seed=0)[0]) == 2  # no users
    with pytest.raises(ValueError, match="item ids"):
        TIGER.make_batches(histories, [6, 13], sids, 8, seed=0)
    with pytest.raises(ValueError, match="item ids"):
        TIGER.make_batches(histories, [0, 1], sids, 8, seed=0)


@pytest.mark.parametrize("cls", MODELS)
def test_shapes_and_user_token(cls: type, sids: SemanticIDs) -> None:
    histories = torch.tensor([[0, 1, 2], [4, 5, 6]])
    plain = tiny(cls, sids).eval()
    tokens = plain.history_tokens(histories)  # (2, 3 * n_digits)
    context, mask = plain.encode(tokens)
    assert context.shape == (2, 3 * sids.n_digits, 64) and mask.shape == (2, 3 * sids.n_digits)
    assert mask[0, : sids.n_digits].logical_not().all() and mask[1].all()
    with_user = tiny(cls, sids, n_user_bins=5).eval()
    context_u, mask_u = with_user.encode(tokens, torch.tensor([3, 12]))
    assert context_u.shape[1] == context.shape[1] + 1 and mask_u[:, 0].all()
    with pytest.raises(ValueError, match="users"):
        with_user.encode(tokens)
    logp = plain.decode_step(context, mask, torch.zeros(2, 0, dtype=torch.long))
    assert logp.shape == (2, sids.vocab_size)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2))
    # longer histories keep the last max_items items
    long = plain.history_tokens(torch.tensor([[7, 8, 9, 1, 2, 3]]))
    assert plain.encode(long)[0].shape[1] == 4 * sids.n_digits
    items, share = plain.recommend(histories, k=3, beam_size=5)
    assert items.shape == (2, 3) and share == 0.0


@pytest.mark.parametrize("cls", MODELS)
def test_loss_is_teacher_forced_beam_steps(cls: type, sids: SemanticIDs) -> None:
    # The one-pass training loss equals the mean of the step-by-step log-probs decoding uses.
    model = tiny(cls, sids, n_user_bins=3).eval()
    histories, targets = training_samples([np.array([1, 2, 3, 4]), np.array([5, 6])], max_len=3)
    batch = cls.make_batches(histories, targets, sids, 16, seed=0, users=np.arange(len(targets)))[0]
    context, mask = model.encode(batch[0], batch[2])
    target = batch[1]
    logp = sum(
        model.decode_step(context, mask, target[:, :j]).gather(1, target[:, j : j + 1])
        for j in range(sids.n_digits)
    )
    assert torch.allclose(model.loss(batch), -logp.mean() / sids.n_digits, atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_left_padding_does_not_change_predictions(cls: type, sids: SemanticIDs) -> None:
    model = tiny(cls, sids).eval()
    empty = torch.zeros(1, 0, dtype=torch.long)
    a = model.decode_step(*model.encode(model.history_tokens(torch.tensor([[0, 0, 3, 4]]))), empty)
    b = model.decode_step(*model.encode(model.history_tokens(torch.tensor([[3, 4]]))), empty)
    assert torch.allclose(a, b, atol=1e-5)
    # an all-padding history gives finite scores, not NaN
    c = model.decode_step(*model.encode(model.history_tokens(torch.tensor([[0, 0]]))), empty)
    assert torch.isfinite(c).all()


@pytest.mark.parametrize("cls", MODELS)
def test_untrained_model_constrained_and_free(cls: type) -> None:
    rng = np.random.default_rng(1)
    sids = SemanticIDs.from_codes(rng.integers(0, 4, size=(30, 2)), 4)  # sparse trie
    model = tiny(cls, sids, seed=1)
    histories = rng.integers(0, 31, size=(64, 4))  # 64 users
    items, share = model.recommend(histories, k=8, constrained=True)
    assert share == 0.0
    assert ((items >= 1) & (items <= sids.n_items)).all()
    assert all(len(set(row.tolist())) == 8 for row in items)
    free, free_share = model.recommend(histories, k=8, constrained=False)
    assert 0.0 <= free_share <= 1.0
    assert ((free == 0) | ((free >= 1) & (free <= sids.n_items))).all()
    # a beam as wide as the catalogue returns every item exactly once
    everything, _ = model.recommend(histories[:4], k=sids.n_items)
    for row in everything:
        assert sorted(row.tolist()) == list(range(1, sids.n_items + 1))
    assert model.training  # recommend restores the mode


def next_item(item: np.ndarray | int, n_items: int = 12) -> np.ndarray | int:
    """The toy task's rule: the item after `item` (ids 1..n_items), a permutation."""
    return (5 * item) % n_items + 1


@pytest.mark.parametrize("cls", MODELS)
def test_memorises_a_deterministic_next_item(cls: type, sids: SemanticIDs) -> None:
    # Every user walks the permutation `next_item` from a different start item.
    sequences = []
    for start in range(1, 13):
        seq = [start]
        for _ in range(4):
            seq.append(next_item(seq[-1]))
        sequences.append(np.array(seq))
    histories, targets = training_samples(sequences, max_len=4)
    eval_histories = pad_left([np.array([i]) for i in range(1, 13)], 4)
    eval_targets = next_item(np.arange(1, 13))
    model = tiny(cls, sids)
    result = fit(
        model,
        lambda epoch: cls.make_batches(histories, targets, sids, 8, seed=epoch),
        lambda m: evaluate_generative(m, eval_histories, eval_targets, ks=(1,), beam_size=4),
        epochs=80,
        lr=3e-3,
        schedule="cosine",
        warmup_steps=20,
        eval_every=10,
        patience=None,
        metric="recall@1",
        device="cpu",
        seed=0,
        show_progress=False,
    )
    assert result.train_losses[-1] < 0.1 * result.train_losses[0]
    metrics = evaluate_generative(model, eval_histories, eval_targets, ks=(1,), beam_size=4)
    assert metrics["recall@1"] == 1.0 and metrics["invalid_share"] == 0.0


def test_decoder_only_history_loss(sids: SemanticIDs) -> None:
    histories, targets = training_samples([np.array([1, 2, 3, 4, 5])], max_len=4)
    batch = DecoderOnly.make_batches(histories, targets, sids, 16, seed=0)[0]
    target_only = tiny(DecoderOnly, sids).eval()
    both = tiny(DecoderOnly, sids, history_loss=True).eval()  # same weights (same seed)
    assert torch.isfinite(both.loss(batch))
    assert not torch.allclose(both.loss(batch), target_only.loss(batch))
    assert both.recommend(histories, k=2)[0].shape == (len(targets), 2)
