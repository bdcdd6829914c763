"""Tokenizers on tiny inputs: behaviour (planted clusters, RQ-VAE vs k-means), shapes, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handbook.tokenizers import (
    OPQ,
    PQ,
    RQVAE,
    TOKENIZERS,
    ResidualVQ,
    RKMeans,
    Tokenizer,
    codes_perplexity,
    make_tokenizer,
)
from handbook.tokenizers.kmeans import residual_kmeans
from handbook.tokenizers.pq import _pack, _unpack
from handbook.tokenizers.residual import ResidualCodebooks

# small, fast settings for every tokenizer: (name, kwargs)
TINY = {
    "rkmeans": {"n_levels": 3, "width": 8, "niter": 10},
    "rvq": {"n_levels": 3, "width": 8, "epochs": 3, "batch_size": 32},
    "rqvae": {
        "n_levels": 3,
        "width": 8,
        "hidden_dims": (32, 16),
        "latent_dim": 8,
        "epochs": 3,
        "batch_size": 32,
    },
    "pq": {"m": 4, "nbits": 4},
    "opq": {"m": 4, "nbits": 4, "opq_niter": 3},
}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 16)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def blobs(n_per: int = 25, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated Gaussian blobs and their labels."""
    rng = np.random.default_rng(seed)
    centers = 10.0 * np.eye(4, d)
    labels = np.repeat(np.arange(4), n_per)
    X = centers[labels] + 0.3 * rng.standard_normal((labels.size, d))
    return X.astype(np.float32), labels


# ---------------------------------------------------------------------------- behaviour
def test_rkmeans_recovers_planted_clusters() -> None:
    X, labels = blobs()
    codes = RKMeans(n_levels=2, width=4, seed=0).fit(X).encode(X)
    first = codes[:, 0]
    # up to a permutation: each blob gets one code, and different blobs get different codes
    for blob in range(4):
        assert len(set(first[labels == blob])) == 1
    assert len({first[labels == blob][0] for blob in range(4)}) == 4


def test_rkmeans_residual_levels_reduce_error() -> None:
    X, _ = blobs()
    errors = [
        RKMeans(n_levels=k, width=4, normalize_residuals=False, seed=0)
        .fit(X)
        .reconstruction_error(X)
        for k in (1, 2, 3)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_rqvae_beats_one_level_kmeans_of_same_width() -> None:
    rng = np.random.default_rng(0)
    # 300 points near a 4-d linear subspace of R^16: 8 centroids cannot cover it, 8^3 codes can
    latent, mixing = rng.standard_normal((300, 4)), rng.standard_normal((4, 16))
    X = (latent @ mixing + 0.05 * rng.standard_normal((300, 16))).astype(np.float32)
    kmeans = RKMeans(n_levels=1, width=8, normalize_residuals=False, seed=0)
    kmeans_error = kmeans.fit(X).reconstruction_error(X)
    rqvae = RQVAE(
        n_levels=3,
        width=8,
        hidden_dims=(32,),
        latent_dim=4,
        epochs=100,
        batch_size=64,
        lr=3e-3,
        seed=0,
    ).fit(X)
    assert rqvae.reconstruction_error(X) < 0.6 * kmeans_error
    assert rqvae.history[-1]["reconstruction"] < rqvae.history[0]["reconstruction"]


def test_rvq_refines_its_kmeans_start(data: np.ndarray) -> None:
    start = ResidualVQ(n_levels=2, width=8, epochs=0, seed=0).fit(data).reconstruction_error(data)
    # Each level's loss moves only its own codes (online k-means of its residuals), so small
    # steps barely leave the converged k-means start; 3e-2 lets the levels re-balance.
    trained = ResidualVQ(n_levels=2, width=8, epochs=30, batch_size=32, lr=3e-2, seed=0).fit(data)
    assert trained.reconstruction_error(data) < start


def _two_level_books(residual_gradient: str = "stopped") -> tuple[ResidualCodebooks, torch.Tensor]:
    """Two random levels of 4 codes and a batch z that requires grad."""
    gen = torch.Generator().manual_seed(0)
    books = ResidualCodebooks(n_levels=2, width=4, dim=3, residual_gradient=residual_gradient)
    with torch.no_grad():
        books.codebooks.copy_(torch.randn(2, 4, 3, generator=gen))
    return books, torch.randn(16, 3, generator=gen).requires_grad_()


def _grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d input for each input, zeros where the input is not on loss's graph."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def test_commitment_of_a_level_does_not_push_earlier_codes() -> None:
    books, z = _two_level_books()
    out = books(z)
    grad_books, grad_z = _grads(out.commitment_loss, [books.codebooks, z])
    # level 1's commitment sees r_1 = z - e_0 as a constant: no push on level 0's codes ...
    assert torch.count_nonzero(grad_books) == 0
    # ... nor on z: only level 0's commitment ||z - sg(e_0)||^2 (mean over the batch) reaches it
    e0 = books.codebooks[0].index_select(0, out.codes[:, 0]).detach()
    torch.testing.assert_close(grad_z, 2 * (z - e0).detach() / z.shape[0])


def test_through_residuals_lets_a_later_commitment_pull_earlier_codes() -> None:
    books, z = _two_level_books("through")  # the literal reading of TIGER's loss, for ablation
    out = books(z)
    grad_books, grad_z = _grads(out.commitment_loss, [books.codebooks, z])
    # d/d e_0 of ||z - e_0 - sg(e_1)||^2: level 1's commitment now pulls level 0's chosen codes
    r1 = out.residuals[1].detach()
    e1 = books.codebooks[1].index_select(0, out.codes[:, 1]).detach()
    expected = torch.zeros(4, 3).index_add_(0, out.codes[:, 0], -2 * (r1 - e1) / z.shape[0])
    torch.testing.assert_close(grad_books[0], expected)
    assert torch.count_nonzero(grad_books[1]) == 0  # a commitment never moves its own level's codes
    e0 = books.codebooks[0].index_select(0, out.codes[:, 0]).detach()
    torch.testing.assert_close(grad_z, 2 * ((z - e0) + (r1 - e1)).detach() / z.shape[0])


def test_residual_gradient_names_what_it_accepts() -> None:
    with pytest.raises(ValueError, match="residual_gradient='detach'.*stopped"):
        ResidualCodebooks(n_levels=2, width=4, dim=3, residual_gradient="detach")
    with pytest.raises(ValueError, match="residual_gradient='none'"):
        make_tokenizer("rqvae", residual_gradient="none")


def test_codebook_loss_of_a_level_moves_only_its_own_codes() -> None:
    books, z = _two_level_books()
    out = books(z)
    level_1 = (out.residuals[1] - books.codebooks[1].index_select(0, out.codes[:, 1])).pow(2)
    (grad,) = _grads(level_1.sum(-1).mean(), [books.codebooks])
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[1]) > 0
    assert not out.residuals[1].requires_grad


