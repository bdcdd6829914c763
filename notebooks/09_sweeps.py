# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (handbook)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Ablation sweeps: many runs, one table
#
# **Learning objectives.** After this notebook you can
# - write an ablation as a YAML sweep: a notebook, its fixed parameters, grid axes, cases that move together, and seeds;
# - run the sweep with papermill, resume it after an interruption or a failure, and find every run's notebook and `metrics.json`;
# - read the collected results as mean ± standard deviation over seeds, and run the full sweeps on a GPU.
#
# Notebooks 06 and 07 each train one model per choice with one seed, and 06 measures only the noise
# of the test users. A claim such as "longer semantic IDs rank better" needs the noise of training
# too: the same setting trained again with another seed. A sweep runs an unchanged notebook many
# times with different parameters, and every run writes its numbers to its own `metrics.json`.
#
# Comes after `07_rpg` (whose SID-length sweep runs here at test size). Next: `10_efficiency`.

# %% [markdown]
# ## 0 · Setup

# %%
import platform

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import papermill

from handbook import plotting
from handbook.device import resolve_device
from handbook.io import write_metrics
from handbook.paths import output_dir, repo_root, resolve
from handbook.sweep import (
    SweepError,
    load_sweep,
    report_values,
    run_sweep,
    summarize,
    summary_markdown,
)

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"python {platform.python_version()}, pandas {pd.__version__}, papermill {papermill.__version__}")
print(f"device for the runs: {resolve_device('auto')}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/09_sweeps"  # runs go to OUTPUT_DIR/<sweep name>/<run>/, relative to the repository root
sweep = "sweeps/rpg-sid-length-smoke.yaml"  # the sweep file to run, relative to the repository root
seeds = None  # replace the file's seeds, e.g. [0, 1, 2]; None keeps them
workers = 1  # notebooks executed at once, each in its own process
device = "auto"  # every run's `device` parameter: "auto", "cpu" or "cuda"

# %%
out = output_dir(OUTPUT_DIR)
sweep_path = resolve(sweep)

# %% [markdown]
# ## 1 · A sweep file
#
# A sweep is a short YAML file in `sweeps/`. This is the one this notebook runs:

# %%
print(sweep_path.read_text(encoding="utf-8"))

# %% [markdown]
# | key | meaning |
# | --- | --- |
# | `notebook` | the notebook to run, relative to the repository root |
# | `fixed` | parameters every run gets; `--param NAME=VALUE` on the command line overrides them |
# | `grid` | named axes whose cartesian product is swept (optional) |
# | `cases` | bundles of parameters that move together (optional): SID length `n_digits` and the list `digit_sweep` of lengths notebook 07 trains |
# | `seeds` | values of the notebook's `seed` parameter; every setting runs once per seed |
# | `report` | the summary's columns: a key of the flattened `metrics.json`, where `{name}` is the run's parameter |
#
# A run is `fixed` + one grid point + one case + one seed. Its name, which is also its folder,
# spells out only what varies between runs; `digit_sweep` is left out because it follows from
# `n_digits`. The seeds are the outer loop, so an interrupted sweep has seen every setting once.

# %%
spec = load_sweep(sweep_path, overrides={"device": device}, seeds=seeds)
runs = pd.DataFrame([{"run": run.name, **{key: run.params[key] for key in spec.name_keys}} for run in spec.runs()])
print(f"{spec.name}: {len(runs)} runs of {spec.notebook.name}, settings differ in {spec.setting_keys}")
runs

# %% [markdown]
# The file is checked before anything runs, against the notebook's own `parameters` cell, so a typo
# fails in a second with the fix in the message instead of after an hour of training:

# %%
typo = out / "typo.yaml"
typo.write_text(sweep_path.read_text(encoding="utf-8").replace("n_digits:", "n_digit:"), encoding="utf-8")
try:
    load_sweep(typo)
except SweepError as err:
    print(str(err).split(": ", 1)[1].split(";")[0])
typo.unlink()

# %% [markdown]
# ## 2 · Running it
#
# `run_sweep` executes each run with papermill into `OUTPUT_DIR/<sweep>/<run>/`: the executed
# notebook with all its outputs, the `metrics.json` it writes, `params.json` (the parameters it
# ran with) and `status.json` (ok or failed, seconds). A failing run leaves its error in
# `error.txt`, and the other runs go on.
#
# Running the sweep again **skips every run that finished with the same parameters** and retries
# the failed ones. Add a seed and only the new runs execute; change a fixed parameter and every run
# executes again. Kernels share the CPU, so their OpenMP threads are told to sleep rather than spin
# while they wait (`OMP_WAIT_POLICY=PASSIVE`), which changes the speed only, never a result.

# %% tags=["nbval-ignore-output"]
results = run_sweep(spec, out, workers=workers)

# %% tags=["nbval-ignore-output"]
first = out / spec.name / spec.runs()[0].name
print(f"{first.relative_to(out)}/:", ", ".join(sorted(p.name for p in first.iterdir())))

# %% [markdown]
# ## 3 · The collected results
#
# `results.csv` has one row per run: its parameters, status, seconds, error and every scalar of its
# `metrics.json`, flattened with dotted keys (`length_sweep.8.ndcg@10`). A metric that shares a
# parameter's name keeps a column of its own, prefixed `metrics.`. Here are the columns the report
# reads, for each run:

# %% tags=["nbval-ignore-output"]
values = report_values(results, spec.report)  # (successful runs, report columns)
n_metrics = results.shape[1] - len(spec.parameters) - 4  # besides run, status, seconds, error
print(f"{len(results)} runs, {len(values)} ok; {n_metrics} metric columns, e.g. {list(results.columns[-3:])}")
results[["run", *spec.name_keys, "status", "seconds"]].join(values).round(4)

# %% [markdown]
# ## 4 · Mean ± standard deviation over seeds
#
# `summarize` groups the runs by setting (every swept parameter but the seed) and gives each report
# column's mean, its sample standard deviation over seeds and the number of successful runs `n`.
# With two seeds the standard deviation is itself very uncertain; the full sweeps use three. A
# difference between two settings is worth a sentence only when it is several standard deviations
# wide.

# %% tags=["nbval-ignore-output"]
summary = summarize(results, spec.report, by=spec.setting_keys)
summary.round(4)

# %% [markdown]
# The same table as `summary.md`, written beside `summary.csv` and `results.csv` (all three
# written atomically: a crash never leaves half a table behind):

# %% tags=["nbval-ignore-output"]
print(summary_markdown(summary, spec.report))

# %% [markdown]
# Each bar is a setting's mean over seeds, the error bar one standard deviation, and the dots the
# single runs: with this few seeds the dots say more than the bar.

# %%
metric = next(iter(spec.report))
labels = [", ".join(f"{k}={v}" for k, v in zip(spec.setting_keys, row, strict=True)) or "all runs" for row in summary[spec.setting_keys].itertuples(index=False)]
position = np.arange(len(summary))
fig, ax = plotting.subplots(width=max(3.5, 1.2 * len(summary) + 1.5), height=3.2)
ax.bar(position, summary[f"{metric} mean"], yerr=summary[f"{metric} std"].fillna(0), capsize=4, alpha=0.7)
runs_of = values.join(results[spec.setting_keys])
for i, setting in enumerate(summary[spec.setting_keys].itertuples(index=False)):
    mine = runs_of[(runs_of[spec.setting_keys] == list(setting)).all(axis=1)]
    ax.scatter(np.full(len(mine), i), mine[metric], color="black", s=12, zorder=3, label="single runs" if i == 0 else None)
ax.set_xticks(position, labels)
ax.set_ylabel(f"{metric}, mean ± std over seeds")
ax.set_title(spec.name, fontsize=10)
ax.legend()
plt.show()

# %% [markdown]
# ## 5 · The full sweeps, on a GPU
#
# Each shipped sweep has a `-smoke` twin at test size. The full ones train the notebooks at their
# reading size (or larger) many times over, which is GPU work:
#
# ```bash
# make sweep SWEEP=sweeps/rpg-sid-length.yaml                      # python -m handbook.sweep sweeps/rpg-sid-length.yaml
# python -m handbook.sweep sweeps/rpg-sid-length.yaml --param device=cuda --workers 2
# python -m handbook.sweep sweeps/grid-design-choices.yaml --dry-run   # list the runs, run nothing
# ```
#
# `--param NAME=VALUE` overrides a fixed parameter (the value is read as JSON: `3`, `true`,
# `[4, 8]`, or else a string); `--workers N` runs N notebooks at once, which pays when one run
# leaves the GPU idle part of the time. The command prints the summary, writes the three files
# into `runs/<sweep>/`, and exits non-zero if any run failed. Delete `runs/<sweep>/` to start over.

# %% tags=["nbval-ignore-output"]
rows = []
for path in sorted((repo_root() / "sweeps").glob("*.yaml")):
    try:
        shipped = load_sweep(path)
        rows.append({"sweep": path.name, "notebook": shipped.notebook.name, "runs": len(shipped.runs()), "description": shipped.description})
    except SweepError as err:  # a sweep whose notebook is not there yet
        rows.append({"sweep": path.name, "notebook": "-", "runs": 0, "description": str(err).split(": ", 1)[1]})
print(pd.DataFrame(rows).to_string(index=False))

# %% [markdown]
# ## Summary
#
# - A sweep file names a notebook, its fixed parameters, grid axes, cases and seeds; every run is the unchanged notebook executed by papermill with one combination.
# - Each run keeps its executed notebook, `metrics.json`, parameters and status in its own folder; a rerun skips what finished and retries what failed.
# - `results.csv` holds every run, `summary.csv` and `summary.md` the mean ± standard deviation over seeds of the report columns: the noise of training that one run cannot show.
#
# ## Exercises
#
# 1. Set `seeds = [0, 1, 2]` and run the notebook again. How many runs execute, and how does the error bar change? *Hint:* the first two seeds are already finished.
# 2. Write a sweep of your own: notebook 06 at smoke size with a grid over `width: [32, 64]`. *Hint:* `python -m handbook.sweep your.yaml --dry-run` checks the file and lists the runs before anything trains.
# 3. Make every run fail: `device = "cuda"` on a machine without a GPU. Where does the error land, and what happens on the next run with `device = "auto"`? *Hint:* look at `error.txt` and `status.json` in a run's folder.

# %%
metrics = {
    "sweep": spec.name,
    "notebook": spec.notebook.name,
    "n_runs": len(results),
    "n_ok": int((results["status"] == "ok").sum()),
    "n_failed": int((results["status"] == "failed").sum()),
    "run_seconds": float(results["seconds"].sum()),  # the runs' own time, also when this notebook skipped them
    "summary": {
        label: {key: int(value) if key == "n" else None if pd.isna(value) else float(value) for key, value in row.items() if key not in spec.setting_keys}
        for label, (_, row) in zip(labels, summary.iterrows(), strict=True)
    },
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
