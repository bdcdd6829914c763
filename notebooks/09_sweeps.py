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
# Terms (SID, NDCG@K, most-popular) are in the [glossary](glossary.md).

# %% [markdown]
# ## 0 · Setup

# %%
import json
import platform

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import papermill
import torch

from handbook import plotting
from handbook.data import load_dataset, prepare
from handbook.device import resolve_device
from handbook.io import write_metrics
from handbook.metrics import bootstrap_interval, ndcg_at_k, rank_all
from handbook.models import MostPopular
from handbook.paths import output_dir, repo_root, resolve
from handbook.reading import MAX_ITEMS
from handbook.sweep import (
    SweepError,
    load_sweep,
    report_values,
    run_sweep,
    summarize,
    summary_markdown,
    sweep_results,
)

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"python {platform.python_version()}, pandas {pd.__version__}, papermill {papermill.__version__}")
print(f"device for the runs: {resolve_device('auto')}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/09_sweeps"  # runs go to OUTPUT_DIR/<sweep name>/<run>/, relative to the repository root
sweep = "sweeps/rpg-sid-length-smoke.yaml"  # the sweep whose results sections 1, 3 and 4 read, relative to the repository root
rerun = False  # False: read `sweep`'s runs recorded in results/sweeps/; True: execute its unfinished runs under OUTPUT_DIR (minutes)
live_sweep = "sweeps/matmul-throughput-smoke.yaml"  # the sweep section 2 executes here, in seconds (notebook 00 at two sizes)
seeds = None  # replace the file's seeds, e.g. [0, 1, 2]; None keeps them
workers = 1  # notebooks executed at once, each in its own process
device = "auto"  # every run's `device` parameter: "auto", "cpu" or "cuda"

# %%
out = output_dir(OUTPUT_DIR)
sweep_path = resolve(sweep)

# %% [markdown]
# ## 1 · A sweep file
#
# A sweep is a short YAML file in `sweeps/`. This is the one whose results this notebook reads:

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
#
# A sweep that trains models takes minutes per run, so the one executed here is `live_sweep`:
# notebook 00's matrix-multiply check at two sizes and two seeds, seconds per run, through the same
# machinery.

# %% tags=["nbval-ignore-output"]
live_spec = load_sweep(resolve(live_sweep), overrides={"device": device}, seeds=seeds)
live = run_sweep(live_spec, out, workers=workers, verbose=False)  # the table below says how each run went
first = out / live_spec.name / live_spec.runs()[0].name
print(f"{first.relative_to(out)}/:", ", ".join(sorted(p.name for p in first.iterdir())))
live[["run", *live_spec.name_keys, "status", "seconds"]].join(report_values(live, live_spec.report)).round(1)

# %% [markdown]
# ### 2.1 Recorded runs
#
# `python -m handbook.sweep sweeps/<sweep>.yaml --record` runs a sweep, then copies what a chapter
# reads into `results/sweeps/<sweep>/`: each run's parameters, its status (with the commit it ran
# and when it finished), its `metrics.json` and per-user ranks, but not the executed notebook; and,
# beside the runs, `results.csv`, `summary.md` and `recorded.json` (the command that records it
# again, the date, the machine). These folders are committed, so a chapter that compares many
# trained models reads them in a second. `sweep_results` is that reading: the recorded runs by
# default, or with `rerun=True` the runs executed now. The RPG sweep of section 1, as recorded:

# %% tags=["nbval-ignore-output"]
results, runs_folder = sweep_results(spec, rerun=rerun, runs_dir=out)
if rerun:
    print(f"{spec.name}: executed under {runs_folder}")
else:
    about = json.loads((runs_folder / spec.name / "recorded.json").read_text(encoding="utf-8"))
    print(f"{spec.name}: recorded {about['recorded'][:10]} on {about['machine']['processor']} ({about['machine']['cpus']} CPUs); again with `{about['rerun']}`")
    recorded_bytes = sum(path.stat().st_size for path in (runs_folder / spec.name).rglob("*") if path.is_file())
    print(f"{len(results)} runs, {recorded_bytes / 1024:.0f} KiB in results/sweeps/{spec.name}/")

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
# column's mean, its sample standard deviation over seeds and the number of successful runs `n`:
# with $x_1, \dots, x_S$ one setting's values over $S$ seeds,
#
# $$ \bar x = \frac{1}{S} \sum_{s=1}^{S} x_s, \qquad
#    \hat\sigma = \sqrt{\frac{1}{S-1} \sum_{s=1}^{S} (x_s - \bar x)^2 } . $$
#
# A test metric such as NDCG@10 is itself a mean over test users, so it carries two noises: that of
# training (another seed, another model), which $\hat\sigma$ measures, and that of the test users
# (another sample of users), which a bootstrap over users measures (notebook 06). Neither replaces
# the other.
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
# ### 4.1 The floor: most-popular on the same split
#
# Any recommender worth training should rank above *most-popular*, which scores every item by its
# number of training interactions, $s(i) = |\{(u, t) : i_{u,t} = i\}|$, the same list for every
# user. Notebooks 05-08 report it beside their models (`handbook.reading`), so each run of a sweep of
# notebook 07 carries it in its `metrics.json`. It is computed again here on the same leave-one-out
# split and history length (`MAX_ITEMS`), checked equal to the runs' own value, with a bootstrap
# interval over the test users.

# %% tags=["nbval-ignore-output"]
popular_key = "test.most-popular.ndcg@10"  # what notebooks 05-08 write for most-popular
popular = None
if popular_key in results:
    data = prepare(load_dataset("ml-100k"))  # the dataset of notebook 07 at its default
    histories, targets = data.eval_arrays("test", MAX_ITEMS)
    per_user = ndcg_at_k(rank_all(MostPopular().fit(data.train_sequences(), data.n_items).scores, histories, targets), 10)
    low, high = bootstrap_interval(per_user, seed=0)
    popular = float(per_user.mean())
    np.testing.assert_allclose(results[popular_key].dropna().to_numpy(), popular, rtol=1e-6)  # the runs' split
    print(f"most-popular NDCG@10 = {popular:.4f}, 95% interval over {len(per_user)} test users [{low:.4f}, {high:.4f}]")
    ndcg_columns = [c for c in summary.columns if c.endswith("ndcg@10 mean")]
    floor = summary[spec.setting_keys + ndcg_columns].set_index(spec.setting_keys)
    display_floor = floor.assign(**{f"{c} - most-popular": floor[c] - popular for c in ndcg_columns})
    print(display_floor.round(4).to_string())
    print("every setting's mean below most-popular's interval:", bool((floor < low).all().all()))
else:
    print(f"no {popular_key!r} in this sweep's metrics: it does not train a recommender of notebooks 05-08")

# %% [markdown]
# **The smoke results lie below most-popular.** Most-popular scores 0.0224 (interval over the 943
# test users [0.0159, 0.0289]); RPG's mean NDCG@10 is 0.0072 at m = 4 and 0.0114 at m = 8 with exact
# scoring, 0.0053 and 0.0064 with graph decoding: every setting below the interval's lower end. The
# reason is the smoke size, not RPG: each run trains a 32-wide RPG (`hidden: 32`, `ffn: 64`) for one
# epoch (`epochs: 1`), where notebook 07 reads RPG at `hidden = 128` for up to `epochs = 8`; a model
# this small and this briefly trained has not yet learned even the popularity most-popular reads off
# the counts (notebook 07 draws that plateau on its loss curve). The smoke sweep checks the
# machinery (runs, skips, tables) in minutes; what the SID length does to RPG is the question of the
# full `rpg-sid-length.yaml`, at the notebook's reading size. (The interval is most-popular's over
# test users, not a paired interval with each run: that would need the runs' per-user ranks.) Nor do
# the two lengths differ measurably: their gap is about twice the larger seed spread (0.0018 at m = 8),
# and two seeds cannot tell that from noise.

# %% [markdown]
# Each bar is a setting's mean over seeds, the error bar one standard deviation, and the dots the
# single runs: with this few seeds the dots say more than the bar.

# %%
metric = next(iter(spec.report))
labels = [", ".join(f"{k}={v}" for k, v in zip(spec.setting_keys, row, strict=True)) or "all runs" for row in summary[spec.setting_keys].itertuples(index=False)]
position = np.arange(len(summary))
fig, ax = plotting.subplots(width=max(3.5, 1.2 * len(summary) + 1.5), height=3.2)
colour = plotting.model_colour(spec.notebook.stem.split("_", 1)[-1])  # RPG's colour for notebook 07
ax.bar(position, summary[f"{metric} mean"], yerr=summary[f"{metric} std"].fillna(0), capsize=4, alpha=0.7, color=colour)
if popular is not None and metric.endswith("ndcg@10"):
    ax.axhline(popular, color=plotting.model_colour("most-popular"), linestyle="--", label="most-popular")
runs_of = values.join(results[spec.setting_keys])
for i, setting in enumerate(summary[spec.setting_keys].itertuples(index=False)):
    mine = runs_of[(runs_of[spec.setting_keys] == list(setting)).all(axis=1)]
    ax.scatter(np.full(len(mine), i), mine[metric], color="black", s=12, zorder=3, label="single runs" if i == 0 else None)
ax.set_xticks(position, labels)
ax.set_ylabel(f"{metric}, mean ± std over seeds")
ax.set_title(spec.name, fontsize=10)
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside the axes: never over the bars
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

# %% tags=["solution"]
# Exercise 1: the seeds are the outer loop and finished runs are skipped, so only seed 2's runs are new.
more = load_sweep(sweep_path, overrides={"device": device}, seeds=[0, 1, 2])
finished = {run.name for run in spec.runs() if (runs_folder / spec.name / run.name / "metrics.json").exists()}
new = [run.name for run in more.runs() if run.name not in finished]
print(f"{len(more.runs())} runs in all, {len(new)} would execute: {new}")
print("with 3 seeds the standard deviation has 2 degrees of freedom instead of 1: still a rough estimate")

# %% tags=["solution"]
# Exercise 2: a sweep of notebook 06 at smoke size over the tokenizer width; load_sweep checks it (the dry run).
mine = out / "design-width-smoke.yaml"
mine.write_text(
    """notebook: notebooks/06_design_choices.ipynb
description: GRID baseline at smoke size against the codes per level
fixed: {rerun: true, arms: [baseline], max_items: 3, d_model: 32, d_ff: 64, epochs: 1, device: auto}
grid:
  width: [32, 64]
seeds: [0, 1]
report:
  baseline: "test.baseline.ndcg@10 (constrained)"
""",
    encoding="utf-8",
)
mine_spec = load_sweep(mine)
print(f"{mine_spec.name}: {len(mine_spec.runs())} runs:", [run.name for run in mine_spec.runs()])

# %% tags=["solution"]
# Exercise 3: the error lands in the run's error.txt and status.json; the sweep goes on with the next run.
failing = load_sweep(repo_root() / "sweeps" / "matmul-throughput-smoke.yaml", overrides={"device": "cuda"}, seeds=[0])
failing_out = out / "exercise-3"
failed = run_sweep(failing, failing_out, workers=1) if not torch.cuda.is_available() else None
if failed is not None:
    folder = failing_out / failing.name / failing.runs()[0].name
    print("status:", failed["status"].tolist())
    print("files:", sorted(p.name for p in folder.iterdir()))
    print("error.txt, last line:", (folder / "error.txt").read_text(encoding="utf-8").strip().splitlines()[-1][:160])
else:
    print("this machine has a GPU: device='cuda' succeeds here")

# %% [markdown]
# With `device = "auto"` the next run of the same sweep changes a fixed parameter, so every run
# executes again and succeeds; with the same `device = "cuda"` only the failed runs are retried.
#
# ## References
#
# - Y. Hou et al. *Generating Long Semantic IDs in Parallel for Recommendation* (RPG), whose SID-length study the RPG sweep repeats (arXiv:2506.05781).
# - C. Ju et al. *Generative Recommendation with Semantic IDs: A Practitioner's Handbook* (GRID), whose design-choice ablations `grid-design-choices.yaml` sweeps (arXiv:2507.22224).
# - X. Bouthillier et al. *Accounting for Variance in Machine Learning Benchmarks* (seed noise versus data noise) (arXiv:2103.03098).
# - B. Efron, R. Tibshirani. *An Introduction to the Bootstrap* (Chapman & Hall, 1993): the bootstrap interval over test users.
# - papermill, the notebook runner: github.com/nteract/papermill.

# %%
metrics = {
    "sweep": spec.name,
    "notebook": spec.notebook.name,
    "n_runs": len(results),
    "n_ok": int((results["status"] == "ok").sum()),
    "n_failed": int((results["status"] == "failed").sum()),
    "run_seconds": float(results["seconds"].sum()),  # the runs' own time, also when this notebook skipped them
    "read": "executed" if rerun else "recorded",
    "live_sweep": live_spec.name,
    "live_n_ok": int((live["status"] == "ok").sum()),
    "summary": {
        label: {key: int(value) if key == "n" else None if pd.isna(value) else float(value) for key, value in row.items() if key not in spec.setting_keys}
        for label, (_, row) in zip(labels, summary.iterrows(), strict=True)
    },
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