def test_decoder_input_is_straight_through() -> None:
    books, z = _two_level_books()
    out = books(z)
    torch.testing.assert_close(out.straight_through, z + (out.quantized - z).detach())
    torch.testing.assert_close(out.straight_through, out.quantized)  # the value of z_q ...
    grad_books, grad_z = _grads(out.straight_through.sum(), [books.codebooks, z])
    assert torch.count_nonzero(grad_books) == 0  # ... and the gradient of z
    torch.testing.assert_close(grad_z, torch.ones_like(z))


def test_dead_codes_are_reseeded_from_batch_residuals() -> None:
    book = ResidualCodebooks(n_levels=2, width=3, dim=2)
    residuals = [torch.full((5, 2), 7.0), torch.full((5, 2), -7.0)]
    usage = torch.tensor([[1, 0, 2], [0, 0, 4]])
    n = book.reseed_dead_codes(usage, residuals, torch.Generator().manual_seed(0))
    assert n == 3
    assert torch.all(book.codebooks[0, 1] == 7.0) and torch.all(book.codebooks[0, [0, 2]] == 0.0)
    assert torch.all(book.codebooks[1, :2] == -7.0) and torch.all(book.codebooks[1, 2] == 0.0)


# ---------------------------------------------------------------------------- interface
@pytest.mark.parametrize("name", sorted(TINY))
def test_encode_decode_shapes_and_diagnostics(name: str, data: np.ndarray) -> None:
    tok = make_tokenizer(name, seed=0, **TINY[name])
    assert isinstance(tok, Tokenizer) and not tok.is_fitted
    tok.fit(data)
    assert tok.fit_seconds is not None and tok.fit_seconds >= 0
    codes = tok.encode(data)
    assert codes.shape == (len(data), tok.n_digits) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < tok.codebook_size
    X_hat = tok.decode(codes)
    assert X_hat.shape == data.shape and X_hat.dtype == np.float32
    error = tok.reconstruction_error(data)
    assert np.isfinite(error) and error >= 0
    usage = tok.code_usage(codes)
    assert len(usage) == tok.n_digits
    assert all(u.shape == (tok.codebook_size,) and u.sum() == len(data) for u in usage)
    ppl = tok.perplexity(codes)
    assert (
        ppl.shape == (tok.n_digits,)
        and np.all(ppl >= 1 - 1e-9)
        and np.all(ppl <= tok.codebook_size + 1e-9)
    )
    assert tok.codebook_sizes == [tok.codebook_size] * tok.n_digits


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_same_codes(name: str, data: np.ndarray) -> None:
    a = make_tokenizer(name, seed=3, **TINY[name]).fit_encode(data)
    b = make_tokenizer(name, seed=3, **TINY[name]).fit_encode(data)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(TINY))
