"""SemanticIDs on hand-made catalogues: collisions, de-dup digit, tokens, trie, lookup, k-NN graph."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from handbook.sid import BOS_TOKEN, EOS_TOKEN, N_SPECIAL_TOKENS, PAD_TOKEN, SemanticIDs, dedup_digit

# six items, two digits of two codes: {0, 1, 3} share (0, 1), {2, 5} share (1, 0), 4 is alone
BASE = np.array([[0, 1], [0, 1], [1, 0], [0, 1], [1, 1], [1, 0]])


@pytest.fixture
def sids() -> SemanticIDs:
    return SemanticIDs.from_codes(BASE, codebook_sizes=2, dedup=True)


# ---------------------------------------------------------------------------- collisions
def test_dedup_digit_by_hand(sids: SemanticIDs) -> None:
    np.testing.assert_array_equal(dedup_digit(BASE), [0, 1, 0, 2, 0, 1])
    np.testing.assert_array_equal(sids.codes, np.column_stack([BASE, [0, 1, 0, 2, 0, 1]]))
    assert sids.n_digits == 3 and sids.n_base_digits == 2
    assert sids.codebook_sizes == (2, 2, 3)
    assert len({tuple(row) for row in sids.codes}) == len(BASE)  # every SID unique


def test_collision_stats_by_hand(sids: SemanticIDs) -> None:
    assert sids.n_unique_base == 3
    assert sids.n_colliding_items == 5
    assert sids.collision_rate == pytest.approx(5 / 6)
    assert sids.largest_collision_group == 3
    assert sids.dedup_size == 3
    summary = sids.summary()
    assert (
        summary["collision_rate"] == pytest.approx(5 / 6)
        and summary["vocab_size"] == sids.vocab_size
    )


def test_without_dedup_codes_are_kept_and_collisions_reported() -> None:
    plain = SemanticIDs.from_codes(BASE, [2, 2], dedup=False)
    np.testing.assert_array_equal(plain.codes, BASE)
    assert plain.n_digits == 2 and plain.n_colliding_items == 5 and plain.dedup_size == 3
    assert plain.lookup([0, 1]) == 0  # lowest index of the colliding group
    np.testing.assert_array_equal(plain.items_with([0, 1]), [0, 1, 3])
    np.testing.assert_array_equal(plain.items_with([0, 0]), [])


def test_no_collisions_gives_a_constant_dedup_digit() -> None:
    unique = SemanticIDs.from_codes(np.array([[0], [1], [2]]), 3)
    np.testing.assert_array_equal(unique.codes[:, 1], 0)
    assert (
        unique.collision_rate == 0
        and unique.largest_collision_group == 1
        and unique.codebook_sizes == (3, 1)
    )


def test_dedup_makes_random_catalogues_unique() -> None:
    codes = np.random.default_rng(0).integers(0, 4, size=(500, 3))  # 64 codes for 500 items
    sids = SemanticIDs.from_codes(codes, 4)
    assert np.unique(sids.codes, axis=0).shape[0] == 500
    assert sids.collision_rate > 0.9
    np.testing.assert_array_equal(sids.lookup(sids.codes), np.arange(500))


def test_bad_codes_are_reported() -> None:
    with pytest.raises(ValueError, match="digit 1"):
        SemanticIDs.from_codes(np.array([[0, 2]]), 2)
    with pytest.raises(ValueError, match="codebook sizes"):
        SemanticIDs.from_codes(np.array([[0, 1]]), [2, 2, 2])


# ---------------------------------------------------------------------------- tokens
def test_tokens_and_inverse(sids: SemanticIDs) -> None:
    assert (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, N_SPECIAL_TOKENS) == (0, 1, 2, 3)
    np.testing.assert_array_equal(sids.offsets, [0, 2, 4])
    assert sids.vocab_size == 3 + 2 + 2 + 3
    tokens = sids.tokens()
    np.testing.assert_array_equal(tokens[0], [3 + 0, 3 + 2 + 1, 3 + 4 + 0])
    np.testing.assert_array_equal(sids.codes_from_tokens(tokens), sids.codes)
    np.testing.assert_array_equal(sids.codes_from_tokens(tokens[:, :2]), sids.codes[:, :2])
    np.testing.assert_array_equal(
        sids.token_digit([0, 2, 3, 4, 5, 6, 7, 9]), [-1, -1, 0, 0, 1, 1, 2, 2]
    )
    with pytest.raises(ValueError, match="not a code of digit 0"):
        sids.codes_from_tokens([[5, 5, 7]])


# ---------------------------------------------------------------------------- trie
def test_trie_holds_exactly_the_valid_prefixes(sids: SemanticIDs) -> None:
    # SIDs: 010 011 100 012 110 101 -> the valid prefixes, written out by hand
    valid = {
        (),
        (0,), (1,),
        (0, 1), (1, 0), (1, 1),
        (0, 1, 0), (0, 1, 1), (0, 1, 2), (1, 0, 0), (1, 0, 1), (1, 1, 0),
    }  # fmt: skip
    allowed = {(): [0, 1], (0,): [1], (1,): [0, 1], (0, 1): [0, 1, 2], (1, 0): [0, 1], (1, 1): [0]}
    for length in range(4):
        for prefix in itertools.product(*[range(s) for s in sids.codebook_sizes[:length]]):
            assert sids.is_valid(np.array(prefix, dtype=np.int64)) == (prefix in valid), prefix
            if length < 3:
                expected = allowed.get(prefix, [])
                np.testing.assert_array_equal(sids.allowed_next(prefix), expected)
                np.testing.assert_array_equal(
                    sids.allowed_next(prefix, tokens=True),
                    np.array(expected, dtype=np.int64) + N_SPECIAL_TOKENS + sids.offsets[length],
                )
    assert sids.trie_sizes == [2, 3, 6]
    np.testing.assert_array_equal(sids.prefixes(2), [[0, 1], [1, 0], [1, 1]])
    assert not sids.is_valid([2])  # out of the digit's range
    with pytest.raises(ValueError, match="no next digit"):
        sids.allowed_next([0, 1, 0])


def test_allowed_mask_matches_allowed_next(sids: SemanticIDs) -> None:
    for length in range(3):
        rows = list(itertools.product(*[range(s) for s in sids.codebook_sizes[:length]]))
        prefixes = np.array(rows, dtype=np.int64).reshape(len(rows), length)
        mask = sids.allowed_mask(prefixes)
        token_mask = sids.allowed_mask(prefixes, tokens=True)
        assert mask.shape == (len(prefixes), sids.codebook_sizes[length])
        assert token_mask.shape == (len(prefixes), sids.vocab_size)
        for row, prefix in enumerate(prefixes):
            np.testing.assert_array_equal(np.flatnonzero(mask[row]), sids.allowed_next(prefix))
            np.testing.assert_array_equal(
                np.flatnonzero(token_mask[row]), sids.allowed_next(prefix, tokens=True)
            )


def test_allowed_mask_on_a_larger_random_catalogue() -> None:
    codes = np.random.default_rng(1).integers(0, 16, size=(300, 3))
    sids = SemanticIDs.from_codes(codes, 16)
    prefixes = np.random.default_rng(2).integers(0, 16, size=(64, 2))
    prefixes[:32] = sids.codes[:32, :2]  # half of them valid for sure
    mask = sids.allowed_mask(prefixes)
    for row, prefix in enumerate(prefixes):
        follow = {c[2] for c in sids.codes if tuple(c[:2]) == tuple(prefix)}
        assert set(np.flatnonzero(mask[row])) == follow


def test_lookup_round_trips(sids: SemanticIDs) -> None:
    np.testing.assert_array_equal(sids.lookup(sids.codes), np.arange(len(BASE)))
    assert sids.lookup(sids.codes[3]) == 3
    assert sids.lookup([1, 1, 1]) == -1 and sids.lookup([0, 0, 0]) == -1
    np.testing.assert_array_equal(
        sids.lookup(sids.codes_from_tokens(sids.tokens())), np.arange(len(BASE))
    )
    with pytest.raises(ValueError, match="full SIDs"):
        sids.lookup([0, 1])


# ---------------------------------------------------------------------------- k-NN graph
LONG = np.array(
    [
        [0, 0, 0, 0],
        [0, 0, 0, 1],  # 3 digits shared with item 0
        [0, 0, 1, 1],  # 2 with item 0, 3 with item 1
        [1, 1, 1, 1],
        [1, 1, 1, 0],
    ]
)


def brute_force_neighbours(sim: np.ndarray, k: int) -> np.ndarray:
    sim = sim.astype(np.float64).copy()
    np.fill_diagonal(sim, -np.inf)
    # most similar first, ties to the lower index
    return np.array(
        [sorted(range(len(sim)), key=lambda j, i=i: (-sim[i, j], j))[:k] for i in range(len(sim))]
    )


def test_knn_graph_shared_digits_by_hand() -> None:
    sids = SemanticIDs.from_codes(LONG, 2, dedup=False)
    graph = sids.knn_graph(n_edges=2)
    assert graph.shape == (5, 2)
    assert np.all(graph != np.arange(5)[:, None])  # never the item itself
    np.testing.assert_array_equal(graph[0], [1, 2])
    np.testing.assert_array_equal(
        graph[1], [0, 2]
    )  # 0 and 2 tie at 3 shared digits: lower index first
    np.testing.assert_array_equal(graph[3], [4, 2])
    shared = (LONG[:, None, :] == LONG[None, :, :]).mean(-1)
    for k in (1, 3, 4):
        np.testing.assert_array_equal(
            sids.knn_graph(k, batch_size=2), brute_force_neighbours(shared, k)
        )


def test_knn_graph_ignores_the_dedup_digit() -> None:
    sids = SemanticIDs.from_codes(BASE, 2, dedup=True)
    graph = sids.knn_graph(n_edges=2)
    np.testing.assert_array_equal(graph[0], [1, 3])  # its colliding twins first


@pytest.mark.parametrize("similarity", ["rpg", "mean"])
def test_knn_graph_from_token_embeddings(similarity: str) -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, size=(40, 4))
    sids = SemanticIDs.from_codes(codes, 8, dedup=False)
    table = rng.standard_normal((sids.vocab_size, 6)).astype(np.float32)
    per_digit = [table[N_SPECIAL_TOKENS + 8 * j : N_SPECIAL_TOKENS + 8 * (j + 1)] for j in range(4)]
    unit = [t / np.linalg.norm(t, axis=1, keepdims=True) for t in per_digit]
    if similarity == "rpg":
        sim = np.mean(
            [0.5 * (1 + unit[j][codes[:, j]] @ unit[j][codes[:, j]].T) for j in range(4)], axis=0
        )
    else:
        items = np.mean([per_digit[j][codes[:, j]] for j in range(4)], axis=0)
        items /= np.linalg.norm(items, axis=1, keepdims=True)
        sim = items @ items.T
    expected = brute_force_neighbours(sim, 5)
    graph = sids.knn_graph(5, token_embeddings=table, similarity=similarity, batch_size=7)
    np.testing.assert_array_equal(graph, expected)
    # the same tables given per digit, as an array or as torch tensors
    np.testing.assert_array_equal(
        sids.knn_graph(5, np.stack(per_digit), similarity=similarity), expected
    )
    np.testing.assert_array_equal(
        sids.knn_graph(5, [torch.from_numpy(t) for t in per_digit], similarity=similarity), expected
    )
    # most similar first
    rows = np.arange(40)[:, None]
    assert np.all(np.diff(sim[rows, graph], axis=1) <= 1e-6)


def test_knn_graph_checks_arguments() -> None:
    sids = SemanticIDs.from_codes(LONG, 2, dedup=False)
    with pytest.raises(ValueError, match="n_edges"):
        sids.knn_graph(5)
    with pytest.raises(ValueError, match="token_embeddings"):
        sids.knn_graph(2, token_embeddings=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="similarity"):
        sids.knn_graph(2, token_embeddings=np.zeros((sids.vocab_size, 3)), similarity="dot")
