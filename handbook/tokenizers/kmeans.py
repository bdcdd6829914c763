"""Seeded faiss k-means, shared by RK-Means and by the k-means initialisation of RVQ / RQ-VAE."""

from __future__ import annotations

import faiss
import numpy as np


def kmeans(
    X: np.ndarray, k: int, niter: int = 20, seed: int = 0, init: str = "kmeans++"
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster X (n, d) into k groups with faiss; return centroids (k, d) float32 and labels (n,) int64.

    `init="kmeans++"` (GRID's initialiser) seeds faiss's Lloyd iterations with
    k-means++ centroids; `"random"` is faiss's own init (k random points), faster but
    it may leave two centroids in one well-separated cluster.

    faiss refuses fewer points than clusters; then every point becomes a centroid and
    the remaining centroids are copies of random points (they stay unused until a
    dead-code remedy or more data moves them). faiss's "please provide at least
    39 * k points" warning is silenced (`min_points_per_centroid=1`): small catalogues
    are normal in this handbook and the warning says nothing actionable.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    if n < k:
        extra = rng.integers(0, n, size=k - n)
        centroids = np.concatenate([X, X[extra]], axis=0)
        return centroids, np.arange(n, dtype=np.int64)
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=int(seed),
        verbose=False,
        min_points_per_centroid=1,
        # faiss subsamples above max_points_per_centroid * k points; keep all of them
        max_points_per_centroid=max(256, (n + k - 1) // k),
    )
    if init == "kmeans++":
        km.train(X, init_centroids=kmeans_plus_plus(X, k, rng))
    elif init == "random":
        km.train(X)
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    labels = assign(X, centroids)
    return centroids, labels


def kmeans_plus_plus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centroid is a point drawn with probability ~ squared distance to the chosen ones."""
    n = X.shape[0]
    chosen = [int(rng.integers(n))]
    d2 = np.sum((X - X[chosen[0]]) ** 2, axis=1, dtype=np.float64)
    for _ in range(1, k):
        total = d2.sum()
        nxt = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        chosen.append(nxt)
        d2 = np.minimum(d2, np.sum((X - X[nxt]) ** 2, axis=1, dtype=np.float64))
    return np.ascontiguousarray(X[chosen], dtype=np.float32)


def assign(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (n,) int64 of the nearest centroid (squared L2) of every row of X, exact (faiss flat index)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64)


def residual_kmeans(
    X: np.ndarray,
    n_levels: int,
    width: int,
    niter: int = 20,
    seed: int = 0,
    init: str = "kmeans++",
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Level l clusters what levels < l left over; returns codebooks (L, W, d) and mean input norms (L,).

    With `normalize`, each level's residual is L2-normalised first (GRID). Items already
    reconstructed exactly (singleton clusters) have a zero residual; left in, they pull a
    centroid to the origin, and a centroid at the origin is the nearest one for every
    small or unit-norm residual, so the level collapses onto it. They say nothing about the
    next level, so it is trained on the others.
    """
    residual = np.ascontiguousarray(X, dtype=np.float32).copy()
    codebooks, scales = [], []
    for level in range(n_levels):
        norms = np.linalg.norm(residual, axis=1)
        if normalize:
            residual = residual / np.maximum(norms, 1e-12)[:, None]
        scales.append(float(norms.mean()) if normalize else 1.0)
        informative = norms > 1e-6
        train = residual[informative] if informative.sum() >= width else residual
        # a different seed per level, so that levels do not share their random init
        centroids, _ = kmeans(train, width, niter=niter, seed=seed + level, init=init)
        codebooks.append(centroids)
        residual = residual - centroids[assign(residual, centroids)]
    return np.stack(codebooks), np.asarray(scales, dtype=np.float32)
