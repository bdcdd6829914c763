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
# # 04 · Collisions: when two items get the same semantic ID
#
# **Learning objectives.** After this notebook you can
# - measure how often a tokenizer gives two items the same code, and how that depends on depth and width;
# - explain the de-duplication digit of TIGER and GRID, and what it costs;
# - explain why long PQ/OPQ IDs (RPG, ACERec) barely collide and need no such digit;
# - build the prefix trie of a SID table and run one constrained beam-search step by hand.
#
# Comes after `03_tokenizers`. Next: `05_tiger`.

# %% [markdown]
# ## 0 · Setup

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from handbook import checks, diagrams, plotting
from handbook.collisions import paper_collisions
from handbook.data import items_in_order, load_dataset, prepare
from handbook.decoding.beam import beam_search
from handbook.embed import embed_texts, item_texts
from handbook.io import write_metrics
from handbook.paths import cache_dir, output_dir, repo_root
from handbook.sid import N_SPECIAL_TOKENS, SemanticIDs
from handbook.tokenizers import OPQ, PQ, RKMeans

plotting.setup()

# %% tags=["parameters"]
OUTPUT_DIR = "runs/04_collisions"  # where metrics.json goes, relative to the repository root
dataset = "ml-100k"  # "ml-100k", "amazon2014:<Category>", or a path to a dataset folder
model = "all-MiniLM-L6-v2"  # sentence encoder of notebook 02
levels = [1, 2, 3, 4]  # RK-Means depths to try
widths = [16, 32, 64, 128, 256]  # RK-Means widths (codes per level) to try
dedup_width = 64  # width of the 3-level table whose de-duplication digit is studied
pq_digits = [4, 8, 16, 32]  # PQ lengths m to try (256 codes per digit)
opq_digits = 32  # OPQ length m (RPG's Beauty setting)
paper_dataset = None  # None: show the recorded paper-scale table; or a dataset to compute it on (minutes)
beam_size = 3  # beams of the hand-made constrained search
seed = 0  # seed of every tokenizer and of the stand-in scorer

# %%
out = output_dir(OUTPUT_DIR)

# %% [markdown]
# ## 1 · Why collisions matter
#
# A generative recommender outputs a code; the code is then looked up to find the item. If two
# items share one code, the model cannot say which of them it means. TIGER and GRID resolve this
# with one more digit; RPG avoids it with codes so long that sharing is rare.
#
# The **collision rate** is the share of items whose code is shared with at least one other item.
# A useful reference is the rate for codes drawn uniformly at random: an item collides unless each
# of the other $n - 1$ items misses its code,
#
# $$P(\text{collide}) = 1 - \left(1 - W^{-L}\right)^{n-1}$$
#
# for $L$ levels of $W$ codes. Real codes collide more, because similar items are *meant* to get
# similar codes.

# %%
ds = load_dataset(dataset)
data = prepare(ds)
texts = pd.Series(item_texts(items_in_order(ds.items, data.item_ids)))
X = embed_texts(texts.tolist(), model=model, cache_dir=cache_dir("embeddings"), show_progress=False)
n = X.shape[0]
print(f"{n} items, of which {texts.duplicated(keep=False).sum()} have the same text as another item")

# %% [markdown]
# ## 2 · Depth and width (RK-Means)

# %%
rows = []
for width in widths:
    tokenizer = RKMeans(n_levels=max(levels), width=width, seed=seed).fit(X)
    codes = tokenizer.encode(X)
    for depth in levels:
        # The first `depth` digits of a deeper RK-Means are exactly a depth-level RK-Means.
        sids = SemanticIDs.from_codes(codes[:, :depth], width, dedup=False)
        uniform = 1 - (1 - float(width) ** -depth) ** (n - 1)
        rows.append({"levels": depth, "width": width, "collision_rate": sids.collision_rate, "uniform_codes": uniform, "largest_group": sids.largest_collision_group})
grid = pd.DataFrame(rows)
grid.pivot(index="levels", columns="width", values="collision_rate").round(3)

# %%
fig, ax = plotting.subplots(width=5.5, height=3.4)
for colour, (depth, part) in zip(plotting.PALETTE, grid.groupby("levels"), strict=False):
    ax.plot(part["width"], part["collision_rate"], "o-", color=colour, label=f"{depth} level{'s' if depth > 1 else ''}")
    ax.plot(part["width"], part["uniform_codes"], ":", color=colour)