def test_fit_on_training_rows_encodes_everything(name: str, data: np.ndarray) -> None:
    mask = np.arange(len(data)) < 64
    tok = make_tokenizer(name, seed=0, **TINY[name])
    codes = tok.fit_encode(data, train_rows=mask)
    assert codes.shape == (len(data), tok.n_digits)
    with pytest.raises(ValueError, match="boolean mask"):
        tok.fit(data, train_rows=mask[:10])


def test_pq_and_opq_digits() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 32)).astype(np.float32)
    for cls in (PQ, OPQ):
        tok = cls(m=8, nbits=8, seed=0) if cls is PQ else cls(m=8, nbits=8, opq_niter=2, seed=0)
        codes = tok.fit_encode(X)
        assert codes.shape == (300, 8) and codes.min() >= 0 and codes.max() < 256
        assert tok.codebook_size == 256 and tok.n_digits == 8


@pytest.mark.parametrize("nbits", [3, 5, 8])
def test_pq_codes_are_nearest_subspace_centroids(nbits: int) -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 12)).astype(np.float32)
    pq = PQ(m=4, nbits=nbits, seed=0).fit(X)
    codes = pq.encode(X)
    cents = pq.centroids  # (m, 2**nbits, d/m)
    sub = X.reshape(300, 4, 3)
    brute = np.stack(
        [((sub[:, j, None, :] - cents[j][None]) ** 2).sum(-1).argmin(1) for j in range(4)], 1
    )
    np.testing.assert_array_equal(codes, brute)
    np.testing.assert_allclose(
        pq.decode(codes), cents[np.arange(4), codes].reshape(300, 12), atol=1e-6
    )


def test_pack_unpack_roundtrip() -> None:
    rng = np.random.default_rng(0)
    for nbits, m in [(3, 5), (5, 4), (8, 6), (12, 3)]:
        codes = rng.integers(0, 2**nbits, size=(7, m))
        code_size = (m * nbits + 7) // 8
        np.testing.assert_array_equal(_unpack(_pack(codes, nbits, code_size), m, nbits), codes)


def test_opq_rotation_is_orthogonal() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 16)).astype(np.float32)
    R = OPQ(m=4, nbits=4, opq_niter=3, seed=0).fit(X).rotation
    np.testing.assert_allclose(R @ R.T, np.eye(16), atol=1e-4)


def test_pq_errors_say_what_to_do() -> None:
    X = np.random.default_rng(0).standard_normal((300, 30)).astype(np.float32)
    with pytest.raises(ValueError, match="divisible by m"):
        PQ(m=4).fit(X)
    with pytest.raises(ValueError, match="smaller nbits"):
        PQ(m=5, nbits=9).fit(X)
    with pytest.raises(ValueError, match="whiten=False"):
        PQ(m=3, nbits=3, whiten=True).fit(X[:20])  # 20 vectors cannot whiten 30 dimensions


