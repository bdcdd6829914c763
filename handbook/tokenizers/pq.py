"""Product quantization (PQ) and optimized PQ (OPQ): long, unordered semantic IDs for RPG and ACERec.

PQ cuts the vector into m equal sub-vectors and runs k-means (2**nbits centroids) in
each; an item's SID is its m sub-codes. Unlike residual codes, no digit is coarser
than another, so the digits can be predicted in parallel. OPQ first learns a rotation
that balances information across the sub-vectors. Both are faiss
(`faiss.ProductQuantizer`, `faiss.OPQMatrix`).

RPG's reference code (facebookresearch/RPG_KDD2025, `RPGTokenizer`) builds
`faiss.index_factory(d, "OPQ{m},IVF1,PQ{m}x{nbits}", METRIC_INNER_PRODUCT)`, trains
it on training-split items only and reads the PQ codes back from the single
inverted list. With one coarse centroid that is OPQ + PQ of x minus the data mean;
here the PQ is applied directly (k-means per sub-space is translation-equivariant,
so the codes are the same partition up to k-means' randomness), which keeps the
faiss calls readable. RPG uses m in {16, 32, 64} with nbits = 8.

Before OPQ the reference whitens the sentence embeddings: `PCA(n_components=512,
whiten=True)` from scikit-learn (`sent_emb_pca: 512` for its 3072-d
text-embedding-3-large; 128 for sentence-T5), so every principal direction enters the
quantizer with unit variance and the sub-space k-means spend their codes on all of them
rather than on the few largest. `whiten=True` does that here, at the input's full
dimension (a 384-d encoder has no 512 components to keep, and fewer would drop
information PQ could use), fitted on the tokenizer's training rows (the reference fits
it on every item's embedding). The plain PQ/OPQ default stays unwhitened; the RPG and
ACERec experiment configs turn it on, as the reference does. At notebook 08's reading size,
each model trained to its validation plateau, whitening at full dimension made no measurable
difference over three seeds on validation (notebook 11, section 6: RPG's pooled interval excludes
0, but one seed of three disagrees), so notebook 08 keeps its unwhitened default; the
reference's PCA also drops dimensions, which this one cannot.
"""

from __future__ import annotations

import faiss
import numpy as np
from sklearn.decomposition import PCA

from .base import Tokenizer


class PQ(Tokenizer):
    """Product quantization: m digits, each one of 2**nbits sub-space centroids.

    `whiten=True` PCA-whitens the input first (fitted on the training rows), as RPG's
    tokenizer does before OPQ; encode and decode map through it, so decode returns
    vectors in the input space.
    """

    name = "pq"

    def __init__(
        self, m: int = 32, nbits: int = 8, niter: int = 25, seed: int = 0, whiten: bool = False
    ) -> None:
        if m < 1:
            raise ValueError(f"m (number of digits) must be >= 1, got {m}")
        if not 1 <= nbits <= 16:
            raise ValueError(f"nbits must be in [1, 16] (2 to 65536 codes per digit), got {nbits}")
        self.m = int(m)
        self.nbits = int(nbits)
        self.niter = int(niter)
        self.seed = int(seed)
        self.whiten = bool(whiten)
        self.n_digits = self.m
        self.codebook_size = 2**self.nbits
        self.pq: faiss.ProductQuantizer | None = None
        self.pca: PCA | None = None  # the whitening, when whiten=True

    # -- the part OPQ overrides: map vectors into / out of the PQ space ---------------------
    def _train_transform(self, X: np.ndarray) -> np.ndarray:
        return X

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return X

    def _backward(self, X: np.ndarray) -> np.ndarray:
        return X

    # ---------------------------------------------------------------------------------------
    def _make_pq(self, d: int) -> faiss.ProductQuantizer:
        pq = faiss.ProductQuantizer(d, self.m, self.nbits)
        pq.cp.niter = self.niter
        pq.cp.seed = self.seed
        # silence faiss's "provide at least 39 * k points" warning: small catalogues are normal here
        pq.cp.min_points_per_centroid = 1
        return pq

    def _check_shape(self, X: np.ndarray) -> None:
        n, d = X.shape
        if d % self.m != 0:
            divisors = [k for k in (4, 8, 16, 32, 64, 128) if d % k == 0]
            raise ValueError(
                f"PQ needs the dimension ({d}) to be divisible by m ({self.m}); "
                f"choose m from {divisors} or reduce/pad the embeddings"
            )
        if self.whiten and n < d:
            raise ValueError(
                f"whitening at full dimension needs at least as many training vectors as "
                f"dimensions ({d}), got {n}; use whiten=False or more items"
            )
        if n < self.codebook_size:
            raise ValueError(
                f"PQ with nbits={self.nbits} needs at least {self.codebook_size} training vectors "
                f"(one per centroid), got {n}; use a smaller nbits (e.g. nbits={max(1, int(np.log2(n)))})"
            )

    def _fit(self, X: np.ndarray) -> None:
        self._check_shape(X)
        self.pca = None
        if self.whiten:
            # full-rank PCA: a rotation onto the principal axes and a rescaling to unit variance
            self.pca = PCA(n_components=X.shape[1], whiten=True, svd_solver="full").fit(X)
        Xt = self._train_transform(self.preprocess(X))
        self.pq = self._make_pq(Xt.shape[1])
        self.pq.train(np.ascontiguousarray(Xt, dtype=np.float32))

    def preprocess(self, X: np.ndarray) -> np.ndarray:
        """X as the quantizer (OPQ: its rotation) receives it: PCA-whitened if whiten=True, else X."""
        if self.pca is None:
            return X
        return np.ascontiguousarray(self.pca.transform(X), dtype=np.float32)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes (n, m) int64 in [0, 2**nbits)."""
        X = self._check_input(X)
        Xt = self._forward(self.preprocess(X))
        packed = self.pq.compute_codes(np.ascontiguousarray(Xt, dtype=np.float32))
        return _unpack(packed, self.m, self.nbits)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Concatenated sub-space centroids, rotated back (OPQ) and un-whitened, (n, d) float32."""
        self._check_fitted()
        codes = self._check_codes(codes)
        X = self._backward(self.pq.decode(_pack(codes, self.nbits, self.pq.code_size)))
        if self.pca is not None:
            X = self.pca.inverse_transform(X)
        return np.ascontiguousarray(X, dtype=np.float32)

    @property
    def centroids(self) -> np.ndarray:
        """Sub-space centroids (m, 2**nbits, d / m), in the PQ space (whitened, rotated for OPQ)."""
        self._check_fitted()
        return faiss.vector_to_array(self.pq.centroids).reshape(self.m, self.codebook_size, -1)


