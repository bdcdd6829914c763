"""Atomic writes: a crash never leaves a half-written results file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _to_builtin(value: Any) -> Any:
    """Make NumPy scalars and arrays JSON-serialisable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_binary_atomic(path: str | os.PathLike, write: Any) -> Path:
    """Call write(handle) on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """np.save to a temporary file beside `path`, then rename: readers never see half a file."""
    return _write_binary_atomic(path, lambda handle: np.save(handle, array))


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """np.savez_compressed of named arrays (names may hold spaces and '+'), atomically."""
    return _write_binary_atomic(path, lambda handle: np.savez_compressed(handle, **arrays))


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named arrays of a `write_npz_atomic` file, loaded into memory."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the notebook that writes it first")
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=_to_builtin) + "\n")


def write_metrics(output_dir: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write a notebook's key results to OUTPUT_DIR/metrics.json (what sweeps and tests read)."""
    return write_json_atomic(Path(output_dir) / "metrics.json", metrics)


def read_metrics(output_dir: str | os.PathLike) -> dict[str, Any]:
    """Read OUTPUT_DIR/metrics.json written by `write_metrics`."""
    path = Path(output_dir) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the notebook first (make run)")
    return json.loads(path.read_text(encoding="utf-8"))
