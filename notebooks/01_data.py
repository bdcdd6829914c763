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
# # 01 · Data: from raw interactions to leave-one-out sequences
#
# **Learning objectives.** After this notebook you can
# - load MovieLens-100K (or an Amazon 2014 folder) into one interaction table and one item text table;
# - explain the 5-core filter, chronological ordering and the leave-one-out split every paper here uses;
# - build sliding-window training samples, and read the statistics that decide model sizes.
#
# Comes after `00_overview`. Next: `02_item_embeddings`.

# %% [markdown]
# ## 0 · Setup

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import handbook
from handbook import plotting
from handbook.data import (
    chronological,
    items_in_order,
    k_core,
    leave_one_out,
    load_dataset,
    statistics,
    training_samples,
)
from handbook.io import write_metrics
from handbook.paths import output_dir

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"handbook {handbook.__version__}, pandas {pd.__version__}, numpy {np.__version__}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/01_data"  # where metrics.json goes, relative to the repository root
dataset = "ml-100k"  # "ml-100k", "amazon2014:<Category>", or a path to a dataset folder
k = 5  # k-core: keep users and items with at least k interactions
max_len = 20  # longest history a model sees (TIGER and GRID use 20)
sliding_window = True  # train on every prefix of each sequence (TIGER)
example_user = 0  # index of the user whose sequence is shown

# %%
out = output_dir(OUTPUT_DIR)

# %% [markdown]
# ## 1 · Loading a dataset
#
# Every loader in `handbook.data` returns the same two tables, whatever the files looked like:
# `interactions` (user, item, timestamp; file order) and `items` (one row of text fields per item).
# The default, MovieLens-100K, ships inside the `recbole` package, so it needs no download. Amazon
# 2014 folders (P5's `sequential_data.txt`, raw SNAP `reviews_*.json.gz`, or RecBole atomic files)
# load through the same call: `load_dataset("path/to/folder")`.

# %%
ds = load_dataset(dataset)
print(f"{ds.name}: {len(ds.interactions):,} interactions, {len(ds.items):,} items with text")
ds.interactions.head()

# %%
ds.items.head()

# %% [markdown]
# ## 2 · The k-core filter
#
# Users with one or two interactions cannot be split into train, validation and test; items seen
# once cannot be learned. The **k-core** removes users and items with fewer than `k` interactions,
# and repeats, because removing an item can push a user below `k`. All three papers evaluate on
# 5-cores (Amazon's files are 5-cores already, so there it changes nothing).

# %%
core = k_core(ds.interactions, k)
stats = pd.DataFrame({"raw": statistics(ds.interactions), f"{k}-core": statistics(core)})
stats

# %% [markdown]
# ## 3 · Chronological order and leave-one-out
#
# Each user's items are sorted by time (equal timestamps keep their file order, so the result is
# the same on every machine). Then the **last** item is the test target, the **second last** the
# validation target, and everything before is training history. Items get internal ids
# `1..n_items`; id `0` is padding.

# %%
data = leave_one_out(chronological(core))
item_text = items_in_order(ds.items, data.item_ids)
print(f"{data.n_users} users, {data.n_items} items, {data.dropped_users} users dropped as too short")

seq = data.sequences[example_user]
title_column = item_text.columns[0]
split = ["train"] * (len(seq) - 2) + ["valid", "test"]
pd.DataFrame(
    {"item id": seq, title_column: item_text[title_column].to_numpy()[seq - 1], "split": split}
).tail(6)

# %% [markdown]
# The evaluation arrays hold, per user, the last `max_len` items before the target, left-padded with
# zeros. Every model in the handbook reads exactly these arrays, so every results table compares
# like with like.

# %%
valid_histories, valid_targets = data.eval_arrays("valid", max_len)
test_histories, test_targets = data.eval_arrays("test", max_len)
print("valid:", valid_histories.shape, valid_targets.shape, " test:", test_histories.shape, test_targets.shape)
print("user 0 test history (last 8):", test_histories[example_user, -8:], "-> target", test_targets[example_user])

# %% [markdown]
# ## 4 · What the data looks like
#
# Sequence lengths decide `max_len`; item popularity decides how hard the task is and how well
# most-popular does. Both are heavily skewed.

# %%
lengths = np.array([len(s) for s in data.sequences])
counts = data.item_counts()[1:]
fig, (ax1, ax2) = plotting.subplots(ncols=2)
ax1.hist(lengths, bins=40)
ax1.axvline(max_len, color="k", linestyle="--", label=f"max_len = {max_len}")
ax1.set_xlabel("interactions per user")
ax1.set_ylabel("users")
ax1.legend()
plotting.long_tail(ax2, counts)
ax2.set_title("item popularity (training interactions)")
plt.show()

# %%
share_top = np.sort(counts)[::-1][: len(counts) // 10].sum() / counts.sum()
print(f"users with more than max_len items: {np.mean(lengths > max_len):.1%}")
print(f"the 10% most popular items get {share_top:.1%} of training interactions")

# %% [markdown]
# ## 5 · Training samples: sliding windows
#
# A sequence model learns "history -> next item". TIGER makes one sample from **every prefix**
# of each training sequence (sliding windows); without them, each user gives only one sample, the
# whole training history -> its last item. The windows multiply the data without new users, and
# notebook 06 measures what they are worth. GRID's code goes further and trains on every contiguous
# sub-sequence, n (n - 1) / 2 samples of n items (`training_samples(..., augmentation="subsequences")`).

# %%
train = data.train_sequences()
windows = training_samples(train, max_len, sliding_window=True)
last_only = training_samples(train, max_len, sliding_window=False)
print(f"sliding windows: {len(windows[1]):,} samples; last item only: {len(last_only[1]):,} samples")
histories, targets = windows if sliding_window else last_only
print("first samples:")
for h, t in zip(histories[:3], targets[:3], strict=True):
    print("  ", h[-5:], "->", t)

# %% [markdown]
# ## Summary
#
# - `load_dataset` gives one interaction table and one item text table for every supported source.
# - The 5-core keeps users and items with enough data; leave-one-out holds out each user's last two items.
# - Histories are the last `max_len` items, left-padded with 0; item ids run from 1 to `n_items`.
# - Sliding windows turn each training sequence into one sample per prefix.
#
# ## Exercises
#
# 1. Run with `k = 10`. How many users and items are left? *Hint:* `python -m handbook.runner -p k=10 notebooks/01_data.ipynb`.
# 2. What share of test targets already appear in the user's history? *Hint:* compare `test_targets[:, None]` with `test_histories`.
# 3. Load a RecBole atomic dataset of your own. *Hint:* a folder with `name.inter` (and `name.item`) works with `load_dataset(folder)`.

# %%
metrics = {
    "dataset": ds.name,
    "k": k,
    "raw": statistics(ds.interactions).to_dict(),
    "core": statistics(core).to_dict(),
    "n_users": data.n_users,
    "n_items": data.n_items,
    "train_samples": len(targets),
    "sliding_window": sliding_window,
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
