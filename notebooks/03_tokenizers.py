# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
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

from handbook import checks, plotting
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
# is what makes a SID a *semantic* ID: prefixes carry meaning. With codebooks
# $\{e_{l,k}\}_{k=1}^{W}$ for levels $l = 1 \dots L$:
#
# $$r_1 = x, \qquad c_l = \arg\min_k \lVert r_l - e_{l,k} \rVert^2, \qquad r_{l+1} = r_l - e_{l,c_l}, \qquad \hat x = \sum_{l=1}^{L} e_{l,c_l}.$$
#
# Here are three levels of plain residual k-means in a few lines of faiss: each level's codebook
# is the k-means of the residuals the previous levels left.

# %% tags=["nbval-ignore-output"]
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
# The package's `RKMeans` adds one step of GRID's: it L2-normalises each level's residual before
# quantising it, $r_l \leftarrow r_l / \lVert r_l \rVert$ (a zero residual, an item alone in its
# cell, stays zero). Encoding with its fitted codebooks, by hand in numpy, gives the package's
# codes. The check compares the distances to the chosen codes, level by level, so that an exact tie
# between two centroids, where either code is right, does not fail it:

# %%
rkmeans = RKMeans(n_levels=n_levels, width=width, seed=seed).fit(X)
package_codes = rkmeans.encode(X)  # (n, L)
residual = X.copy()
# BEGIN SOLUTION (defines: hand_codes, hand_dist)
hand_codes, hand_dist = [], []  # per level: each item's nearest code, and its squared distance
for book in rkmeans.codebooks:
    # GRID's normalisation; an item its centroid reconstructed exactly keeps its zero residual
    residual = residual / np.maximum(np.linalg.norm(residual, axis=1, keepdims=True), 1e-12)
    distances = ((residual[:, None, :] - book[None]) ** 2).sum(-1)  # (n, W)
    hand_codes.append(distances.argmin(1))
    hand_dist.append(distances.min(1))
    residual = residual - book[hand_codes[-1]]
hand_codes, hand_dist = np.stack(hand_codes, 1), np.stack(hand_dist, 1)  # (n, L) each
# END SOLUTION

# %% [markdown]
# The check: the distance of each item's residual to its code, level by level, as the package's
# codes give it, and the codes themselves (equal up to exact ties, reported as a share):

# %%
residual, package_dist = X.copy(), []
for level, book in enumerate(rkmeans.codebooks):
    residual = residual / np.maximum(np.linalg.norm(residual, axis=1, keepdims=True), 1e-12)
    package_dist.append(((residual - book[package_codes[:, level]]) ** 2).sum(-1))
    residual = residual - book[package_codes[:, level]]
checks.close("hand_dist", hand_dist, np.stack(package_dist, 1), rtol=1e-5, atol=1e-6,
             hint="at each level: normalise the residual, take the nearest code, subtract it")  # fmt: skip
checks.computed(hand_codes=hand_codes, hint="an (n, L) array of each item's code per level")
print(f"distances equal to the package's; codes equal: {np.mean(hand_codes == package_codes):.2%}")

