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
# # 07 · RPG: long semantic IDs generated in parallel
#
# **Learning objectives.** After this notebook you can
# - build long, unordered semantic IDs with OPQ and explain why they need no collision handling;
# - train RPG: a small transformer over items, m parallel digit heads and the multi-token prediction loss;
# - rank a catalogue exactly from m digit distributions, or walk an item graph instead, and weigh quality against items scored and latency.
#
# RPG ("Generating Long Semantic IDs in Parallel for Recommendation", Hou et al., KDD 2025) drops
# TIGER's digit-by-digit decoding: it predicts every digit of the next item's SID at once, so a
# SID can be 32 or 64 digits long at the cost of one forward pass. Where the paper is silent, the
# handbook follows the authors' code (facebookresearch/RPG_KDD2025); `handbook/models/rpg.py` and
# `handbook/decoding/graph.py` say where.
#
# Comes after `06_design_choices`. Next: `08_acerec`.

# %% [markdown]
# ## 0 · Setup

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from handbook import plotting
from handbook.baselines import train_sasrec, train_small_tiger
from handbook.data import items_in_order, load_dataset, prepare
from handbook.decoding.beam import evaluate_generative
from handbook.decoding.graph import evaluate_graph
from handbook.device import resolve_device, seed_everything
from handbook.embed import embed_texts, item_texts
from handbook.io import write_metrics
from handbook.metrics import evaluate_model
from handbook.models import RPG, MostPopular
from handbook.paths import cache_dir, output_dir
from handbook.sid import SemanticIDs
from handbook.tokenizers import OPQ
from handbook.train import fit

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/07_rpg"  # where metrics.json goes, relative to the repository root
dataset = "ml-100k"  # "ml-100k", "amazon2014:<Category>", or a path to a dataset folder
model_name = "all-MiniLM-L6-v2"  # sentence encoder of notebook 02
n_digits = 32  # SID length m of the main model (RPG on Beauty: 32)
digit_sweep = [4, 8, 16, 32]  # SID lengths to train and compare (paper: 4 to 64)
nbits = 8  # 2**nbits codes per digit (RPG: 256)
whiten = True  # PCA-whiten the embeddings before OPQ, as RPG's tokenizer does
max_items = 5  # history length in items, for every model here (RPG: 50)
hidden = 128  # RPG: 448
n_layers = 2  # RPG: 2
n_heads = 4  # RPG: 4
ffn = 256  # RPG: 1024
dropout = 0.5  # RPG: 0.5
temperature = 0.03  # of the cosine logits (RPG: 0.03)
epochs = 8  # RPG passes over the training transitions
lr = 3e-3  # peak learning rate, cosine schedule after 20 warm-up steps (RPG on Beauty: 1e-2)
batch_size = 256  # RPG: 256
num_beams = 10  # graph decoding: items kept per step (RPG on Beauty: 20)
n_edges = 50  # graph decoding: neighbours per item (RPG on Beauty: 200 of 12k items)
propagation_steps = 3  # graph decoding: expansion rounds (RPG: 3)
tiger_epochs = 2  # TIGER at notebook 06's baseline size
sasrec_epochs = 20  # SASRec passes over the training sequences
device = "auto"  # "auto", "cpu" or "cuda"
seed = 0  # seed of the tokenizers, the initialisation, the shuffling and the graph walk

# %%
seed_everything(seed)
out = output_dir(OUTPUT_DIR)
dev = resolve_device(device)

# %% [markdown]
# ## 1 · Long semantic IDs with OPQ
#
# OPQ rotates the item embeddings and cuts them into m sub-vectors; each sub-vector gets the nearest
# of 256 centroids of its own. The digits are *unordered* (no digit refines another) and each is a
# cheap 8-bit code, so a long SID is easy to make. As in RPG, the embeddings are first PCA-whitened
# (every principal direction scaled to unit variance; RPG keeps 512 of text-embedding-3-large's 3072
# dimensions, the handbook all 384), and the tokenizer is fitted on the items of the training
# sequences only and then encodes every item. With 256^m possible SIDs, collisions
# are rare, and RPG keeps them: two items with the same SID simply get the same score.

