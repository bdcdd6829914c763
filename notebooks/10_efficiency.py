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
# # 10 · Efficiency
#
# **Learning objectives.** After this notebook you can
# - measure the latency per user and the throughput of TIGER's beam search, RPG's exact scoring
#   and graph decoding, and ACERec's exact scoring, and say how each grows with the catalogue size,
#   the beam size and the SID length;
# - tell the costs paid once per catalogue (trie, item graph, item table) from those paid per user;
# - read the committed `make bench` results together with the machine they were measured on.
#
# Notebooks 05, 07 and 08 train these models and compare their quality; here only their cost
# matters, so the models are untrained (a forward pass costs the same whatever the weights) and
# have the papers' dimensions. Catalogues of 10k to 1M items are made by sampling codes at random.
# Everything is measured by `handbook/bench/`, the same code that `make bench` runs.

# %% [markdown]
# ## 0 · Setup

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from handbook import bench, plotting
from handbook.device import resolve_device
from handbook.io import write_metrics
from handbook.paths import output_dir

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, CPU threads: {torch.get_num_threads()}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/10_efficiency"  # where metrics.json and this run's results go, relative to the repository root
device = "auto"  # "auto", "cpu" or "cuda"
catalogue_sizes = [10_000, 100_000]  # items per catalogue (make bench: 10k, 100k, 1M)
fixed_catalogue = 10_000  # items of the beam, SID-length and training measurements (make bench: 100k)
sid_lengths = [8, 32]  # RPG / ACERec SID lengths m (make bench: 8, 16, 32, 64)
tiger_beams = [10, 20]  # TIGER beam sizes (make bench: 10, 20, 50)
graph_beams = [10, 20]  # RPG graph-decoding beams (make bench: 10, 20, 50)
batch_size = "auto"  # users per batched call; auto: 256 on CUDA, 32 otherwise
repeats = 3  # timed batch-1 calls per cell, each for another user (make bench: 5)
batch_repeats = 1  # timed batched calls per cell (make bench: 2)
train_sid_lengths = [32]  # SID lengths of the RPG / ACERec training measurements
train_steps = 2  # timed optimizer steps per model, after a warm-up step
threads = None  # torch CPU threads; None keeps torch's default (use 1 on a busy shared machine)
bench_dir = "bench"  # committed `make bench` results, relative to the repository root
seed = 0  # seed of the sampled catalogues, histories and model initialisation

# %%
out = output_dir(OUTPUT_DIR)
dev = resolve_device(device)
config = bench.BenchConfig.quick(
    catalogue_sizes=catalogue_sizes, fixed_catalogue=fixed_catalogue, sid_lengths=sid_lengths,
    tiger_beams=tiger_beams, graph_beams=graph_beams, batch_size=batch_size, repeats=repeats,
    batch_repeats=batch_repeats, train_sid_lengths=train_sid_lengths, train_steps=train_steps,
    threads=threads, seed=seed,
)  # fmt: skip

# %% [markdown]
# ## 1 · What is measured
#
# Four ways to turn a user's history into a top-10 list:
#
# | method | model | per user it computes |
# | --- | --- | --- |
# | TIGER beam search | encoder-decoder, 3 digits x 256 codes + de-duplication digit, history 20 | the encoder once, then the decoder once per digit for every beam, constrained by the prefix trie |
# | RPG exact scoring | 2-layer transformer over items, m digits x 256, history 50 | m distributions over 256 codes, then the mean log-probability of **every** item's m codes |
# | RPG graph decoding | the same model | the same m distributions, then only the items a beam walk reaches on an item graph (20 beams, 200 edges, 3 steps) |
# | ACERec exact scoring | RPG's transformer over r = 4 merged latents per item + an intent token | token-level scores of every item as RPG, plus an item-level dot product with every item |
#
# *Latency* is the wall time of one user's call (batch 1), the median over a few users after a
# warm-up call; *throughput* is users per second when `batch_size` users come in one call. Peak
# memory is measured on the warm-up call, above what the model and catalogue already hold.
#
# Two shortcuts keep 1M items affordable, and neither changes what a user waits for: graph
# decoding walks a **random** graph of the same degree (the exact k-NN graph costs O(n²) to build;
# its build time is measured on the smallest catalogue and extrapolated), and ACERec's item
# representations are merged **once** into a table (on a CPU, above 10k items, the first 10k
# items' representations are repeated to the catalogue's size). The module docstring of
# `handbook/bench/__init__.py` gives the details. The cells this run asks for:

# %%
cells = pd.DataFrame(bench.requested_cells(config))
cells.groupby(["kind", "axis", "method"]).size().rename("cells").to_frame()

# %% [markdown]
# ## 2 · Run the benchmark
#
# One call runs every cell, each at batch 1 and batched, then the training steps. The results are
# written to `OUTPUT_DIR` in the format of `make bench`'s files.

# %% tags=["nbval-ignore-output"]
results = bench.run_bench(config, device=dev, command="notebooks/10_efficiency.ipynb")
path = bench.write_results(results, out)
print(bench.describe_machine(results))
print(f"{len(results['records'])} records, {len(bench.missing_cells(results))} requested cells missing, written to {path.name}")

# %% [markdown]
# What is built once per catalogue, before any user is served: the SID table with its prefix trie
# (TIGER needs the trie, RPG and ACERec only the codes), the item graph, and ACERec's item table.
# `estimated` rows are extrapolated, as explained in section 1.

# %% tags=["nbval-ignore-output"]
builds = bench.records_frame(results, "build").astype({"sid_length": "Int64"})
builds[["what", "n_items", "sid_length", "seconds", "estimated"]].round(3)

# %% [markdown]
# ## 3 · Catalogue size
#
# Exact scoring touches every item, so its cost per user grows with the catalogue: gathering m
# log-probabilities for each of n items is O(n·m). TIGER's beam search does not score items at all;
# the catalogue enters only through the trie lookups of the beams' prefixes. Graph decoding scores
# beams x edges x steps items whatever n is; what still grows with n is its (users, n) mask of
# visited items. (Checking the graph's n x 200 entries is done once per catalogue, not per call.)

# %% tags=["nbval-ignore-output"]
bench.plot_pair(results, "catalogue")
plt.show()
bench.axis_table(results, "catalogue", "latency_ms_per_user").round(2)

# %% [markdown]
# How much slower each method gets per user when the catalogue grows from the smallest to the
# largest size (batch 1, and batched):

# %% tags=["nbval-ignore-output"]
growth = {
    f"batch {batch}": (table.iloc[-1] / table.iloc[0]).round(2)
    for batch, table in [(1, bench.axis_table(results, "catalogue")), (results["config"]["batch_size"], bench.axis_table(results, "catalogue", batched=True))]
}  # fmt: skip
print(f"latency at {max(catalogue_sizes):,} items / latency at {min(catalogue_sizes):,} items")
pd.DataFrame(growth)

# %% [markdown]
# ## 4 · Beam size
#
# TIGER's beam search runs the decoder once per digit for every beam, so its cost grows about
# linearly with the beam (and this implementation recomputes the decoder over the whole prefix,
# with no KV cache). Graph decoding's cost grows with beams x edges: every beam item brings its
# 200 neighbours to be scored.

# %% tags=["nbval-ignore-output"]
bench.plot_pair(results, "beam")
plt.show()
bench.axis_table(results, "beam", "latency_ms_per_user").round(2)

# %% [markdown]
# ## 5 · SID length
#
# Long SIDs are RPG's and ACERec's point: the transformer reads one vector per item (RPG) or r
# latents per item (ACERec) however long the SID is, so the encoder's cost does not grow with m.
# What grows is the output side: m heads, m distributions over 256 codes, and m gathered
# log-probabilities per scored item.

# %% tags=["nbval-ignore-output"]
bench.plot_pair(results, "sid_length", "peak_mem_mb")
plt.show()
bench.axis_table(results, "sid_length", "latency_ms_per_user").round(2)

# %% [markdown]
# ## 6 · Training throughput and memory
#
# A *sample* is one training row: for TIGER one (history, next item) pair, for RPG and ACERec one
# window of 50 items in which every position is labelled. *Targets* per second counts the next
# items the loss learns from, the fairer comparison. Peak memory includes AdamW's state, created at
# the first step.

