"""Ablation sweeps: run one notebook over a grid of parameters and seeds, then collect the results.

A sweep is a YAML file (see `sweeps/`):

    notebook: notebooks/07_rpg.ipynb          # relative to the repository root
    description: RPG, test NDCG@10 against SID length m
    fixed: {rerun: true, epochs: 8}           # parameters of every run (a chapter with `rerun` must train)
    grid: {hidden: [64, 128]}                 # cartesian product of named axes (optional)
    cases:                                    # bundles of parameters that move together (optional)
      - {n_digits: 8, digit_sweep: [8]}
      - {n_digits: 16, digit_sweep: [16]}
    seeds: [0, 1, 2]                          # the notebook's `seed` parameter (optional)
    report:                                   # summary columns; {name} is the run's parameter
      ndcg@10: "length_sweep.{n_digits}.ndcg@10"

Each run executes with papermill into runs/<sweep>/<run>/ (its metrics.json lands there).
A failed run is recorded and the others go on; running the sweep again skips finished runs.
`--record` then copies each run's metrics and per-user ranks (not the executed notebook) into
results/sweeps/<sweep>/, the recorded runs that chapters read by default (`record_sweep`).

    python -m handbook.sweep sweeps/rpg-sid-length-smoke.yaml
    python -m handbook.sweep sweeps/rpg-sid-length.yaml --param device=cuda --workers 2
    python -m handbook.sweep sweeps/reading-comparison.yaml --record
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from handbook.device import cpu_model
from handbook.io import read_npz, write_json_atomic, write_text_atomic
from handbook.paths import repo_root, resolve
from handbook.provenance import git_commit
from handbook.runner import (
    ParameterError,
    _parse_value,
    check_parameter,
    execute_notebook,
    flatten_scalars,
    notebook_parameters,
)

KEYS = ("notebook", "description", "fixed", "grid", "cases", "seeds", "report")


class SweepError(ValueError):
    """A sweep file that cannot run as written; the message names the file and the key."""


@dataclass(frozen=True)
class Run:
    """One execution of the notebook: its folder name and every parameter it gets."""

    name: str
    params: dict[str, Any]


@dataclass
class Sweep:
    """A validated sweep file: the notebook, its fixed parameters, grid axes, cases and seeds."""

    name: str  # the YAML file's stem; runs go to <runs_dir>/<name>/
    path: Path
    notebook: Path
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    seeds: list[int] | None = None
    report: dict[str, str] = field(default_factory=dict)

    @property
    def case_keys(self) -> list[str]:
        """Parameters set by the cases, in the order of the first case."""
        return list(self.cases[0])

    @property
    def name_keys(self) -> list[str]:
        """The parameters that tell runs apart, in the order they appear in run names."""
        keys = [key for key, values in self.grid.items() if len(values) > 1]
        chosen: list[str] = []
        for key in self.case_keys:
            values = [_canonical(case[key]) for case in self.cases]
            # A case parameter that follows from the ones already named (digit_sweep: [m] from
            # n_digits: m) would only make names longer.
            implied: dict[tuple, str] = {}
            for case, value in zip(self.cases, values, strict=True):
                implied.setdefault(tuple(_canonical(case[k]) for k in chosen), value)
            determined = all(
                implied[tuple(_canonical(case[k]) for k in chosen)] == value
                for case, value in zip(self.cases, values, strict=True)
            )
            if len(set(values)) > 1 and not determined:
                chosen.append(key)
        return keys + chosen + (["seed"] if self.seeds is not None else [])

    @property
    def setting_keys(self) -> list[str]:
        """The parameters that define a setting: everything that varies except the seed."""
        return [key for key in self.name_keys if key != "seed"]

    @property
    def parameters(self) -> list[str]:
        """Every notebook parameter this sweep sets."""
        seed = ["seed"] if self.seeds is not None else []
        return [*self.fixed, *self.grid, *self.case_keys, *seed]

    def runs(self) -> list[Run]:
        """Every run: fixed + one grid point + one case + one seed, named by what varies.

        Seeds are the outer loop, so an interrupted sweep has seen every setting at least once.
        """
        axes, keys = list(self.grid.values()), self.name_keys
        runs = []
        for seed in self.seeds if self.seeds is not None else [None]:
            for point in itertools.product(*axes):
                for case in self.cases:
                    params = {**self.fixed, **dict(zip(self.grid, point, strict=True)), **case}
                    if seed is not None:
                        params["seed"] = seed
                    runs.append(Run(_run_name(params, keys), params))
        names = [run.name for run in runs]
        clash = sorted({name for name in names if names.count(name) > 1})
        if clash:
            raise SweepError(
                f"{self.path}: two runs would share the folder {clash[0]!r}; "
                "make the grid values and cases distinct (after making them filesystem-safe)"
            )
        return runs


def _canonical(value: Any) -> str:
    """A hashable, order-stable form of a parameter value (lists and dicts included)."""
    return json.dumps(value, sort_keys=True)


def _slug(value: Any) -> str:
    """A parameter value as a piece of a folder name: lists joined by '-', odd characters to '-'."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (list, tuple)):
        text = "-".join(_slug(item) for item in value)
    elif isinstance(value, dict):
        text = "-".join(f"{k}-{_slug(v)}" for k, v in value.items())
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "empty"