# %% tags=["nbval-ignore-output"]
ds = load_dataset(dataset)
data = prepare(ds)
items = items_in_order(ds.items, data.item_ids)
X = embed_texts(item_texts(items), model=model_name, cache_dir=cache_dir("embeddings"), show_progress=False)
train_sequences = data.train_sequences()
train_rows = np.unique(np.concatenate(train_sequences)) - 1  # item id i is row i - 1

tables, collisions = {}, {}
for m in sorted({*digit_sweep, n_digits}):
    tick = time.perf_counter()
    codes = OPQ(m=m, nbits=nbits, seed=seed, whiten=whiten).fit_encode(X, train_rows=train_rows)
    tables[m] = SemanticIDs.from_codes(codes, 2**nbits, dedup=False)
    summary = tables[m].summary()
    collisions[m] = {"colliding items": summary["n_colliding_items"], "collision rate": summary["collision_rate"], "fit seconds": time.perf_counter() - tick}
print(f"{data.n_items} items, {len(train_rows)} of them in training sequences")
pd.DataFrame(collisions).T.round(4)

# %% [markdown]
# ## 2 · The model and its loss
#
# RPG reads the history as items, not tokens: an item's input vector is the mean of its m token
# embeddings, so a history of L items costs L positions however long the SIDs are. The last hidden
# state goes through m small heads, one per digit. Digit j's logits over its 256 codes are the
# cosine of head j's output with each of digit j's token embeddings, divided by a temperature; the
# **multi-token prediction** loss is the cross-entropy averaged over the m digits. The token table
# is shared by input and output.
#
# Training labels every position of each window of `max_items + 1` items (as SASRec), so every
# training transition is a label once per epoch.

# %%
valid_histories, valid_targets = data.eval_arrays("valid", max_items)
test_histories, test_targets = data.eval_arrays("test", max_items)
users = np.arange(data.n_users)


def validate(model):
    return evaluate_model(model, valid_histories, valid_targets, ks=(10,))


def train_rpg(sids):
    """Train one RPG on `sids`; the best validation epoch's weights are kept."""
    torch.manual_seed(seed)
    model = RPG(sids, max_len=max_items, hidden=hidden, n_layers=n_layers, n_heads=n_heads, ffn=ffn, dropout=dropout, temperature=temperature)

    def batches(epoch):
        return RPG.make_batches(train_sequences, max_items, batch_size, seed=seed + epoch)

    run = fit(
        model, batches, validate, epochs=epochs, lr=lr, warmup_steps=20, schedule="cosine",
        steps_per_epoch=len(batches(0)), patience=None, device=dev, seed=seed, show_progress=False,
    )  # fmt: skip
    return model, run


# %% tags=["nbval-ignore-output"]
rpg, rpg_run = train_rpg(tables[n_digits])
print(f"RPG m={n_digits}: {sum(p.numel() for p in rpg.parameters()):,} parameters, best epoch {rpg_run.best_epoch}, {rpg_run.seconds:.0f} s")

# %%
plotting.training_curve(rpg_run.history, loss_label="training loss (MTP)")
plt.show()

# %% [markdown]
# ## 3 · Exact scoring vs graph decoding
#
# **Exact**: one forward pass gives m distributions over codes; an item's score is the mean of its
# digits' log-probabilities, gathered for the whole catalogue at once. **Graph decoding** scores
# only the items a beam walk reaches: start from `num_beams` random items, then `propagation_steps`
# times score the neighbours of the beam in an item graph (each item's `n_edges` most similar items
# by trained token embeddings) and keep the best `num_beams`. Every output is a real item.
#
# Latency is wall time per test user, decoding in batches of 256 on this machine; the graph is built
# once, before decoding, and its time is reported apart.

# %% tags=["nbval-ignore-output"]
rpg.eval()