ax.set_xscale("log", base=2)
ax.set_xlabel("width W (codes per level)")
ax.set_ylabel("share of items colliding")
ax.set_title("RK-Means (solid) vs uniform random codes (dotted)")
ax.legend()
plt.show()

# %% [markdown]
# How many times the random-code rate is each real rate?

# %%
grid.assign(ratio=grid["collision_rate"] / grid["uniform_codes"]).pivot(index="levels", columns="width", values="ratio").round(1)

# %% [markdown]
# With one level both curves sit near 1 (a thousand items in at most 256 cells must share), so the
# ratio is about 1. From two levels on, real codes collide several times more often than random ones,
# and the gap grows with the code space: the tokenizer puts near-duplicates (sequels, one title in
# two editions) in the same cell on purpose. Past a point, more levels barely help, because the
# residuals of near-duplicates are tiny.
#
# ## 3 · The de-duplication digit
#
# TIGER and GRID append one digit to every SID: 0 for the first item of a group that shares a code,
# 1, 2, ... for the others. Every SID becomes unique, at a price: one more token per item in every
# sequence, and a digit whose values carry no meaning (they follow item order).

# %%
codes = RKMeans(n_levels=3, width=dedup_width, seed=seed).fit_encode(X)
table = SemanticIDs.from_codes(codes, dedup_width, dedup=True)
print(table)
extra = table.codes[:, -1]
print(f"distinct SIDs: {len(np.unique(table.codes, axis=0))} of {table.n_items} items")
print(f"dedup digit: {np.mean(extra > 0):.1%} of items need a non-zero value; largest value {extra.max()}; "
      f"vocabulary {table.vocab_size} tokens ({table.codebook_sizes[-1]} for the extra digit)")
groups = pd.Series(extra).value_counts().sort_index()
groups.rename("items").to_frame().T

# %% [markdown]
# The extra digit needs as many values as the largest collision group. With a small width that
# group can be large, and the model must then learn arbitrary digits to tell near-duplicates apart;
# notebook 06 measures what the width choice does to recommendation quality.
#
# ## 4 · Long IDs barely collide
#
# PQ cuts the vector into `m` pieces and quantises each with 256 codes: a code space of `256^m`.
# Each added digit splits the remaining groups further, and by `m = 16-32` the collision rate
# reaches a floor.

# %%
pq_rows = []
for m in pq_digits:
    sids = SemanticIDs.from_codes(PQ(m=m, seed=seed).fit_encode(X), 256, dedup=False)
    pq_rows.append({"tokenizer": "PQ", "m": m, "collision_rate": sids.collision_rate, "colliding_items": sids.n_colliding_items})
opq_table = SemanticIDs.from_codes(OPQ(m=opq_digits, seed=seed).fit_encode(X), 256, dedup=False)
pq_rows.append({"tokenizer": "OPQ", "m": opq_digits, "collision_rate": opq_table.collision_rate, "colliding_items": opq_table.n_colliding_items})
pq_table = pd.DataFrame(pq_rows)
pq_table

# %% [markdown]
# The floor is the items whose *text* is identical to another item's (counted in section 1):
# MovieLens lists a few films twice. Their vectors are equal, so no tokenizer can separate them,
# and RPG leaves them as they are.
#
# ### 4.1 At paper scale
#
# The papers' catalogues are ten times larger (Amazon Beauty) with 256 codes per digit.
# `handbook.collisions.paper_collisions` fits the four settings they use. Computing it on Beauty
# takes minutes (its embeddings first), so by default this cell shows the table recorded by
# `python -m handbook.collisions <Beauty folder>`, with its command, date and machine; pass
# `paper_dataset` to compute it here instead.

# %%
if paper_dataset is None:
    record = json.loads((repo_root() / "results" / "Beauty" / "collisions.json").read_text())
    print(f"recorded {record['date']} on {record['machine']}: {record['command']}")
    paper = pd.DataFrame(record["table"]).set_index("tokenizer")
    paper_items = record["n_items"]
else:
    paper_ds = load_dataset(paper_dataset)
    paper_texts = item_texts(items_in_order(paper_ds.items, prepare(paper_ds).item_ids))
    paper_X = embed_texts(paper_texts, model=model, cache_dir=cache_dir("embeddings"), show_progress=False)
    paper, paper_items = paper_collisions(paper_X, paper_texts, seed=seed), len(paper_texts)
