"""The notebook runner's command line and summary table."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from handbook.runner import (
    ParameterError,
    _parse_value,
    check_parameters,
    execute_notebook,
    main,
    summary_table,
)


def test_summary_table_flattens_scalars() -> None:
    table = summary_table({"05_tiger": {"test": {"ndcg@10": 0.1}, "per_user": [1, 2], "device": "cpu"}})
    assert table.to_dict("records") == [
        {"notebook": "05_tiger", "metric": "test.ndcg@10", "value": 0.1},
        {"notebook": "05_tiger", "metric": "device", "value": "cpu"},
    ]


def test_parameter_values_are_typed() -> None:
    assert _parse_value("3") == 3
    assert _parse_value("0.5") == 0.5
    assert _parse_value("true") is True
    assert _parse_value("ml-100k") == "ml-100k"


def test_missing_notebook_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["notebooks/99_nothing.ipynb"])
    assert "99_nothing.ipynb" in capsys.readouterr().err


def test_bad_parameter_syntax_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["-p", "seed", "notebooks/00_overview.ipynb"])
    assert "NAME=VALUE" in capsys.readouterr().err


def small_notebook(folder: Path, name: str, parameters: str) -> Path:
    """A notebook whose `parameters` cell is `parameters` and that writes its `x` to metrics.json."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    body = "from handbook.io import write_metrics\nwrite_metrics(OUTPUT_DIR, {'x': x})"
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def test_unknown_parameter_is_named_with_the_accepted_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["-p", "widht=64", "notebooks/00_overview.ipynb"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "-p sets 'widht', which is not a parameter of 00_overview.ipynb" in err
    assert "its parameters are " in err and "seed" in err and "matrix_size" in err


def test_close_parameter_name_is_suggested(tmp_path: Path) -> None:
    notebook = small_notebook(tmp_path, "a", 'OUTPUT_DIR = "out"\nx = 1\nwidth = 8  # codes per digit\n')
    with pytest.raises(ParameterError, match=r"'widht', which is not a parameter of a\.ipynb \(did you mean 'width'\?\)"):
        check_parameters(notebook, ["x", "widht"])
    check_parameters(notebook, ["x", "width"])  # known names pass


def test_parameters_of_every_notebook_are_checked_before_any_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = small_notebook(tmp_path, "first", 'OUTPUT_DIR = "out"\nx = 1\n')
    second = small_notebook(tmp_path, "second", 'OUTPUT_DIR = "out"\ny = 1\n')
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        main(["-p", "x=2", "--runs-dir", str(runs), str(first), str(second)])
    assert stop.value.code == 2
    assert "'x', which is not a parameter of second.ipynb" in capsys.readouterr().err
    assert not runs.exists()  # the first notebook, which has x, did not run either


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-p", "OUTPUT_DIR=elsewhere"], "-p sets OUTPUT_DIR, which the runner sets"),
        (["--in-place", "-p", "x=2"], "-p cannot be combined with --in-place"),
    ],
)
def test_parameters_the_runner_cannot_pass_are_refused(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook = small_notebook(tmp_path, "a", 'OUTPUT_DIR = "out"\nx = 1\n')
    with pytest.raises(SystemExit):
        main([*argv, "--runs-dir", str(tmp_path / "runs"), str(notebook)])
    assert message in capsys.readouterr().err
    assert nbformat.read(notebook, as_version=4).cells[0].outputs == []  # not executed in place


def test_notebook_without_parameters_cell_refuses_parameters(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "bare.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ParameterError, match=r"bare\.ipynb has no cell tagged `parameters`, so -p cannot set 'x'"):
        check_parameters(path, ["x"])
    check_parameters(path, [])  # nothing asked, nothing to check


def test_execute_notebook_checks_names_before_running(tmp_path: Path) -> None:
    notebook = small_notebook(tmp_path, "a", 'OUTPUT_DIR = "out"\nx = 1\n')
    with pytest.raises(ParameterError, match="parameters sets 'y', which is not a parameter of a.ipynb"):
        execute_notebook(notebook, tmp_path / "out", {"y": 2})
    assert not (tmp_path / "out").exists()
    # a known name runs and reaches the notebook
    assert execute_notebook(notebook, tmp_path / "out", {"x": 2}) == {"x": 2}


def test_child_peak_memory_sees_a_child_that_has_exited() -> None:
    import subprocess
    import sys

    from handbook.runner import ChildPeakMemory

    # 300 MiB touched, then freed, then a pause: the peak is gone from RSS but not from VmHWM
    code = "import time; b = bytearray(300 * 2**20); del b; time.sleep(1.0)"
    with ChildPeakMemory(interval=0.1) as memory:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert memory.peak_mb is not None and memory.peak_mb >= 300
    with ChildPeakMemory() as idle:
        pass
    assert idle.peak_mb is None  # no child started: nothing to report, not 0


def memory_notebook(folder: Path, name: str, mebibytes: int) -> Path:
    """A small notebook that holds `mebibytes` MiB for a moment, then writes metrics.json."""
    path = small_notebook(folder, name, 'OUTPUT_DIR = "out"\nx = 1\n')
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell(f"import time\nb = bytearray({mebibytes} * 2**20)\ntime.sleep(0.5)\ndel b"))
    nbformat.write(nb, path)
    return path


@pytest.mark.notebook
def test_run_records_each_notebooks_time_and_peak_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    big, small = memory_notebook(tmp_path, "big", 400), memory_notebook(tmp_path, "small", 0)
    runs = tmp_path / "runs"
    (runs).mkdir()
    (runs / "summary.json").write_text(json.dumps({"older": {"seconds": 1.0}}))
    assert main(["--runs-dir", str(runs), str(big), str(small)]) == 0
    summary = json.loads((runs / "summary.json").read_text())
    assert set(summary) == {"older", "big", "small"}  # an earlier entry is kept
    assert summary["big"]["status"] == "ok" and summary["big"]["seconds"] > 0
    # per notebook, not the largest so far: the small kernel's peak is its own
    assert summary["big"]["peak_rss_mb"] >= 400 > summary["small"]["peak_rss_mb"]
    out = capsys.readouterr().out
    assert "kernel peak memory" in out and "peak_rss_mb" in out
