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
# # 06 · Design choices: GRID's ablations at reading size
#
# **Learning objectives.** After this notebook you can
# - run a one-factor-at-a-time ablation of a generative recommender: tokenizer, architecture, data augmentation, user token, decoding;
# - give every arm the same training budget, so a difference comes from the choice and not from more steps;
# - tell a real difference from the noise of the test users with a paired bootstrap interval.
#
# GRID ("Generative Recommendation with Semantic IDs: A Practitioner's Handbook", Ju et al. 2025)
# re-implemented TIGER in one modular framework and switched its parts one at a time. This notebook
# does the same on the embedded data, at a size that trains each arm in about a minute on a laptop CPU.
#
# Comes after `05_tiger`. Next: `07_rpg`.

# %% [markdown]
# ## 0 · Setup

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from handbook import plotting
from handbook.data import items_in_order, load_dataset, prepare, training_samples
from handbook.decoding.beam import evaluate_generative, generative_ranks
from handbook.device import resolve_device, seed_everything
from handbook.embed import embed_texts, item_texts
from handbook.io import write_metrics
from handbook.metrics import bootstrap_interval, evaluate_model, per_user_metrics, summarize
from handbook.models import TIGER, DecoderOnly, MostPopular
from handbook.paths import cache_dir, output_dir
from handbook.sid import SemanticIDs
from handbook.tokenizers import make_tokenizer
from handbook.train import fit

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/06_design_choices"  # where metrics.json goes, relative to the repository root
dataset = "ml-100k"  # "ml-100k", "amazon2014:<Category>", or a path to a dataset folder
model_name = "all-MiniLM-L6-v2"  # sentence encoder of notebook 02
arms = ["baseline", "rqvae", "rvq", "decoder-only", "no-sliding-window", "user-token"]  # which arms to train
width = 64  # codes per level of the 3-level tokenizers (papers: 256 on ~12k items)
max_items = 5  # history length in items (TIGER: 20)
n_user_bins = 2000  # hashed user tokens of the "user-token" arm (TIGER's 2,000)
d_model = 64  # TIGER: 128
n_layers = 1  # encoder and decoder layers each; the decoder-only arm gets 2 * n_layers (TIGER: 4)
n_heads = 4  # TIGER: 6
head_dim = 16  # TIGER: 64
d_ff = 256  # TIGER: 1024
dropout = 0.1  # TIGER: 0.1
epochs = 2  # passes over the sliding-window samples; every arm gets the same number of steps
lr = 3e-3  # peak learning rate (cosine schedule, 100 warm-up steps)
batch_size = 256  # training samples per step
beam_size = 10  # beams kept while decoding; also the largest K of the metrics
device = "auto"  # "auto", "cpu" or "cuda"
seed = 0  # seed of the tokenizers, the initialisation and the shuffling

# %%
seed_everything(seed)
out = output_dir(OUTPUT_DIR)
dev = resolve_device(device)

# %% [markdown]
# ## 1 · The arms
#
# The baseline is notebook 05's TIGER, made smaller so that six of them train in minutes: RK-Means
# SIDs (3 levels and the de-duplication digit), an encoder-decoder, sliding-window training samples,
# no user token. Each other arm changes exactly one of these; constrained vs free beam search is
# measured on every arm, since it needs no training.
#
# | arm | what changes | GRID's question |
# | --- | --- | --- |
# | `rqvae` | TIGER's RQ-VAE instead of RK-Means | does a learned tokenizer beat residual k-means? |
# | `rvq` | residual VQ (k-means codebooks, no encoder) | |
# | `decoder-only` | one causal stack of 2 x `n_layers` over history + target tokens | is the encoder needed? |
# | `no-sliding-window` | one sample per user (last training item), repeated to the same number of steps | how much does augmentation give? |
# | `user-token` | a hashed user token before the history | does a user id help? |

# %%
BASELINE = {"tokenizer": "rkmeans", "architecture": "encoder-decoder", "sliding_window": True, "user_token": False}
CHANGES = {
    "baseline": {},
    "rqvae": {"tokenizer": "rqvae"},
    "rvq": {"tokenizer": "rvq"},
    "decoder-only": {"architecture": "decoder-only"},
    "no-sliding-window": {"sliding_window": False},
    "user-token": {"user_token": True},
}
unknown = [arm for arm in arms if arm not in CHANGES]
if unknown or "baseline" not in arms:
    raise ValueError(f"parameter arms={arms!r}: use names from {list(CHANGES)}, and keep 'baseline' (the reference of every difference)")
settings = {arm: {**BASELINE, **CHANGES[arm]} for arm in arms}
pd.DataFrame(settings).T

# %% [markdown]
# ## 2 · Data, embeddings and one SID table per tokenizer

