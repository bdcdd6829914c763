"""Training cells: samples and targets per second of AdamW steps on each model's loss, and peak memory."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handbook.bench.catalogue import sid_table
from handbook.bench.config import TRAIN_METHODS, BenchConfig
from handbook.bench.measure import (
    PeakMemory,
    base_record,
    free_memory,
    is_resource_error,
    time_calls,
)
from handbook.models import RPG, TIGER, ACERec


def measure_training(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    base: dict[str, Any],
    *,
    targets_per_row: Callable[[tuple[torch.Tensor, ...]], int],
    device: torch.device,
    seed: int,
) -> dict[str, Any]:
    """Samples/s and targets/s of AdamW steps on `model.loss`: the first batch warms up, the rest are timed."""
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [tuple(t.to(device) for t in b) for b in batches]

    def step(batch: tuple[torch.Tensor, ...]) -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        optimizer.step()

    rows = int(batches[0][0].shape[0])
    try:
        with PeakMemory(device) as mem:
            step(batches[0])  # warm-up; creates AdamW's state, so its memory counts
        seconds = time_calls(step, batches[1:], device)
    except Exception as err:  # noqa: BLE001
        if not is_resource_error(err):
            raise
        free_memory(device)
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        return {**base, "batch_size": rows, "batched": True, "status": "skipped", "reason": reason, "times_s": []}
    median = statistics.median(seconds)
    targets = statistics.mean(targets_per_row(b) for b in batches[1:])
    return {
        **base,
        "batch_size": rows,
        "batched": True,
        "status": "ok",
        "steps": len(seconds),
        "times_s": seconds,
        "step_seconds": median,
        "samples_per_s": rows / median,
        "targets_per_s": targets / median,
        "targets_per_sample": targets / rows,
        "peak_mem_mb": mem.peak_mb,
        "held_mem_mb": mem.held_mb,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }


def run_training_cells(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    wanted = sorted(k for k in settings if k[0] == "training")
    rows = int(config.train_batch_size)
    for key in wanted:
        _, method, n, m, _ = key
        rng = np.random.default_rng([config.seed, n, m, TRAIN_METHODS.index(method), 2])
        total = rows * (config.train_steps + 1)
        base = base_record("training", method, settings[key], n, m, None)
        sids = sid_table(config, n, m, method == "tiger", records, method)
        torch.manual_seed(config.seed)
        if method == "tiger":
            model = TIGER(sids, max_items=config.tiger_history, **config.tiger_kwargs)
            histories = rng.integers(1, n + 1, size=(total, config.tiger_history))
            targets = rng.integers(1, n + 1, size=total)
            batches = TIGER.make_batches(histories, targets, sids, rows, seed=config.seed, shuffle=False)

            def per_batch(b: tuple) -> int:
                return int(b[1].shape[0])  # one target item per row
        else:
            cls = RPG if method == "rpg" else ACERec
            kwargs = config.rpg_kwargs if method == "rpg" else config.acerec_kwargs
            model = cls(sids, max_len=config.rpg_history, **kwargs)
            # sequences of history + 1 items: one window per row, every position labelled
            sequences = list(rng.integers(1, n + 1, size=(total, config.rpg_history + 1)))
            batches = RPG.make_batches(sequences, config.rpg_history, rows, seed=config.seed, shuffle=False)

            def per_batch(b: tuple) -> int:
                return int((b[1] != 0).sum())  # labelled positions
        rec = measure_training(model, batches, base, targets_per_row=per_batch, device=dev, seed=config.seed)
        records.append(rec)
        if rec["status"] == "ok":
            say(f"train {method:<7} n={n} m={m} B={rows}: {rec['samples_per_s']:.1f} samples/s, {rec['targets_per_s']:.0f} targets/s, {rec['peak_mem_mb']:.0f} MB")
        else:
            say(f"train {method:<7} n={n} m={m} skipped: {rec['reason']}")
        del model, batches, sids
        free_memory(dev)