def _anisotropic(n: int, seed: int = 0) -> np.ndarray:
    """n correlated 8-d vectors whose principal variances span two orders of magnitude, off-centre."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((8, 8)) * np.array([5, 3, 2, 1, 0.5, 0.3, 0.1, 0.05])[:, None]
    return (rng.standard_normal((n, 8)) @ mix + 1.0).astype(np.float32)


@pytest.mark.parametrize("cls", [PQ, OPQ])
def test_whitening_gives_the_quantizer_identity_covariance(cls: type) -> None:
    X = _anisotropic(200)
    train = np.arange(150)
    tok = cls(m=4, nbits=4, whiten=True, seed=0).fit(X, train_rows=train)
    whitened = tok.preprocess(X[train])  # what PQ (OPQ: its rotation) is trained on
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(8), atol=1e-4)
    np.testing.assert_array_equal(cls(m=4, nbits=4, seed=0).fit(X).preprocess(X), X)  # off: X itself


@pytest.mark.parametrize("cls", [PQ, OPQ])
def test_whitened_codes_decode_back_to_the_input_space(cls: type) -> None:
    # 64 vectors and 2**6 = 64 centroids per sub-space: every vector is its own centroid, so
    # decode(encode(X)) is X exactly when the whitening is undone correctly
    X = _anisotropic(64)
    tok = cls(m=4, nbits=6, whiten=True, seed=0).fit(X)
    np.testing.assert_allclose(tok.decode(tok.encode(X)), X, atol=1e-4)


def test_whitening_changes_the_codes() -> None:
    X = _anisotropic(300)
    plain = OPQ(m=4, nbits=4, opq_niter=3, seed=0).fit_encode(X)
    whitened = OPQ(m=4, nbits=4, opq_niter=3, seed=0, whiten=True).fit_encode(X)
    assert plain.shape == whitened.shape and not np.array_equal(plain, whitened)


def test_rkmeans_normalized_residuals_decode_approximately() -> None:
    X, _ = blobs()
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    tok = RKMeans(n_levels=3, width=4, normalize_residuals=True, seed=0).fit(X)
    assert tok.level_scales.shape == (3,) and tok.level_scales[0] == pytest.approx(1.0, abs=1e-5)
    # unit vectors in 4 tight blobs: the first level alone already explains most of them
    assert tok.reconstruction_error(X) < 0.1


def test_make_tokenizer_lists_names() -> None:
    assert set(TOKENIZERS) == {"rkmeans", "rvq", "rqvae", "pq", "opq"}
    assert isinstance(make_tokenizer("RK-Means", width=4), RKMeans)
    with pytest.raises(ValueError, match="rkmeans") as err:
        make_tokenizer("vqvae")
    assert all(name in str(err.value) for name in TOKENIZERS)


def test_input_checks(data: np.ndarray) -> None:
    tok = RKMeans(n_levels=1, width=4)
    with pytest.raises(RuntimeError, match="not fitted"):
        tok.encode(data)
    tok.fit(data)
    with pytest.raises(ValueError, match="dimension"):
        tok.encode(data[:, :8])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tok.decode(np.array([[4]]))
    bad = data.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RKMeans(width=4).fit(bad)


def test_perplexity_by_hand() -> None:
    codes = np.array([[0, 0], [1, 0], [0, 0], [1, 0]])
    np.testing.assert_allclose(codes_perplexity(codes), [2.0, 1.0])


def test_residual_kmeans_ignores_exactly_reconstructed_items() -> None:
    # 40 copies of one vector form a cluster of their own at level 1, so their residual is
    # exactly zero. Trained on, those zeros put a level-2 centroid at the origin, which is the
    # nearest centroid for most unit-norm residuals: level 2 collapses onto it.
    rng = np.random.default_rng(0)
    bulk = rng.normal(size=(400, 64)).astype(np.float32)
    X = np.vstack([bulk, np.repeat(10 * np.eye(64, dtype=np.float32)[:1], 40, axis=0)])
    books, _ = residual_kmeans(X, n_levels=2, width=8, seed=0, normalize=True)
    assert np.linalg.norm(books[1], axis=1).min() > 0.1
    codes = RKMeans(n_levels=2, width=8, seed=0).fit_encode(X)
    assert codes_perplexity(codes[:400])[1] > 6  # of 8: level 2 stays in use


def test_residual_codebooks_train_bit_reproducibly_with_two_cpu_threads(two_cpu_threads: None) -> None:
    # Many rows pick the same code; a gather whose backward sums repeated codes in thread
    # order made RQ-VAE training differ from run to run on a 2-core CPU.
    z = torch.randn(65536, 32, generator=torch.Generator().manual_seed(0))

    def train() -> torch.Tensor:
        torch.manual_seed(0)
        books = ResidualCodebooks(n_levels=3, width=16, dim=32)
        with torch.no_grad():
            books.codebooks.normal_()
        optimizer = torch.optim.Adam(books.parameters(), lr=1e-2)
        for _ in range(5):
            out = books(z)
            optimizer.zero_grad()
            (out.codebook_loss + out.quantized.pow(2).sum()).backward()
            optimizer.step()
        return books.codebooks.detach().clone()

    first, second, third = train(), train(), train()
    assert torch.equal(first, second) and torch.equal(first, third)


def test_rqvae_losses_are_the_tiger_loss_computed_by_hand() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8)).astype(np.float32)
    tok = RQVAE(n_levels=2, width=4, hidden_dims=(16,), latent_dim=4, epochs=2, batch_size=32, seed=0).fit(X)
    x = torch.from_numpy(X[:10])
    out, terms = tok.losses(x)
    z = tok.encoder(x)
    residual, quantized, codebook, commitment = z, torch.zeros_like(z), 0.0, 0.0
    for book in tok.quantizer.codebooks:
        e = book[torch.cdist(residual, book).argmin(1)]
        codebook = codebook + (residual.detach() - e).pow(2).sum(-1).mean()
        commitment = commitment + (residual - e.detach()).pow(2).sum(-1).mean()
        quantized, residual = quantized + e, (residual - e).detach()
    recon = (tok.decoder(z + (quantized - z).detach()) - x).pow(2).sum(-1).mean()
    torch.testing.assert_close(terms["codebook"], codebook)
    torch.testing.assert_close(terms["commitment"], commitment)
    torch.testing.assert_close(terms["reconstruction"], recon)
    torch.testing.assert_close(terms["loss"], recon + codebook + 0.25 * commitment)
    torch.testing.assert_close(terms["latent_norm"], z.pow(2).sum(-1).mean())
    assert len(tok.history) == 2 and "latent_norm" in tok.history[0]
