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
}


def check_00_overview(metrics: dict) -> None:
    assert metrics["device"] in {"cpu", "cuda", "mps"}
    assert metrics["matrix_size"] == 64
    assert metrics["matmul_gflops"] > 0


CHECKS = {"00_overview": check_00_overview}


def test_every_notebook_has_a_papermill_test() -> None:
    names = {path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert names == set(SMALL) == set(CHECKS)


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_with_small_parameters(name: str, tmp_path: Path) -> None:
    metrics = execute_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, SMALL[name])
    CHECKS[name](metrics)
    assert (tmp_path / f"{name}.ipynb").is_file()