print(f"{paper_items:,} items")
paper

# %% [markdown]
# With 256 codes per level on the larger catalogue, about one item in four shares its 3-digit
# code (the first row), so TIGER's de-duplication digit is no detail at paper scale; a fourth
# level halves that, and long PQ/OPQ codes leave few items colliding, a handful of which
# (the last column) have a text identical to another item's.

# %% [markdown]
# ## 5 · The prefix trie and constrained beam search
#
# A decoder that generates a SID digit by digit can produce codes that name no item. The **prefix
# trie** of the SID table stores, for every valid prefix, the codes that continue it. Here are the
# SIDs of a few items that share their first code, in the 3 x `dedup_width` table with its
# de-duplication digit. The coloured path is an item that collided: its first three codes are
# another item's, so its de-duplication digit is not 0 (the drawing starts at the shared first code):

# %%
collided = np.flatnonzero(table.codes[:, -1] > 0)[0]  # the first row whose de-duplication digit is not 0
same_first = np.flatnonzero(table.codes[:, 0] == table.codes[collided, 0])
twins = same_first[(table.codes[same_first, :-1] == table.codes[collided, :-1]).all(axis=1)]  # same three codes
drawn = np.concatenate([twins, same_first[~np.isin(same_first, twins)]])[:12]
print(f"item {collided + 1}: SID {table.codes[collided].tolist()}, sharing its first three codes with item(s) {(twins[twins != collided] + 1).tolist()}")
print(f"{len(same_first)} items start with code {table.codes[collided, 0]}; drawn: {len(drawn)}")
fig = diagrams.prefix_trie(table.codes[drawn, 1:], item_ids=drawn + 1, highlight=tuple(table.codes[collided, 1:]),
                           root=f"code {table.codes[collided, 0]}", first_digit=2)  # fmt: skip

# %% [markdown]
# **Constrained beam search** keeps the $B$ best prefixes. At digit $t$ a beam with prefix $c_{<t}$
# scores each next code $c$ with the model's logits $\ell_c$, masked to the trie's children
# $\mathcal{A}(c_{<t})$ and renormalised over them:
#
# $$\log p(c \mid c_{<t}) = \ell_c - \log \sum_{c' \in \mathcal{A}(c_{<t})} e^{\ell_{c'}}, \qquad
# \text{score}(c_{\le t}) = \sum_{s \le t} \log p(c_s \mid c_{<s}),$$
#
# and the $B$ best of all (beam, code) pairs become the next beams. Written out in plain Python for
# one user, with a stand-in scorer (fixed random token vectors; notebook 05 plugs in TIGER):

# %%
g = torch.Generator().manual_seed(seed)
token_vectors = torch.randn(table.vocab_size, 16, generator=g)  # (vocab, 16)
readout = torch.randn(16, table.vocab_size, generator=g)  # (16, vocab)


def step_fn(rows, prefix_tokens):  # (N,) batch rows, (N, t) token ids -> (N, vocab) logits
    return (token_vectors[prefix_tokens].sum(1) + 1.0) @ readout


def to_tokens(codes):  # digit j's code c is token N_SPECIAL_TOKENS + offset_j + c
    return torch.tensor([[N_SPECIAL_TOKENS + table.offsets[j] + c for j, c in enumerate(codes)]], dtype=torch.long)


# BEGIN SOLUTION (defines: by_hand)
def beam_by_hand(step_fn, sids, beam_size):
    beams = [((), 0.0)]  # (codes so far, summed log-prob)
    for level, size in enumerate(sids.codebook_sizes):
        start = N_SPECIAL_TOKENS + sids.offsets[level]  # this digit's token range
        candidates = []
        for codes, score in beams:
            logits = step_fn(torch.zeros(1, dtype=torch.long), to_tokens(codes).reshape(1, -1))[0, start : start + size]
            allowed = sids.allowed_next(list(codes))  # the trie's children of this prefix
            logp = torch.log_softmax(logits[allowed], dim=0)  # renormalised over them only
            candidates += [(codes + (int(c),), score + float(lp)) for c, lp in zip(allowed, logp, strict=True)]
        beams = sorted(candidates, key=lambda beam: -beam[1])[:beam_size]
    return beams


by_hand = beam_by_hand(step_fn, table, beam_size)  # [(codes, log-prob)] best first
# END SOLUTION

