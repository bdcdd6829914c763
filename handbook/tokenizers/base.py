"""The one interface every semantic-ID tokenizer follows.

A tokenizer turns item vectors (n, d) into discrete codes (n, n_digits), each digit
in [0, codebook_size), and maps codes back to approximate vectors. Subclasses
implement `_fit`, `encode` and `decode`; the shared diagnostics (reconstruction
error, code usage, perplexity) and the fit timer live here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class Tokenizer(ABC):
    """Abstract base of all quantizers: fit on vectors, encode to codes, decode back."""

    name: ClassVar[str] = "tokenizer"

    #: number of code digits per item
    n_digits: int
    #: number of codes per digit (the same for every digit)
    codebook_size: int
    #: seconds the last `fit` took (wall clock), None before fitting
    fit_seconds: float | None = None
    #: input dimension seen by `fit`, None before fitting
    dim: int | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, train_rows: np.ndarray | None = None) -> Tokenizer:
        """Learn the codebooks on X (or on X[train_rows] only) and return self.

        `train_rows` (integer indices or a boolean mask) lets the codebooks be fitted
        on training-split items only, as RPG does, while `encode` later covers every item.
        """
        X = self._check_input(X, fitting=True)
        if train_rows is not None:
            rows = np.asarray(train_rows)
            if rows.dtype == bool and rows.shape != (X.shape[0],):
                raise ValueError(
                    f"train_rows is a boolean mask of shape {rows.shape}; it must have shape ({X.shape[0]},)"
                )
            X = X[rows]
            if X.shape[0] == 0:
                raise ValueError("train_rows selects no rows; give at least one training item")
        start = time.perf_counter()
        self._fit(X)
        self.fit_seconds = time.perf_counter() - start
        self.dim = X.shape[1]
        return self

    def fit_encode(self, X: np.ndarray, train_rows: np.ndarray | None = None) -> np.ndarray:
        """Fit on X (or X[train_rows]) and return the codes of every row of X."""
        return self.fit(X, train_rows=train_rows).encode(X)

    @abstractmethod
    def _fit(self, X: np.ndarray) -> None:
        """Learn the codebooks from float32 training vectors (n, d)."""

    @abstractmethod
    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes (n, n_digits) int64 of the vectors X (n, d)."""

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructed vectors (n, d) float32 of the codes (n, n_digits)."""

    # ------------------------------------------------------------- diagnostics
    @property
    def codebook_sizes(self) -> list[int]:
        """Number of codes of each digit, the form `SemanticIDs.from_codes` takes."""
        return [int(self.codebook_size)] * int(self.n_digits)

    @property
    def is_fitted(self) -> bool:
        """Whether `fit` has run."""
        return self.dim is not None

    def reconstruction_error(self, X: np.ndarray) -> float:
        """Mean over items of the squared error ||x - decode(encode(x))||^2, in the input space."""
        X = self._check_input(X)
        X_hat = self.decode(self.encode(X))
        return float(np.mean(np.sum((X.astype(np.float64) - X_hat) ** 2, axis=1)))

    def code_usage(self, codes: np.ndarray) -> list[np.ndarray]:
        """Per digit, how many items use each code: a list of n_digits arrays of length codebook_size."""
        codes = self._check_codes(codes)
        return [
            np.bincount(codes[:, j], minlength=self.codebook_size) for j in range(self.n_digits)
        ]

    def perplexity(self, codes: np.ndarray) -> np.ndarray:
        """Per digit, exp(entropy) of the code distribution: 1 = one code used, codebook_size = uniform."""
        return codes_perplexity(self._check_codes(codes))

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(n_digits={self.n_digits}, codebook_size={self.codebook_size}, {state})"

    # ------------------------------------------------------------------ checks
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call .fit(X) first")

    def _check_input(self, X: np.ndarray, fitting: bool = False) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D array of item vectors (n, d), got shape {X.shape}")
        if not fitting:
            self._check_fitted()
            if X.shape[1] != self.dim:
                raise ValueError(
                    f"the tokenizer was fitted on dimension {self.dim}, got vectors of dimension {X.shape[1]}"
                )
        if not np.all(np.isfinite(X)):
            raise ValueError("item vectors contain NaN or inf; clean the embeddings first")
        return np.ascontiguousarray(X, dtype=np.float32)

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.n_digits:
            raise ValueError(f"expected codes of shape (n, {self.n_digits}), got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]"
            )
        return codes.astype(np.int64, copy=False)


def codes_perplexity(codes: np.ndarray) -> np.ndarray:
    """exp(entropy) of each column's code distribution (natural log), shape (n_digits,)."""
    codes = np.asarray(codes)
    out = np.empty(codes.shape[1], dtype=np.float64)
    for j in range(codes.shape[1]):
        _, counts = np.unique(codes[:, j], return_counts=True)
        p = counts / counts.sum()
        out[j] = np.exp(-np.sum(p * np.log(p)))
    return out