def _run_name(params: dict[str, Any], keys: list[str]) -> str:
    """`n_digits=8_seed=0`: the varying parameters of a run; `run` when nothing varies."""
    return "_".join(f"{key}={_slug(params[key])}" for key in keys) or "run"


def _placeholders(template: str) -> list[str]:
    """The parameter names a report template refers to: "{n_digits}" -> ["n_digits"]."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            names.append(re.split(r"[.\[]", name, maxsplit=1)[0])
    return names


def load_sweep(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
) -> Sweep:
    """Read and validate a sweep file; `overrides` replace fixed parameters, `seeds` the YAML's seeds."""
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist; the shipped ones are in sweeps/")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping with keys {', '.join(KEYS)}")
    unknown = [key for key in raw if key not in KEYS]
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}; a sweep file has the keys {', '.join(KEYS)}")

    def mapping(key: str) -> dict[str, Any]:
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            raise SweepError(f"{path}: `{key}` must be a mapping of name: value")
        return dict(value)

    if not isinstance(raw.get("notebook"), str):
        raise SweepError(f"{path}: `notebook` is missing: name the notebook to run, e.g. notebooks/07_rpg.ipynb")
    notebook = resolve(raw["notebook"])
    if not notebook.is_file():
        raise SweepError(f"{path}: `notebook` {raw['notebook']!r} does not exist (looked for {notebook})")
    fixed, grid, report = mapping("fixed"), mapping("grid"), mapping("report")
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: `grid.{axis}` must be a non-empty list of values, got {values!r}")
    cases = raw.get("cases")
    if cases is None:
        cases = [{}]  # no cases: every run gets the grid point alone
    elif not isinstance(cases, list) or not cases or not all(isinstance(c, dict) and c for c in cases):
        raise SweepError(f"{path}: `cases` must be a non-empty list of non-empty mappings")
    for i, case in enumerate(cases):
        if set(case) != set(cases[0]):
            raise SweepError(
                f"{path}: `cases[{i}]` sets {sorted(case)} but `cases[0]` sets {sorted(cases[0])}; "
                "give every case the same parameters"
            )
    if seeds is None:
        seeds = raw.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds)
    ):
        raise SweepError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}")
    if raw.get("description") is not None and not isinstance(raw["description"], str):
        raise SweepError(f"{path}: `description` must be a string")

    # Each parameter comes from exactly one place, so a run's value is never ambiguous.
    places = {"fixed": list(fixed), "grid": list(grid), "cases": list(cases[0])}
    if seeds is not None:
        places["seeds"] = ["seed"]
    for (a, names_a), (b, names_b) in itertools.combinations(places.items(), 2):
        both = sorted(set(names_a) & set(names_b))
        if both:
            raise SweepError(f"{path}: parameter {both[0]!r} is set in both `{a}` and `{b}`; keep one")
    known = notebook_parameters(notebook)
    if not known:
        raise SweepError(f"{path}: {notebook.name} has no cell tagged `parameters`, so papermill cannot set any")

    def check(name: str, where: str) -> None:
        if name == "OUTPUT_DIR":
            raise SweepError(f"{path}: {where} sets OUTPUT_DIR, which the sweep sets for each run; remove it")
        try:
            check_parameter(name, notebook, known, where)
        except ParameterError as err:
            raise SweepError(f"{path}: {err}") from None

    for place, names in places.items():
        for name in names:
            check(name, f"`{place}`")
    for name, value in (overrides or {}).items():
        check(name, "--param")
        if name in grid or name in cases[0] or (name == "seed" and seeds is not None):
            raise SweepError(f"{path}: --param {name} would override a swept parameter; edit the YAML instead")
        fixed[name] = value

    settable = {*fixed, *grid, *cases[0], *(["seed"] if seeds is not None else [])}
    if "rerun" in known and "rerun" not in settable:
        # a chapter with `rerun` reads recorded runs by default: every run would show the same record
        raise SweepError(f"{path}: {notebook.name} reads its recorded runs unless told to train; add `rerun: true` to `fixed`")
    for column, template in report.items():
        if not isinstance(template, str):
            raise SweepError(f"{path}: `report.{column}` must be a metrics key string, got {template!r}")
        try:
            names = _placeholders(template)
        except ValueError as err:
            raise SweepError(f"{path}: `report.{column}` {template!r} is not a valid template: {err}") from err
        for name in names:
            if name not in settable:
                raise SweepError(
                    f"{path}: `report.{column}` refers to {{{name}}}, which this sweep does not set; "
                    f"placeholders can be {', '.join(sorted(settable)) or 'none (the sweep sets no parameters)'}"
                )

    sweep = Sweep(
        name=path.stem, path=path, notebook=notebook, description=raw.get("description") or "",
        fixed=fixed, grid=grid, cases=[dict(c) for c in cases], seeds=seeds, report=report,
    )  # fmt: skip
    sweep.runs()  # names must be distinct: fail here rather than halfway through a sweep
    return sweep


