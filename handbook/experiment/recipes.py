"""Per-model recipes: how `run_experiment` builds each model (with its semantic IDs), batches its
training data and evaluates it on a split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from handbook import plateaus
from handbook.data import samples_per_sequence, training_samples
from handbook.data.preprocess import SequenceData
from handbook.decoding.beam import evaluate_generative
from handbook.distributed import DistributedContext, on_main
from handbook.experiment.datasets import PreparedData, _embeddings
from handbook.metrics import evaluate_model
from handbook.models import RPG, TIGER, ACERec, MostPopular, SASRec
from handbook.sid import SemanticIDs
from handbook.tokenizers import OPQ, make_tokenizer


@dataclass
class Recipe:
    """What `run_experiment` needs of one model: the module, its batches and how to evaluate it."""

    model: Any
    batches: Callable[[int], list] | None  # epoch -> global batches; None: nothing to train
    steps_per_epoch: int
    # (model, split, ks, return_ranks=False) -> metrics, or (metrics, per-user ranks)
    evaluate: Callable[..., Any]
    sids: SemanticIDs | None = None
    decoding: str = "exact"  # how `evaluate` ranks: "exact" (every item scored) or "beam"
    # training loss (nats) of models that ignore the history, to read the final loss against
    # (`handbook.plateaus`): a loss that ends on the first line has learned only popularity
    plateau: dict[str, float] | None = None


def _split_arrays(data: SequenceData, max_len: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Validation and test (histories, targets), histories left-padded to `max_len`."""
    return {split: data.eval_arrays(split, max_len) for split in ("valid", "test")}


def _most_popular(
    config: dict, prep: PreparedData, context: DistributedContext, seed: int, progress: bool
) -> Recipe:
    """Training popularity: nothing to train, the same ranking for every user."""
    model = MostPopular().fit(prep.data.train_sequences(), prep.data.n_items)
    arrays = _split_arrays(prep.data, 1)  # the history is not read

    def evaluate(m, split, ks, return_ranks=False):
        return evaluate_model(m, *arrays[split], ks=ks, batch_size=config["eval_batch_size"], return_ranks=return_ranks)

    return Recipe(model, None, 0, evaluate)


def _sasrec(
    config: dict, prep: PreparedData, context: DistributedContext, seed: int, progress: bool
) -> Recipe:
    """SASRec over item ids, every position of each window of `max_len` items labelled."""
    c, data = config, prep.data
    model = SASRec(data.n_items, max_len=c["max_len"], hidden=c["hidden"], n_layers=c["n_layers"], n_heads=c["n_heads"], dropout=c["dropout"])  # fmt: skip
    train = data.train_sequences()
    arrays = _split_arrays(data, c["max_len"])

    def batches(epoch: int):
        return SASRec.make_batches(train, c["max_len"], c["batch_size"], seed=seed + epoch)

    def evaluate(m, split, ks, return_ranks=False):
        return evaluate_model(m, *arrays[split], ks=ks, batch_size=c["eval_batch_size"], return_ranks=return_ranks)

    return Recipe(model, batches, len(batches(0)), evaluate, plateau=plateaus.item_lines(train, data.n_items))


