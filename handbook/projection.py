"""Dry run of `make reproduce`: steps, training FLOPs and a projected time per model, nothing trained.

`plan(model, dataset, config)` builds the model at its config on semantic IDs of the right
shape (random codes: the parameter count does not depend on which codes), counts the
optimiser steps of its schedule from the dataset's real training samples, and estimates a
step's FLOPs by the usual 6 N T rule (N parameters, T positions a step processes; forward
and backward). N counts the embedding tables too, so the estimate is an upper bound for
the embedding-heavy models (SASRec's item table is looked up, not multiplied). The
projected time divides by an effective throughput `tflops` (achieved, not peak: small
transformers reach a tenth of an H100's bf16 peak or less), for the worst case that no
model stops early. Evaluation is not counted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from handbook.data import samples_per_sequence
from handbook.data.preprocess import SequenceData
from handbook.models import RPG, TIGER, ACERec, SASRec
from handbook.sid import SemanticIDs


def _random_sids(n_items: int, n_digits: int, width: int, dedup: bool, seed: int = 0) -> SemanticIDs:
    """SIDs of the shape the model will see, from random codes."""
    codes = np.random.default_rng(seed).integers(0, width, size=(n_items, n_digits))
    return SemanticIDs.from_codes(codes, width, dedup=dedup)


def _build(model: str, c: dict[str, Any], data: SequenceData) -> tuple[torch.nn.Module, int, int]:
    """(model at config c, steps per epoch, positions per step)."""
    train = data.train_sequences()
    if model == "sasrec":
        net = SASRec(data.n_items, max_len=c["max_len"], hidden=c["hidden"], n_layers=c["n_layers"], n_heads=c["n_heads"])
        return net, len(SASRec.make_batches(train, c["max_len"], c["batch_size"], seed=0)), c["batch_size"] * c["max_len"]
    if model == "tiger":
        sids = _random_sids(data.n_items, c["n_levels"], c["width"], dedup=True)
        net = TIGER(
            sids, max_items=c["max_items"], d_model=c["d_model"], n_heads=c["n_heads"], head_dim=c["head_dim"],
            d_ff=c["d_ff"], n_encoder_layers=c["n_layers"], n_decoder_layers=c["n_layers"],
        )  # fmt: skip
        samples = int(samples_per_sequence([len(s) for s in train], c["augmentation"]).sum())
        positions = c["max_items"] * sids.n_digits + sids.n_digits  # encoder tokens + decoder tokens
        return net, math.ceil(samples / c["batch_size"]), c["batch_size"] * positions
    sids = _random_sids(data.n_items, c["n_digits"], 2 ** c["nbits"], dedup=False)
    keys = ("max_len", "hidden", "n_layers", "n_heads", "ffn")
    if model == "rpg":
        net, per_item = RPG(sids, **{k: c[k] for k in keys}), 1
    else:
        net, per_item = ACERec(sids, **{k: c[k] for k in keys}, n_latents=c["n_latents"]), c["n_latents"] + 1
    batches = RPG.make_batches(train, c["max_len"], c["batch_size"], seed=0, trim=True, bucket=c.get("bucket", False))
    positions = sum(inputs.numel() for inputs, _ in batches) / len(batches)  # trimmed batches are narrower
    return net, len(batches), round(positions * per_item)


def plan(model: str, data: SequenceData, config: dict[str, Any], tflops: float) -> dict[str, Any]:
    """Steps, parameters, FLOPs and projected training time of one model at `config` (see the module docstring)."""
    if model == "most-popular":
        return {"model": model, "steps": 0, "n_parameters": 0, "train_flops": 0.0, "projected_minutes": 0.0}
    net, steps_per_epoch, positions = _build(model, config, data)
    n_parameters = sum(p.numel() for p in net.parameters())
    steps = steps_per_epoch * config["epochs"]
    flops = 6.0 * n_parameters * positions * steps
    return {
        "model": model,
        "epochs": config["epochs"],
        "steps_per_epoch": steps_per_epoch,
        "steps": steps,
        "warmup_steps": config.get("warmup_steps", 0),
        "n_parameters": n_parameters,
        "positions_per_step": positions,
        "train_flops": flops,
        "projected_minutes": flops / (tflops * 1e12) / 60,
    }
