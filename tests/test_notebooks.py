"""Every notebook executes with papermill at small parameters and writes sane metrics.json.

The committed outputs are checked separately by nbval (`pytest --nbval notebooks/`, run by
`make test` through pyproject's addopts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from handbook.runner import execute_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Small parameters per notebook, and a check of what its metrics.json must hold.
SMALL = {
    "00_overview": {"matrix_size": 64},
    "01_data": {"k": 10, "max_len": 10, "sliding_window": False},
    "02_item_embeddings": {"n_neighbours": 3},
}


def check_00_overview(metrics: dict) -> None:
    assert metrics["device"] in {"cpu", "cuda", "mps"}
    assert metrics["matrix_size"] == 64
    assert metrics["matmul_gflops"] > 0


def check_01_data(metrics: dict) -> None:
    assert metrics["raw"]["interactions"] == 100_000 and metrics["raw"]["users"] == 943
    core = metrics["core"]
    assert core["items"] == metrics["n_items"] < 1349  # a 10-core keeps fewer items than the 5-core
    assert core["users"] == metrics["n_users"] == metrics["train_samples"]  # one sample per user


def check_02_item_embeddings(metrics: dict) -> None:
    assert (metrics["n_items"], metrics["dim"]) == (1349, 384)
    # Text embeddings must put same-genre movies together far above chance.
    assert metrics["neighbour_label_agreement"] > metrics["random_label_agreement"] + 0.3


CHECKS = {
    "00_overview": check_00_overview,
    "01_data": check_01_data,
    "02_item_embeddings": check_02_item_embeddings,
}


def test_every_notebook_has_a_papermill_test() -> None:
    names = {path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert names == set(SMALL) == set(CHECKS)


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_with_small_parameters(name: str, tmp_path: Path) -> None:
    metrics = execute_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, SMALL[name])
    CHECKS[name](metrics)
    assert (tmp_path / f"{name}.ipynb").is_file()
