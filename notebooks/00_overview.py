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
# # 00 · Overview: generative recommendation with semantic IDs
#
# **Learning objectives.** After this notebook you can
# - draw the pipeline that every later notebook fills in, from item text to Recall@K;
# - run the handbook three ways (JupyterLab, `make run`, papermill) and find where results land;
# - check which device PyTorch will use, and what that means for the notebooks' run times.
#
# Nothing comes before this notebook. Next: `01_data`.

# %% [markdown]
# ## 0 · Setup

# %%
import platform
import time

import numpy as np
import torch

import handbook
from handbook.device import resolve_device, seed_everything
from handbook.io import write_metrics
from handbook.paths import output_dir, repo_root

# %% tags=["nbval-ignore-output"]
print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, handbook {handbook.__version__}")
print(f"CUDA available: {torch.cuda.is_available()}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/00_overview"  # where metrics.json goes, relative to the repository root
device = "auto"  # "auto", "cpu" or "cuda"
seed = 0  # random seed for the device check
matrix_size = 512  # side of the square matrices multiplied in the device check

# %%
out = output_dir(OUTPUT_DIR)
dev = resolve_device(device)
generator = seed_everything(seed)

# %% [markdown]
# ## 1 · The pipeline
#
# A classic sequential recommender (SASRec, notebook 05) gives every item its own row in an
# embedding table and scores the whole catalogue with a dot product. **Generative retrieval**
# instead names each item by a short sequence of discrete codes, its **semantic ID (SID)**, built
# from the item's content, and trains a sequence model to *generate* the SID of the next item.
# Similar items share code prefixes, so knowledge flows between them, and the output vocabulary
# stays small however large the catalogue grows.
#
# ```
# datasets -> preprocess -> embed -> tokenizers -> sid -> models -> decoding -> metrics
# raw files   5-core, LOO,   text ->  vectors ->    codes -> train on  beams or    Recall@K
#             windows        vectors  codes         tokens, token seqs scores ->   NDCG@K
#                                                   trie             item ids
# ```
#
# Each arrow is one module of the `handbook` package and one or two notebooks:
#
# | # | notebook | teaches | package |
# | --- | --- | --- | --- |
# | 01 | data | loading, 5-core, leave-one-out, sliding windows | `handbook.data` |
# | 02 | item embeddings | text templates, sentence encoders, caching | `handbook.embed` |
# | 03 | semantic-ID tokenizers | RK-Means, RQ-VAE, residual VQ, PQ/OPQ | `handbook.tokenizers` |
# | 04 | collisions | collision rates, the de-duplication digit | `handbook.sid` |
# | 05 | TIGER | encoder-decoder generative retrieval, beam search | `handbook.models`, `handbook.decoding` |
# | 06 | design choices | GRID's ablations | `handbook.models` |
# | 07 | RPG | long SIDs, multi-token prediction, graph decoding | `handbook.models.rpg` |
# | 08 | ACERec | token merger, intent token, holistic scoring | `handbook.models.acerec` |
# | 09 | ablation sweeps | papermill grids | `handbook.sweep` |
# | 10 | efficiency | latency and throughput | `make bench` |
#
# Three papers are the spine: **TIGER** (Rajput et al., 2023) and **GRID** (Ju et al., 2025)
# for short hierarchical SIDs, **RPG** (Hou et al., 2025) for long SIDs decoded in parallel, and
# **ACERec** for compressing long SIDs with attention. Notebooks that are not written yet are
# planned in the project's issues.

# %% [markdown]
# ## 2 · Three ways to run the handbook
#
# - **Read and experiment**: `make lab` opens JupyterLab on `notebooks/`. Each notebook has one
#   cell tagged `parameters`; edit it and run all.
# - **Run everything**: `make run` executes every notebook at its defaults with papermill into
#   `runs/<notebook>/` and prints a summary of each run's `metrics.json`.
# - **Change parameters from the shell**: `python -m handbook.runner -p seed=1 notebooks/01_data.ipynb`,
#   or papermill itself: `papermill notebooks/01_data.ipynb runs/x.ipynb -p seed 1 -p OUTPUT_DIR runs/x`.
#
# The `.py` file beside each notebook is its jupytext twin: edit either, then `make sync`.

# %% [markdown]
# ## 3 · Which device?
#
# Every notebook has a `device` parameter that defaults to `"auto"`: CUDA when PyTorch sees a
# GPU, else Apple's MPS, else the CPU. The defaults are sized so that each notebook runs in minutes on a
# laptop CPU; the paper-scale numbers in the README come from a GPU. A quick matrix multiply
# shows how fast this machine is (the timing is the machine's, not a result to compare).

# %%
print(f"device: {dev.type}")

# %% tags=["nbval-ignore-output"]
a = torch.randn(matrix_size, matrix_size, generator=generator).to(dev)
b = torch.randn(matrix_size, matrix_size, generator=generator).to(dev)
(a @ b).sum().item()  # warm-up
repeats = 20
start = time.perf_counter()
for _ in range(repeats):
    (a @ b).sum().item()
seconds = (time.perf_counter() - start) / repeats
gflops = 2 * matrix_size**3 / seconds / 1e9
print(f"{matrix_size}x{matrix_size} matmul: {seconds * 1e3:.2f} ms, {gflops:.1f} GFLOP/s on {dev.type}")

# %% [markdown]
# ## 4 · Where results land
#
# Every notebook ends by writing its key numbers to `OUTPUT_DIR/metrics.json` through
# `handbook.io.write_metrics`. Sweeps and tests read those files, never cell text, and the write is
# atomic: an interrupted run leaves no half-written file. `runs/` is ignored by git; embeddings and
# other recomputable artefacts are cached in `.cache/`.

# %%
print("results folder:", out.relative_to(repo_root()) if out.is_relative_to(repo_root()) else out)

# %% [markdown]
# ## Summary
#
# - A semantic ID names an item by a few discrete codes derived from its content; a sequence model
#   generates the next item's codes, and decoding maps them back to items.
# - The pipeline is data -> embeddings -> tokenizer -> SID table -> model -> decoding -> metrics,
#   one `handbook` module per step.
# - `make run` executes every notebook into `runs/`; each writes `metrics.json`.
# - `device="auto"` picks the GPU when there is one; defaults are sized for a CPU.
#
# ## Exercises
#
# 1. Run this notebook with `-p matrix_size 2048`. *Hint:* `python -m handbook.runner -p matrix_size=2048 notebooks/00_overview.ipynb`, then open `runs/00_overview/metrics.json`.
# 2. Where would a new tokenizer go in the package? *Hint:* look at the pipeline table: one concept per file.
# 3. Why does a generative recommender's output layer not grow with the catalogue? *Hint:* count the tokens a 3-digit SID with 256 codes per digit needs.

# %%
metrics = {"device": dev.type, "torch": torch.__version__, "matmul_gflops": round(gflops, 2), "matrix_size": matrix_size}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
