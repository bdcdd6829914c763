"""ACERec on tiny catalogues: the block-causal mask, the merger, MTP + ISA by hand, token-only scoring, toy fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handbook.metrics import evaluate_model
from handbook.models.acerec import ACERec, block_causal_mask
from handbook.models.rpg import RPG, mtp_loss
from handbook.sid import SemanticIDs
from handbook.train import fit

TINY = {"max_len": 6, "hidden": 16, "n_layers": 1, "n_heads": 2, "ffn": 32, "dropout": 0.0}
VARIANTS = [
    pytest.param({}, id="attention+intent"),
    pytest.param({"intent_token": False}, id="attention,last-latent"),
    pytest.param({"merger": "mean"}, id="mean+intent"),
    pytest.param({"merger": "mlp"}, id="mlp+intent"),
    pytest.param({"merger": "conv"}, id="conv+intent"),
    pytest.param({"recon_weight": 0.05}, id="attention+intent+recon"),
]
INPUTS = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 5, 6], [7, 8, 9, 10, 1, 8]])
LABELS = torch.tensor([[0, 0, 2, 3, 4, 5], [0, 0, 0, 0, 6, 7], [8, 9, 10, 1, 8, 2]])


def _unique_codes(n_items: int, m: int, width: int, seed: int) -> np.ndarray:
    """Random SID codes (n_items, m) with no two items alike."""
    rng = np.random.default_rng(seed)
    while True:
        codes = rng.integers(0, width, size=(n_items, m))
        if len({tuple(row) for row in codes}) == n_items:
            return codes


def _sids(n_items: int = 12, m: int = 4, width: int = 8, seed: int = 0) -> SemanticIDs:
    return SemanticIDs.from_codes(_unique_codes(n_items, m, width, seed), width, dedup=False)


def _tiny_acerec(sids: SemanticIDs, seed: int = 0, **kwargs) -> ACERec:
    torch.manual_seed(seed)
    return ACERec(sids, **{"n_latents": 2, **TINY, **kwargs})


def _perturb(model: ACERec, seed: int = 0) -> ACERec:
    """Move every parameter off its (partly zero or identity) start, so that no term is trivially 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    return model