# %% [markdown]
# Each level removes part of what is left: the error falls level by level.
#
# ## 3 · Five tokenizers, one interface
#
# | tokenizer | paper | code | how it is learned |
# | --- | --- | --- | --- |
# | RK-Means | GRID | `n_levels` x `width`, coarse to fine | k-means on the residuals, level by level |
# | RVQ | GRID | `n_levels` x `width` | residual codebooks refined by gradient descent (straight-through, commitment loss) |
# | RQ-VAE | TIGER | `n_levels` x `width` | an MLP auto-encoder (`D -> 512 -> 256 -> 128 -> 32`) with residual codebooks in its latent space |
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
table = pd.DataFrame(results).T.infer_objects()  # one dtype per column, so that round() reaches every number
table["perplexity"] = table["perplexity"].map(lambda p: " / ".join(f"{v:.0f}" for v in p[:4]) + (" ..." if len(p) > 4 else ""))
table.drop(columns="fit_seconds").round(4)

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
n_cols = 3  # two rows of three panels: legible at the book's column width
fig, axes = plotting.subplots(ncols=n_cols, nrows=-(-len(tokenizers) // n_cols), width=3.0, height=2.4, sharey=True)
for ax, (name, tok) in zip(axes.flat, tokenizers.items(), strict=False):
    for digit, usage in enumerate(tok.code_usage(codes[name])[:3]):
        ax.plot(np.sort(usage)[::-1], label=f"digit {digit + 1}")
    ax.set_title(name)
    ax.set_xlabel("code rank")
for ax in axes[:, 0]:
    ax.set_ylabel("items per code")
for ax in axes.flat[len(tokenizers):]:  # the spare panel holds the legend
    ax.axis("off")
    ax.legend(*axes.flat[0].get_legend_handles_labels(), loc="center", title="first three digits")
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
# ### 4.3 One RQ-VAE training step, by hand
#
# RQ-VAE learns an encoder $z = f(x)$, residual codebooks in its latent space and a decoder $g$
# together. Quantisation (`argmin`) has no gradient, so two tricks make it train. The
# **straight-through estimator** feeds the decoder $z + \mathrm{sg}(\hat z - z)$: the value of the
# quantised latent $\hat z = \sum_l e_{l,c_l}$, the gradient of $z$ ($\mathrm{sg}$ = stop gradient).
# The **codebook** and **commitment** terms pull codes and residuals towards each other:
#
# $$\mathcal{L} = \lVert x - g(z + \mathrm{sg}(\hat z - z)) \rVert^2 + \sum_{l=1}^{L} \Big( \lVert \mathrm{sg}(r_l) - e_{l,c_l} \rVert^2 + \beta \, \lVert r_l - \mathrm{sg}(e_{l,c_l}) \rVert^2 \Big)$$
#
# with TIGER's commitment weight, `beta = 0.25`.
#
# As in the reference code (GRID, RQ-VAE-Recommender), the next residual carries no gradient,
# $r_{l+1} = \mathrm{sg}(r_l - e_{l,c_l})$. Read the sum with that in mind: only $r_1 = z$ is
# connected to the encoder, so only level 1's commitment term trains the encoder; the terms of
# levels $l \ge 2$ train their codebooks (and their commitment terms carry no gradient at all).
# `RQVAE(residual_gradient="through")` keeps the gradient through every residual, the literal
# reading of the equation; the over-seeds chapter measures the difference.
# The forward of one batch of 8 real items through the fitted model, by hand:

# %%
rqvae = tokenizers["RQ-VAE"]
x = torch.from_numpy(X[:8])  # (8, 384)
# BEGIN SOLUTION (defines: step_codes, z_hat, reconstruction, codebook_loss, commitment_loss, loss)
z = rqvae.encoder(x)  # (8, 32)
residual, z_hat, codebook_loss, commitment_loss, step_codes = z, torch.zeros_like(z), 0.0, 0.0, []
for book in rqvae.quantizer.codebooks:  # (W, 32) per level
    code = torch.cdist(residual, book).argmin(1)
    e = book[code]
    codebook_loss = codebook_loss + (residual.detach() - e).pow(2).sum(-1).mean()
    commitment_loss = commitment_loss + (residual - e.detach()).pow(2).sum(-1).mean()
    z_hat, residual = z_hat + e, (residual - e).detach()
    step_codes.append(code)
step_codes = torch.stack(step_codes, 1)  # (8, L)
straight_through = z + (z_hat - z).detach()
reconstruction = (rqvae.decoder(straight_through) - x).pow(2).sum(-1).mean()
loss = reconstruction + codebook_loss + rqvae.beta * commitment_loss
# END SOLUTION

# %% [markdown]
# The package computes the same terms (`RQVAE.losses`, the forward its training loop runs), and the
# straight-through input equals the quantised latent in value:

# %% tags=["nbval-ignore-output"]
quantized, terms = rqvae.losses(x)
checks.equal("step_codes", step_codes, quantized.codes, hint="the nearest code of each level's residual")
checks.close("z_hat", z_hat, quantized.straight_through, hint="the sum of the chosen codes of every level")
level_hint = "the sum over levels of ||r_l - e_l||^2, each a batch mean"
checks.close("reconstruction", reconstruction, terms["reconstruction"], hint="squared L2 of decoder(z + sg(z_hat - z)) - x, batch mean")
checks.close("codebook_loss", codebook_loss, terms["codebook"], hint=level_hint + ", with r_l detached")
checks.close("commitment_loss", commitment_loss, terms["commitment"], hint=level_hint + ", with e_l detached")
checks.close("loss", loss, terms["loss"], hint="reconstruction + codebook + beta * commitment")
print("RQVAE.losses equals the hand computation:")
print(f"reconstruction {reconstruction.item():.4f}, codebook {codebook_loss.item():.4f}, "
      f"commitment {commitment_loss.item():.4f}, total {loss.item():.4f}")  # fmt: skip

# %% [markdown]
# ### 4.4 RQ-VAE's training curve
#
# The codebook and commitment terms are the *same number*, $\lVert r_l - e_{l,c_l} \rVert^2$ summed
# over levels; they differ only in what their gradient moves (the codes, or the encoder), so the
# curve draws it once. Dead codes are re-seeded from batch residuals.

# %% tags=["nbval-ignore-output"]
history = pd.DataFrame(rqvae.history)
history["relative quantisation error"] = history["codebook"] / history["latent_norm"]
fig, (left, right) = plotting.subplots(ncols=2, width=3.6, height=2.8)
history[["reconstruction", "codebook"]].rename(columns={"codebook": "codebook = commitment"}).plot(ax=left, logy=True)
left.set_xlabel("epoch")
left.set_ylabel("loss (squared L2, batch mean)")
history[["latent_norm", "relative quantisation error"]].plot(ax=right, logy=True)
right.set_xlabel("epoch")
right.set_ylabel("value")
plt.show()
print(history[["codebook", "latent_norm", "relative quantisation error"]].iloc[[0, -1]].round(4).to_string())

# %% [markdown]
# Both quantisation numbers rise while training goes well, for two reasons the table separates.
# The reconstruction term lets the encoder spread its latents out: their squared norm grows
# from 0.0704 in the first epoch to 0.6711 in the last, and a code's squared error grows with the
# scale of what it quantises. And the codes follow only part of the way: even relative to the
# latents' size the error rises, from 0.2119 to 0.3534, because at `beta = 0.25` the
# reconstruction pulls harder on the encoder than the commitment does. What the tokenizer is
# trained for, the reconstruction (left, blue), falls throughout.

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
# 1. Set `width = 256` as the papers do. What happens to RK-Means's perplexity per level on this
#    catalogue? *Hint:* see the `RKMeans` docstring on items per centroid.
# 2. Turn off GRID's residual normalisation. How do perplexity and collisions change?
#    *Hint:* `RKMeans(normalize_residuals=False)`, then `report`.
# 3. How does OPQ's reconstruction error fall with `pq_digits` in {4, 8, 16, 32}? *Hint:* each digit adds 8 bits.

# %% tags=["solution"]
# Exercise 1: with 256 centroids there are about 5 items per centroid here and many level-1 cells hold one
# item (its residual is zero). No level collapses: the later levels spread the small cells' residuals over
# more codes than level 1 uses. But each code is now the mean of a handful of items.
wide = RKMeans(n_levels=n_levels, width=256, seed=seed).fit(X)
print("perplexity per level, width 256:", np.round(wide.perplexity(wide.encode(X)), 1), f"(width {width}: {np.round(tokenizers['RK-Means'].perplexity(codes['RK-Means']), 1)})")

# %% tags=["solution"]
# Exercise 2: without normalisation the deeper levels crowd onto a few hub codes.
raw = RKMeans(n_levels=n_levels, width=width, normalize_residuals=False, seed=seed).fit(X)
pd.DataFrame({"normalised (GRID)": report("RK-Means", tokenizers["RK-Means"], codes["RK-Means"]), "raw residuals": report("raw", raw, raw.encode(X))}).loc[["perplexity", "collision_rate"]]

# %% tags=["solution", "nbval-ignore-output"]
# Exercise 3: more digits, more bits, less error.
pd.Series({m: OPQ(m=m, seed=seed).fit(X).reconstruction_error(X) for m in (4, 8, 16, 32)}, name="OPQ reconstruction error").round(4)

# %% [markdown]
# ## References
#
# - S. Rajput et al. *Recommender Systems with Generative Retrieval* (TIGER), its RQ-VAE (arXiv:2305.05065).
# - C. Ju et al. *Generative Recommendation with Semantic IDs: A Practitioner's Handbook* (GRID): RK-Means,
#   residual normalisation (arXiv:2507.22224); code: github.com/snap-research/GRID.
# - N. Zeghidour et al. *SoundStream* (residual vector quantisation) (arXiv:2107.03312); A. van den Oord
#   et al. *Neural Discrete Representation Learning* (VQ-VAE, straight-through, commitment) (arXiv:1711.00937).
# - H. Jégou et al. *Product Quantization for Nearest Neighbor Search*, TPAMI 2011; T. Ge et al.
#   *Optimized Product Quantization*, TPAMI 2014.
# - Every term: [glossary](glossary.md).

# %%
metrics = {"dataset": ds.name, "n_items": int(X.shape[0]), "chance_label_agreement": chance, "tokenizers": results}
write_metrics(out, metrics)
print("wrote", sorted(metrics), sorted(results))
