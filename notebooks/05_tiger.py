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
# # 05 · TIGER: generative retrieval with semantic IDs
#
# **Learning objectives.** After this notebook you can
# - write TIGER's training loss, the teacher-forced cross-entropy of the next item's SID tokens, and compute one batch of it by hand from the model's own modules;
# - run constrained beam search with a trained TIGER by hand (mask the trie's invalid codes, renormalise, keep the best beams) and check it against the package;
# - compute Recall@K and NDCG@K under leave-one-out with full ranking from the per-user ranks, and compare TIGER with most-popular and SASRec with paired bootstrap intervals.
#
# Comes after `04_collisions` (SID tables, the prefix trie). Next: `06_design_choices`.
# Terms: [glossary](glossary.md).

# %% [markdown]
# ## 0 · Setup

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from handbook import checks, diagrams, plotting
from handbook.data import items_in_order, load_dataset, prepare, training_samples
from handbook.decoding.beam import beam_search, generative_ranks
from handbook.device import resolve_device, seed_everything
from handbook.embed import embed_texts, item_texts
from handbook.io import write_metrics, write_npz_atomic
from handbook.metrics import bootstrap_interval, ndcg_at_k, summarize
from handbook.models import TIGER
from handbook.models.transformer import history_positions
from handbook.paths import cache_dir, output_dir
from handbook.reading import reading_baselines
from handbook.sid import BOS_TOKEN, N_SPECIAL_TOKENS, PAD_TOKEN, SemanticIDs
from handbook.sweep import recorded_run
from handbook.tokenizers import make_tokenizer
from handbook.train import fit

plotting.setup()

# %% tags=["nbval-ignore-output"]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")

# %% tags=["parameters"]
OUTPUT_DIR = "runs/05_tiger"  # where metrics.json goes, relative to the repository root
dataset = "ml-100k"  # "ml-100k", "amazon2014:<Category>", or a path to a dataset folder
model_name = "all-MiniLM-L6-v2"  # sentence encoder of notebook 02
tokenizer = "rqvae"  # "rqvae", "rkmeans" or "rvq": a 3-level residual tokenizer (RQ-VAE: chosen on validation, chapter 11)
width = 64  # codes per level (papers: 256 on ~12k items)
max_items = 5  # history length in items, handbook.reading's MAX_ITEMS (TIGER: 20)
sliding_window = True  # train on every prefix of each sequence
d_model = 64  # TIGER: 128
n_layers = 2  # encoder and decoder layers each (TIGER: 4)
n_heads = 4  # TIGER: 6
head_dim = 16  # TIGER: 64
d_ff = 256  # TIGER: 1024
dropout = 0.1  # TIGER: 0.1
epochs = 10  # cap on the passes over the training samples
patience = 2  # stop after this many epochs without a better validation NDCG@10
lr = 3e-3  # peak learning rate (cosine schedule, 100 warm-up steps)
batch_size = 256  # training samples per step
beam_size = 10  # beams kept while decoding; also the largest K of the metrics
device = "auto"  # "auto", "cpu" or "cuda"
seed = 0  # seed of the tokenizer, the initialisation and the shuffling
rerun = False  # False: read the converged run recorded in results/sweeps/tiger-reading/ and train `live_epochs` here; True: train to the plateau now (about 10 min on 2 cores)
live_epochs = 1  # when rerun is False: epochs of the TIGER trained live

# %%
out = output_dir(OUTPUT_DIR)
dev = resolve_device(device)
_ = seed_everything(seed)

# %% [markdown]
# ## 1 · The model
#
# TIGER (Rajput et al., 2023) names every item by its semantic ID $c = (c_1, \dots, c_m)$ (here
# $m = 4$: three residual codes and the de-duplication digit of notebook 04). A user's history of
# items becomes one flat sequence of SID tokens; an **encoder** reads it, and a **decoder**,
# started from a BOS token and attending to the encoder's output, generates the next item's SID one
# digit at a time:
#
# $$p(c \mid \text{history}) = \prod_{t=1}^{m} p(c_t \mid c_{<t}, \text{history}).$$

# %%
fig = diagrams.encoder_decoder(n_history=3, n_digits=4)
plt.show()