# %% tags=["nbval-ignore-output"]
fig, ax = plotting.subplots(width=4.8, height=3.2)
bench.plot_training(ax, results, "targets_per_s")
plt.show()
training = bench.records_frame(results, "training")
training[["method", "sid_length", "batch_size", "samples_per_s", "targets_per_s", "peak_mem_mb", "n_parameters"]].round(1)

# %% [markdown]
# ## 7 · The committed `make bench` results
#
# `make bench` runs the full grid (10k, 100k and 1M items; m = 8 to 64; beams 10 to 50) and
# commits `bench/results-<device>.json`, one file per device it was run on, each with the
# machine description. The plots below read those files, so they show the same numbers as the
# files whatever machine opens this notebook.

# %% tags=["nbval-ignore-output"]
committed = bench.load_results(bench_dir)
if not committed:
    print(f"no results-*.json in {bench_dir}/: run `make bench` to make one")
for name, committed_results in committed.items():
    print(f"{name}: {bench.describe_machine(committed_results)}")
    skipped = [r for r in committed_results["records"] if r["status"] != "ok"]
    for r in skipped:
        print(f"  skipped {r['method']} n={r['n_items']} m={r['sid_length']} batch {r['batch_size']}: {r['reason']}")
    bench.plot_overview(committed_results, title=name)
    plt.show()

# %% tags=["nbval-ignore-output"]
for name, committed_results in committed.items():
    print(name, "- batch-1 latency per user (ms) along the catalogue axis")
    display(bench.axis_table(committed_results, "catalogue").round(2))

# %% [markdown]
# ## Summary
#
# - Exact scoring (RPG, ACERec) gathers m log-probabilities for every item, so its cost per user
#   grows with the catalogue; it needs no index and it is exact.
# - TIGER's beam search runs the decoder once per digit for every beam: it hardly depends on the
#   catalogue (only trie lookups), but grows with the beam size.
# - Graph decoding scores beams x edges x steps items per user whatever the catalogue; it needs an
#   item graph built once per catalogue (exactly, at a cost quadratic in the catalogue size).
# - Build costs, per-user latency, throughput and memory answer different questions: the bench
#   records them apart, on a described machine, and never asserts them in a test.
#
# ## Exercises
#
# 1. Add 1M items (`catalogue_sizes = [10_000, 100_000, 1_000_000]`). Which method's latency grows
#    the most, and is its growth linear? *Hint:* compare the ratio of latencies with the ratio of
#    catalogue sizes; the SID table and random graph of 1M items take a few seconds to build.
# 2. Run with `batch_size = 1` and then `256`. On a CPU, how much does batching buy each method, and
#    on a GPU? *Hint:* `make bench` on a GPU machine writes `bench/results-cuda-<gpu>.json`.
# 3. Give graph decoding 50 edges instead of 200 (`bench.BenchConfig(graph_edges=50)`): how does its
#    latency change, and what would you check in notebook 07 before keeping the sparser graph?
#    *Hint:* recall at 10 beams depends on the edges; notebook 07 sweeps beams and steps.

# %%
def per_method(table: pd.DataFrame) -> dict:
    """{method label: {axis value: number}} with string keys, for metrics.json."""
    return {method: {str(k): float(v) for k, v in column.dropna().items()} for method, column in table.items()}


metrics = {
    "device": results["machine"]["device"],
    "batch_size": results["config"]["batch_size"],
    "n_requested": len(results["requested"]),
    "n_missing": len(bench.missing_cells(results)),
    "n_skipped": sum(r["status"] != "ok" for r in results["records"]),
    "latency_ms_per_user": per_method(bench.axis_table(results, "catalogue")),
    "users_per_s": per_method(bench.axis_table(results, "catalogue", "users_per_s", batched=True)),
    "latency_by_beam": per_method(bench.axis_table(results, "beam")),
    "latency_by_sid_length": per_method(bench.axis_table(results, "sid_length")),
    "training_samples_per_s": {f"{r['method']} m={r['sid_length']}": r["samples_per_s"] for r in results["records"] if r["kind"] == "training" and r["status"] == "ok"},
    "committed_results": sorted(committed),
    "seconds": results["seconds"],
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