# %% tags=["nbval-ignore-output"]
ds = load_dataset(dataset)
data = prepare(ds)
items = items_in_order(ds.items, data.item_ids)
X = embed_texts(item_texts(items), model=model_name, cache_dir=cache_dir("embeddings"), show_progress=False)

tables = {}
for name in sorted({s["tokenizer"] for s in settings.values()}):
    codes = make_tokenizer(name, n_levels=3, width=width, seed=seed).fit_encode(X)
    tables[name] = SemanticIDs.from_codes(codes, width, dedup=True)
    print(f"{name:8s} {tables[name]}")

# %% [markdown]
# Training samples. With sliding windows every prefix of a user's training sequence predicts its
# next item; without, each user gives one sample (the whole history predicts the last training
# item), and those samples are repeated so that both arms take the same number of optimiser steps.

# %%
users = np.arange(data.n_users)
train_sequences = data.train_sequences()
valid_histories, valid_targets = data.eval_arrays("valid", max_items)
test_histories, test_targets = data.eval_arrays("test", max_items)


def samples(sliding_window):
    """(histories, targets, users) of the training samples."""
    histories, targets = training_samples(train_sequences, max_items, sliding_window)
    per_user = [max(len(s) - 1, 0) if sliding_window else int(len(s) > 1) for s in train_sequences]
    return histories, targets, np.repeat(users, per_user)


training_sets = {True: samples(True)}
if not all(s["sliding_window"] for s in settings.values()):
    once = samples(False)
    repeats = int(np.ceil(len(training_sets[True][1]) / len(once[1])))
    training_sets[False] = (np.tile(once[0], (repeats, 1)), np.tile(once[1], repeats), np.tile(once[2], repeats))
for sliding, (_, targets, _) in training_sets.items():
    print(f"sliding windows {'on ' if sliding else 'off'}: {len(targets):,} samples per epoch")

# %% [markdown]
# ## 3 · Training every arm
#
# One function trains an arm with notebook 05's loop (AdamW, warm-up, cosine schedule, validation
# NDCG@10 each epoch, best epoch kept) and decodes the test users twice, constrained and free. The
# per-user ranks are kept for the bootstrap in section 4.

# %%
def build(setting):
    sids = tables[setting["tokenizer"]]
    bins = n_user_bins if setting["user_token"] else 0
    sizes = {"d_model": d_model, "n_heads": n_heads, "head_dim": head_dim, "d_ff": d_ff, "dropout": dropout}
    if setting["architecture"] == "encoder-decoder":
        return TIGER(sids, max_items=max_items, n_encoder_layers=n_layers, n_decoder_layers=n_layers, n_user_bins=bins, **sizes)
    return DecoderOnly(sids, max_items=max_items, n_layers=2 * n_layers, n_user_bins=bins, **sizes)


def train_arm(setting):
    """Train one arm; return its summary row and the test ranks {"constrained": ..., "free": ...}."""
    torch.manual_seed(seed)
    model = build(setting)
    sids = model.sids
    histories, targets, sample_users = training_sets[setting["sliding_window"]]
    with_users = setting["user_token"]

    def batches(epoch):
        return type(model).make_batches(histories, targets, sids, batch_size, seed=seed + epoch, users=sample_users if with_users else None)

    def validate(m):
        return evaluate_generative(m, valid_histories, valid_targets, ks=(10,), beam_size=beam_size, users=users if with_users else None)

    run = fit(
        model, batches, validate, epochs=epochs, lr=lr, warmup_steps=100, schedule="cosine",
        steps_per_epoch=len(batches(0)), patience=None, device=dev, seed=seed, show_progress=False,
    )  # fmt: skip
    row = {"parameters": sum(p.numel() for p in model.parameters()), "train_seconds": run.seconds, "best_epoch": run.best_epoch}
    ranks = {}
    for mode in ("constrained", "free"):
        ranks[mode], row[f"invalid_share ({mode})"] = generative_ranks(
            model, test_histories, test_targets, beam_size=beam_size, constrained=mode == "constrained", users=users if with_users else None
        )  # fmt: skip
        for metric, value in summarize(ranks[mode], (5, 10)).items():
            row[f"{metric} ({mode})"] = value
    return row, ranks


# %% tags=["nbval-ignore-output"]
rows, test_ranks = {}, {}
for arm in arms:
    rows[arm], test_ranks[arm] = train_arm(settings[arm])
    print(f"{arm:18s} test NDCG@10 {rows[arm]['ndcg@10 (constrained)']:.4f}  ({rows[arm]['train_seconds']:.0f} s)")
popular = evaluate_model(MostPopular().fit(train_sequences, data.n_items), test_histories, test_targets, ks=(5, 10))
print(f"most-popular       test NDCG@10 {popular['ndcg@10']:.4f}")