# ---------------------------------------------------------------------------- the mask
def test_block_causal_mask_by_hand_on_three_items() -> None:
    # [z1 z1' h1 | z2 z2' h2 | z3 z3' h3]: k = 2 latents and an intent token per item
    expected = torch.tensor(
        [
            # z  z' h | z  z' h | z  z' h     (keys)
            [1, 1, 0, 0, 0, 0, 0, 0, 0],  # z1: its block's latents, both ways
            [1, 1, 0, 0, 0, 0, 0, 0, 0],  # z1'
            [1, 1, 1, 0, 0, 0, 0, 0, 0],  # h1: its block, itself included
            [1, 1, 1, 1, 1, 0, 0, 0, 0],  # z2: block 1 whole, and block 2's latents
            [1, 1, 1, 1, 1, 0, 0, 0, 0],  # z2'
            [1, 1, 1, 1, 1, 1, 0, 0, 0],  # h2
            [1, 1, 1, 1, 1, 1, 1, 1, 0],  # z3
            [1, 1, 1, 1, 1, 1, 1, 1, 0],  # z3'
            [1, 1, 1, 1, 1, 1, 1, 1, 1],  # h3
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_causal_mask(3, 2, intent_token=True), expected)
    # without intent tokens: causal at item granularity, bidirectional inside an item
    no_intent = torch.tensor(
        [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]],
        dtype=torch.bool,
    )  # fmt: skip
    assert torch.equal(block_causal_mask(3, 2, intent_token=False), no_intent)
    # k = 1 without intent tokens is RPG's causal mask
    assert torch.equal(
        block_causal_mask(4, 1, intent_token=False), torch.ones(4, 4, dtype=torch.bool).tril()
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_pass_gives_the_state_of_every_prefix(variant: dict) -> None:
    model = _perturb(_tiny_acerec(_sids(), **variant)).eval()
    states = model.encode(INPUTS)  # one pass: the prediction state after every slot
    assert states.shape == (3, 6, 16)
    for t in range(6):
        real = INPUTS[:, t] != 0
        prefix = model.encode(INPUTS[:, : t + 1])[:, -1]  # the history up to t, left-padded inside
        assert torch.allclose(states[real, t], prefix[real], atol=1e-5)
    # positions count from the first item: extra left padding changes nothing
    assert torch.allclose(
        model.encode(torch.tensor([[3, 4]]))[:, -1],
        model.encode(torch.tensor([[0, 0, 0, 3, 4]]))[:, -1],
        atol=1e-6,
    )
    # nothing sees a later block: a later item does not change an earlier state
    changed = model.encode(INPUTS.index_fill(1, torch.tensor([5]), 11))
    assert torch.allclose(states[:, :5], changed[:, :5], atol=1e-6)
    assert not torch.allclose(states[:, 5], changed[:, 5])


# ---------------------------------------------------------------------------- the merger
def test_merger_queries_change_with_the_item_and_its_weights_give_its_latents() -> None:
    sids = _sids()
    model = _perturb(_tiny_acerec(sids, n_latents=3)).eval()
    ids = torch.arange(1, sids.n_items + 1)
    tokens = model.token_emb(model.item_tokens[ids])  # (n, m, D)
    summary = model.summary(tokens)  # s = f_s(E) (n, D)
    assert torch.allclose(summary, model.item_summaries(ids))
    queries = model.merger.queries(summary)  # Q = f_q(s) (n, k, D)
    assert queries.shape == (sids.n_items, 3, 16)
    # content-adaptive: every item gets its own queries, and so its own attention pattern
    assert (queries[1:] - queries[:1]).abs().amax(dim=(1, 2)).min() > 1e-3
    weights = model.merger_attention(ids)  # (n, H, k, m)
    assert weights.shape == (sids.n_items, 2, 3, sids.n_digits)
    assert torch.allclose(weights.sum(-1), torch.ones(sids.n_items, 2, 3))
    assert not torch.allclose(weights[0], weights[1], atol=1e-3)
    # Z = f_out(out(softmax(q k^T / sqrt(dh)) v)) with keys and values from E + P, head by head
    merger = model.merger
    values = merger.v(tokens + merger.positions).view(
        sids.n_items, sids.n_digits, 2, 8
    )  # (n, m, H, dh)
    mixed = torch.einsum("nhkm,nmhd->nkhd", weights, values).reshape(sids.n_items, 3, 16)
    assert torch.allclose(merger.f_out(merger.out(mixed)), model.item_latents(ids), atol=1e-5)
    assert model.item_latents(INPUTS).shape == (3, 6, 3, 16)  # any leading shape


@pytest.mark.parametrize("merger", ["mean", "mlp", "conv"])
def test_the_other_mergers_start_as_group_mean_pooling(merger: str) -> None:
    sids = _sids(m=4)
    model = _tiny_acerec(sids, merger=merger, n_latents=2).eval()
    ids = torch.arange(1, sids.n_items + 1)
    tokens = model.token_emb(model.item_tokens[ids])  # (n, 4, D)
    if merger != "mean":
        tokens = tokens + model.merger.positions  # the learned variants add subspace positions
    groups = torch.stack([tokens[:, :2].mean(1), tokens[:, 2:].mean(1)], dim=1)  # (n, 2, D)
    assert torch.allclose(model.item_latents(ids), groups, atol=1e-6)


def test_attentive_merger_latents_are_weighted_means_of_the_positioned_tokens() -> None:
    # at the start (identity values and output, f_out the identity) each head's slice of a latent
    # is that head's attention-weighted mean of the item's tokens + positions
    sids = _sids()
    model = _tiny_acerec(sids, n_latents=3).eval()
    ids = torch.arange(1, sids.n_items + 1)
    positioned = model.token_emb(model.item_tokens[ids]) + model.merger.positions  # (n, m, D)
    weights = model.merger_attention(ids)  # (n, H, k, m)
    heads = positioned.view(len(ids), sids.n_digits, 2, -1).transpose(1, 2)  # (n, H, m, dh)
    by_hand = (weights @ heads).transpose(1, 2).reshape(len(ids), 3, -1)  # (n, k, D)
    torch.testing.assert_close(model.item_latents(ids), by_hand)
    assert torch.allclose(weights.sum(-1), torch.ones(()))


def test_attentive_merger_query_and_key_maps_learn_as_fast_as_its_values() -> None:
    # small maps on N(0, 0.02) tokens once kept the attention logits' gradient near 1e-8
    model = _tiny_acerec(_sids(), hidden=32, n_heads=4)
    model.loss((INPUTS, LABELS)).backward()
    merger = model.merger
    value = merger.v.weight.grad.norm()
    for layer in (merger.make_queries, merger.q, merger.k):
        assert layer.weight.grad.norm() > value / 100, layer


# ---------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("variant", VARIANTS)
def test_lambda_zero_is_rpgs_mtp_loss_on_the_same_states(variant: dict) -> None:
    sids = _sids()
    model = _perturb(
        _tiny_acerec(sids, **{**variant, "isa_weight": 0.0, "recon_weight": 0.0})
    ).eval()
    mask = LABELS != 0
    states = model.encode(INPUTS)[mask]  # (M, D)
    targets = torch.from_numpy(sids.codes)[LABELS[mask] - 1]  # item id i -> SID row i - 1
    token = mtp_loss(model.heads(states), model.token_table(), targets, model.temperature)
    assert model.loss((INPUTS, LABELS)).item() == token.item()  # exactly
    with pytest.raises(ValueError, match="no labels"):
        model.loss((INPUTS, torch.zeros_like(LABELS)))


def test_isa_term_with_logq_equals_a_hand_computation() -> None:
    sids = _sids()
    counts = np.array(
        [0, 5, 1, 30, 2, 9, 0, 4, 12, 7, 3, 8, 6]
    )  # per item id, 0 = padding; item 6 unseen
    model = _perturb(_tiny_acerec(sids, isa_weight=0.0, item_counts=counts, logq_beta=0.5)).eval()
    mask = LABELS != 0
    states = model.encode(INPUTS)[mask]  # (M, D)
    targets = LABELS[mask].tolist()  # item 8 is the target twice: one candidate
    token = model.loss((INPUTS, LABELS))
    candidates = sorted(set(targets))
    log_f = {j: np.log(max(counts[j], 1)) for j in candidates}
    top = np.log(counts[1:].max())  # the max over the whole catalogue, not the batch
    nll = []
    for row, target in enumerate(targets):
        logits = []
        for j in candidates:
            s_j = model.item_summaries(torch.tensor([j]))[0]
            cosine = F.cosine_similarity(states[row], s_j, dim=0)
            logits.append(cosine / 0.07 - 0.5 * log_f[j] / top)
        nll.append(-torch.log_softmax(torch.stack(logits), 0)[candidates.index(target)])
    isa = torch.stack(nll).mean()
    assert model.isa_loss(states, LABELS[mask]).item() == pytest.approx(isa.item(), rel=1e-5)
    model.isa_weight = 0.15
    assert model.loss((INPUTS, LABELS)).item() == pytest.approx(
        (token + 0.15 * isa).item(), rel=1e-5
    )
    # the correction lowers the popular candidates' logits: without it the loss differs
    model.logq_beta = 0.0
    assert model.isa_loss(states, LABELS[mask]).item() != pytest.approx(isa.item(), rel=1e-5)


def test_reconstruction_term_is_one_minus_the_mean_cosine_of_the_rebuilt_tokens() -> None:
    sids = _sids()
    model = _perturb(_tiny_acerec(sids, isa_weight=0.0, recon_weight=0.04)).eval()
    without = model.loss((INPUTS, LABELS))
    model.recon_weight = 0.0
    token = model.loss((INPUTS, LABELS))
    model.recon_weight = 0.04
    items = torch.unique(INPUTS[INPUTS != 0])  # the distinct items of the histories
    rebuilt = model.decoder(model.item_latents(items))  # (U, m, D)
    tokens = model.token_emb(model.item_tokens[items])
    recon = 1 - F.cosine_similarity(rebuilt, tokens, dim=-1).mean()
    assert without.item() == pytest.approx((token + 0.04 * recon).item(), rel=1e-5)
    # the targets are held fixed: the term moves the merger and decoder, not the token table
    model.zero_grad()
    (model.loss((INPUTS, LABELS)) - token.detach()).backward()
    decoder_grad = model.decoder.mlp.down.weight.grad
    assert decoder_grad is not None and decoder_grad.abs().sum() > 0


def test_mean_merger_of_one_latent_without_intent_isa_or_recon_is_rpg() -> None:
    sids = _sids()
    torch.manual_seed(1)
    rpg = _perturb_rpg(RPG(sids, **TINY)).eval()
    model = _tiny_acerec(
        sids, merger="mean", n_latents=1, intent_token=False, isa_weight=0.0
    ).eval()
    result = model.load_state_dict(rpg.state_dict(), strict=False)
    assert (
        result.missing_keys == ["log_frequency"] and not result.unexpected_keys
    )  # no new parameters
    assert model.loss((INPUTS, LABELS)).item() == pytest.approx(
        rpg.loss((INPUTS, LABELS)).item(), rel=1e-6
    )
    scores = rpg.scores(INPUTS)
    assert torch.allclose(
        model.scores(INPUTS), scores * sids.n_digits, atol=1e-5
    )  # RPG takes the mean


def _perturb_rpg(model: RPG) -> RPG:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    return model


# ---------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("variant", VARIANTS)
def test_token_only_scores_equal_a_per_item_loop_of_summed_digit_log_probs(variant: dict) -> None:
    sids = _sids(n_items=11)
    model = _tiny_acerec(sids, isa_weight=0.2, **variant)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(
        3
    ):  # a few steps, so that the merger, heads and summaries are not at their start
        optimizer.zero_grad()
        model.loss((INPUTS, LABELS)).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model.scores(INPUTS)
        assert scores.shape == (3, sids.n_items + 1) and torch.isinf(scores[:, 0]).all()
        for b in range(3):
            state = model.encode(INPUTS[b : b + 1])[0, -1]  # h_L
            queries = F.normalize(model.heads(state), dim=-1)  # (m, D), one per digit
            tokens = F.normalize(model.token_table(), dim=-1)  # (m, W, D)
            logits = torch.einsum("md,mwd->mw", queries, tokens) / model.temperature
            log_probs = torch.log_softmax(logits, dim=-1)  # (m, W)
            for item in range(1, sids.n_items + 1):
                code = sids.codes[item - 1]
                expected = sum(log_probs[j, code[j]] for j in range(sids.n_digits))
                assert scores[b, item].item() == pytest.approx(expected.item(), abs=1e-4)


# ---------------------------------------------------------------------------- training
def _toy_task(n_items: int, max_len: int) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Every item has one fixed successor: train sequences, one-item histories, targets."""

    def successor(i: int) -> int:
        return (5 * (i - 1) + 3) % n_items + 1  # a permutation of 1..16

    sequences = []
    for first in range(1, n_items + 1):
        seq = [first]
        for _ in range(4):
            seq.append(successor(seq[-1]))
        sequences.append(seq)
    histories = np.array([[0] * (max_len - 1) + [i] for i in range(1, n_items + 1)])
    targets = np.array([successor(i) for i in range(1, n_items + 1)])
    return sequences, histories, targets


def _fit_toy(model: ACERec, epochs: int, seed: int = 0):
    sequences, histories, targets = _toy_task(model.n_items, model.max_len)
    return fit(
        model,
        lambda epoch: ACERec.make_batches(sequences, model.max_len, batch_size=8, seed=epoch),
        lambda model: evaluate_model(model, histories, targets, ks=(1, 5)),
        epochs=epochs,
        lr=3e-3,
        metric="recall@1",
        patience=None,
        seed=seed,
        device="cpu",
        show_progress=False,
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_acerec_learns_a_deterministic_next_item(variant: dict) -> None:
    sids = _sids(n_items=16, m=4, width=8)
    counts = np.r_[0, np.full(16, 5)]
    result = _fit_toy(_tiny_acerec(sids, hidden=32, item_counts=counts, **variant), epochs=35)
    assert result.train_losses[-1] < 0.2 * result.train_losses[0]
    assert result.best_metrics["recall@1"] == 1.0


def test_training_is_deterministic_for_a_seed() -> None:
    sids = _sids(n_items=16, m=4, width=8)
    runs = [_fit_toy(_tiny_acerec(sids, seed=seed), epochs=3) for seed in (0, 0, 1)]
    assert runs[0].train_losses == runs[1].train_losses
    assert runs[0].train_losses != runs[2].train_losses


@pytest.mark.parametrize("merger", ["attention", "conv"])
def test_training_is_bit_reproducible_with_two_cpu_threads(
    two_cpu_threads: None, merger: str
) -> None:
    # Histories repeat items, and the merged latents and summaries are gathered per history
    # slot: a backward that accumulates repeated ids in thread order made runs differ by ~1e-5
    # after a few steps, and notebook 08's ablations by several NDCG points.
    rng = np.random.default_rng(0)
    sids = SemanticIDs.from_codes(rng.integers(0, 64, size=(300, 8)), 64, dedup=False)
    sequences = [rng.integers(1, 301, size=rng.integers(6, 40)) for _ in range(300)]
    counts = np.bincount(np.concatenate(sequences), minlength=301)
    batches = RPG.make_batches(sequences, 5, 256, seed=0)[:6]

    def train() -> torch.Tensor:
        model = _tiny_acerec(
            sids,
            merger=merger,
            max_len=5,
            hidden=32,
            dropout=0.5,
            item_counts=counts,
            recon_weight=0.05,
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for batch in batches:
            optimizer.zero_grad()
            model.loss(batch).backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(), train())


# ---------------------------------------------------------------------------- shapes and errors
def test_parameters_exist_only_where_a_term_uses_them() -> None:
    sids = _sids()
    plain = _tiny_acerec(sids, merger="mean", intent_token=False, isa_weight=0.0)
    assert (
        plain.summary is None and plain.decoder is None and plain.role_emb.weight.shape == (2, 16)
    )
    full = _tiny_acerec(sids, recon_weight=0.03)
    assert (
        full.summary is not None
        and full.decoder is not None
        and full.role_emb.weight.shape == (3, 16)
    )
    loss = full.loss((INPUTS, LABELS))
    loss.backward()
    unused = [name for name, p in full.named_parameters() if p.grad is None]
    assert unused == []  # DDP without find_unused_parameters needs a gradient for each
    assert full.config["n_latents"] == 2 and full.config["logq"] is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_latents": 0}, "n_latents"),
        ({"n_latents": 5}, "n_latents"),  # more latents than the 4 digits they compress
        ({"merger": "mean", "n_latents": 3}, "divides the SID length"),
        ({"merger": "max"}, "merger must be one of"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"isa_temperature": -1.0}, "isa_temperature must be > 0"),
        ({"isa_weight": -0.1}, "isa_weight must be >= 0"),
        ({"logq_beta": -0.1}, "logq_beta must be >= 0"),
        ({"recon_weight": -0.1}, "recon_weight must be >= 0"),
        ({"item_counts": np.ones(12)}, "13 non-negative counts"),  # forgot the padding entry
        ({"item_counts": np.r_[0, -np.ones(12)]}, "non-negative"),
        ({"max_len": 0}, "max_len"),
    ],
)
def test_bad_parameters_raise_a_clear_error(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ACERec(_sids(), **{**TINY, **options})


def test_missing_parts_raise_a_clear_error() -> None:
    sids = _sids()
    plain = _tiny_acerec(sids, merger="mean", intent_token=False, isa_weight=0.0)
    with pytest.raises(ValueError, match="no item summary"):
        plain.item_summaries(torch.tensor([1]))
    with pytest.raises(ValueError, match="has no attention weights"):
        plain.merger_attention(torch.tensor([1]))
    plain.recon_weight = 0.1  # switched on after construction: no decoder was built
    with pytest.raises(ValueError, match="recon_weight > 0"):
        plain.loss((INPUTS, LABELS))


def test_acerec_rejects_dedup_digits_and_mixed_codebooks() -> None:
    codes = _unique_codes(6, m=2, width=4, seed=1)
    with pytest.raises(ValueError, match="dedup=False"):
        ACERec(SemanticIDs.from_codes(codes, 4, dedup=True), n_latents=1, hidden=8, n_heads=2)
    with pytest.raises(ValueError, match="same number of codes"):
        ACERec(SemanticIDs.from_codes(codes, [4, 5], dedup=False), n_latents=1, hidden=8, n_heads=2)
