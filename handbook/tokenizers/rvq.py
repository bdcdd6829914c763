"""Residual VQ (GRID's "RVQ"): residual codebooks learned by gradient descent on the raw embeddings."""

from __future__ import annotations

from torch import nn

from .residual import ResidualTokenizer


class ResidualVQ(ResidualTokenizer):
    """RQ-VAE without encoder and decoder: the codebooks live in the embedding space itself.

    GRID (arXiv 2507.22224) describes RVQ as residual quantization trained with the
    straight-through estimator and a commitment loss, with no encoder/decoder. Here the
    codebooks start from residual k-means (`RKMeans` with `normalize_residuals=False`) and
    are then refined by Adam on the per-level losses ||sg(r_l) - e_l||^2 +
    beta * ||r_l - sg(e_l)||^2. As in GRID's code, a level's loss moves only its own
    codes: the residual r_l it sees carries no gradient to the earlier levels (GRID
    trains the levels one at a time and runs the earlier ones under no_grad; here all
    levels train together, each on the residuals the others leave). With no encoder the
    commitment term then has nothing to move, so training is online k-means of each
    level's residuals. With an identity decoder the straight-through reconstruction term
    has no gradient either, so it is only logged (`history[i]["reconstruction"]`).
    """

    name = "rvq"

    def __init__(
        self,
        n_levels: int = 3,
        width: int = 256,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 1e-3,
        beta: float = 0.25,
        reset_every: int | None = 50,
        kmeans_init_size: int | None = None,
        kmeans_niter: int = 20,
        device: str = "cpu",
        seed: int = 0,
        verbose: bool = False,
        residual_gradient: str = "stopped",
    ) -> None:
        super().__init__(
            n_levels=n_levels,
            width=width,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            beta=beta,
            reset_every=reset_every,
            kmeans_init_size=kmeans_init_size,
            kmeans_niter=kmeans_niter,
            device=device,
            seed=seed,
            verbose=verbose,
            residual_gradient=residual_gradient,
        )

    def _build(self, dim: int) -> tuple[nn.Module, nn.Module, int]:
        return nn.Identity(), nn.Identity(), dim

    @property
    def _has_autoencoder(self) -> bool:
        return False