# %% [markdown]
# ## 4 · Results
#
# Test split, full ranking, leave-one-out; a generative model ranks only the `beam_size` items it
# decodes. The interval is a 95% paired bootstrap over test users of the arm's NDCG@10 minus the
# baseline's: when it contains 0, this test set cannot tell the two apart. It measures the noise of
# the 943 test users only; the noise of training seeds comes on top (notebook 09 runs seeds).

# %% tags=["nbval-ignore-output"]
baseline_ndcg = per_user_metrics(test_ranks["baseline"]["constrained"], (10,))["ndcg@10"]
for arm in arms:
    gap = per_user_metrics(test_ranks[arm]["constrained"], (10,))["ndcg@10"] - baseline_ndcg
    rows[arm]["delta ndcg@10"] = gap.mean()
    rows[arm]["delta low"], rows[arm]["delta high"] = bootstrap_interval(gap, seed=seed)
table = pd.DataFrame(rows).T
columns = ["recall@10 (constrained)", "ndcg@10 (constrained)", "ndcg@10 (free)", "invalid_share (free)", "delta ndcg@10", "delta low", "delta high", "train_seconds"]
table[columns].astype(float).round(4)

# %%
fig, (left, right) = plotting.subplots(ncols=2, width=4.6, height=0.45 * len(arms) + 1.2)
position = np.arange(len(arms))
left.barh(position - 0.2, table["ndcg@10 (constrained)"], height=0.4, label="constrained")
left.barh(position + 0.2, table["ndcg@10 (free)"], height=0.4, label="free")
left.axvline(popular["ndcg@10"], color="grey", linestyle="--", label="most-popular")
left.set_yticks(position, arms)
left.invert_yaxis()
left.set_xlabel("test NDCG@10")
left.legend(loc="lower right")
delta = table["delta ndcg@10"].astype(float)
errors = np.vstack([delta - table["delta low"].astype(float), table["delta high"].astype(float) - delta])
right.errorbar(delta, position, xerr=errors, fmt="o", capsize=3)
right.axvline(0, color="grey", linewidth=1)
right.set_yticks(position, [])
right.invert_yaxis()
right.set_xlabel("NDCG@10 minus baseline (95% bootstrap)")
plt.show()

# %% [markdown]
# ## 5 · What GRID found, and what this run shows
#
# The committed run (default parameters, seed 0, 2-core CPU, 4.9 min in all), next to what GRID
# reports on Amazon at paper size. The numbers are test NDCG@10 from the table above.
#
# | choice | GRID reports | this run |
# | --- | --- | --- |
# | tokenizer | RK-Means at least as good as RQ-VAE and RVQ | RK-Means .0357, RQ-VAE .0321, RVQ .0320: the same order, but inside the noise |
# | architecture | encoder-decoder ahead of decoder-only | a tie (.0357 vs .0359); the decoder-only model took about 1.8x the training time (64 s vs 35 s) |
# | sliding windows | a large gain | without them NDCG@10 halves (.0177): the one interval that excludes 0 |
# | user token | no gain, so GRID drops it | .0330, inside the noise |
# | constrained vs free | free decoding about as good, and cheaper | within .002 on every trained arm, with no invalid beams; 17% invalid beams in the weak `no-sliding-window` arm |
#
# RVQ's plain residual codebooks collide far more often than RK-Means or RQ-VAE here (22% of items
# against 4%, printed in section 2), so the de-duplication digit carries more of its SIDs.

# %% [markdown]
# ## Summary
#
# - An ablation changes one thing at a time and gives every arm the same training budget.
# - A single run on 943 test users has an interval of ±0.007 to ±0.01 NDCG@10 around each difference: most design choices at this size are inside the noise, which is exactly why GRID and notebook 09 repeat runs over seeds.
# - Sliding-window augmentation is the choice that matters at this size: without it NDCG@10 halves. Tokenizer, architecture and user token move it by less than the noise; free decoding loses almost nothing once the model is trained.
#
# ## Exercises
#
# 1. Give the sliding-window arm fewer steps instead: set `epochs = 1` and compare with the `no-sliding-window` arm at `epochs = 2`. Which budget is fair?
# 2. Deepen the models: `n_layers = 2`. Does the decoder-only gap change? *Hint:* it takes about twice as long.
# 3. Run the ablation on another seed (`seed = 1`) and see which differences keep their sign.

# %%
metrics = {
    "dataset": ds.name,
    "n_items": data.n_items,
    "settings": settings,
    "test": {arm: {key: float(value) for key, value in row.items()} for arm, row in rows.items()},
    "most-popular": popular,
}
write_metrics(out, metrics)
print("wrote", sorted(metrics))
