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
# # 03 · Semantic-ID tokenizers: RK-Means, RVQ, RQ-VAE, PQ and OPQ
#
# **Learning objectives.** After this notebook you can
# - explain how residual quantisation (RK-Means, RVQ, RQ-VAE) builds a short, coarse-to-fine code, and how
#   product quantisation (PQ, OPQ) builds a long, unordered one;
# - fit each tokenizer through one interface (`fit`, `encode`, `decode`) and compare reconstruction
#   error, code usage and perplexity;
# - check that codes mean something: do items that share a first code share a genre?
#
# Comes after `02_item_embeddings`. Next: `04_collisions`.

# %% [markdown]
# ## 0 · Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from handbook import plotting
from handbook.data import items_in_order, load_dataset, prepare
from handbook.data.labels import item_labels, label_agreement, pairs_sharing, random_pairs
from handbook.embed import embed_texts, item_texts
from handbook.io import write_metrics
from handbook.paths import cache_dir, output_dir
from handbook.sid import SemanticIDs
from handbook.tokenizers import OPQ, PQ, RQVAE, ResidualVQ, RKMeans

plotting.setup()

# %% tags=["nbval-ignore-output"]
import faiss  # noqa: E402  (version print only)

print(f"torch {torch.__version__}, faiss {faiss.__version__}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/03_tokenizers"  # where metrics.json goes, relative to the repository root
dataset = "ml-100k"  # "ml-100k", "amazon2014:<Category>", or a path to a dataset folder
model = "all-MiniLM-L6-v2"  # sentence encoder of notebook 02 (embeddings come from its cache)
n_levels = 3  # digits of the residual tokenizers (GRID and TIGER: 3)
width = 64  # codes per level; 256 in the papers, whose catalogues are ~10x larger
rqvae_epochs = 300  # RQ-VAE training epochs (17-24 s on a 2-core CPU)
rvq_epochs = 20  # RVQ fine-tuning epochs after its k-means start
pq_digits = 16  # m, digits of PQ and OPQ (RPG: 16-64)
seed = 0  # seed of every tokenizer

# %%
out = output_dir(OUTPUT_DIR)

# %% [markdown]
# ## 1 · The vectors to quantise
#
# The item embeddings of notebook 02 (loaded from the cache when that notebook has run).

# %%
ds = load_dataset(dataset)
data = prepare(ds)
items = items_in_order(ds.items, data.item_ids)
X = embed_texts(item_texts(items), model=model, cache_dir=cache_dir("embeddings"), show_progress=False)
print(f"{X.shape[0]} items x {X.shape[1]} dimensions")

# %% [markdown]
# ## 2 · Residual quantisation, step by step
#
# A residual tokenizer describes a vector coarse to fine. Level 1 picks the nearest of `width`
# centroids; level 2 quantises what level 1 left over (the **residual**), and so on. Two items
# that share level-1 code are in the same broad region; the later digits tell them apart. This
# is what makes a SID a *semantic* ID: prefixes carry meaning.
#
# Here are three levels of plain residual k-means in a few lines of faiss, before the package
# version (which also L2-normalises each residual, as GRID does; see `RKMeans`).

# %%
residual = X.copy()
errors = []
for level in range(n_levels):
    kmeans = faiss.Kmeans(X.shape[1], width, niter=20, seed=seed + level, min_points_per_centroid=1)
    kmeans.train(residual)
    _, assignment = kmeans.index.search(residual, 1)
    residual = residual - kmeans.centroids[assignment[:, 0]]
    errors.append(float(np.mean(np.sum(residual**2, axis=1))))
print("squared error left after each level:", np.round(errors, 4))

# %% [markdown]
# Each level removes part of what is left: the error falls level by level.
#
# ## 3 · Five tokenizers, one interface
#
# | tokenizer | paper | code | how it is learned |
# | --- | --- | --- | --- |
# | RK-Means | GRID | `n_levels` x `width`, coarse to fine | k-means on the residuals, level by level |
# | RVQ | GRID | `n_levels` x `width` | residual codebooks refined by gradient descent (straight-through, commitment loss) |
# | RQ-VAE | TIGER | `n_levels` x `width` | an MLP auto-encoder (D -> 512 -> 256 -> 128 -> 32) with residual codebooks in its latent space |
# | PQ | RPG, ACERec | `m` x 256, unordered | the vector is cut into `m` pieces, each quantised by its own k-means |
# | OPQ | RPG, ACERec | `m` x 256, unordered | PQ after a learned rotation that balances the pieces |
#
# Every tokenizer has `fit(X)`, `encode(X) -> codes (n, n_digits)` and `decode(codes) -> X_hat`.

# %% tags=["nbval-ignore-output"]
tokenizers = {
    "RK-Means": RKMeans(n_levels=n_levels, width=width, seed=seed),
    "RVQ": ResidualVQ(n_levels=n_levels, width=width, epochs=rvq_epochs, seed=seed),
    "RQ-VAE": RQVAE(n_levels=n_levels, width=width, epochs=rqvae_epochs, seed=seed),
    "PQ": PQ(m=pq_digits, seed=seed),
    "OPQ": OPQ(m=pq_digits, seed=seed),
}
codes = {}
for name, tokenizer in tokenizers.items():
    start = time.perf_counter()
    codes[name] = tokenizer.fit_encode(X)
    print(f"{name:8s} fitted in {time.perf_counter() - start:5.1f} s -> codes {codes[name].shape}")

# %% [markdown]
# ## 4 · Reconstruction, usage, collisions
#
# - **Reconstruction error**: mean squared distance between a vector and `decode(encode(x))`. The
#   vectors have unit norm, so 1.0 would be "no information kept". PQ/OPQ spend `m x 8` bits per
#   item against `n_levels x log2(width)` for the residual tokenizers, so compare within a family.
# - **Usage** and **perplexity** per digit: how many codes are used, and exp(entropy) of their
#   distribution (equal to `width` when every code is used equally). Low perplexity means a
#   collapsed codebook: few codes carry most items.
# - **Collision rate**: share of items whose full code is shared with another item (notebook 04).

# %% tags=["nbval-ignore-output"]
labels = item_labels(items)
n_pairs = 5000
chance = label_agreement(labels, *random_pairs(len(items), n_pairs, seed))


def report(name: str, tokenizer, item_codes: np.ndarray) -> dict:
    """Key numbers of one fitted tokenizer (the same for every family)."""
    sids = SemanticIDs.from_codes(item_codes, tokenizer.codebook_size, dedup=False)
    usage = tokenizer.code_usage(item_codes)
    return {
        "digits": tokenizer.n_digits,
        "codes_per_digit": tokenizer.codebook_size,
        "bits": int(tokenizer.n_digits * np.log2(tokenizer.codebook_size)),
        "reconstruction_error": tokenizer.reconstruction_error(X),
        "codes_used": float(np.mean([(u > 0).mean() for u in usage])),
        "perplexity": [float(p) for p in tokenizer.perplexity(item_codes)],
        "collision_rate": sids.collision_rate,
        "first_code_label_agreement": label_agreement(labels, *pairs_sharing(item_codes[:, 0], n_pairs, seed)),
        "fit_seconds": tokenizer.fit_seconds,
    }


results = {name: report(name, tok, codes[name]) for name, tok in tokenizers.items()}
table = pd.DataFrame(results).T
table["perplexity"] = table["perplexity"].map(lambda p: " / ".join(f"{v:.0f}" for v in p[:4]) + (" ..." if len(p) > 4 else ""))
table.drop(columns="fit_seconds")

# %% [markdown]
# PQ/OPQ reconstruct far better because they spend many more bits. Among the residual
# tokenizers, look at the perplexities: RVQ works on raw residuals, whose deeper levels crowd onto
# a few codes near the origin, so its later digits use fewer codes and it collides more. RK-Means
# with GRID's residual normalisation, and RQ-VAE in its learned latent space, keep every level
# busy. Fit times (seconds, this machine):

# %% tags=["nbval-ignore-output"]
table[["fit_seconds"]].T.round(1)

# %% [markdown]
# ### 4.1 Code usage
#
# How many items each code carries, sorted, per digit. A flat curve is a well-used codebook.

# %%
fig, axes = plotting.subplots(ncols=len(tokenizers), width=2.8, height=2.6, sharey=True)
for ax, (name, tok) in zip(axes, tokenizers.items(), strict=True):
    for digit, usage in enumerate(tok.code_usage(codes[name])[:3]):
        ax.plot(np.sort(usage)[::-1], label=f"digit {digit + 1}")
    ax.set_title(name)
    ax.set_xlabel("code rank")
axes[0].set_ylabel("items per code")
axes[0].legend(fontsize=8)
plt.show()

# %% [markdown]
# ### 4.2 Are codes semantic?
#
# For pairs of items that share their **first** code, how often do they share a genre? Random pairs
# give the chance level. The residual tokenizers' first digit is a coarse cluster of the whole
# vector, so it should agree with genres well above chance; PQ's first digit only sees the first
# `d / m` dimensions of the vector, and OPQ's a rotated slice, so each digit alone means less: long
# SIDs are meaningful as a whole, which is why RPG pools all their tokens.

# %%
agreement = pd.Series({name: r["first_code_label_agreement"] for name, r in results.items()})
fig, ax = plotting.subplots(width=5.5, height=2.8)
agreement.plot.bar(ax=ax, color=plotting.PALETTE[0], rot=0)
ax.axhline(chance, color="k", linestyle="--", label=f"random pairs ({chance:.0%})")
ax.set_ylabel("pairs sharing a genre")
ax.legend()
plt.show()

# %% [markdown]
# ### 4.3 RQ-VAE's training curve
#
# RQ-VAE learns its encoder, decoder and codebooks together: reconstruction loss plus the codebook
# and commitment terms (weight 0.25, as TIGER). Dead codes are re-seeded from batch residuals.

# %%
history = pd.DataFrame(tokenizers["RQ-VAE"].history)
fig, ax = plotting.subplots(width=5.5, height=2.8)
history[["reconstruction", "codebook", "commitment"]].plot(ax=ax, logy=True)
ax.set_xlabel("epoch")
ax.set_ylabel("loss")
plt.show()

# %% [markdown]
# ## Summary
#
# - Residual tokenizers (RK-Means, RVQ, RQ-VAE) give short coarse-to-fine codes whose prefixes are
#   semantic; PQ/OPQ give long unordered codes that reconstruct well but whose single digits mean little.
# - All five share one interface, so the rest of the handbook can swap them by name (`make_tokenizer`).
# - Perplexity and usage expose collapsed codebooks, the classic failure of residual quantisation.
#
# ## Exercises
#
# 1. Set `width = 256` as the papers do. What happens to perplexity on 1.3k items? *Hint:* see the `RKMeans` docstring on items per centroid.
# 2. Turn off GRID's residual normalisation. *Hint:* `RKMeans(normalize_residuals=False)`; compare perplexity and collisions.
# 3. How does OPQ's reconstruction error fall with `pq_digits` in {4, 8, 16, 32}? *Hint:* each digit adds 8 bits.

# %%
metrics = {"dataset": ds.name, "n_items": int(X.shape[0]), "chance_label_agreement": chance, "tokenizers": results}
write_metrics(out, metrics)
print("wrote", sorted(metrics), sorted(results))
