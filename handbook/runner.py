"""Execute notebooks: into runs/ with papermill (`make run`), or in place (`make notebooks`).

    python -m handbook.runner notebooks/0*.ipynb            # runs/<name>/, then a summary
    python -m handbook.runner --in-place notebooks/01_data.ipynb
    python -m handbook.runner -p dataset=ml-100k -p seed=1 notebooks/01_data.ipynb

Each notebook's wall time and its kernel's peak memory are printed and recorded in
<runs-dir>/summary.json (one entry per notebook, updated by every run).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from handbook.io import read_metrics, write_json_atomic, write_text_atomic
from handbook.paths import repo_root

KERNEL = "python3"


class ParameterError(ValueError):
    """A parameter a notebook does not have; the message names it, the notebook and the accepted names."""


def notebook_parameters(notebook: str | Path) -> list[str]:
    """The names assigned in a notebook's cell tagged `parameters` (what papermill can set)."""
    import nbformat

    # ast rather than papermill.inspect_notebook: papermill skips lines whose comment it cannot
    # parse (quotes or parentheses in it), which would report a real parameter as unknown.
    nb = nbformat.read(str(notebook), as_version=4)
    names: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def check_parameter(name: str, notebook: str | Path, known: Sequence[str], where: str) -> None:
    """Raise ParameterError unless `name` is one of `known`, the parameters of `notebook`.

    `where` says who set it ("-p", "`fixed`"); the message adds the closest accepted name, if
    any is close, and all of them.
    """
    if name in known:
        return
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ParameterError(
        f"{where} sets {name!r}, which is not a parameter of {Path(notebook).name}{hint}; "
        f"its parameters are {', '.join(known)}"
    )


def check_parameters(notebook: str | Path, names: Sequence[str], where: str = "-p") -> None:
    """Raise ParameterError for the first of `names` that `notebook` cannot take (`where`: who set it)."""
    if not names:
        return
    known = notebook_parameters(notebook)
    if not known:
        raise ParameterError(
            f"{Path(notebook).name} has no cell tagged `parameters`, so {where} cannot set {names[0]!r} in it"
        )
    for name in names:
        if name == "OUTPUT_DIR":
            # The runner points it at the run's folder and reads metrics.json from there.
            raise ParameterError(
                f"{where} sets OUTPUT_DIR, which the runner sets to each notebook's folder; "
                "choose the folder with --runs-dir (or execute_notebook's output_dir)"
            )
        check_parameter(name, notebook, known, where)


def execute_notebook(
    notebook: str | Path,
    output_dir: str | Path,
    parameters: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run `notebook` with papermill into `output_dir`, with OUTPUT_DIR set there; return its metrics.

    Raises ParameterError, before anything runs, for a name of `parameters` the notebook lacks.
    """
    import papermill

    notebook, output_dir = Path(notebook).resolve(), Path(output_dir).resolve()
    # papermill would inject an unknown name as a new variable that nothing reads
    check_parameters(notebook, list(parameters or {}), where="parameters")
    output_dir.mkdir(parents=True, exist_ok=True)
    params = {"OUTPUT_DIR": str(output_dir), **(parameters or {})}
    papermill.execute_notebook(
        str(notebook),
        str(output_dir / notebook.name),
        parameters=params,
        kernel_name=KERNEL,
        cwd=str(notebook.parent),
        progress_bar=progress,
    )
    return read_metrics(output_dir)


def execute_in_place(notebook: str | Path, timeout: int | None = None) -> None:
    """Re-run a committed notebook at its defaults and save it with fresh outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = Path(notebook).resolve()
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(notebook.parent)}}
    )
    client.execute()
    write_text_atomic(notebook, nbformat.writes(nb) + "\n")


def _peak_rss_bytes(process: Any) -> int:
    """A process's peak resident memory so far: Linux's VmHWM, else its current RSS."""
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return process.memory_info().rss


