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
    samples_per_sequence,
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
# Each user's items are sorted by time. Then the **last** item is the test target, the **second
# last** the validation target, and everything before is training history. For a user with items
# $i_1, \dots, i_n$ in time order:
#
# $$\text{train} = (i_1, \dots, i_{n-2}), \qquad \text{valid: } (i_1, \dots, i_{n-2}) \to i_{n-1}, \qquad \text{test: } (i_1, \dots, i_{n-1}) \to i_n .$$
#
# **Ties.** MovieLens timestamps are seconds, and a user often rates several films in the same
# second. Equal timestamps keep their order in the file (a stable sort on user, then time, then
# file row), so the split is the same on every machine; which of two tied items is "last" is then
# an accident of the file, not a fact about the user. Items get internal ids `1..n_items`; id `0`
# is padding.

# %%
data = leave_one_out(chronological(core))
item_text = items_in_order(ds.items, data.item_ids)
print(f"{data.n_users} users, {data.n_items} items, {data.dropped_users} users dropped as too short")

seq = data.sequences[example_user]
title_column = item_text.columns[0]
split = ["train"] * (len(seq) - 2) + ["valid", "test"]
ordered = chronological(core)
times = ordered.loc[ordered["user"] == data.user_ids[example_user], "timestamp"].to_numpy()
example = pd.DataFrame(
    {"item id": seq, title_column: item_text[title_column].to_numpy()[seq - 1], "timestamp": times, "split": split}
)
example.tail(6)

# %% [markdown]
# How often does a tie decide the split, for this user and for everyone?

# %%
last_two_tied = [ordered.loc[ordered["user"] == u, "timestamp"].iloc[-2:].nunique() == 1 for u in data.user_ids]
print(f"example user: validation and test items share a timestamp: {example['timestamp'].iloc[-1] == example['timestamp'].iloc[-2]}")
print(f"users whose validation and test items share a timestamp: {np.mean(last_two_tied):.1%}")

# %% [markdown]
# For 44.1% of the users the validation and test items were rated in the same second, so on
# MovieLens which of the two is the test target is decided by the file's order. Every model sees
# the same split, so comparisons stay fair; but "predict the next item" here partly means "predict
# the next row of the file", one reason MovieLens numbers do not transfer to Amazon, whose review
# days are coarser still and whose papers' splits (P5's `sequential_data.txt`) fix one order for all.

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
# - The 5-core keeps users and items with enough data; leave-one-out holds out each user's last two items,
#   in time order, with ties kept in file order (they decide the split for many MovieLens users).
# - Histories are the last `max_len` items, left-padded with 0; item ids run from 1 to `n_items`.
# - Sliding windows turn each training sequence into one sample per prefix.
#
# ## Exercises
#
# 1. How many users and items are left in a 10-core? *Hint:* `k_core(ds.interactions, 10)` and `statistics`.
# 2. What share of test targets already appear in the user's history? *Hint:* compare `test_targets[:, None]` with `test_histories`.
# 3. How many training samples do prefixes and GRID's sub-sequences give, and why do sub-sequences grow so much faster?
#    *Hint:* `samples_per_sequence(lengths, augmentation)`; a sequence of n items has n - 1 prefixes.

# %% tags=["solution"]
# Exercise 1: a stricter core removes users and items, and each removal can push others below k.
statistics(k_core(ds.interactions, 10))

# %% tags=["solution"]
# Exercise 2: repeat consumption (MovieLens users rate each film once, so this is 0 here).
print(f"test targets already in the history: {np.mean((test_histories == test_targets[:, None]).any(axis=1)):.1%}")

# %% tags=["solution"]
# Exercise 3: n - 1 prefixes against n (n - 1) / 2 contiguous runs per sequence of n items.
train_lengths = [len(sequence) for sequence in train]
for augmentation in ("none", "prefixes", "subsequences"):  # counted, not built: sub-sequences would fill gigabytes
    print(f"{augmentation:13s} {samples_per_sequence(train_lengths, augmentation).sum():>12,} samples")

# %% [markdown]
# ## References
#
# - F. M. Harper, J. A. Konstan. *The MovieLens Datasets: History and Context*. ACM TiiS 2015.
# - J. McAuley et al. *Image-based Recommendations on Styles and Substitutes* (Amazon reviews) (arXiv:1506.04757).
# - W.-C. Kang, J. McAuley. *Self-Attentive Sequential Recommendation* (leave-one-out protocol) (arXiv:1808.09781).
# - Every term: [glossary](glossary.md).

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