# %% [markdown]
# The package's `beam_search` does the same for a whole batch of users at once, with the trie as
# sorted arrays (`SemanticIDs.allowed_mask`) instead of a Python loop. Same beams, same scores:

# %%
result = beam_search(step_fn, 1, table, beam_size, constrained=True)
checks.computed(by_hand=by_hand, hint="at each digit: mask codes outside the trie, log-softmax over the rest, keep the best beams")
checks.equal("the codes of by_hand", [codes for codes, _ in by_hand], result.codes[0].tolist())
checks.close("the scores of by_hand", [score for _, score in by_hand], result.scores[0], rtol=1e-5, atol=1e-5)
for beam_codes, score in by_hand:
    print(beam_codes, f"log-prob {score:.4f} -> item {table.lookup(np.array(beam_codes)) + 1}")
print("beam_search equals the hand-made search; items", result.items[0].tolist())

# %% [markdown]
# ## Summary
#
# - Real codes collide far more than random ones once there are two levels or more: similar items land in the same cell by design.
# - Depth and width lower the rate, with diminishing returns; the de-duplication digit makes every SID unique at the cost of one meaningless token per item.
# - Long PQ/OPQ IDs have a code space so large that only items with near-identical text collide.
# - The prefix trie lists the valid continuations of every prefix; constrained beam search masks the rest and renormalises.
#
# ## Exercises
#
# 1. Which items collide in the 3 x 64 table, and what do their texts have in common?
#    *Hint:* `np.unique(codes, axis=0, return_inverse=True, return_counts=True)`, then look up `texts`.
# 2. How many values would the de-duplication digit need with `width = 16`?
#    *Hint:* `SemanticIDs.from_codes(..., dedup=True).dedup_size`.
# 3. How many valid continuations does the trie offer at each digit, on average over prefixes?
#    Why is the last digit so constrained? *Hint:* `table.trie_sizes` counts the prefixes per level.

# %% tags=["solution"]
# Exercise 1: the groups of items that share a 3-digit code.
_, group, size = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
group = group.reshape(-1)
for group_id in np.flatnonzero(size > 1)[:4]:
    print(" | ".join(texts[group == group_id].str.slice(0, 40)))

# %% tags=["solution"]
# Exercise 2: the largest collision group decides the extra digit's size.
narrow = SemanticIDs.from_codes(RKMeans(n_levels=3, width=16, seed=seed).fit_encode(X), 16, dedup=True)
print(f"width 16: the de-duplication digit needs {narrow.dedup_size} values (width {dedup_width}: {table.dedup_size})")

# %% tags=["solution"]
# Exercise 3: children per prefix = prefixes at the next level / prefixes at this level.
sizes = [1, *table.trie_sizes]
print("prefixes per level:", sizes)
print("mean children per prefix:", [round(b / a, 2) for a, b in zip(sizes[:-1], sizes[1:], strict=True)])

# %% [markdown]
# ## References
#
# - S. Rajput et al. *Recommender Systems with Generative Retrieval* (TIGER), Sec. 3.1 on collisions (arXiv:2305.05065).
# - C. Ju et al. *Generative Recommendation with Semantic IDs: A Practitioner's Handbook* (GRID) (arXiv:2507.22224).
# - Y. Hou et al. *Generating Long Semantic IDs in Parallel for Recommendation* (RPG) (arXiv:2506.05781).
# - H. Jégou, M. Douze, C. Schmid. *Product Quantization for Nearest Neighbor Search*. TPAMI 2011;
#   T. Ge et al. *Optimized Product Quantization*. TPAMI 2014.
# - Every term: [glossary](glossary.md).

# %%
rkmeans_3 = grid[grid["levels"] == 3].set_index("width")["collision_rate"]
metrics = {
    "dataset": ds.name,
    "n_items": n,
    "rkmeans_collision_rate": {f"{r.levels}x{r.width}": r.collision_rate for r in grid.itertuples()},
    "rkmeans_3_levels_by_width": {int(w): float(v) for w, v in rkmeans_3.items()},
    "dedup": table.summary(),
    "pq_collision_rate": {int(r.m): r.collision_rate for r in pq_table[pq_table.tokenizer == "PQ"].itertuples()},
    "opq_collision_rate": opq_table.collision_rate,
    "opq_digits": opq_digits,
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
