"""RQ-VAE (TIGER): an MLP autoencoder whose 32-d latent is quantized by residual codebooks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .residual import ResidualTokenizer, mlp


class RQVAE(ResidualTokenizer):
    """TIGER's RQ-VAE: encoder D -> 512 -> 256 -> 128 -> 32, 3 residual codebooks, mirrored decoder.

    Loss (TIGER Sec. 3.1): ||x - decoder(z_q)||^2 + sum_l ||sg(r_l) - e_l||^2 +
    beta * ||r_l - sg(e_l)||^2 with beta = 0.25, on the reference codes' gradient path
    (straight-through, no gradient through r_{l+1}: see `residual`; `residual_gradient="through"`
    lets it through, which made no measurable difference to TIGER at reading size over 3 seeds,
    chapter 11); codebooks initialised by k-means
    (on `kmeans_init_size` random items, all by default, rather than TIGER's first
    batch), and unused codes re-seeded from batch residuals every `reset_every` steps
    against codebook collapse, as reference implementations do. TIGER trains with
    Adagrad (lr 0.4, batch 1024) for 20k epochs on Amazon; the defaults here (Adam,
    lr 1e-3, batch 256, 300 epochs) train in about a minute on a laptop CPU for
    MovieLens-100K's ~1.7k items. `reconstruction_error` is measured in the input space.
    `device` defaults to "cpu": the model is small and CPU runs are reproducible.
    """

    name = "rqvae"

    def __init__(
        self,
        n_levels: int = 3,
        width: int = 256,
        hidden_dims: Sequence[int] = (512, 256, 128),
        latent_dim: int = 32,
        epochs: int = 300,
        batch_size: int = 256,
        lr: float = 1e-3,
        beta: float = 0.25,
        reset_every: int | None = 100,
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
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.latent_dim = int(latent_dim)

    def _build(self, dim: int) -> tuple[nn.Module, nn.Module, int]:
        encoder = mlp([dim, *self.hidden_dims, self.latent_dim])
        decoder = mlp([self.latent_dim, *reversed(self.hidden_dims), dim])
        return encoder, decoder, self.latent_dim
