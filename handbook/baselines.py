"""The learned baselines that notebooks 05-08 put beside their model, trained one way.

Every comparison table in the handbook carries SASRec and a small TIGER next to the model
it teaches; defining them once keeps those tables comparable across notebooks. These are
the reading-size baselines; the paper-size ones are in `handbook.experiment`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from handbook.data import training_samples
from handbook.decoding.beam import evaluate_generative
from handbook.models import TIGER, SASRec
from handbook.sid import SemanticIDs
from handbook.tokenizers import make_tokenizer
from handbook.train import TrainResult, fit

Validate = Callable[[torch.nn.Module], dict[str, float]]


def train_sasrec(
    train_sequences: Sequence[np.ndarray],
    n_items: int,
    validate: Validate,
    *,
    max_len: int,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str | torch.device = "auto",
    hidden: int = 64,
    n_layers: int = 2,
    n_heads: int = 2,
    dropout: float = 0.2,
    lr: float = 1e-3,
    patience: int = 5,
) -> tuple[SASRec, TrainResult]:
    """SASRec with full-softmax cross-entropy; early stopping on `validate`, best epoch kept."""
    torch.manual_seed(seed)
    model = SASRec(n_items, max_len=max_len, hidden=hidden, n_layers=n_layers, n_heads=n_heads, dropout=dropout)

    def batches(epoch: int):
        return SASRec.make_batches(train_sequences, max_len, batch_size, seed=seed + epoch)

    run = fit(
        model, batches, validate, epochs=epochs, lr=lr, patience=patience, device=device, seed=seed,
        show_progress=False,
    )  # fmt: skip
    return model, run


def train_small_tiger(
    embeddings: np.ndarray,
    train_sequences: Sequence[np.ndarray],
    valid_histories: np.ndarray,
    valid_targets: np.ndarray,
    *,
    max_items: int,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str | torch.device = "auto",
    width: int = 64,
    beam_size: int = 10,
    output: str = "full_vocab",
    positions: str = "absolute",
    patience: int | None = None,
    tokenizer: str = "rkmeans",
) -> tuple[TIGER, TrainResult]:
    """Notebook 06's TIGER baseline: 3 x `width` IDs from `tokenizer` (RK-Means, GRID's choice; the reading
    configuration of `handbook.reading` takes RQ-VAE, which validation prefers) with the de-duplication digit,
    one encoder and one decoder layer, sliding-window samples, validated by a beam of `beam_size`
    after every epoch (at most `epochs`, stopping after `patience` without improvement);
    `output` and `positions` as in `TIGER`."""
    codes = make_tokenizer(tokenizer, n_levels=3, width=width, seed=seed).fit_encode(embeddings)
    sids = SemanticIDs.from_codes(codes, width, dedup=True)
    torch.manual_seed(seed)
    model = TIGER(sids, max_items=max_items, d_model=64, n_heads=4, head_dim=16, d_ff=256, n_encoder_layers=1, n_decoder_layers=1, output=output, positions=positions)
    histories, targets = training_samples(train_sequences, max_items, sliding_window=True)

    def batches(epoch: int):
        return TIGER.make_batches(histories, targets, sids, batch_size, seed=seed + epoch)

    def validate(m: TIGER) -> dict[str, float]:
        return evaluate_generative(m, valid_histories, valid_targets, ks=(10,), beam_size=beam_size)

    run = fit(
        model, batches, validate, epochs=epochs, lr=3e-3, warmup_steps=100, schedule="cosine", patience=patience,
        device=device, seed=seed, show_progress=False,
    )  # fmt: skip
    return model, run