# %% [markdown]
# ## 2 · Data and semantic IDs
#
# The pipeline of notebooks 01-04: leave-one-out sequences, item embeddings, a 3-level residual
# tokenizer, and the SID table with TIGER's de-duplication digit, so every item has a unique
# 4-token SID. Each digit has its own token range (token $= 3 + \text{offset}_t + c_t$, after the
# special tokens PAD, BOS, EOS), so the same code at two digits is two different tokens.

# %% tags=["nbval-ignore-output"]
ds = load_dataset(dataset)
data = prepare(ds)
items = items_in_order(ds.items, data.item_ids)
X = embed_texts(item_texts(items), model=model_name, cache_dir=cache_dir("embeddings"), show_progress=False)
codes = make_tokenizer(tokenizer, n_levels=3, width=width, seed=seed).fit_encode(X)
sids = SemanticIDs.from_codes(codes, width, dedup=True)
print(sids)

valid_histories, valid_targets = data.eval_arrays("valid", max_items)
test_histories, test_targets = data.eval_arrays("test", max_items)
train_histories, train_targets = training_samples(data.train_sequences(), max_items, sliding_window)
print(f"{len(train_targets):,} training samples, {data.n_users} validation and test users")

# %% tags=["nbval-ignore-output"]
example = TIGER.make_batches(test_histories[:1], test_targets[:1], sids, batch_size=1, seed=0, shuffle=False)[0]
print("last 3 history items:", test_histories[0, -3:])
print("their tokens:        ", example[0][0, -3 * sids.n_digits :].tolist())
print("target", test_targets[0], "-> codes", sids.codes[test_targets[0] - 1].tolist(), "-> tokens", example[1][0].tolist())

# %% [markdown]
# The decoder may only spell SIDs that exist. The **prefix trie** of the table lists, for each
# prefix, the codes that continue it; here are the items that share the test target's first code
# (drawn from that code down; the coloured path is the target's):

# %% tags=["nbval-ignore-output"]
target_codes = sids.codes[test_targets[0] - 1]
same_first = np.flatnonzero(sids.codes[:, 0] == target_codes[0])
drawn = same_first[:12]
print(f"{len(same_first)} items start with code {target_codes[0]}; drawn: {len(drawn)}")
fig = diagrams.prefix_trie(sids.codes[drawn, 1:], item_ids=drawn + 1, highlight=tuple(target_codes[1:2]),
                           root=f"code {target_codes[0]}", first_digit=2)  # fmt: skip
plt.show()

# %% [markdown]
# ## 3 · The loss, by hand
#
# Training is next-token prediction with **teacher forcing**: the decoder reads
# $[\text{BOS}, c_1, \dots, c_{m-1}]$ (the true target's tokens, not its own guesses) and at every
# position predicts the next one. With $h_t$ the decoder state at position $t$ and $W$ the output
# layer, TIGER's loss over a batch $\mathcal{B}$ is the mean cross-entropy over the $m$ target tokens,
# with one softmax over the whole SID vocabulary $V$ (T5's output layer; `output="full_vocab"`):
#
# $$\mathcal{L} = -\frac{1}{|\mathcal{B}|\, m} \sum_{(u, c) \in \mathcal{B}} \sum_{t=1}^{m}
# \log \frac{\exp(W h_t)_{c_t}}{\sum_{v \in V} \exp(W h_t)_v}.$$
#
# A freshly initialised model spreads its probability evenly, so its loss is close to $\log |V|$.
# Here is one batch of 4 real training samples, through the model's own modules one by one:

# %% tags=["nbval-ignore-output"]
torch.manual_seed(seed)
tiger = TIGER(
    sids, max_items=max_items, d_model=d_model, n_heads=n_heads, head_dim=head_dim, d_ff=d_ff,
    n_encoder_layers=n_layers, n_decoder_layers=n_layers, dropout=dropout,
)  # fmt: skip
tiger.eval()  # no dropout, so the two computations see the same network
has_history = np.flatnonzero((train_histories > 0).any(axis=1))[:4]
history, target = TIGER.make_batches(train_histories[has_history], train_targets[has_history], sids, 4, seed=0, shuffle=False)[0]
print("history tokens", tuple(history.shape), "target tokens", tuple(target.shape))