class ChildPeakMemory:
    """Peak resident memory of the processes started while in the block (a notebook's kernel).

    A thread polls this process's children every `interval` seconds and keeps, for each, its
    high-water mark (VmHWM on Linux, which the kernel keeps itself, so peaks between polls are
    not lost; elsewhere the RSS seen at a poll). `peak_mb` is the largest, in MiB. Children that
    existed before the block (another kernel, a server) are not counted.
    """

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._psutil, self.interval = psutil, interval
        self._me = psutil.Process()
        self._before = {child.pid for child in self._me.children(recursive=True)}
        self._peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_until_stopped, daemon=True)

    def _poll(self) -> None:
        for child in self._me.children(recursive=True):
            if child.pid in self._before:
                continue
            try:
                self._peaks[child.pid] = max(self._peaks.get(child.pid, 0), _peak_rss_bytes(child))
            except self._psutil.Error:  # it ended between listing and reading
                pass

    def _poll_until_stopped(self) -> None:
        while not self._stop.is_set():
            self._poll()
            self._stop.wait(self.interval)

    @property
    def peak_mb(self) -> float | None:
        """The largest peak seen, in MiB; None if no process was seen."""
        return round(max(self._peaks.values()) / 2**20, 1) if self._peaks else None

    def __enter__(self) -> ChildPeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def record_run(summary_path: str | Path, notebook: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Set `notebook`'s entry in the JSON file `summary_path` (others kept), written atomically."""
    summary_path = Path(summary_path)
    runs = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    runs[notebook] = entry
    write_json_atomic(summary_path, runs)
    return runs


def flatten_scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested metrics to {"a.b": scalar}, dropping lists and long strings."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_scalars(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
        elif isinstance(value, str) and len(value) <= 40:
            flat[name] = value
    return flat


def summary_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (notebook, metric) with scalar values, for printing after `make run`."""
    rows = [
        {"notebook": name, "metric": key, "value": value}
        for name, metrics in results.items()
        for key, value in flatten_scalars(metrics).items()
    ]
    return pd.DataFrame(rows, columns=["notebook", "metric", "value"])


def _parse_value(text: str) -> Any:
    """Interpret a -p value as JSON (numbers, booleans, lists) or else as a plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m handbook.runner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--in-place", action="store_true", help="save outputs into the notebooks themselves")
    parser.add_argument("--runs-dir", type=Path, default=repo_root() / "runs")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-p {item!r}: expected NAME=VALUE")
        params[name] = _parse_value(value)
    missing = [str(nb) for nb in args.notebooks if not nb.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if params and args.in_place:
        parser.error("-p cannot be combined with --in-place: committed notebooks run at their defaults")
    try:  # every notebook is checked before any runs: a typo fails in a second, not an hour in
        for notebook in args.notebooks:
            check_parameters(notebook, list(params))
    except ParameterError as err:
        parser.error(str(err))

    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    costs: dict[str, dict[str, Any]] = {}
    for notebook in args.notebooks:
        start = time.perf_counter()
        print(f"--> {notebook}", flush=True)
        with ChildPeakMemory() as memory:
            try:
                if args.in_place:
                    execute_in_place(notebook)
                else:
                    results[notebook.stem] = execute_notebook(notebook, args.runs_dir / notebook.stem, params)
            except Exception as err:  # a failing notebook is reported and the others still run
                last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
                failures[notebook.stem] = f"{type(err).__name__}: {last}"
        seconds = round(time.perf_counter() - start, 1)
        costs[notebook.stem] = {
            "status": "failed" if notebook.stem in failures else "ok",
            "seconds": seconds,
            "peak_rss_mb": memory.peak_mb,
            "parameters": params,
            "in_place": args.in_place,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        }
        record_run(args.runs_dir / "summary.json", notebook.stem, costs[notebook.stem])
        if notebook.stem in failures:
            print(f"    FAILED: {failures[notebook.stem]}", flush=True)
            continue
        print(f"    done in {math.ceil(seconds)} s, kernel peak memory {memory.peak_mb} MiB", flush=True)

    with pd.option_context("display.width", 120):
        print(f"\nTime and peak memory (also in {args.runs_dir / 'summary.json'}):")
        table = pd.DataFrame([{"notebook": k, **{c: v[c] for c in ("status", "seconds", "peak_rss_mb")}} for k, v in costs.items()])
        print(table.to_string(index=False))

    if results:
        with pd.option_context("display.max_rows", None, "display.width", 120):
            print("\nSummary (from each run's metrics.json):")
            print(summary_table(results).to_string(index=False))
    if failures:
        print(f"\n{len(failures)} notebook(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