def timed(evaluate, *args, **kwargs):
    """Metrics of `evaluate(*args, **kwargs)` and its wall time per test user in ms."""
    tick = time.perf_counter()
    result = evaluate(*args, **kwargs)
    return result, 1000 * (time.perf_counter() - tick) / len(test_targets)


tick = time.perf_counter()
graph = tables[n_digits].knn_graph(n_edges, rpg.token_table().detach())
graph_seconds = time.perf_counter() - tick

beam_grid, step_grid = sorted({5, 10, 20, num_beams}), sorted({1, 2, 3, propagation_steps})
decoding = {}
with torch.no_grad():
    exact, ms = timed(evaluate_model, rpg, test_histories, test_targets, ks=(5, 10))
    decoding["exact"] = {**exact, "visited": data.n_items, "ms per user": ms}
    for beams in beam_grid:
        for steps in step_grid:
            result, ms = timed(evaluate_graph, rpg, test_histories, test_targets, graph, ks=(5, 10), num_beams=beams, propagation_steps=steps, seed=seed)
            decoding[f"graph b={beams} s={steps}"] = {**result, "ms per user": ms}
decoding_table = pd.DataFrame(decoding).T[["ndcg@10", "recall@10", "visited", "ms per user"]]
print(f"graph of {n_edges} edges per item built in {graph_seconds:.1f} s")
decoding_table.round(4)

# %%
fig, ax = plotting.subplots(width=5.5, height=3.4)
graph_rows = decoding_table.drop(index="exact")
for beams in beam_grid:
    rows = graph_rows[graph_rows.index.str.startswith(f"graph b={beams} ")]
    ax.plot(rows["visited"], rows["ndcg@10"], "o-", label=f"graph, {beams} beams, {step_grid[0]}-{step_grid[-1]} steps")
ax.axhline(decoding_table.loc["exact", "ndcg@10"], color="black", linestyle="--", label=f"exact ({data.n_items} items)")
ax.set_xlabel("items scored per user")
ax.set_ylabel("test NDCG@10")
ax.legend()
plt.show()

# %% [markdown]
# ## 4 · How long should a SID be?
#
# Same model and budget for every length m; only the OPQ table changes. Longer SIDs carry more of
# the embedding (and collide less) but give the heads more digits to predict.

# %% tags=["nbval-ignore-output"]
length_sweep = {}
for m in digit_sweep:
    model, run = (rpg, rpg_run) if m == n_digits else train_rpg(tables[m])
    length_sweep[m] = {**evaluate_model(model, test_histories, test_targets, ks=(5, 10)), "collision rate": collisions[m]["collision rate"], "train seconds": run.seconds}
length_table = pd.DataFrame(length_sweep).T
length_table.round(4)

# %%
fig, ax = plotting.subplots(width=5, height=3.2)
ax.plot(length_table.index, length_table["ndcg@10"], "o-")
ax.set_xscale("log", base=2)
ax.set_xticks(digit_sweep, [str(m) for m in digit_sweep])
ax.set_xlabel("SID length m (digits of 256 codes)")
ax.set_ylabel("test NDCG@10 (exact)")
plt.show()

# %% [markdown]
# ## 5 · RPG against TIGER, SASRec and most-popular
#
# All on the same split with the same `max_items` history. TIGER is notebook 06's baseline (RK-Means
# SIDs with the de-duplication digit, 1 + 1 layers, beam 10); SASRec as in notebook 05.

# %% tags=["nbval-ignore-output"]
comparison = {}
popular = MostPopular().fit(train_sequences, data.n_items)
comparison["most-popular"], ms = timed(evaluate_model, popular, test_histories, test_targets, ks=(5, 10))
comparison["most-popular"]["ms per user"] = ms

sasrec, _ = train_sasrec(
    train_sequences, data.n_items, validate, max_len=max_items, epochs=sasrec_epochs, batch_size=batch_size, seed=seed, device=dev,
)  # fmt: skip
sasrec.eval()
with torch.no_grad():
    comparison["SASRec"], ms = timed(evaluate_model, sasrec, test_histories, test_targets, ks=(5, 10))