def _tiger(
    config: dict, prep: PreparedData, context: DistributedContext, seed: int, progress: bool
) -> Recipe:
    """TIGER on RQ-VAE SIDs with the de-duplication digit, sliding-window samples, beam search."""
    c, data = config, prep.data
    X = _embeddings(prep, c, context, progress)
    tokenizer_args = {"n_levels": c["n_levels"], "width": c["width"], "seed": seed}
    if str(c["tokenizer"]).lower() == "rqvae":
        tokenizer_args.update(
            hidden_dims=c["rqvae_hidden_dims"], latent_dim=c["rqvae_latent_dim"], beta=c["rqvae_beta"],
            epochs=c["rqvae_epochs"], batch_size=c["rqvae_batch_size"], lr=c["rqvae_lr"],
            device=str(context.device), verbose=progress,
        )  # fmt: skip
    # Rank 0 fits the tokenizer and every rank gets its codes: GPUs need not agree bit for bit.
    codes = on_main(lambda: make_tokenizer(c["tokenizer"], **tokenizer_args).fit_encode(X), context)
    sids = SemanticIDs.from_codes(codes, c["width"], dedup=True)
    model = TIGER(
        sids, max_items=c["max_items"], d_model=c["d_model"], n_heads=c["n_heads"], head_dim=c["head_dim"],
        d_ff=c["d_ff"], n_encoder_layers=c["n_layers"], n_decoder_layers=c["n_layers"], dropout=c["dropout"],
        n_user_bins=c["n_user_bins"], output=c["output"], positions=c["positions"],
    )  # fmt: skip
    train = data.train_sequences()
    histories, targets = training_samples(train, c["max_items"], augmentation=c["augmentation"])
    user_of_sample = None
    if c["n_user_bins"]:
        per_user = samples_per_sequence([len(s) for s in train], c["augmentation"])
        user_of_sample = np.repeat(np.arange(data.n_users), per_user)
    users = np.arange(data.n_users) if c["n_user_bins"] else None
    arrays = _split_arrays(data, c["max_items"])

    def batches(epoch: int):
        return TIGER.make_batches(histories, targets, sids, c["batch_size"], seed=seed + epoch, users=user_of_sample)

    def evaluate(m, split, ks, return_ranks=False):
        return evaluate_generative(m, *arrays[split], ks=ks, beam_size=c["beam_size"], users=users, batch_size=c["eval_batch_size"], return_ranks=return_ranks)  # fmt: skip

    return Recipe(model, batches, math.ceil(len(targets) / c["batch_size"]), evaluate, sids, decoding="beam")


def _long_sids(
    config: dict, prep: PreparedData, context: DistributedContext, seed: int, progress: bool
) -> SemanticIDs:
    """RPG's OPQ semantic IDs: fitted on the items of the training sequences, encoding every item."""
    X = _embeddings(prep, config, context, progress)
    train_rows = np.unique(np.concatenate(prep.data.train_sequences())) - 1  # item id i is row i - 1
    codes = on_main(
        lambda: OPQ(m=config["n_digits"], nbits=config["nbits"], seed=seed, whiten=config["whiten"]).fit_encode(
            X, train_rows=train_rows
        ),
        context,
    )
    return SemanticIDs.from_codes(codes, 2 ** config["nbits"], dedup=False)


def _rpg_like(model_cls, extra: tuple[str, ...], item_counts: bool = False):
    """Recipe builder for RPG and its subclass ACERec (same SIDs, batches and exact scoring).

    item_counts: pass the training items' frequencies (ACERec's logQ correction).
    """

    def build(
        config: dict, prep: PreparedData, context: DistributedContext, seed: int, progress: bool
    ) -> Recipe:
        c, data = config, prep.data
        sids = _long_sids(c, prep, context, seed, progress)
        keys = ("max_len", "hidden", "n_layers", "n_heads", "ffn", "dropout", "resid_dropout", "temperature", *extra)
        counts = {"item_counts": data.item_counts()} if item_counts else {}
        model = model_cls(sids, **{k: c[k] for k in keys}, **counts)
        train = data.train_sequences()
        arrays = _split_arrays(data, c["max_len"])

        def batches(epoch: int):
            # trimmed to each batch's longest window: the same loss without the padding's cost
            return model_cls.make_batches(train, c["max_len"], c["batch_size"], seed=seed + epoch, trim=True, bucket=c["bucket"])

        def evaluate(m, split, ks, return_ranks=False):
            return evaluate_model(m, *arrays[split], ks=ks, batch_size=c["eval_batch_size"], return_ranks=return_ranks)

        return Recipe(model, batches, len(batches(0)), evaluate, sids, plateau=plateaus.code_lines(sids.codes, train))

    return build


RECIPES = {
    "most-popular": _most_popular,
    "sasrec": _sasrec,
    "tiger": _tiger,
    "rpg": _rpg_like(RPG, ()),
    "acerec": _rpg_like(
        ACERec,
        ("n_latents", "merger", "intent_token", "isa_weight", "isa_temperature", "logq_beta", "recon_weight"),
        item_counts=True,
    ),
}
