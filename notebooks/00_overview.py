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
from handbook import diagrams, plotting
from handbook.device import resolve_device, seed_everything
from handbook.io import write_metrics
from handbook.paths import output_dir, repo_root

plotting.setup()

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
# The whole book is one pipeline, drawn here by `handbook.diagrams.pipeline` (every figure of
# the book's mechanisms is drawn by code in `handbook.diagrams`, so they restyle together):

# %%
fig = diagrams.pipeline()

# %% [markdown]
# Each arrow is one module of the `handbook` package and one or two notebooks:
#
# | # | notebook | teaches | package |
# | --- | --- | --- | --- |
# | `01` | data | loading, 5-core, leave-one-out, sliding windows | `handbook.data` |
# | `02` | item embeddings | text templates, sentence encoders, caching | `handbook.embed` |
# | `03` | semantic-ID tokenizers | RK-Means, RQ-VAE, residual VQ, PQ/OPQ | `handbook.tokenizers` |
# | `04` | collisions | collision rates, the de-duplication digit | `handbook.sid` |
# | `05` | TIGER | encoder-decoder generative retrieval, beam search | `handbook.models`, `handbook.decoding` |
# | `06` | design choices | GRID's ablations | `handbook.models` |
# | `07` | RPG | long SIDs, multi-token prediction, graph decoding | `handbook.models.rpg` |
# | `08` | ACERec | token merger, intent token, holistic scoring | `handbook.models.acerec` |
# | `09` | ablation sweeps | papermill grids | `handbook.sweep` |
# | `10` | efficiency | latency and throughput | `make bench` |
# | `11` | every method over seeds | training noise vs test-user noise, pooled paired intervals | `handbook.sweep`, `handbook.metrics` |
#
# Three systems are the spine, from four papers: **TIGER** (Rajput et al., 2023), with **GRID**
# (Ju et al., 2025), the practitioner's handbook that re-implements and ablates it, for short
# hierarchical SIDs; **RPG** (Hou et al., 2025) for long SIDs decoded in parallel; and **ACERec**
# (2026) for compressing long SIDs with attention. The [glossary](glossary.md) defines every term
# the chapters use and says which notebook builds it.

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
# 1. How many GFLOP/s does this machine reach on a matrix of side `matrix_size * 4`, and why is it more than
#    above? *Hint:* rerun the device check with `matrix_size * 4` (or
#    `python -m handbook.runner -p matrix_size=2048 notebooks/00_overview.ipynb`, then open
#    `runs/00_overview/metrics.json`).
# 2. Where would a new tokenizer go in the package? *Hint:* one concept per file: list the
#    modules of `handbook.tokenizers`.
# 3. Why does a generative recommender's output layer not grow with the catalogue? How many
#    output tokens does TIGER need for 3 levels of `width` codes plus a de-duplication digit of
#    `width` codes, for a catalogue of 12,101 items (Amazon Beauty) and of ten times as many?
#    *Hint:* each digit has its own token range; count ranges, not items.

# %% tags=["solution", "nbval-ignore-output"]
# Exercise 1: a larger product does more arithmetic per byte moved, so the cores idle less.
big = matrix_size * 4
a = torch.randn(big, big, generator=generator).to(dev)
(a @ a).sum().item()  # warm-up
start = time.perf_counter()
(a @ a).sum().item()
print(f"{big}x{big}: {2 * big**3 / (time.perf_counter() - start) / 1e9:.1f} GFLOP/s vs {gflops:.1f} at {matrix_size}")

# %% tags=["solution"]
# Exercise 2: one file per quantizer, behind one interface (fit / encode / decode).
import pkgutil  # noqa: E402

import handbook.tokenizers  # noqa: E402

print(sorted(m.name for m in pkgutil.iter_modules(handbook.tokenizers.__path__)))
print("a new tokenizer: handbook/tokenizers/<name>.py, a subclass of tokenizers.base.Tokenizer")

# %% tags=["solution"]
# Exercise 3: the vocabulary is one token range per digit, whatever the catalogue size.
width = 256  # codes per digit, TIGER's setting
for n_items in (12_101, 121_010):
    vocabulary = 3 * width + width  # three levels, then the de-duplication digit
    print(f"{n_items:,} items: {vocabulary} SID tokens (an item-ID model needs {n_items:,} output rows)")

# %% [markdown]
# ## References
#
# - S. Rajput et al. *Recommender Systems with Generative Retrieval* (TIGER). NeurIPS 2023 (arXiv:2305.05065).
# - C. Ju et al. *Generative Recommendation with Semantic IDs: A Practitioner's Handbook* (GRID).
#   (arXiv:2507.22224); code: github.com/snap-research/GRID.
# - Y. Hou et al. *Generating Long Semantic IDs in Parallel for Recommendation* (RPG). KDD 2025
#   (arXiv:2506.05781); code: github.com/facebookresearch/RPG_KDD2025.
# - *Unleash the Potential of Long Semantic IDs for Generative Recommendation* (ACERec) (arXiv:2602.13573).
# - W.-C. Kang, J. McAuley. *Self-Attentive Sequential Recommendation* (SASRec). ICDM 2018 (arXiv:1808.09781).

# %%
metrics = {"device": dev.type, "torch": torch.__version__, "matmul_gflops": round(gflops, 2), "matrix_size": matrix_size}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