comparison["SASRec"]["ms per user"] = ms

tiger, _ = train_small_tiger(
    X, train_sequences, valid_histories, valid_targets, max_items=max_items, epochs=tiger_epochs, batch_size=batch_size, seed=seed, device=dev,
)  # fmt: skip
comparison["TIGER (beam 10)"], ms = timed(evaluate_generative, tiger, test_histories, test_targets, ks=(5, 10), beam_size=10)
comparison["TIGER (beam 10)"]["ms per user"] = ms

comparison[f"RPG m={n_digits} (exact)"] = decoding["exact"]
comparison[f"RPG m={n_digits} (graph b={num_beams} s={propagation_steps})"] = decoding[f"graph b={num_beams} s={propagation_steps}"]
comparison_table = pd.DataFrame(comparison).T[["recall@5", "recall@10", "ndcg@5", "ndcg@10", "ms per user"]]
comparison_table.round(4)

# %%
fig, ax = plotting.subplots(width=5.5, height=3.4)
for i, (name, row) in enumerate(comparison_table.iterrows()):
    ax.scatter(row["ms per user"], row["ndcg@10"], color=plotting.PALETTE[i % len(plotting.PALETTE)], label=name)
ax.set_xscale("log")
ax.set_xlabel("decoding latency per user (ms, batches of 256, log scale)")
ax.set_ylabel("test NDCG@10")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 6 · What this run shows
#
# From the committed run (default parameters, seed 0, 2-core CPU, 5.7 min in all):
#
# - **Collisions** fall from 11% of items at m = 4 to 1.3% at m = 32. The 18 items left at m = 32
#   are the MovieLens movies whose text appears twice: identical embeddings get identical codes
#   under any tokenizer.
# - **Longer SIDs rank better**: test NDCG@10 .0159, .0283, .0334, .0368 at m = 4, 8, 16, 32, as
#   the paper reports. Training cost grows with m (27 s to 127 s here), since the loss scores
#   256 codes on every digit.
# - **Graph decoding** with 10 beams and 3 steps matches exact scoring (.0368) while scoring 565 of
#   the 1,349 items per user; 5 beams lose about a quarter of the quality. On a catalogue this small
#   the walk is not faster than exact scoring (0.20 vs 0.11 ms per user), because scoring 1,349
#   items is one gather; it pays off for large catalogues, which notebook 10 measures.
# - **Against TIGER**: RPG at m = 32 (.0368) and TIGER (.0357) tie within the noise of notebook
#   06's intervals, and RPG decodes about 3x faster (0.11 vs 0.33 ms per user) with no beam
#   search. SASRec (.0574) leads on MovieLens, as in notebook 05.

# %% [markdown]
# ## Summary
#
# - RPG names an item by a long OPQ SID and predicts all its digits at once; an item's score is the mean of its digits' log-probabilities, so the whole catalogue is ranked exactly from one forward pass.
# - Graph decoding trades a little quality for scoring a fixed number of items per user, whatever the catalogue size.
# - Longer IDs helped all the way to m = 32 here, at a training cost that grows with m; at m = 32 RPG matched TIGER and decoded faster.
#
# ## Exercises
#
# 1. Try the paper's length on Beauty: `n_digits = 32`, `digit_sweep = [32, 64]`. *Hint:* the logits cost grows with m; on a CPU this takes a few minutes.
# 2. Give graph decoding a sparser graph (`n_edges = 10`): how many steps does it now need to match exact scoring?
# 3. Feed RPG the paper's history of 50 items (`max_items = 50`). Does the longer context help on MovieLens?

# %%
metrics = {
    "dataset": ds.name,
    "n_items": data.n_items,
    "n_digits": n_digits,
    "collisions": {str(m): row for m, row in collisions.items()},
    "rpg_history": rpg_run.history,
    "decoding": decoding,
    "graph_seconds": graph_seconds,
    "length_sweep": {str(m): row for m, row in length_sweep.items()},
    "test": comparison,
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