class OPQ(PQ):
    """PQ after a learned rotation (faiss.OPQMatrix) that spreads variance evenly across sub-vectors.

    `opq_niter` alternations of (train PQ, solve for the rotation) — faiss's default
    50, which RPG's index factory string uses. It is the slowest tokenizer here:
    about 10-25 s for 1.7k x 384 vectors with m = 16-32 on two CPU cores. faiss starts
    from a random rotation with its own fixed seed; `seed` drives the PQ k-means.
    """

    name = "opq"

    def __init__(
        self,
        m: int = 32,
        nbits: int = 8,
        niter: int = 25,
        opq_niter: int = 50,
        seed: int = 0,
        whiten: bool = False,
    ) -> None:
        super().__init__(m=m, nbits=nbits, niter=niter, seed=seed, whiten=whiten)
        self.opq_niter = int(opq_niter)
        self.opq: faiss.OPQMatrix | None = None

    def _train_transform(self, X: np.ndarray) -> np.ndarray:
        d = X.shape[1]
        opq = faiss.OPQMatrix(d, self.m)
        opq.niter = self.opq_niter
        # OPQMatrix alternates rotation and PQ training; give it a PQ with our nbits and seed
        # (its own default is 8 bits, which fails on fewer than 256 points)
        self._opq_pq = self._make_pq(d)
        opq.pq = self._opq_pq
        opq.train(np.ascontiguousarray(X, dtype=np.float32))
        self.opq = opq
        return self.opq.apply(np.ascontiguousarray(X, dtype=np.float32))

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return self.opq.apply(np.ascontiguousarray(X, dtype=np.float32))

    def _backward(self, X: np.ndarray) -> np.ndarray:
        return self.opq.reverse_transform(np.ascontiguousarray(X, dtype=np.float32))

    @property
    def rotation(self) -> np.ndarray:
        """The learned orthogonal matrix (d, d): PQ space = preprocess(X) @ rotation.T."""
        self._check_fitted()
        return faiss.vector_to_array(self.opq.A).reshape(self.opq.d_out, self.opq.d_in)


def _unpack(packed: np.ndarray, m: int, nbits: int) -> np.ndarray:
    """faiss packs codes little-endian bit by bit (BitstringWriter); unpack to (n, m) int64."""
    if nbits == 8:
        return packed[:, :m].astype(np.int64)
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : m * nbits]
    bits = bits.reshape(packed.shape[0], m, nbits).astype(np.int64)
    return bits @ (np.int64(1) << np.arange(nbits, dtype=np.int64))


def _pack(codes: np.ndarray, nbits: int, code_size: int) -> np.ndarray:
    """Inverse of `_unpack`: (n, m) codes -> (n, code_size) uint8 faiss codes."""
    n, m = codes.shape
    if nbits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    bits = ((codes[:, :, None] >> np.arange(nbits)) & 1).astype(np.uint8).reshape(n, m * nbits)
    pad = code_size * 8 - m * nbits
    if pad:
        bits = np.concatenate([bits, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(np.packbits(bits, axis=1, bitorder="little"))