# %%
# BEGIN SOLUTION (defines: loss_by_hand)
# encoder input: token + digit-within-item + history-slot embeddings (learned absolute positions)
digit, slot = history_positions(history.shape[1], sids.n_digits, max_items)  # (T,), (T,)
x = tiger.embed.tokens(history) + tiger.embed.digits(digit) + tiger.embed.slots(slot)  # (B, T, D)
keys = history != PAD_TOKEN  # (B, T) padding is never attended to
memory = tiger.encoder(x, keys[:, None, None, :])  # (B, T, D)
# decoder input: teacher forcing, [BOS, c_1, ..., c_{m-1}]
decoder_in = torch.cat([torch.full((4, 1), BOS_TOKEN), target[:, :-1]], dim=1)  # (B, m)
position = torch.arange(sids.n_digits)  # BOS at 0, digit t at t
y = tiger.embed.tokens(decoder_in) + tiger.embed.digits(position) + tiger.embed.slots(torch.zeros_like(position))
causal = torch.ones(sids.n_digits, sids.n_digits, dtype=torch.bool).tril()  # position t sees 0..t
h = tiger.decoder(y, causal, memory, keys[:, None, None, :])  # (B, m, D)
logp = torch.log_softmax(h @ tiger.head.proj.weight.T, dim=-1)  # (B, m, |V|)
loss_by_hand = -logp.gather(-1, target.unsqueeze(-1)).mean()
# END SOLUTION

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    checks.close("loss_by_hand", loss_by_hand, tiger.loss((history, target)),
                 hint="encode the history, decode [BOS, c_1 .. c_m-1] causally, mean cross-entropy of the m target tokens")  # fmt: skip
print("TIGER.loss equals the hand computation")
print(f"loss by hand {loss_by_hand:.4f}   log|V| = log {sids.vocab_size} = {math.log(sids.vocab_size):.4f}")

# %% [markdown]
# ## 4 · Training TIGER
#
# `handbook.train.fit` minimises that loss with AdamW (warm-up, cosine schedule) over the
# sliding-window samples (every prefix of a user's training sequence predicts its next item), checks
# validation NDCG@10 with constrained beam search after each epoch, keeps the best epoch's weights
# and stops when `patience` epochs in a row have not improved on it (at most `epochs`).
#
# Trained to that point TIGER takes about 10 minutes on two CPU cores, more than a class meeting
# has for one chapter. So by default the chapter trains it here for `live_epochs` (sections 5-7 use
# that model: the by-hand checks hold for any weights) and reads the converged run from a recording
# of this notebook with `rerun=True` (`sweeps/tiger-reading.yaml`: the same cells, data and seed):
# its training curve below, its test ranks in section 8. `rerun=True` trains to the plateau here.

# %% tags=["nbval-ignore-output"]
def tiger_batches(epoch):
    return TIGER.make_batches(train_histories, train_targets, sids, batch_size, seed=seed + epoch)


def validate_tiger(model):
    ranks, _ = generative_ranks(model, valid_histories, valid_targets, beam_size=beam_size)
    return summarize(ranks, (10,))


tiger.train()
cap = epochs if rerun else live_epochs
tiger_run = fit(
    tiger, tiger_batches, validate_tiger, epochs=cap, lr=lr, warmup_steps=100, schedule="cosine",
    steps_per_epoch=len(tiger_batches(0)), patience=patience, device=dev, seed=seed, show_progress=False,
)  # fmt: skip
tiger = tiger.cpu().eval()
print(f"TIGER: {sum(p.numel() for p in tiger.parameters()):,} parameters, best epoch {tiger_run.best_epoch} of {len(tiger_run.history)} trained "
      f"(cap {cap}, patience {patience}), {tiger_run.seconds:.0f} s")  # fmt: skip
if rerun:
    converged = {"best_epoch": tiger_run.best_epoch, "history": tiger_run.history}
else:
    recorded = recorded_run("sweeps/tiger-reading.yaml", seed, dataset=ds.name, n_items=data.n_items, tokenizer=tokenizer)
    print(recorded.describe())
    converged = {"best_epoch": recorded.metrics["tiger_best_epoch"], "history": recorded.metrics["tiger_history"]}
    print(f"recorded TIGER: best epoch {converged['best_epoch']} of {len(converged['history'])} trained (cap {epochs}, patience {patience})")

# %%
plotting.training_curve(converged["history"])
plt.show()