# --- running -------------------------------------------------------------------------------


def _error_line(err: BaseException) -> str:
    """`ValueError: x=3 is cursed`: the last line of an error, the notebook's own when papermill raised."""
    if hasattr(err, "ename") and hasattr(err, "evalue"):  # papermill.PapermillExecutionError
        return f"{err.ename}: {err.evalue}".strip().splitlines()[-1]
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def _record(run: Run, notebook: Path) -> dict[str, Any]:
    """What params.json holds: enough to tell whether a finished run is still the run asked for."""
    return json.loads(json.dumps({"notebook": notebook.name, "parameters": run.params}))


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or None when it is missing or half-written by a killed process."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def is_finished(run: Run, folder: Path, notebook: Path) -> bool:
    """True when `folder` holds a successful run of exactly these parameters."""
    status = _read_json(folder / "status.json") or {}
    return (
        status.get("status") == "ok"
        and (folder / "metrics.json").is_file()
        and _read_json(folder / "params.json") == _record(run, notebook)
    )


def execute_run(run: Run, folder: Path, notebook: Path) -> dict[str, Any]:
    """Execute one run into `folder`, record params.json and status.json; return the status."""
    for stale in ("status.json", "metrics.json", "error.txt"):
        (folder / stale).unlink(missing_ok=True)
    write_json_atomic(folder / "params.json", _record(run, notebook))
    commit = git_commit()  # the code the run imports, read before it starts
    tick = time.perf_counter()
    try:
        execute_notebook(notebook, folder, run.params)
        status = {"status": "ok", "seconds": time.perf_counter() - tick, "error": ""}
    except Exception as err:  # a failed run is recorded and the sweep goes on
        status = {"status": "failed", "seconds": time.perf_counter() - tick, "error": _error_line(err)}
        write_text_atomic(folder / "error.txt", f"{status['error']}\n\n{err}\n")
    status.update(commit=commit, finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    write_json_atomic(folder / "status.json", status)
    return status


def collect(sweep: Sweep, runs_dir: str | Path) -> pd.DataFrame:
    """One row per run from what lies on disk: parameters, status, seconds, error, flattened metrics."""
    folder = Path(runs_dir) / sweep.name
    rows = []
    for run in sweep.runs():
        status = _read_json(folder / run.name / "status.json") or {"status": "not run", "seconds": math.nan, "error": ""}
        if status["status"] == "ok" and _read_json(folder / run.name / "params.json") != _record(run, sweep.notebook):
            status = {"status": "not run", "seconds": math.nan, "error": "finished with other parameters"}
        row: dict[str, Any] = {"run": run.name}
        row.update({k: v if isinstance(v, (int, float, str, bool)) else _canonical(v) for k, v in run.params.items()})
        row.update({"status": status["status"], "seconds": status["seconds"], "error": status["error"]})
        metrics = _read_json(folder / run.name / "metrics.json") if status["status"] == "ok" else None
        for key, value in flatten_scalars(metrics or {}).items():
            # A metric named like a parameter (07 writes n_digits too) keeps its own column.
            row["metrics." + key if key in row or key.startswith("metrics.") else key] = value
        rows.append(row)
    return pd.DataFrame(rows)


#: what a recorded run keeps: its parameters, status, metrics and per-user arrays, not the executed notebook
RECORDED_SUFFIXES = (".json", ".npz", ".txt")
#: the per-user validation ranks a run writes beside its test ranks (ranks.npz), with the same names:
#: what choices between arms are made on, so that the test split is read once, for the final tables
VALID_RANKS = "valid_ranks.npz"
#: where `record_sweep` puts recorded runs, relative to the repository root
RECORDED_DIR = Path("results") / "sweeps"


def record_sweep(sweep: Sweep, runs_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Copy the small files of every run of `sweep` into <dest>/<sweep.name>/ (default results/sweeps/).

    A recorded run keeps what a chapter reads (params.json, status.json with the commit it ran,
    metrics.json, its .npz arrays of per-user ranks, a failed run's error.txt) and leaves the
    executed notebook behind, so `collect` and `seed_arrays` read the recorded folder as they
    read runs/. Beside the runs: results.csv, summary.md and recorded.json (the sweep file, the
    command that reruns it, when and on which machine it was recorded). The folder is replaced
    whole, never left half-written.
    """
    source = Path(runs_dir) / sweep.name
    missing = [run.name for run in sweep.runs() if not (source / run.name / "status.json").is_file()]
    if missing:
        raise SweepError(
            f"{sweep.path}: {len(missing)} run(s) never ran ({', '.join(missing[:3])}): "
            f"run `python -m handbook.sweep {sweep.path}` first"
        )
    target = resolve(dest if dest is not None else RECORDED_DIR) / sweep.name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{sweep.name}.new."))
    try:
        for run in sweep.runs():
            (staging / run.name).mkdir()
            for path in sorted((source / run.name).iterdir()):
                if path.is_file() and path.suffix in RECORDED_SUFFIXES:
                    shutil.copy2(path, staging / run.name / path.name)
        results = collect(sweep, runs_dir)
        (staging / "results.csv").write_text(results.to_csv(index=False), encoding="utf-8")
        summary = summarize(results, sweep.report, sweep.setting_keys)
        title = f"{sweep.name}: {sweep.description}" if sweep.description else sweep.name
        (staging / "summary.md").write_text(summary_markdown(summary, sweep.report, title), encoding="utf-8")
        sweep_file = sweep.path.resolve()
        shown = sweep_file.relative_to(repo_root()) if sweep_file.is_relative_to(repo_root()) else sweep_file
        about = {
            "sweep": str(shown),
            "rerun": f"python -m handbook.sweep {shown} --record",
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "processor": cpu_model(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
            "runs": int(len(results)), "ok": int((results["status"] == "ok").sum()),
        }  # fmt: skip
        (staging / "recorded.json").write_text(json.dumps(about, indent=1) + "\n", encoding="utf-8")
        # swap: the old recording goes aside, the new one takes its name, the old one goes
        old = target.with_name(f".{sweep.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def sweep_results(sweep: Sweep, rerun: bool = False, runs_dir: str | Path | None = None,
                  recorded_dir: str | Path | None = None, workers: int = 1) -> tuple[pd.DataFrame, Path]:
    """A chapter's way to a sweep: its recorded runs (default), or, with `rerun`, its runs executed now.

    Returns the results table (`collect`) and the folder whose <sweep>/<run>/ hold the runs, for
    `seed_arrays`. Recorded runs (results/sweeps/, `record_sweep`) let a chapter compare many
    trained models in seconds; every run the sweep names must be recorded, else the error says
    which command records them.
    """
    if rerun:
        folder = Path(runs_dir) if runs_dir is not None else repo_root() / "runs"
        return run_sweep(sweep, folder, workers=workers, verbose=False), folder
    folder = resolve(recorded_dir if recorded_dir is not None else RECORDED_DIR)
    results = collect(sweep, folder)
    missing = results.loc[results["status"] == "not run", "run"].tolist()
    if missing:
        raise SweepError(
            f"{sweep.path}: {len(missing)} of {len(results)} runs are not recorded in {folder / sweep.name} "
            f"({', '.join(missing[:3])}): run `python -m handbook.sweep {sweep.path} --record`, "
            "or set the chapter's rerun parameter to True"
        )
    return results, folder


@dataclass
class RecordedRun:
    """One recorded run: its metrics.json, its per-user arrays and where it came from."""

    metrics: dict[str, Any]
    arrays: dict[str, Any]  # every .npz of the run but the validation ranks: the test ranks, per-user extras
    status: dict[str, Any]
    about: dict[str, Any]
    valid_arrays: dict[str, Any] = field(default_factory=dict)  # VALID_RANKS: the ranks choices are made on

    def describe(self) -> str:
        """One line a chapter prints: when, on which machine and commit, and how to make it again."""
        machine = self.about["machine"]
        return (
            f"recorded {self.about['recorded'][:10]} on {machine['processor']} ({machine['cpus']} CPUs) "
            f"at commit {self.status['commit'][:7]} in {self.status['seconds'] / 60:.1f} min; "
            f"again with `{self.about['rerun']}` or the chapter's rerun=True"
        )


def recorded_run(sweep: Sweep | str | Path, seed: int = 0, recorded_dir: str | Path | None = None, **expected: Any) -> RecordedRun:
    """The recorded run of a one-setting `sweep` under `seed`, as a chapter reads it by default.

    `expected` names values the chapter assumes (dataset="ml-100k"): each is compared with the
    run's metrics.json, or else its parameters, so that a chapter asked for another dataset or
    configuration says to train it now instead of showing a run of something else.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    results, folder = sweep_results(sweep, recorded_dir=recorded_dir)
    rows = results[(results["status"] == "ok") & (results.get("seed", 0) == seed)]
    if len(rows) != 1:
        raise SweepError(
            f"{sweep.path}: {len(rows)} recorded runs with seed {seed} (one expected); add the seed to the sweep "
            f"and run `python -m handbook.sweep {sweep.path} --record`, or set the chapter's rerun parameter to True"
        )
    run = folder / sweep.name / rows["run"].iloc[0]
    metrics = _read_json(run / "metrics.json") or {}
    params = (_read_json(run / "params.json") or {}).get("parameters", {})
    for key, value in expected.items():
        recorded = metrics.get(key, params.get(key, "(not recorded)"))
        if _canonical(recorded) != _canonical(value):
            raise SweepError(
                f"{run}: recorded with {key}={recorded!r}, the chapter asks for {key}={value!r}; "
                "set the chapter's rerun parameter to True to train it now"
            )
    arrays: dict[str, Any] = {}
    for path in sorted(run.glob("*.npz")):
        if path.name != VALID_RANKS:
            arrays.update(read_npz(path))
    valid = read_npz(run / VALID_RANKS) if (run / VALID_RANKS).is_file() else {}
    about = _read_json(folder / sweep.name / "recorded.json") or {}
    return RecordedRun(metrics, arrays, _read_json(run / "status.json") or {}, about, valid)


def seed_arrays(results: pd.DataFrame, sweep: Sweep, runs_dir: str | Path, filename: str = "ranks.npz") -> dict[int, dict[str, Any]]:
    """{seed: {name: array}} from `filename` (a `write_npz_atomic` file) of every successful run.

    For a sweep with one setting and several seeds, such as those chapter 11 pools; a setting
    repeated under one seed is an error rather than silently overwritten.
    """
    out: dict[int, dict[str, Any]] = {}
    for row in results[results["status"] == "ok"].to_dict("records"):
        seed = int(row.get("seed", 0))
        if seed in out:
            raise SweepError(f"{sweep.path}: several settings under seed {seed}; seed_arrays reads sweeps with one setting")
        out[seed] = read_npz(Path(runs_dir) / sweep.name / row["run"] / filename)
    return dict(sorted(out.items()))


def _metric_column(results: pd.DataFrame, key: str) -> str:
    """The results column of a flattened metrics key (prefixed when it shares a parameter's name)."""
    return f"metrics.{key}" if f"metrics.{key}" in results.columns else key


def report_values(results: pd.DataFrame, report: dict[str, str]) -> pd.DataFrame:
    """The report columns of each successful run: its template filled with the run's parameters."""
    ok = results[results["status"] == "ok"]
    values = pd.DataFrame(index=ok.index, columns=list(report), dtype=float)
    for index, row in ok.iterrows():
        for column, template in report.items():
            # .at keeps the column's own type: 8 stays 8, not 8.0
            key = template.format(**{name: results.at[index, name] for name in _placeholders(template)})
            name = _metric_column(results, key)
            if name not in results.columns or pd.isna(row[name]):
                known = [c for c in results.columns if pd.notna(row[c])]
                close = difflib.get_close_matches(key, known, n=3)
                raise KeyError(
                    f"report column {column!r}: run {row['run']!r} has no metric {key!r} in its metrics.json"
                    + (f"; close keys: {', '.join(close)}" if close else "")
                )
            values.loc[index, column] = float(row[name])
    return values


def summarize(results: pd.DataFrame, report: dict[str, str], by: list[str]) -> pd.DataFrame:
    """Per setting (the `by` parameters): n successful runs and each report column's mean and std over seeds.

    std is the sample standard deviation (ddof=1): NaN when a setting has a single run.
    """
    values = report_values(results, report)
    groups = results.groupby(by, sort=False, dropna=False) if by else [((), results)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        ok = values.loc[values.index.intersection(group.index)]
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row["n"] = len(ok)
        for column in report:
            row[f"{column} mean"] = ok[column].mean() if len(ok) else math.nan
            row[f"{column} std"] = ok[column].std(ddof=1) if len(ok) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "n", *(f"{c} {s}" for c in report for s in ("mean", "std"))])


def summary_markdown(summary: pd.DataFrame, report: dict[str, str], title: str = "", digits: int = 4) -> str:
    """The summary as a markdown table of `mean ± std` cells."""
    by = list(summary.columns[: list(summary.columns).index("n")])
    header = [*by, "n", *report]
    lines = [f"# {title}\n"] if title else []
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in summary.to_dict("records"):  # records keep each column's type (iterrows makes 8 into 8.0)
        cells = [str(row[c]) for c in by] + [str(int(row["n"]))]
        for column in report:
            mean, std = row[f"{column} mean"], row[f"{column} std"]
            cell = "" if pd.isna(mean) else f"{mean:.{digits}f}"
            cells.append(cell + (f" ± {std:.{digits}f}" if pd.notna(std) else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _passive_openmp() -> Iterator[None]:
    """Let the kernels' OpenMP threads sleep instead of spin while they wait (unless the user chose).

    Runs share the CPU with each other and with anything else running; with OpenMP's default
    busy-waiting, faiss's OPQ took 134 s instead of 7 s on a busy 2-core machine. Results are unchanged.
    """
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


def _execute_all(todo: list[Run], folder: Path, notebook: Path, workers: int, verbose: bool) -> None:
    """Execute `todo` runs, `workers` at a time, printing one line per finished run."""
    # Processes, not threads: papermill changes the working directory while a notebook runs,
    # and threads share one. Each run is its own kernel process anyway.
    pool = (
        ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 1
        else ThreadPoolExecutor(max_workers=1)
    )
    with pool:
        futures = {pool.submit(execute_run, run, folder / run.name, notebook): run for run in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            status = future.result()
            if verbose:
                error = f": {status['error']}" if status["error"] else ""
                print(f"[{done}/{len(todo)}] {futures[future].name} {status['status']} in {status['seconds']:.0f} s{error}", flush=True)


def run_sweep(
    sweep: Sweep,
    runs_dir: str | Path | None = None,
    workers: int = 1,
    verbose: bool = True,
) -> pd.DataFrame:
    """Execute every unfinished run (failed ones again), then write results.csv, summary.csv and summary.md.

    Returns the results table (one row per run). Runs go to <runs_dir>/<sweep.name>/<run>/;
    `workers` > 1 runs that many notebooks at once, each from its own worker process.
    """
    if workers < 1:
        raise ValueError(f"workers={workers}: use 1 or more")
    runs_dir = Path(runs_dir) if runs_dir is not None else repo_root() / "runs"
    folder = runs_dir / sweep.name
    runs = sweep.runs()
    todo = [run for run in runs if not is_finished(run, folder / run.name, sweep.notebook)]
    if verbose:
        print(f"{sweep.name}: {len(runs)} runs, {len(runs) - len(todo)} already finished, into {folder}", flush=True)
    with _passive_openmp():
        _execute_all(todo, folder, sweep.notebook, workers, verbose)

    results = collect(sweep, runs_dir)
    write_text_atomic(folder / "results.csv", results.to_csv(index=False))
    summary = summarize(results, sweep.report, sweep.setting_keys)
    write_text_atomic(folder / "summary.csv", summary.to_csv(index=False))
    title = f"{sweep.name}: {sweep.description}" if sweep.description else sweep.name
    write_text_atomic(folder / "summary.md", summary_markdown(summary, sweep.report, title))
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 when a run failed, 2 when the sweep file is invalid."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a sweep YAML file, e.g. sweeps/rpg-sid-length-smoke.yaml")
    parser.add_argument("--workers", type=int, default=1, help="notebooks run at once (default 1)")
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: runs/ in the repository")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a fixed parameter, e.g. --param device=cuda (value parsed as JSON)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("--record", nargs="?", const=str(RECORDED_DIR), default=None, metavar="DIR",
                        help=f"then copy the runs' metrics and ranks into DIR/<sweep>/ (default {RECORDED_DIR}), "
                        "where the chapters read recorded runs")  # fmt: skip
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: use 1 or more")

    overrides = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--param {item!r}: expected NAME=VALUE")
        overrides[name] = _parse_value(value)
    try:
        sweep = load_sweep(args.sweep, overrides)
    except (SweepError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in sweep.runs():
            print(run.name, json.dumps(run.params))
        return 0

    results = run_sweep(sweep, args.runs_dir, workers=args.workers)
    folder = (args.runs_dir or repo_root() / "runs") / sweep.name
    print(f"\n{(folder / 'summary.md').read_text(encoding='utf-8')}")
    print(f"wrote {folder / 'results.csv'}, summary.csv and summary.md")
    if args.record is not None:
        print(f"recorded the runs in {record_sweep(sweep, args.runs_dir or repo_root() / 'runs', args.record)}")
    failed = results[results["status"] != "ok"]
    if len(failed):
        print(f"{len(failed)} of {len(results)} runs failed: {', '.join(failed['run'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
