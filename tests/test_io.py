"""Atomic result writing and the device/path helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from handbook.device import resolve_device, seed_everything
from handbook.io import read_metrics, read_npz, write_json_atomic, write_metrics, write_npz_atomic
from handbook.paths import repo_root, resolve


def test_write_metrics_round_trips_numpy_values(tmp_path: Path) -> None:
    write_metrics(tmp_path, {"recall@10": np.float32(0.5), "counts": np.arange(3)})
    assert read_metrics(tmp_path) == {"recall@10": 0.5, "counts": [0, 1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_read_metrics_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        read_metrics(tmp_path)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="device="):
        resolve_device("tpu-please")


def test_seed_everything_is_repeatable() -> None:
    a = torch.randn(3, generator=seed_everything(7))
    b = torch.randn(3, generator=seed_everything(7))
    assert torch.equal(a, b)


def test_paths_resolve_from_the_repository_root() -> None:
    root = repo_root(Path(__file__).parent)
    assert (root / "pyproject.toml").is_file()
    assert resolve("/abs/path") == Path("/abs/path")


def test_npz_round_trips_names_with_spaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    arrays = {"+ ISA": np.arange(4), "TIGER (beam 10)": np.array([3, 1])}
    write_npz_atomic(tmp_path / "ranks.npz", arrays)
    back = read_npz(tmp_path / "ranks.npz")
    assert list(back) == list(arrays) and all((back[k] == v).all() for k, v in arrays.items())
    assert [p.name for p in tmp_path.iterdir()] == ["ranks.npz"]
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        read_npz(tmp_path / "missing.npz")
