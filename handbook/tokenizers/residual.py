"""Residual vector quantization learned by gradient descent: the part RVQ and RQ-VAE share.

`ResidualCodebooks` holds n_levels codebooks of W codes and quantizes a latent z
residually, level by level (TIGER, Sec. 3.1):

    r_0 = z,   c_l = argmin_k ||r_l - e_{l,k}||,   r_{l+1} = r_l - e_{l,c_l},   z_q = sum_l e_{l,c_l}

with, per level, the VQ-VAE losses ||sg(r_l) - e_{l,c_l}||^2 (moves the code) and
beta * ||r_l - sg(e_{l,c_l})||^2 (commitment: moves what produced r_l). The gradient path
is the reference codes' (snap-research/GRID's `STEQuantization` inside
`ResidualQuantization`, EdoardoBotta/RQ-VAE-Recommender's `Quantize` in STE mode): each
level hands on r_{l+1} = r_l - STE(e_l), whose gradient is zero, so r_{l+1} is a constant
to autograd. The commitment term of level l therefore never pushes the codes of earlier
levels, and only level 0's commitment reaches the encoder. The decoder sees
z + sg(z_q - z): the value of z_q with the gradient of z (the straight-through estimator).

TIGER's paper writes the loss without saying where gradients stop. Read literally,
r_{l+1} = r_l - e_l keeps its gradient, so level l's commitment also pulls the codes of
levels < l and reaches the encoder through every level. `residual_gradient="through"`
keeps that path, for measuring the difference (notebook 06's `rqvae-through-residuals`
arm, chapter 11); the default `"stopped"` is the references'.

`ResidualTokenizer` is the fit / encode / decode shell around an encoder, the
codebooks and a decoder, trained with Adam on minibatches, codebooks initialised by
k-means, and unused codes re-seeded from batch residuals every `reset_every` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from .base import Tokenizer
from .kmeans import residual_kmeans


@dataclass
class ResidualOutput:
    """What one residual quantization pass returns."""

    codes: torch.Tensor  # (B, L) int64
    quantized: torch.Tensor  # (B, D) sum of the chosen codes, differentiable w.r.t. the codebooks
    straight_through: torch.Tensor  # (B, D) z + sg(quantized - z): the decoder's input
    residuals: list[torch.Tensor]  # L tensors (B, D): the residual each level quantized
    codebook_loss: torch.Tensor  # sum over levels of ||sg(r_l) - e_l||^2, mean over the batch
    commitment_loss: torch.Tensor  # sum over levels of ||r_l - sg(e_l)||^2, mean over the batch


RESIDUAL_GRADIENTS = ("stopped", "through")


class ResidualCodebooks(nn.Module):
    """n_levels codebooks of `width` codes in `dim` dimensions, applied residually.

    `residual_gradient`: "stopped" (the references': r_{l+1} carries no gradient) or
    "through" (the literal reading of TIGER's loss: it does).
    """

    def __init__(self, n_levels: int, width: int, dim: int, residual_gradient: str = "stopped") -> None:
        super().__init__()
        if residual_gradient not in RESIDUAL_GRADIENTS:
            raise ValueError(f"residual_gradient={residual_gradient!r}: use one of {RESIDUAL_GRADIENTS}")
        self.residual_gradient = residual_gradient
        self.codebooks = nn.Parameter(torch.zeros(n_levels, width, dim))  # (L, W, D)

    @property
    def n_levels(self) -> int:
        return self.codebooks.shape[0]

    @property
    def width(self) -> int:
        return self.codebooks.shape[1]

    def forward(self, z: torch.Tensor) -> ResidualOutput:
        """Quantize z (B, D) level by level."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        codebook_loss = z.new_zeros(())
        commitment_loss = z.new_zeros(())
        for level in range(self.n_levels):
            book = self.codebooks[level]  # (W, D)
            with torch.no_grad():
                idx = torch.cdist(residual, book).argmin(dim=1)  # (B,)
            code = book.index_select(0, idx)  # (B, D); not book[idx], whose backward sums in thread order
            codebook_loss = codebook_loss + (residual.detach() - code).pow(2).sum(-1).mean()
            commitment_loss = commitment_loss + (residual - code.detach()).pow(2).sum(-1).mean()
            codes.append(idx)
            residuals.append(residual)
            quantized = quantized + code
            # The references pass on r_l - STE(e_l) = r_l - (r_l + sg(e_l - r_l)): the value
            # r_l - e_l with no gradient, so level l+1's commitment cannot move e_l or earlier codes.
            residual = residual - code
            if self.residual_gradient == "stopped":
                residual = residual.detach()
        straight_through = z + (quantized - z).detach()
        return ResidualOutput(
            torch.stack(codes, dim=1),
            quantized,
            straight_through,
            residuals,
            codebook_loss,
            commitment_loss,
        )

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the codes (B, L) -> (B, D)."""
        levels = torch.arange(self.n_levels, device=codes.device)
        return self.codebooks[levels, codes].sum(dim=1)

    @torch.no_grad()
    def init_kmeans(self, z: torch.Tensor, niter: int, seed: int) -> None:
        """Residual k-means on z (N, D): level l's codes are the centroids of the level-l residuals."""
        books, _ = residual_kmeans(z.detach().cpu().numpy(), self.n_levels, self.width, niter, seed)
        self.codebooks.data.copy_(torch.from_numpy(books))

    @torch.no_grad()
    def reseed_dead_codes(
        self, usage: torch.Tensor, residuals: list[torch.Tensor], generator: torch.Generator
    ) -> int:
        """Move every code unused since the last check (usage (L, W) == 0) onto a random batch residual."""
        n_reseeded = 0
        for level in range(self.n_levels):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if dead.numel() == 0:
                continue
            pool = residuals[level].detach()
            rows = torch.randint(0, pool.shape[0], (dead.numel(),), generator=generator)
            self.codebooks.data[level, dead.to(self.codebooks.device)] = pool[rows.to(pool.device)]
            n_reseeded += int(dead.numel())
        return n_reseeded


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResidualTokenizer(Tokenizer):
    """Shared training loop of RVQ and RQ-VAE; subclasses say how to build encoder and decoder."""

    def __init__(
        self,
        n_levels: int,
        width: int,
        epochs: int,
        batch_size: int,
        lr: float,
        beta: float,
        reset_every: int | None,
        kmeans_init_size: int | None,
        kmeans_niter: int,
        device: str,
        seed: int,
        verbose: bool,
        residual_gradient: str = "stopped",
    ) -> None:
        if residual_gradient not in RESIDUAL_GRADIENTS:
            raise ValueError(f"residual_gradient={residual_gradient!r}: use one of {RESIDUAL_GRADIENTS}")
        if n_levels < 1 or width < 1:
            raise ValueError(f"n_levels and width must be >= 1, got {n_levels} and {width}")
        if epochs < 0 or batch_size < 1:
            raise ValueError(
                f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}"
            )
        self.n_levels = int(n_levels)
        self.width = int(width)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.beta = float(beta)
        self.reset_every = reset_every
        self.kmeans_init_size = kmeans_init_size
        self.kmeans_niter = int(kmeans_niter)
        self.device = device
        self.seed = int(seed)
        self.verbose = verbose
        self.residual_gradient = residual_gradient
        self.n_digits = self.n_levels
        self.codebook_size = self.width
        self.encoder: nn.Module | None = None
        self.decoder: nn.Module | None = None
        self.quantizer: ResidualCodebooks | None = None
        #: per epoch: mean total, reconstruction, codebook and commitment losses, and mean ||z||^2
        self.history: list[dict[str, float]] = []
        #: how many codes the dead-code remedy moved during training
        self.n_reseeded: int = 0

    # subclasses -------------------------------------------------------------
    def _build(self, dim: int) -> tuple[nn.Module, nn.Module, int]:
        """Return (encoder, decoder, latent dimension) for input dimension `dim`."""
        raise NotImplementedError

    @property
    def _has_autoencoder(self) -> bool:
        """Whether encoder/decoder are learned, so that a reconstruction loss carries gradient."""
        return True

    # training ---------------------------------------------------------------
    def losses(
        self,
        x: torch.Tensor,
        encoder: nn.Module | None = None,
        quantizer: ResidualCodebooks | None = None,
        decoder: nn.Module | None = None,
    ) -> tuple[ResidualOutput, dict[str, torch.Tensor]]:
        """One training forward on a batch x (B, dim): the quantizer's output and the loss terms.

        loss = ||x - decoder(z + sg(z_q - z))||^2 + codebook + beta * commitment, each a batch
        mean; the fitted modules are used unless others are given (as during `fit`).
        """
        encoder = self.encoder if encoder is None else encoder
        quantizer = self.quantizer if quantizer is None else quantizer
        decoder = self.decoder if decoder is None else decoder
        z = encoder(x)  # (B, latent)
        out = quantizer(z)
        loss = out.codebook_loss + self.beta * out.commitment_loss
        if self._has_autoencoder:
            recon = (decoder(out.straight_through) - x).pow(2).sum(-1).mean()
            loss = loss + recon
        else:  # identity encoder/decoder: the reconstruction term has no gradient
            recon = (out.quantized.detach() - x).pow(2).sum(-1).mean()
        terms = {
            "loss": loss,
            "reconstruction": recon,
            "codebook": out.codebook_loss,
            "commitment": out.commitment_loss,
            "latent_norm": z.detach().pow(2).sum(-1).mean(),
        }
        return out, terms

    def _fit(self, X: np.ndarray) -> None:
        from tqdm.auto import tqdm

        device = resolve_device(self.device)
        n, dim = X.shape
        generator = torch.Generator().manual_seed(self.seed)  # shuffles and re-seeds, always on CPU
        with torch.random.fork_rng(devices=[]):  # seeded weight init without touching global state
            torch.manual_seed(self.seed)
            encoder, decoder, latent = self._build(dim)
        quantizer = ResidualCodebooks(self.n_levels, self.width, latent, self.residual_gradient)
        encoder, decoder, quantizer = encoder.to(device), decoder.to(device), quantizer.to(device)
        X_all = torch.from_numpy(X).to(device)

        # TIGER initialises the codebooks by k-means on the first batch. A batch of a few
        # hundred items would make nearly every item its own centroid with W = 256, so
        # the "first batch" here is `kmeans_init_size` random items (all by default).
        order = torch.randperm(n, generator=generator)
        init_rows = order[: self.kmeans_init_size] if self.kmeans_init_size else order
        with torch.no_grad():
            quantizer.init_kmeans(
                encoder(X_all[init_rows.to(device)]), self.kmeans_niter, self.seed
            )

        params = (
            list(encoder.parameters()) + list(decoder.parameters()) + list(quantizer.parameters())
        )
        optimizer = torch.optim.Adam(params, lr=self.lr)
        usage = torch.zeros(self.n_levels, self.width, dtype=torch.long, device=device)
        self.history, self.n_reseeded, step = [], 0, 0
        for _epoch in tqdm(range(self.epochs), desc=f"{self.name} fit", disable=not self.verbose):
            encoder.train(), decoder.train()
            sums = {"loss": 0.0, "reconstruction": 0.0, "codebook": 0.0, "commitment": 0.0, "latent_norm": 0.0}
            perm = torch.randperm(n, generator=generator).to(device)
            n_batches = 0
            for start in range(0, n, self.batch_size):
                x = X_all[perm[start : start + self.batch_size]]  # (B, dim)
                out, losses = self.losses(x, encoder, quantizer, decoder)
                loss, recon = losses["loss"], losses["reconstruction"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

                for level in range(self.n_levels):
                    usage[level] += torch.bincount(out.codes[:, level], minlength=self.width)
                step += 1
                if self.reset_every and step % self.reset_every == 0:
                    self.n_reseeded += quantizer.reseed_dead_codes(
                        usage.cpu(), out.residuals, generator
                    )
                    usage.zero_()
                sums["loss"] += loss.item()
                sums["reconstruction"] += recon.item()
                sums["codebook"] += out.codebook_loss.item()
                sums["commitment"] += out.commitment_loss.item()
                sums["latent_norm"] += losses["latent_norm"].item()
                n_batches += 1
            self.history.append({k: v / max(n_batches, 1) for k, v in sums.items()})

        self.encoder, self.decoder, self.quantizer = (
            encoder.eval(),
            decoder.eval(),
            quantizer.eval(),
        )

    # inference --------------------------------------------------------------
    @torch.no_grad()
    def encode(self, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Codes (n, n_levels) of the vectors X."""
        X = self._check_input(X)
        device = self.quantizer.codebooks.device
        out = []
        for start in range(0, X.shape[0], batch_size):
            x = torch.from_numpy(X[start : start + batch_size]).to(device)
            out.append(self.quantizer(self.encoder(x)).codes.cpu())
        if not out:
            return np.zeros((0, self.n_levels), dtype=np.int64)
        return torch.cat(out).numpy().astype(np.int64)

    @torch.no_grad()
    def decode(self, codes: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Decoder output (n, d) for the sum of the chosen codes."""
        self._check_fitted()
        codes = self._check_codes(codes)
        device = self.quantizer.codebooks.device
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, codes.shape[0], batch_size):
            c = torch.from_numpy(codes[start : start + batch_size]).to(device)
            out.append(self.decoder(self.quantizer.lookup(c)).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
