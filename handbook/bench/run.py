"""`run_bench`: every cell a config asks for, measured on one device, with the machine described."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from handbook.bench.config import BenchConfig, cell_settings, requested_cells
from handbook.bench.decoding import run_long_sid_cells, run_tiger_cells
from handbook.bench.report import SCHEMA_VERSION, machine_info
from handbook.bench.training import run_training_cells
from handbook.device import resolve_device


def _check_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"device={device!r} is unknown: use 'auto', 'cpu' or 'cuda'")
    return resolve_device(device)


# ---------------------------------------------------------------------------- the run
def run_bench(
    config: BenchConfig | None = None,
    device: str | torch.device = "auto",
    command: str = "handbook.bench.run_bench",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every requested cell of `config` on `device`; return the results (machine, config, records)."""
    config = BenchConfig() if config is None else config
    config.validate()
    dev = _check_device(device)
    config = config.resolved(dev)
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    default_threads = torch.get_num_threads()
    # Oversubscribed cores (other busy processes) make multi-threaded small ops orders of
    # magnitude slower; `threads` lets a shared machine measure with fewer threads.
    torch.set_num_threads(config.threads or default_threads)
    try:
        machine = machine_info(dev, command)
        cells = requested_cells(config)
        settings = cell_settings(cells)
        records: list[dict[str, Any]] = []
        say(f"{len(cells)} cells on {machine['gpu_name'] or machine['cpu_model']}, {machine['torch_threads']} threads")
        run_tiger_cells(config, settings, dev, records, say)
        run_long_sid_cells(config, settings, dev, records, say)
        run_training_cells(config, settings, dev, records, say)
    finally:
        torch.set_num_threads(default_threads)

    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "schema_version": SCHEMA_VERSION,
        "machine": machine,
        "config": asdict(config),
        "requested": cells,
        "records": records,
        "seconds": time.perf_counter() - start,
    }
