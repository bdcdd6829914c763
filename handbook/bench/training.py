"""Training cells: samples and targets per second of AdamW steps on each model's loss, and peak memory.

Each cell is measured in every precision of `BenchConfig.train_precisions`: fp32, and bf16 autocast
(`torch.autocast`, as `handbook.train.fit(amp="bf16")` trains). A matmul is timed first in both
precisions (records of kind "matmul"); on a CPU without native bf16,
where torch emulates it, the bf16 training cells are recorded as skipped with those numbers.
The matmul's shape is `BenchConfig.precision_matmul` (default RPG's states, hidden 448, through its
FFN of 1024).
"""

from __future__ import annotations

import contextlib
import statistics
import time
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
from handbook.device import cpu_has_native_bf16
from handbook.models import RPG, TIGER, ACERec

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def measure_training(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    base: dict[str, Any],
    *,
    targets_per_row: Callable[[tuple[torch.Tensor, ...]], int],
    device: torch.device,
    seed: int,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Samples/s and targets/s of AdamW steps on `model.loss`: the first batch warms up, the rest are timed.

    `precision` "bf16" runs the forward under bf16 autocast (weights and optimizer stay fp32).
    """
    base = {**base, "precision": precision}
    dtype = PRECISIONS[precision]
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [tuple(t.to(device) for t in b) for b in batches]

    def step(batch: tuple[torch.Tensor, ...]) -> None:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with autocast:
            loss = model.loss(batch)
        loss.backward()
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


def measure_matmul(device: torch.device, precision: str, shape: list[int], repeats: int = 3) -> dict[str, Any]:
    """GFLOP/s of one (n, k) x (k, m) matmul in `precision` (median of `repeats`, after a warm-up)."""
    n, k, m = shape
    dtype = PRECISIONS[precision] or torch.float32
    a, b = torch.randn(n, k, device=device).to(dtype), torch.randn(k, m, device=device).to(dtype)
    seconds = time_calls(lambda _: a @ b, [None] * (repeats + 1), device)[1:]
    median = statistics.median(seconds)
    return {
        "kind": "matmul", "method": "matmul", "axes": [], "n_items": None, "sid_length": None, "beam": None,
        "batch_size": None, "status": "ok", "precision": precision, "shape": list(shape),
        "times_s": seconds, "gflops": 2 * n * k * m / median / 1e9,
    }  # fmt: skip


def bf16_skip_reason(device: torch.device, matmuls: dict[str, dict[str, Any]]) -> str | None:
    """Why bf16 training is not measured on `device` (None where it is): a CPU without native bf16."""
    if device.type != "cpu" or cpu_has_native_bf16():
        return None
    fp32, bf16 = matmuls["fp32"]["gflops"], matmuls["bf16"]["gflops"]
    return (f"no native bf16 on this CPU (no AVX512-BF16 or AMX): torch emulates it, and a "
            f"{'x'.join(map(str, matmuls['fp32']['shape']))} matmul ran at {bf16:.2f} GFLOP/s in bf16 against {fp32:.1f} "
            f"in fp32 ({fp32 / bf16:.0f}x slower), so bf16 training is not run here")  # fmt: skip


def run_training_cells(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    wanted = sorted(k for k in settings if k[0] == "training")
    rows = int(config.train_batch_size)
    skip_bf16 = None
    if wanted and "bf16" in config.train_precisions:
        tick = time.perf_counter()
        # emulated bf16 on a CPU takes seconds a call at the default shape: time it once
        slow = dev.type == "cpu" and not cpu_has_native_bf16()
        matmuls = {p: measure_matmul(dev, p, config.precision_matmul, repeats=1 if p == "bf16" and slow else 3) for p in PRECISIONS}
        records += matmuls.values()
        say(f"matmul {'x'.join(map(str, config.precision_matmul))}: " + ", ".join(f"{p} {r['gflops']:.2f} GFLOP/s" for p, r in matmuls.items())
            + f" ({time.perf_counter() - tick:.0f} s)")  # fmt: skip
        skip_bf16 = bf16_skip_reason(dev, matmuls)
    for key in wanted:
        _, method, n, m, _ = key
        rng = np.random.default_rng([config.seed, n, m, TRAIN_METHODS.index(method), 2])
        total = rows * (config.train_steps + 1)
        sids = sid_table(config, n, m, method == "tiger", records, method)
        if method == "tiger":
            histories = rng.integers(1, n + 1, size=(total, config.tiger_history))
            targets = rng.integers(1, n + 1, size=total)
            batches = TIGER.make_batches(histories, targets, sids, rows, seed=config.seed, shuffle=False)

            def per_batch(b: tuple) -> int:
                return int(b[1].shape[0])  # one target item per row
        else:
            # sequences of history + 1 items: one window per row, every position labelled
            sequences = list(rng.integers(1, n + 1, size=(total, config.rpg_history + 1)))
            batches = RPG.make_batches(sequences, config.rpg_history, rows, seed=config.seed, shuffle=False)

            def per_batch(b: tuple) -> int:
                return int((b[1] != 0).sum())  # labelled positions
        for precision in config.train_precisions:
            base = base_record("training", method, settings[key], n, m, None)
            if precision == "bf16" and skip_bf16:
                records.append({**base, "precision": precision, "batch_size": rows, "batched": True,
                                "status": "skipped", "reason": skip_bf16, "times_s": []})  # fmt: skip
                say(f"train {method:<7} n={n} m={m} bf16 skipped: no native bf16 on this CPU")
                continue
            torch.manual_seed(config.seed)  # the same initial weights in every precision
            if method == "tiger":
                model = TIGER(sids, max_items=config.tiger_history, **config.tiger_kwargs)
            else:
                cls, kwargs = (RPG, config.rpg_kwargs) if method == "rpg" else (ACERec, config.acerec_kwargs)
                model = cls(sids, max_len=config.rpg_history, **kwargs)
            rec = measure_training(model, batches, base, targets_per_row=per_batch, device=dev, seed=config.seed, precision=precision)
            records.append(rec)
            if rec["status"] == "ok":
                say(f"train {method:<7} n={n} m={m} {precision} B={rows}: {rec['samples_per_s']:.1f} samples/s, {rec['targets_per_s']:.0f} targets/s, {rec['peak_mem_mb']:.0f} MB")
            else:
                say(f"train {method:<7} n={n} m={m} {precision} skipped: {rec['reason']}")
            del model
            free_memory(dev)
        del batches, sids
        free_memory(dev)
