"""Results files and what is read from them: the machine they were measured on, records as tables."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handbook.bench.config import AXIS_METHODS
from handbook.device import cpu_model
from handbook.io import write_json_atomic
from handbook.paths import resolve

SCHEMA_VERSION = 2  # 2: training records carry a precision; "matmul" records
METHOD_LABELS = {
    "tiger_beam": "TIGER beam search",
    "rpg_exact": "RPG exact scoring",
    "rpg_graph": "RPG graph decoding",
    "acerec_exact": "ACERec exact scoring",
    "tiger": "TIGER",
    "rpg": "RPG",
    "acerec": "ACERec",
}
AXIS_LABELS = {
    "catalogue": "catalogue size (items)",
    "beam": "beam size",
    "sid_length": "SID length m (digits)",
}
AXIS_FIELD = {"catalogue": "n_items", "beam": "beam", "sid_length": "sid_length"}

def machine_info(device: torch.device, command: str) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, RAM, GPU, versions, threads, date, command."""
    import psutil

    info: dict[str, Any] = {
        "device": device.type,
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu_name": None,
        "gpu_mem_gb": None,
        "cuda_version": torch.version.cuda,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "memory_measure": (
            "torch.cuda.max_memory_allocated above the allocation before each measurement"
            if device.type == "cuda"
            else "peak process RSS above the RSS before each measurement (psutil, polled every 1 ms, "
            "after malloc_trim); approximate"
        ),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_mem_gb"] = round(props.total_memory / 2**30, 1)
    return info


def device_slug(machine: dict[str, Any]) -> str:
    """"cpu", or "cuda-<gpu name lower-cased>", for the results file name."""
    if machine["device"] == "cuda" and machine.get("gpu_name"):
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", machine["gpu_name"].lower()).strip("-")
    return machine["device"]


def write_results(results: dict[str, Any], out_dir: str | os.PathLike = "bench") -> Path:
    """Write `results` to OUT_DIR/results-<device>.json atomically; return the path."""
    path = resolve(out_dir) / f"results-{device_slug(results['machine'])}.json"
    return write_json_atomic(path, results)


def load_results(folder: str | os.PathLike = "bench") -> dict[str, dict[str, Any]]:
    """Every results-*.json of `folder` (relative to the repository root): {file stem: results}."""

    folder = resolve(folder)
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("results-*.json"))
    }


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """One results file (relative to the repository root), with an error that says how to make it."""
    file = resolve(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no bench results there; run `make bench` to record them, or measure here instead")
    results = json.loads(file.read_text(encoding="utf-8"))
    if results.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{file}: schema_version {results.get('schema_version')} is not {SCHEMA_VERSION}; re-run `make bench`")
    return results


def compare_cells(
    here: dict[str, Any], recorded: dict[str, Any], quantity: str = "latency_ms_per_user", batched: bool = False
):
    """`quantity` of each ok inference cell of `here` beside the same cell of `recorded`, and their ratio.

    Cells match on method, catalogue size, SID length and beam; a cell the record lacks shows NaN.
    """
    import pandas as pd

    def cells(results: dict[str, Any]) -> dict[tuple, float]:
        return {
            (r["method"], r["n_items"], r["sid_length"], r["beam"]): r[quantity]
            for r in results["records"]
            if r["kind"] == "inference" and r["batched"] == batched and r["status"] == "ok"
        }

    recorded_cells = cells(recorded)
    rows = [
        {"method": METHOD_LABELS[method], "n_items": n, "sid_length": m, "beam": beam, "here": value,
         "recorded": recorded_cells.get((method, n, m, beam), np.nan)}
        for (method, n, m, beam), value in cells(here).items()
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["method", "n_items", "sid_length", "beam", "here", "recorded"])
    table["here / recorded"] = table["here"] / table["recorded"]
    return table.set_index("method")


def describe_machine(results: dict[str, Any]) -> str:
    """One line on where and when the results were measured, and how long the run took."""
    m = results["machine"]
    where = f"{m['gpu_name']} ({m['gpu_mem_gb']} GB)" if m.get("gpu_name") else f"{m['cpu_model']} CPU"
    load = f", load average {m['load_average'][0]:.1f} at start" if m.get("load_average") else ""
    return (
        f"{where}; {m['cpu_cores_logical']} logical cores, {m['ram_gb']} GB RAM, {m['torch_threads']} torch "
        f"threads, torch {m['torch_version']}, {m['date'][:10]}{load}; `{m['command']}` took "
        f"{results['seconds'] / 60:.1f} min"
    )


def records_frame(results: dict[str, Any], kind: str = "inference"):
    """The records of one kind ("inference", "uncached", "training", "build") as a pandas DataFrame."""
    import pandas as pd

    rows = [r for r in results["records"] if r["kind"] == kind]
    frame = pd.DataFrame(rows)
    if "axes" in frame:
        frame["axes"] = frame["axes"].map(lambda axes: ",".join(axes))
    return frame.drop(columns=["times_s"], errors="ignore")


def axis_series(
    results: dict[str, Any], axis: str, quantity: str = "latency_ms_per_user", batched: bool = False
) -> dict[str, tuple[list, list]]:
    """{method: (x values, quantity)} of the ok inference records of `axis`, sorted by x."""
    out: dict[str, tuple[list, list]] = {}
    field_name = AXIS_FIELD[axis]
    for method in AXIS_METHODS[axis]:
        points = sorted(
            (r[field_name], r[quantity])
            for r in results["records"]
            if r["kind"] == "inference" and r["method"] == method and axis in r["axes"]
            and r["batched"] == batched and r["status"] == "ok"
        )  # fmt: skip
        if points:
            out[method] = ([p[0] for p in points], [p[1] for p in points])
    return out


def axis_table(
    results: dict[str, Any], axis: str, quantity: str = "latency_ms_per_user", batched: bool = False
):
    """`axis_series` as a DataFrame: one row per axis value, one column per method (labels)."""
    import pandas as pd

    columns = {
        METHOD_LABELS[method]: pd.Series(y, index=x)
        for method, (x, y) in axis_series(results, axis, quantity, batched).items()
    }
    table = pd.DataFrame(columns)
    table.index.name = AXIS_FIELD[axis]
    return table


def kv_cache_table(results: dict[str, Any], quantity: str = "latency_ms_per_user", batched: bool = False):
    """TIGER's beam axis with and without its KV cache: one row per beam, and uncached / cached."""
    import pandas as pd

    def series(kind: str) -> pd.Series:
        points = sorted(
            (r["beam"], r[quantity])
            for r in results["records"]
            if r["kind"] == kind and r["method"] == "tiger_beam" and "beam" in r["axes"]
            and r["batched"] == batched and r["status"] == "ok"
        )  # fmt: skip
        return pd.Series(dict(points), dtype=float)

    table = pd.DataFrame({"KV cache": series("inference"), "no cache": series("uncached")})
    table["no cache / KV cache"] = table["no cache"] / table["KV cache"]
    table.index.name = "beam"
    return table


def precision_table(results: dict[str, Any]):
    """Training samples/s per model and SID length in fp32 and bf16 autocast, and bf16's speed-up.

    A precision that was not run (bf16 on a CPU without native bf16) shows NaN, and the matmul
    records (kind "matmul") say why.
    """
    import pandas as pd

    rows = [r for r in results["records"] if r["kind"] == "training"]
    frame = pd.DataFrame(
        [{"method": r["method"], "sid_length": r["sid_length"], "precision": r.get("precision", "fp32"),
          "samples_per_s": r.get("samples_per_s")} for r in rows]  # fmt: skip
    )
    table = frame.set_index(["method", "sid_length", "precision"])["samples_per_s"].unstack("precision")
    if {"fp32", "bf16"} <= set(table.columns):
        table["bf16 speed-up"] = table["bf16"] / table["fp32"]
    return table