# %% [markdown]
# ## 5 · Constrained beam search with the trained model, by hand
#
# Beam search keeps the $B$ best prefixes. At digit $t$ the model scores every code of that digit's
# range; constrained decoding masks the codes that leave the trie, $\mathcal{A}(c_{<t})$ being the
# children of the prefix, and renormalises over the rest:
#
# $$\log p(c \mid c_{<t}) = \ell_c - \log \sum_{c' \in \mathcal{A}(c_{<t})} e^{\ell_{c'}}, \qquad
# \text{score}(c_{\le t}) = \sum_{s \le t} \log p(c_s \mid c_{<s}),$$
#
# and the $B$ best (beam, code) pairs become the next beams. Notebook 04 ran this with a stand-in
# scorer; here the scorer is the trained TIGER, for the first test user, rerunning the decoder over
# each beam's whole prefix with `decode_step`:

# %% tags=["nbval-ignore-output"]
user = 0
with torch.no_grad():
    memory, keys = tiger.encode(tiger.history_tokens(test_histories[user : user + 1]))  # (1, S, D), (1, S)
    # BEGIN SOLUTION (defines: beams, scores)
    beams, scores = [()], torch.zeros(1)
    for level, size in enumerate(sids.codebook_sizes):
        start = N_SPECIAL_TOKENS + int(sids.offsets[level])  # this digit's token range
        prefix = torch.tensor([[N_SPECIAL_TOKENS + int(sids.offsets[j]) + c for j, c in enumerate(b)] for b in beams], dtype=torch.long).reshape(len(beams), level)
        logits = tiger.decode_step(memory.expand(len(beams), -1, -1), keys.expand(len(beams), -1), prefix)[:, start : start + size]
        allowed = torch.from_numpy(sids.allowed_mask(np.array(beams).reshape(len(beams), level)))  # (N, size)
        logp = torch.log_softmax(logits.masked_fill(~allowed, -torch.inf), dim=-1)  # renormalised over the trie's children
        candidates = (scores[:, None] + logp).reshape(-1)  # (N * size,)
        scores, index = candidates.topk(min(beam_size, int(torch.isfinite(candidates).sum())))
        beams = [beams[int(i) // size] + (int(i) % size,) for i in index]
        print(f"digit {level + 1}: {int(allowed.sum())} allowed (beam, code) pairs of {allowed.numel()}, kept {len(beams)}")
    # END SOLUTION

# %% [markdown]
# The package's `beam_search` does this for a batch of users at once, and TIGER's step function
# keeps a KV cache (the encoder's keys once per user, the prefix's keys reordered with the beams), so
# each digit runs the decoder on one new token per beam. Same beams, same scores, same items as
# `recommend`:

# %% tags=["nbval-ignore-output"]
with torch.no_grad():
    result = beam_search(tiger.beam_step(memory, keys), 1, sids, beam_size, constrained=True)
checks.equal("beams", beams, result.codes[0].tolist(), hint="mask the trie's invalid codes with -inf, log-softmax, keep the top beam_size of (beam, code)")
checks.close("scores", scores, result.scores[0], rtol=1e-4, atol=1e-4, hint="the summed log-probabilities of each kept beam")
hand_items = [int(sids.lookup(np.array(b))) + 1 for b in beams]
recommended, _ = tiger.recommend(test_histories[user : user + 1], k=beam_size)
checks.equal("the items of beams", hand_items, recommended[0].tolist())
print("items by hand:", hand_items)
print("beam_search and recommend equal the hand-made search")

# %% [markdown]
# ## 6 · Metrics, by hand
#
# Leave-one-out: each of the $U$ users has one held-out test item, and the model ranks it among all
# items (full ranking, no sampled negatives). With $r_u$ the 0-based rank of user $u$'s target,
#
# $$\text{Recall@}K = \frac{1}{U} \sum_u \mathbb{1}[r_u < K], \qquad
# \text{NDCG@}K = \frac{1}{U} \sum_u \frac{\mathbb{1}[r_u < K]}{\log_2(r_u + 2)}$$
#
# (one relevant item, so the ideal DCG is 1). A generative model ranks only the $B$ items its beams
# decode; a target outside them gets rank $B$, a miss at every $K \le B$.

# %% tags=["nbval-ignore-output"]
ranks, constrained_invalid = generative_ranks(tiger, test_histories, test_targets, beam_size=beam_size, constrained=True)
print("ranks of the first 12 users:", ranks[:12].tolist())
# BEGIN SOLUTION (defines: by_hand)
by_hand = {}
for k in (5, 10):
    hit = ranks < k
    by_hand[f"recall@{k}"] = hit.mean()
    by_hand[f"ndcg@{k}"] = np.where(hit, 1 / np.log2(ranks + 2.0), 0.0).mean()
# END SOLUTION

# %% tags=["nbval-ignore-output"]
package = summarize(ranks, (5, 10))
checks.computed(by_hand=by_hand, hint="a dict {'recall@5': ..., 'ndcg@5': ..., 'recall@10': ..., 'ndcg@10': ...}")
for name in package:
    checks.close(f"by_hand[{name!r}]", by_hand.get(name), package[name], rtol=1e-12, atol=0, hint="the equations above, with 0-based ranks")
print({name: round(float(v), 4) for name, v in by_hand.items()})
print("handbook.metrics.summarize equals the hand computation")

# %% [markdown]
# ## 7 · Constrained vs free decoding
#
# **Free** decoding takes the best codes of each digit's range with no trie; a finished beam that
# spells no item is dropped, which can leave fewer than $B$ items. How many beams it wastes depends
# on how much of the code space is empty and on how well the model has learned where the items are:

# %% tags=["nbval-ignore-output"]
free_ranks, free_invalid = generative_ranks(tiger, test_histories, test_targets, beam_size=beam_size, constrained=False)
print(f"free decoding: {free_invalid:.2%} of finished beams spelled no item (the model above, {len(tiger_run.history)} epoch(s))")
if not rerun:
    print(f"free decoding: {recorded.metrics['test']['TIGER (free)']['invalid_share']:.2%} (the recorded model, best epoch {converged['best_epoch']})")

# %% tags=["nbval-ignore-output"]
possible = np.cumprod(sids.codebook_sizes)
for level, (n_prefixes, n_possible) in enumerate(zip(sids.trie_sizes, possible, strict=True)):
    print(f"digit {level + 1}: {n_prefixes:5d} prefixes exist of {n_possible:9,d} possible ({n_prefixes / n_possible:.2%})")
print(f"items whose de-duplication digit is 0: {(sids.codes[:, -1] == 0).mean():.1%}")

# %% [markdown]
# What the output shows: the trained model's free beams all spelled items (0.00% invalid), so here
# free decoding wastes none of the beam. Two reasons, both printed above. The code space is small and
# mostly full where it matters: every first code exists, and 97.6% of items carry de-duplication digit
# 0, so a beam that reaches an existing three-code prefix almost always finishes on an item. And the
# model is trained: it puts its mass on the prefixes it has seen in the targets, the occupied 0.50%
# of the third digit's space, not on the rest. A model that ignored the trie and guessed uniformly
# would hit an item with probability 2.57e-03 (exercise 3); larger codebooks, deeper SIDs or an
# undertrained model waste beams, and then constrained decoding is what keeps the list full.

# %% [markdown]
# ## 8 · Results against the reading baselines
#
# Every chapter from here compares against the same three baselines at the reading configuration
# (`handbook.reading`: histories of `MAX_ITEMS` = 5 items, SASRec with full-softmax cross-entropy,
# and a smaller TIGER with one encoder and one decoder layer), trained once and cached, so the
# same numbers print in every chapter. Test split, full ranking, leave-one-out.

# %% tags=["nbval-ignore-output"]
if rerun:
    baselines = reading_baselines(dataset, model_name=model_name, seed=seed, device=dev, max_items=max_items, prefer_recorded=True)
    chapter_ranks = {"constrained": ranks, "free": free_ranks}
else:  # the converged TIGER of the recorded run, and the recorded reading baselines
    baselines = reading_baselines(dataset, seed=seed, max_items=max_items, recorded=True)
    print(f"reading baselines recorded {baselines.about['recorded'][:10]} at commit {baselines.about['commit'][:7]}; best epochs {baselines.best_epoch}")
    chapter_ranks = {mode: recorded.arrays[f"TIGER ({mode})"] for mode in ("constrained", "free")}
test_ranks = {**baselines.ranks, **{f"TIGER (this chapter, {mode})": r for mode, r in chapter_ranks.items()}}
table = pd.DataFrame({name: summarize(r, (5, 10)) for name, r in test_ranks.items()}).T
table.round(4)

# %%
fig, ax = plotting.subplots(width=6, height=3)
ax.barh(table.index, table["ndcg@10"], color=[plotting.model_colour(name) for name in table.index])
ax.set_xlabel("test NDCG@10")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# Which gaps are larger than the noise of the 943 test users? The paired bootstrap interval (`confidence=0.95`) of
# the per-user NDCG@10 difference (resampling users); a difference only when it excludes 0:

# %% tags=["nbval-ignore-output"]
ndcg = {name: ndcg_at_k(r, 10) for name, r in test_ranks.items()}
ours = "TIGER (this chapter, constrained)"
pairs = [(ours, "most-popular"), (ours, "SASRec"), (ours, "TIGER (beam 10)"), ("TIGER (this chapter, free)", ours)]
gaps = {}
for a, b in pairs:
    gap = ndcg[a] - ndcg[b]
    low, high = bootstrap_interval(gap, seed=seed)
    gaps[f"{a} - {b}"] = {"delta ndcg@10": gap.mean(), "low": low, "high": high, "difference": not low <= 0 <= high}
pd.DataFrame(gaps).T.infer_objects().round(4)

# %% [markdown]
# Read off the intervals, for the recorded TIGER (best validation epoch 8 of the 10 it trained;
# section 6 printed what the model trained live for one epoch scores). It is above most-popular by
# 0.0187 NDCG@10, a difference (interval [0.0089, 0.0295] excludes 0). It is below SASRec by 0.0147
# ([-0.0272, -0.0025]), and below the reading configuration's smaller TIGER by 0.0181 ([-0.0293,
# -0.0079]): both differences. The smaller model is not the better architecture here; it had the
# longer budget. It trains up to 20 epochs with patience 5 and its validation score peaked at epoch
# 18 (the best epochs printed above), while this chapter stops at 10, where its cosine schedule ends:
# on RQ-VAE's codes the longer schedule takes TIGER further. Free and constrained decoding show no
# measurable difference. On MovieLens, with few items and long histories, item-ID SASRec is a strong
# rival at this size; the papers' numbers come from Amazon at paper size (README).

# %% [markdown]
# > **How this differs from the paper.**
# > - *Tokenizer:* TIGER's RQ-VAE (notebook 03), smaller. GRID found RK-Means (residual k-means, `tokenizer = "rkmeans"`) at least as good at paper size; at this size validation prefers RQ-VAE over 3 seeds (notebook 06's arms, pooled in chapter 11), so the reading configuration uses it.
# > - *Sizes:* 3 x 64 codes for 1,349 items instead of 3 x 256 for Amazon's tens of thousands; 2 + 2 layers of width 64 instead of TIGER's 4 + 4 of width 128 (6 heads of 64, feed-forward 1024); at most 10 epochs (patience 2; the recorded run's best is epoch 8) on a CPU instead of a long run on TPUs.
# > - *Positions:* learned absolute embeddings of each token's digit and its item's history slot, where TIGER's T5 uses bucketed relative position bias. Both are in the package (`TIGER(..., positions="relative")`); at reading size the relative bias did not score better (numbers in `handbook/models/tiger.py`).
# > - *History length:* 5 items (the reading configuration) instead of 20.
# > - *Item encoder:* all-MiniLM-L6-v2, a small sentence encoder (notebook 02), instead of sentence-T5-XXL.
# > - *User token:* off (TIGER hashes user ids into a table of user tokens; GRID found it does not help; notebook 06 tests it).
# > - *Data:* MovieLens-100K, not the Amazon 2014 categories of the paper.

# %% [markdown]
# ## Summary
#
# - TIGER names items by SIDs, encodes the history's tokens and generates the next item's SID digit by digit; its loss is the teacher-forced cross-entropy of the target's tokens, which section 3 computed by hand and matched to `TIGER.loss`.
# - Beam search turns the digit distributions into a ranked list; the constrained search masks the trie's invalid codes and renormalises, and the hand-made search with the trained model gave the same beams as `beam_search` with its KV cache.
# - Recall@K and NDCG@K under leave-one-out are means over users of a function of one rank each; a generative model's rank is its beam position or a miss.
# - Compare models with paired intervals over users: trained until validation stopped improving, this TIGER is above most-popular (a difference) and below SASRec and the smaller reading TIGER, which trains up to twice as many epochs; its free beams were all valid items, because the model is trained and the code space is small.
#
# ## Exercises
#
# 1. The loss at initialisation. Why is the untrained model's loss close to $\log |V|$, and what would it be if the softmax ran only over the digit's own codes (`output="per_level"`)? *Hint:* a uniform distribution over $n$ outcomes has cross-entropy $\log n$.
# 2. NDCG by hand. A user's target is decoded at 0-based rank 3. What are its Recall@5, NDCG@5 and NDCG@10, and by how much would moving it to rank 0 raise the mean NDCG@10 of 943 users? *Hint:* section 6's equation.
# 3. Free decoding's budget. If a model ignored the trie entirely and spread each digit uniformly, what share of its finished SIDs would be items? *Hint:* compare `len(sids)` with the product of `sids.codebook_sizes`.

# %% tags=["solution", "nbval-ignore-output"]
# 1. Uniform over |V| tokens gives log|V|; with one softmax per level, level t's share is log(size_t),
#    and the mean over the m target tokens is the mean of log(size_t).
print(f"full vocabulary: {math.log(sids.vocab_size):.4f}; per level: {np.mean(np.log(sids.codebook_sizes)):.4f}")

# %% tags=["solution"]
# 2. Rank 3 < 5: recall@5 = 1, NDCG@5 = NDCG@10 = 1 / log2(5); rank 0 gives 1.
r = np.array([3])
print(f"NDCG@5 {ndcg_at_k(r, 5)[0]:.4f}, NDCG@10 {ndcg_at_k(r, 10)[0]:.4f}; "
      f"mean NDCG@10 rises by {(1 - ndcg_at_k(r, 10)[0]) / data.n_users:.5f}")  # fmt: skip

# %% tags=["solution", "nbval-ignore-output"]
# 3. Items over all possible SIDs: a blind decoder would waste almost every beam. The trained model
#    wastes few because it has learned the occupied part of the code space (section 7).
print(f"{len(sids)} items / {int(np.prod(sids.codebook_sizes)):,} possible SIDs = {len(sids) / np.prod(sids.codebook_sizes):.2e}")

# %% [markdown]
# ## References
#
# - S. Rajput et al. *Recommender Systems with Generative Retrieval* (TIGER), NeurIPS 2023 (arXiv:2305.05065).
# - C. Ju et al. *Generative Recommendation with Semantic IDs: A Practitioner's Handbook* (GRID), 2025 (arXiv:2507.22224); code: github.com/snap-research/GRID.
# - C. Raffel et al. *Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer* (T5), JMLR 2020 (arXiv:1910.10683).
# - W.-C. Kang, J. McAuley. *Self-Attentive Sequential Recommendation* (SASRec), ICDM 2018 (arXiv:1808.09781).
# - Every term: [glossary](glossary.md).

# %%
live = {  # the TIGER trained in this run: the converged one with rerun, else `live_epochs`
    "TIGER (constrained)": {**summarize(ranks, (5, 10)), "invalid_share": constrained_invalid},
    "TIGER (free)": {**summarize(free_ranks, (5, 10)), "invalid_share": free_invalid},
}
metrics = {
    "dataset": ds.name,
    "tokenizer": tokenizer,
    "n_items": data.n_items,
    "rerun": rerun,
    "test": {
        "most-popular": summarize(baselines.ranks["most-popular"], (5, 10)),
        "SASRec": summarize(baselines.ranks["SASRec"], (5, 10)),
        **(live if rerun else {name: recorded.metrics["test"][name] for name in live}),
    },
    "live": {**live, "epochs": len(tiger_run.history)},
    "reading_tiger": summarize(baselines.ranks["TIGER (beam 10)"], (5, 10)),
    "gaps_ndcg@10": {name: {k: float(v) for k, v in row.items()} for name, row in gaps.items()},
    "tiger_best_epoch": converged["best_epoch"],
    "tiger_history": converged["history"],
}
write_metrics(out, metrics)
# per-user test ranks of this chapter's TIGER and the reading baselines, which the chapter reads back when rerun is False
write_npz_atomic(out / "ranks.npz", {**{f"TIGER ({mode})": r for mode, r in chapter_ranks.items()}, **baselines.ranks})
print("wrote", sorted(metrics))
