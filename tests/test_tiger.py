"""TIGER (encoder-decoder) and GRID's decoder-only model on tiny SID catalogues."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handbook.data.preprocess import pad_left, training_samples
from handbook.decoding.beam import beam_search, evaluate_generative
from handbook.models.decoder_only import DecoderOnly
from handbook.models.tiger import TIGER, TIGERBeamStep
from handbook.models.transformer import RelativePositionBias, relative_position_bucket
from handbook.sid import N_SPECIAL_TOKENS, PAD_TOKEN, SemanticIDs
from handbook.train import fit

MODELS = [TIGER, DecoderOnly]
#: every (output, positions) option pair
VARIANTS = list(itertools.product(("per_level", "full_vocab"), ("relative", "absolute")))


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
    assert model.config["output"] == "full_vocab" and model.config["positions"] == "absolute"
    assert model.encoder.bias is None and model.embed.digits is not None
    # T5's relative bias: one table per stack (shared by its layers), bidirectional in the
    # encoder, causal in the decoder; no digit or slot embeddings, one head per SID level
    model = TIGER(sids, output="per_level", positions="relative")
    assert model.encoder.bias.bidirectional and not model.decoder.bias.bidirectional
    assert model.encoder.bias.table.weight.shape == (32, 6)
    assert sum("bias.table" in name for name, _ in model.named_parameters()) == 2
    assert model.embed.digits is None and model.embed.slots is None
    assert [head.out_features for head in model.head.levels] == list(sids.codebook_sizes)
    old = TIGER(sids, output="full_vocab", positions="absolute")
    assert old.encoder.bias is None and old.embed.digits is not None
    assert old.head.proj.out_features == sids.vocab_size
    with pytest.raises(ValueError, match="output"):
        TIGER(sids, output="softmax")
    with pytest.raises(ValueError, match="positions"):
        DecoderOnly(sids, positions="rotary")


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


@pytest.mark.parametrize(("output", "positions"), VARIANTS)
@pytest.mark.parametrize("cls", MODELS)
def test_loss_is_teacher_forced_beam_steps(
    cls: type, output: str, positions: str, sids: SemanticIDs
) -> None:
    # The one-pass training loss equals the mean of the step-by-step log-probs decoding uses.
    model = tiny(cls, sids, n_user_bins=3, output=output, positions=positions).eval()
    histories, targets = training_samples([np.array([1, 2, 3, 4]), np.array([5, 6])], max_len=3)
    batch = cls.make_batches(histories, targets, sids, 16, seed=0, users=np.arange(len(targets)))[0]
    context, mask = model.encode(batch[0], batch[2])
    target = batch[1]
    logp = sum(
        model.decode_step(context, mask, target[:, :j]).gather(1, target[:, j : j + 1])
        for j in range(sids.n_digits)
    )
    assert torch.allclose(model.loss(batch), -logp.mean() / sids.n_digits, atol=1e-5)


@pytest.mark.parametrize(("output", "positions"), VARIANTS)
@pytest.mark.parametrize("cls", MODELS)
def test_left_padding_does_not_change_predictions(
    cls: type, output: str, positions: str, sids: SemanticIDs
) -> None:
    # With a user token in front, too: padding takes no relative position.
    model = tiny(cls, sids, output=output, positions=positions, n_user_bins=3).eval()
    empty = torch.zeros(1, 0, dtype=torch.long)
    user = torch.tensor([1])
    a = model.decode_step(*model.encode(model.history_tokens(torch.tensor([[0, 0, 3, 4]])), user), empty)
    b = model.decode_step(*model.encode(model.history_tokens(torch.tensor([[3, 4]])), user), empty)
    assert torch.allclose(a, b, atol=1e-5)
    # an all-padding history gives finite scores for the first digit's codes, not NaN
    plain = tiny(cls, sids, output=output, positions=positions).eval()
    c = plain.decode_step(*plain.encode(plain.history_tokens(torch.tensor([[0, 0]]))), empty)
    first = slice(N_SPECIAL_TOKENS, N_SPECIAL_TOKENS + sids.codebook_sizes[0])
    assert torch.isfinite(c[:, first]).all() and not torch.isnan(c).any()


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


# --- per-level output head


@pytest.mark.parametrize("cls", MODELS)
def test_per_level_loss_is_the_levels_cross_entropy(cls: type, sids: SemanticIDs) -> None:
    # Per level, each target digit is scored by a softmax over that level's codes only.
    model = tiny(cls, sids, output="per_level").eval()
    histories, targets = training_samples([np.array([1, 2, 3, 4]), np.array([5, 6])], max_len=3)
    history, target = cls.make_batches(histories, targets, sids, 16, seed=0)[0]
    states = []  # decoder state that predicts each digit, (B, D)
    hook = model.head.register_forward_hook(lambda mod, args, out: states.append(args[0]))
    loss = model.loss((history, target))
    hook.remove()
    h = states[0][:, -sids.n_digits :]  # (B, n_digits, D): the target's positions
    codes = torch.as_tensor(sids.codes_from_tokens(target.numpy()))
    by_hand = [
        F.cross_entropy(h[:, j] @ model.head.levels[j].weight.T, codes[:, j])
        for j in range(sids.n_digits)
    ]
    torch.testing.assert_close(loss, torch.stack(by_hand).mean())


@pytest.mark.parametrize("cls", MODELS)
def test_per_level_log_probs_normalise_within_each_digit(cls: type, sids: SemanticIDs) -> None:
    per_level = tiny(cls, sids, output="per_level").eval()
    full = tiny(cls, sids, output="full_vocab").eval()
    h = torch.randn(5, 64)
    for j, (start, size) in enumerate(zip(sids.offsets + N_SPECIAL_TOKENS, sids.codebook_sizes, strict=True)):
        logp = per_level.head(h, level=j)
        mass = logp[:, start : start + size].exp().sum(-1)
        torch.testing.assert_close(mass, torch.ones(5))
        assert torch.isinf(logp[:, :start]).all() and torch.isinf(logp[:, start + size :]).all()
        # one softmax over the vocabulary spreads its mass over every digit's codes
        assert (full.head(h, level=j)[:, start : start + size].exp().sum(-1) < 0.9).all()
    # all levels at once: every level's range sums to 1, the special tokens have none
    every = per_level.head(h)
    torch.testing.assert_close(every.exp().sum(-1), torch.full((5,), float(sids.n_digits)))


# --- T5 relative position bias


def test_relative_position_bucket_is_t5s_table() -> None:
    # T5's buckets (32, max distance 128) for relative positions key - query, worked by hand:
    # bidirectional: 16 per direction, 0..7 exact, then 8 + floor(8 * log(d / 8) / log(16));
    # causal: 32 for the past, 0..15 exact, then 16 + floor(16 * log(d / 16) / log(8)).
    rel = torch.tensor([0, -1, -7, -8, -16, -20, -40, -64, -100, -127, -128, -1000, 1, 7, 16, 200])
    both = [0, 1, 7, 8, 10, 10, 12, 14, 15, 15, 15, 15, 17, 23, 26, 31]
    causal = [0, 1, 7, 8, 16, 17, 23, 26, 30, 31, 31, 31, 0, 0, 0, 0]
    assert relative_position_bucket(rel, bidirectional=True).tolist() == both
    assert relative_position_bucket(rel, bidirectional=False).tolist() == causal


def test_relative_bias_is_translation_invariant() -> None:
    torch.manual_seed(0)
    bias = RelativePositionBias(n_heads=3, bidirectional=True)
    torch.nn.init.normal_(bias.table.weight)
    pos = torch.arange(12).unsqueeze(0)
    b = bias(pos, pos)  # (1, 3, 12, 12)
    assert b.shape == (1, 3, 12, 12)
    torch.testing.assert_close(b[:, :, 1:, 1:], b[:, :, :-1, :-1])  # depends on k - q only
    torch.testing.assert_close(bias(pos + 7, pos + 7), b)
    assert not torch.allclose(b[0, :, 0, 1], b[0, :, 1, 0])  # bidirectional: sign matters


@pytest.mark.parametrize("cls", MODELS)
def test_relative_positions_see_the_order_of_the_history(cls: type, sids: SemanticIDs) -> None:
    model = tiny(cls, sids, positions="relative").eval()
    empty = torch.zeros(1, 0, dtype=torch.long)

    def first_digit(history: list[int]) -> torch.Tensor:
        return model.decode_step(*model.encode(model.history_tokens(torch.tensor([history]))), empty)

    with torch.no_grad():  # weights far from their small init, so that order effects show
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    stacks = [model.encoder, model.decoder] if cls is TIGER else [model.stack]
    assert not torch.allclose(first_digit([3, 7, 5]), first_digit([7, 3, 5]), atol=1e-4)
    # the order is known through the bias alone: without it, swapping two items changes
    # nothing in the encoder (a causal decoder-only stack still sees the order)
    for stack in stacks:
        torch.nn.init.zeros_(stack.bias.table.weight)
    if cls is TIGER:
        torch.testing.assert_close(first_digit([3, 7, 5]), first_digit([7, 3, 5]))


# --- KV cache of beam search


@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.parametrize(("output", "positions"), VARIANTS)
def test_cached_tiger_decoding_equals_uncached(output: str, positions: str, constrained: bool) -> None:
    rng = np.random.default_rng(2)
    sids = SemanticIDs.from_codes(rng.integers(0, 4, size=(40, 3)), 4)  # 4 digits with dedup
    model = tiny(TIGER, sids, seed=2, output=output, positions=positions, n_user_bins=5).eval()
    with torch.no_grad():  # random weights far from init, so that scores differ clearly
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    histories = rng.integers(0, 41, size=(9, 4))
    tokens, users = model.history_tokens(histories), torch.arange(9)
    memory, mask = model.encode(tokens, users)
    cached = beam_search(model.beam_step(memory, mask), 9, sids, 7, constrained=constrained)
    plain = beam_search(model.beam_step(memory, mask, cache=False), 9, sids, 7, constrained=constrained)
    assert torch.equal(cached.items, plain.items) and torch.equal(cached.codes, plain.codes)
    torch.testing.assert_close(cached.scores, plain.scores)
    assert cached.n_invalid == plain.n_invalid
    # the same through recommend
    a, share_a = model.recommend(histories, k=5, beam_size=7, users=users, constrained=constrained)
    b, share_b = model.recommend(histories, k=5, beam_size=7, users=users, constrained=constrained, cache=False)
    assert torch.equal(a, b) and share_a == share_b


def test_cached_step_matches_decode_step_for_any_rows(sids: SemanticIDs) -> None:
    # Rows that are not beams grouped by user take the copying path; the scores are the same.
    model = tiny(TIGER, sids).eval()
    memory, mask = model.encode(model.history_tokens(torch.tensor([[1, 2], [0, 3], [4, 5]])))
    rows = torch.tensor([2, 0, 2, 1])
    step = TIGERBeamStep(model, memory, mask)
    prefix = torch.zeros(4, 0, dtype=torch.long)
    for level in range(sids.n_digits):
        got = step(rows, prefix)
        torch.testing.assert_close(got, model.decode_step(memory[rows], mask[rows], prefix))
        start = N_SPECIAL_TOKENS + int(sids.offsets[level])
        prefix = torch.cat([prefix, (start + torch.arange(4) % 2).unsqueeze(1)], dim=1)
    with pytest.raises(ValueError, match="once per digit"):
        step(rows, prefix[:, :1])
