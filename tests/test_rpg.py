"""RPG on tiny catalogues: MTP loss by hand, exact scoring, graph-constrained decoding, a toy fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handbook.decoding.graph import evaluate_graph, graph_decode, graph_ranks
from handbook.metrics import evaluate_model, rank_of_target
from handbook.models.acerec import ACERec
from handbook.models.rpg import RPG, mean_digit_log_prob, mtp_loss, trim_left_padding
from handbook.sid import SemanticIDs
from handbook.train import fit


def _unique_codes(n_items: int, m: int, width: int, seed: int) -> np.ndarray:
    """Random SID codes (n_items, m) with no two items alike."""
    rng = np.random.default_rng(seed)
    while True:
        codes = rng.integers(0, width, size=(n_items, m))
        if len({tuple(row) for row in codes}) == n_items:
            return codes


def _tiny_rpg(codes: np.ndarray, width: int, seed: int = 0, **kwargs) -> RPG:
    torch.manual_seed(seed)
    sids = SemanticIDs.from_codes(codes, width, dedup=False)
    options = {"max_len": 6, "hidden": 16, "n_layers": 1, "n_heads": 2, "ffn": 32, "dropout": 0.0}
    return RPG(sids, **{**options, **kwargs})


def _log_softmax(values: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in values))
    return [v - norm for v in values]


# ---------------------------------------------------------------------------- loss
def test_mtp_loss_equals_hand_computation() -> None:
    # m = 2 digits, W = 4 codes, D = 2; one position
    tables = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]],
            [[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0], [1.0, 1.0]],
        ]
    )
    states = torch.tensor([[[5.0, 0.0], [0.0, 2.0]]])  # (M=1, m=2, D=2); only directions matter
    targets = torch.tensor([[0, 3]])
    temperature = 0.5
    # cosines by hand: digit 0 query (1, 0); digit 1 query (0, 1)
    cos0 = [1.0, 0.0, -1.0, 0.0]
    cos1 = [0.0, 1.0, -1.0 / math.sqrt(2), 1.0 / math.sqrt(2)]
    nll0 = -_log_softmax([c / temperature for c in cos0])[0]
    nll1 = -_log_softmax([c / temperature for c in cos1])[3]
    expected = (nll0 + nll1) / 2
    assert mtp_loss(states, tables, targets, temperature).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_mtp_loss_value_and_gradients_equal_autograd_cross_entropy() -> None:
    # the one-pass backward of mtp_loss against autograd through F.cross_entropy
    g = torch.Generator().manual_seed(0)
    states = torch.randn(7, 3, 5, generator=g, requires_grad=True)  # (M, m, D)
    tables = torch.randn(3, 6, 5, generator=g, requires_grad=True)  # (m, W, D)
    targets = torch.randint(0, 6, (7, 3), generator=g)
    loss = mtp_loss(states, tables, targets, 0.1)
    grads = torch.autograd.grad(loss, (states, tables))
    logits = torch.einsum(
        "Mmd,mwd->Mmw",
        torch.nn.functional.normalize(states, dim=-1),
        torch.nn.functional.normalize(tables, dim=-1),
    ) / 0.1
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 6), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, torch.autograd.grad(expected, (states, tables)), strict=True):
        torch.testing.assert_close(got, want)


def test_model_loss_is_mtp_on_the_labelled_items_codes() -> None:
    codes = _unique_codes(10, m=3, width=4, seed=0)
    model = _tiny_rpg(codes, 4).eval()
    with torch.no_grad():
        model.heads.bias.zero_()  # zero weight and bias: every head is the identity
    inputs = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 5, 6]])
    labels = torch.tensor([[0, 0, 2, 3, 4, 5], [0, 0, 0, 0, 6, 7]])
    hidden = model.encode(inputs)[labels != 0]  # (M, D)
    states = hidden.unsqueeze(1).expand(-1, 3, -1)  # identity heads: (M, m, D)
    targets = torch.from_numpy(codes)[labels[labels != 0] - 1]  # item id i -> SID row i - 1
    expected = mtp_loss(states, model.token_table(), targets, model.temperature)
    assert model.loss((inputs, labels)).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="no labels"):
        model.loss((inputs, torch.zeros_like(labels)))


def test_rpg_rejects_dedup_digits_and_mixed_codebooks() -> None:
    codes = _unique_codes(6, m=2, width=4, seed=1)
    with pytest.raises(ValueError, match="dedup=False"):
        RPG(SemanticIDs.from_codes(codes, 4, dedup=True), hidden=8, n_heads=2)
    with pytest.raises(ValueError, match="same number of codes"):
        RPG(SemanticIDs.from_codes(codes, [4, 5], dedup=False), hidden=8, n_heads=2)


def test_encoder_is_causal_and_ignores_left_padding() -> None:
    model = _tiny_rpg(_unique_codes(10, m=3, width=4, seed=2), 4).eval()
    a = model.encode(torch.tensor([[0, 1, 2, 3, 4, 5]]))
    b = model.encode(torch.tensor([[0, 1, 2, 3, 4, 9]]))
    assert torch.allclose(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5], b[:, 5])
    # positions count from the first item, so extra left padding changes nothing
    short = model.digit_log_probs(torch.tensor([[3, 4]]))
    assert torch.allclose(short, model.digit_log_probs(torch.tensor([[0, 0, 0, 0, 3, 4]])))
    assert short.shape == (1, 3, 4)
    assert torch.allclose(short.exp().sum(-1), torch.ones(1, 3))


# ---------------------------------------------------------------------------- exact scoring
def test_exact_scoring_ranks_the_planted_item_first() -> None:
    codes = _unique_codes(12, m=3, width=4, seed=3)
    model = _tiny_rpg(codes, 4).eval()
    planted = 7  # item id
    logits = torch.zeros(2, 3, 4)
    logits[:, torch.arange(3), torch.from_numpy(codes[planted - 1])] = 4.0
    log_probs = torch.log_softmax(logits, dim=-1)
    model.digit_log_probs = lambda histories: log_probs  # plant the model's output
    scores = model.scores(torch.zeros(2, 6, dtype=torch.long))
    assert scores.shape == (2, 13) and torch.isinf(scores[:, 0]).all()
    assert rank_of_target(scores, torch.tensor([planted, planted])).tolist() == [0, 0]
    # item id 1's score is the mean of its digits' log-probs
    by_hand = sum(log_probs[0, j, codes[0, j]] for j in range(3)) / 3
    assert scores[0, 1].item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert torch.allclose(scores[:, 1:], mean_digit_log_prob(log_probs, torch.from_numpy(codes)))


@pytest.mark.parametrize("batch", [1, 3, 4, 9])  # both sides of BAG_MIN_BATCH
@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_catalogue_scores_are_each_items_digit_log_probs_for_small_and_large_batches(batch: int, mode: str) -> None:
    from handbook.models.rpg import BAG_MIN_BATCH

    assert 1 <= BAG_MIN_BATCH <= 9
    n_items, m, width = 30, 4, 8
    codes = _unique_codes(n_items, m, width, seed=6)
    model = _tiny_rpg(codes, width)
    log_probs = _random_log_probs(batch, m, width, seed=batch)
    scores = model._catalogue_scores(log_probs, mode=mode)
    assert scores.shape == (batch, n_items + 1) and torch.isinf(scores[:, 0]).all()
    expected = mean_digit_log_prob(log_probs, torch.from_numpy(codes)) * (m if mode == "sum" else 1)
    torch.testing.assert_close(scores[:, 1:], expected)


# ---------------------------------------------------------------------------- graph decoding
def _random_log_probs(batch: int, m: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(batch, m, width, generator=gen) * 3, dim=-1)


def test_graph_decoding_returns_distinct_catalogue_items_best_first() -> None:
    n_items, m, width = 20, 4, 8
    codes = _unique_codes(n_items, m, width, seed=4)
    graph = SemanticIDs.from_codes(codes, width, dedup=False).knn_graph(3)
    log_probs = _random_log_probs(5, m, width, seed=0)
    result = graph_decode(log_probs, codes, graph, num_beams=4, propagation_steps=2, k=3)
    assert result.items.shape == (5, 3) and result.scores.shape == (5, 3)
    assert ((result.items >= 1) & (result.items <= n_items)).all()
    assert all(len(set(row.tolist())) == 3 for row in result.items)
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()
    exact = mean_digit_log_prob(log_probs, torch.from_numpy(codes))  # (B, n_items)
    assert torch.allclose(result.scores, exact.gather(1, result.items - 1))
    assert ((result.n_visited >= 1) & (result.n_visited <= n_items)).all()
    with pytest.raises(ValueError, match="num_beams"):
        graph_decode(log_probs, codes, graph, num_beams=2, k=3)


def test_graph_decoding_checks_the_graph_unless_told_it_was_checked() -> None:
    n_items, m, width = 20, 4, 8
    codes = _unique_codes(n_items, m, width, seed=4)
    graph = SemanticIDs.from_codes(codes, width, dedup=False).knn_graph(3)
    log_probs = _random_log_probs(5, m, width, seed=0)
    bad = graph.copy()
    bad[0, 0] = n_items  # an item id where a 0-based row belongs
    with pytest.raises(ValueError, match="0-based rows"):
        graph_decode(log_probs, codes, bad, num_beams=4)
    checked = graph_decode(log_probs, codes, graph, num_beams=4, check=False)
    assert torch.equal(checked.items, graph_decode(log_probs, codes, graph, num_beams=4).items)


@pytest.mark.parametrize("num_beams", [5, 12])
def test_graph_decoding_on_a_complete_graph_equals_exact_scoring(num_beams: int) -> None:
    n_items, m, width = 12, 3, 4
    codes = _unique_codes(n_items, m, width, seed=5)
    graph = SemanticIDs.from_codes(codes, width, dedup=False).knn_graph(n_items - 1)
    log_probs = _random_log_probs(6, m, width, seed=1)
    result = graph_decode(log_probs, codes, graph, num_beams=num_beams, propagation_steps=1)
    exact = mean_digit_log_prob(log_probs, torch.from_numpy(codes))
    # ties (items sharing codes on every digit cannot occur here) would go to the lower id
    order = torch.sort(exact, dim=1, descending=True, stable=True).indices[:, :num_beams] + 1
    assert torch.equal(result.items, order)
    assert (result.n_visited == n_items).all()


def test_graph_decoding_is_deterministic_for_a_seed() -> None:
    codes = _unique_codes(30, m=4, width=8, seed=6)
    graph = SemanticIDs.from_codes(codes, 8, dedup=False).knn_graph(4)
    log_probs = _random_log_probs(8, 4, 8, seed=2)
    runs = [
        graph_decode(log_probs, codes, graph, num_beams=3, propagation_steps=s, seed=seed)
        for seed, s in [(0, 2), (0, 2), (1, 0), (2, 0)]
    ]
    assert torch.equal(runs[0].items, runs[1].items)
    assert torch.equal(runs[0].n_visited, runs[1].n_visited)
    assert not torch.equal(runs[2].items, runs[3].items)  # the start beam does follow the seed


def test_graph_walk_climbs_a_ring_by_hand() -> None:
    # one digit, item index i has code i, and a higher code is more likely: the walk climbs
    n_items = 8
    codes = np.arange(n_items).reshape(-1, 1)
    ring = (np.arange(n_items) + 1).reshape(-1, 1) % n_items  # i -> i + 1
    log_probs = torch.log_softmax(torch.arange(n_items, dtype=torch.float32), dim=0)[None, None]
    seed = 3
    start = int(torch.randint(0, n_items, (1, 1), generator=torch.Generator().manual_seed(seed)))
    beam, visited = start, {start}
    for _ in range(2):
        visited.add((beam + 1) % n_items)
        beam = max(beam, (beam + 1) % n_items)
    result = graph_decode(log_probs, codes, ring, num_beams=1, propagation_steps=2, seed=seed)
    assert result.items.tolist() == [[beam + 1]]
    assert result.n_visited.tolist() == [len(visited)]


def test_graph_ranks_put_missing_targets_last() -> None:
    items = torch.tensor([[3, 1, 0], [2, 5, 4]])  # 0: an empty slot
    assert graph_ranks(items, torch.tensor([1, 6]), n_items=9).tolist() == [1, 8]


# ---------------------------------------------------------------------------- training
def test_tiny_rpg_learns_a_deterministic_next_item() -> None:
    n_items, m, width, max_len = 16, 4, 8, 6
    codes = _unique_codes(n_items, m, width, seed=0)

    def step(i: int) -> int:
        return (5 * (i - 1) + 3) % n_items + 1  # a permutation of 1..16

    sequences = []
    for first in range(1, n_items + 1):
        seq = [first]
        for _ in range(4):
            seq.append(step(seq[-1]))
        sequences.append(seq)
    histories = np.array([[0] * (max_len - 1) + [i] for i in range(1, n_items + 1)])
    targets = np.array([step(i) for i in range(1, n_items + 1)])
    model = _tiny_rpg(codes, width, max_len=max_len, hidden=32)
    result = fit(
        model,
        lambda epoch: RPG.make_batches(sequences, max_len, batch_size=8, seed=epoch),
        lambda model: evaluate_model(model, histories, targets, ks=(1, 5)),
        epochs=35,
        lr=3e-3,
        metric="recall@1",
        patience=None,
        device="cpu",
        show_progress=False,
    )
    assert result.train_losses[-1] < 0.2 * result.train_losses[0]
    assert result.best_metrics["recall@1"] >= 0.9
    # the trained token table feeds the k-NN graph; a complete graph decodes exactly
    graph = SemanticIDs.from_codes(codes, width, dedup=False).knn_graph(
        n_items - 1, model.token_table()
    )
    metrics = evaluate_graph(
        model, histories, targets, graph, ks=(1,), num_beams=4, propagation_steps=1
    )
    exact = evaluate_model(model, histories, targets, ks=(1,))
    assert metrics["recall@1"] == exact["recall@1"] and metrics["visited"] == n_items


def test_trimmed_batches_drop_only_all_padding_columns() -> None:
    inputs = torch.tensor([[0, 0, 0, 4, 5], [0, 0, 2, 3, 4]])
    labels = torch.tensor([[0, 0, 0, 5, 6], [0, 0, 3, 4, 5]])
    trimmed_inputs, trimmed_labels = trim_left_padding(inputs, labels)
    assert trimmed_inputs.tolist() == [[0, 4, 5], [2, 3, 4]]
    assert trimmed_labels.tolist() == [[0, 5, 6], [3, 4, 5]]


@pytest.mark.parametrize("model_cls", [RPG, ACERec])
def test_trimming_the_padding_leaves_loss_and_scores_unchanged(model_cls) -> None:
    width = 8
    sids = SemanticIDs.from_codes(_unique_codes(30, 4, width, seed=1), width, dedup=False)
    torch.manual_seed(0)
    extra = {"n_latents": 2} if model_cls is ACERec else {}
    model = model_cls(sids, max_len=12, hidden=16, n_layers=1, n_heads=2, ffn=32, dropout=0.0, **extra).eval()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 31, size=int(n)) for n in rng.integers(3, 9, size=40)]
    full = RPG.make_batches(sequences, 12, 8, seed=3, trim=False)
    trimmed = RPG.make_batches(sequences, 12, 8, seed=3, trim=True)
    assert all(t[0].shape[1] < f[0].shape[1] for f, t in zip(full, trimmed, strict=True))  # windows of <= 8 items
    with torch.no_grad():
        for f, t in zip(full, trimmed, strict=True):
            torch.testing.assert_close(model.loss(t), model.loss(f))
        short = torch.tensor([[0, 3, 7, 9]])
        padded = torch.nn.functional.pad(short, (8, 0))
        torch.testing.assert_close(model.scores(short), model.scores(padded))


def test_bucketed_batches_hold_the_same_windows_in_narrower_batches() -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 31, size=int(n)) for n in rng.choice([3, 4, 30], size=64, p=[0.45, 0.45, 0.1])]
    plain = RPG.make_batches(sequences, 20, 8, seed=5)
    bucketed = RPG.make_batches(sequences, 20, 8, seed=5, bucket=True)
    again = RPG.make_batches(sequences, 20, 8, seed=5, bucket=True)
    def rows(batches):
        return sorted(tuple(r[r != 0].tolist()) for b in batches for r in b[1])

    assert rows(bucketed) == rows(plain)  # every window, each once
    assert np.mean([b[0].shape[1] for b in bucketed]) < np.mean([b[0].shape[1] for b in plain])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(bucketed, again, strict=True))  # the seed decides
