"""ACERec (Xia et al., 2026): long semantic IDs merged into a few latents, one intent token per item.

"Unleash the Potential of Long Semantic IDs for Generative Recommendation" (arXiv 2602.13573;
v1 Feb 2026, v2 Aug 2026 adds the reconstruction loss). As in RPG (`handbook.models.rpg`),
every item has a long OPQ/PQ semantic ID of m digits with W codes each, one token table
holds all digits (digit j's code c is token `offset_j + c`, see `handbook.sid`), so item i
is a matrix E_i (m, D) of token embeddings, and the m digits of the next item are predicted
in parallel. The paper's parts:

* **Attentive Token Merger** (`AttentiveTokenMerger`), with content-adaptive queries: a
  summary s_i = f_s(E_i) of the item, k queries Q_i = f_q(s_i), a learned position per
  subspace E~_i = E_i + P, and Z_i = f_out(MHA(Q_i, E~_i, E~_i)), k latents (k, D) per item:
  compression ratio r = m / k (the paper: m = 32, k = 4, r = 8);
* **one intent token per item**: the sequence is [Z_1; h_1, ..., Z_L; h_L], L (k + 1)
  positions, where h_t starts from the item's summary s_t. The attention is block-causal
  (`block_causal_mask`): the latents of a block see each other both ways and every earlier
  block; h_t sees its own block and every earlier block; nothing sees a later block. The
  output state at h_t predicts item t + 1; at inference the state at h_L;
* **loss** = RPG's multi-token prediction (MTP) over the m digits from the state at h_t
  (cosine logits / `temperature`, 0.03) + `isa_weight` (lambda) * ISA + `recon_weight` * Recon.
  ISA (Intent-Semantic Alignment) is an in-batch InfoNCE between h_t and the summary
  s_{t+1} of the next item: logit_j = cos(h_t, s_j) / `isa_temperature` (0.07) - b_j, with
  the logQ correction b_j = `logq_beta` (0.02) * log f_j / max_i log f_i, f_j item j's
  training frequency (`item_counts`). Recon (v2 only) rebuilds E_i from Z_i with a small
  decoder and charges 1 - mean cosine; the paper's weight is 0.03-0.05, here 0 (off) by default;
* **token-only exact scoring**: Score(j) = sum over digits of the digit log-probability of
  item j's code, for the whole catalogue at once (`scores`): no beam search, and the ISA
  term is not used at inference. An item never seen in training is scored from its SID
  tokens like any other (cold start).

Choices where the sources leave the form open (no code was published):

* f_s: the mean of the m token embeddings plus a residual MLP, s = e + MLP(LN(e)); the MLP's
  last layer starts at zero, so s starts as RPG's mean pooling;
* f_q: one linear layer from s to k * D, reshaped to (k, D), with a bias (the query part that
  does not depend on the item);
* the multi-head attention has D / n_heads-wide heads and no biases; the summary and the keys
  are layer-normalised (pre-LN, as every transformer block) and f_q, W_q, W_k start at
  std 1 / sqrt(D), so the attention starts as random as any transformer layer's and learns
  (with small maps on N(0, 0.02) tokens it stayed uniform: see `AttentiveTokenMerger`); the
  value and output projections start as the identity, so a latent is a weighted mean of E~_i;
  f_out is a residual MLP with a LayerNorm, Z = A + MLP(LN(A)), whose last layer starts at
  zero; P starts at N(0, 0.02);
* positions across the sequence: every position of block t gets RPG's learned position of
  item t (counted from the first real item, so left padding changes nothing) plus a learned
  embedding of its role in the block (latent 1..k, intent token); no role embedding when a
  block is a single position;
* supervision: the state of every block with a label is trained (every transition of a
  training window, as RPG); the block-causal mask makes each state depend on its prefix
  only, so one pass is exact for all of them;
* ISA's in-batch candidates are the distinct next items of the batch (a repeated target is
  one candidate, not a false negative of itself); sim is the cosine, with no projection head;
  items with no training interaction get no logQ correction (log f taken as log 1 = 0); without
  `item_counts` there is no correction at all;
* Recon's decoder mixes the k latents into m rows (a learned (m, k) matrix that starts as the
  mean), adds its own subspace positions and applies a residual MLP; it rebuilds the token
  embeddings of the distinct items of the batch's histories, and its targets E_i are held
  fixed (detached): the term trains the merger to keep the tokens' information, not the
  tokens to be easy to rebuild;
* the encoder is RPG's (GPT-2 blocks, dropout on the inputs and attention weights).

Ablations (the paper's ladder RPG -> + merger -> + intent token -> + ISA -> + reconstruction,
and its merger variants):

* `merger`: "attention" (ATM), "mean" (the mean of each of k contiguous groups of m / k
  digits; with k = 1 RPG's mean pooling; parameter-free, no P), "mlp" (a learned (k, m)
  mixing of the token axis that does not depend on the item, then f_out) and "conv" (a 1-D
  convolution over the token axis with kernel and stride m / k, then f_out); the learned
  variants start as group mean pooling and add P, as the ATM. The paper does not describe its
  variants; these are the handbook's;
* `intent_token=False`: no intent tokens; the last latent of each block is the prediction
  state (the paper's "Last-Token" anchor);
* `isa_weight=0`: MTP alone; `recon_weight > 0`: the v2 reconstruction loss.

With `merger="mean"`, `n_latents=1`, no intent token, `isa_weight=0` and `recon_weight=0`
the model is RPG, parameter for parameter (up to its scores' scale: a sum over digits where
RPG takes the mean, the same ranking). The paper's k in the code is `n_latents`; its
compression ratio r is m / k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from handbook.models.rpg import RPG, mtp_loss
from handbook.sid import SemanticIDs

Merger = Literal["attention", "mean", "mlp", "conv"]
MERGERS = ("attention", "mean", "mlp", "conv")


def block_causal_mask(
    n_items: int, n_latents: int, intent_token: bool, device: torch.device | None = None
) -> torch.Tensor:
    """Who may attend to whom (T, T), True = may, in the sequence [Z_1; h_1, ..., Z_L; h_L].

    T = n_items * (n_latents + 1) with intent tokens, n_items * n_latents without. A query
    sees every position of an earlier block; inside its own block, every latent, and an
    intent token also sees itself; nothing of a later block.
    """
    block = n_latents + int(intent_token)
    position = torch.arange(n_items * block, device=device)
    slot = position // block  # (T,) the item each position belongs to
    is_intent = (
        (position % block == n_latents)
        if intent_token
        else torch.zeros_like(slot, dtype=torch.bool)
    )
    earlier = slot.unsqueeze(1) > slot.unsqueeze(0)  # (query, key): key's block is earlier
    same = slot.unsqueeze(1) == slot.unsqueeze(0)
    itself = torch.eye(position.numel(), dtype=torch.bool, device=device)
    return earlier | (same & (~is_intent.unsqueeze(0) | itself))


class ResidualMLP(nn.Module):
    """x + W2 GELU(W1 LN(x)); W2 starts at zero, so the block starts as the identity."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.up = nn.Linear(hidden, width)
        self.down = nn.Linear(width, hidden)
        nn.init.normal_(self.up.weight, std=0.02)
        nn.init.zeros_(self.up.bias)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return x + self.down(F.gelu(self.up(self.ln(x)), approximate="tanh"))


class ItemSummary(nn.Module):
    """f_s: an item's token embeddings (N, m, D) -> its summary s (N, D): their mean, then a residual MLP."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.mlp = ResidualMLP(hidden, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, m, D) -> (N, D)."""
        return self.mlp(tokens.mean(dim=1))


class AttentiveTokenMerger(nn.Module):
    """ATM: k queries made from the item's summary cross-attend to its m tokens + subspace positions.

    Q = f_q(LN(s)) (N, k, D); E~ = E + P; Z = f_out(MHA(Q, LN(E~), E~)) (N, k, D).

    The attention logits are a bilinear form of the summary and the tokens, through three maps
    (f_q, W_q, W_k). Token embeddings start at N(0, 0.02), so with those maps small too every
    factor keeps the others' gradient near zero: an earlier version started them at N(0, 0.02)
    and its attention never left uniform (gradient norms about 6e-8 against 0.05 for the value
    map; total-variation distance from uniform 6e-6 after three epochs of notebook 08). As the
    pre-LN blocks of a transformer do, the summary and the keys are layer-normalised here and
    the three maps start at the scale of an `nn.Linear` (std 1 / sqrt(D)), so the logits start
    O(1) and learn at the rate of the rest of the model. The values stay un-normalised E~ through
    identity maps: a latent is a weighted mean of the item's token embeddings, in their scale.
    """

    def __init__(
        self, n_digits: int, n_latents: int, hidden: int, n_heads: int, width: int
    ) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden={hidden} must be divisible by n_heads={n_heads}")
        self.n_latents, self.n_heads, self.head_dim = n_latents, n_heads, hidden // n_heads
        self.positions = nn.Parameter(torch.randn(n_digits, hidden) * 0.02)  # P (m, D)
        self.ln_summary = nn.LayerNorm(hidden, eps=1e-12)
        self.ln_keys = nn.LayerNorm(hidden, eps=1e-12)
        self.make_queries = nn.Linear(hidden, n_latents * hidden)  # f_q
        self.q = nn.Linear(hidden, hidden, bias=False)
        self.k = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, hidden, bias=False)
        self.f_out = ResidualMLP(hidden, width)
        for layer in (self.make_queries, self.q, self.k):
            nn.init.normal_(layer.weight, std=hidden**-0.5)
        nn.init.zeros_(self.make_queries.bias)
        with torch.no_grad():  # a latent is a weighted mean of the item's (positioned) tokens
            self.v.weight.copy_(torch.eye(hidden))
            self.out.weight.copy_(torch.eye(hidden))

    def queries(self, summary: torch.Tensor) -> torch.Tensor:
        """Q = f_q(LN(s)): (N, D) -> (N, k, D), one set of k queries per item."""
        return self.make_queries(self.ln_summary(summary)).view(summary.shape[0], self.n_latents, -1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, D) -> (N, H, S, dh)."""
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def _queries_keys(self, tokens: torch.Tensor, summary: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-head queries (N, H, k, dh), keys (N, H, m, dh) and positioned tokens E~ (N, m, D)."""
        positioned = tokens + self.positions  # E~ (N, m, D)
        q = self._heads(self.q(self.queries(summary)))
        return q, self._heads(self.k(self.ln_keys(positioned))), positioned

    def forward(self, tokens: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """tokens E (N, m, D) and summaries s (N, D) -> latents Z (N, k, D)."""
        q, k, positioned = self._queries_keys(tokens, summary)
        mixed = F.scaled_dot_product_attention(q, k, self._heads(self.v(positioned)))  # (N, H, k, dh)
        attended = self.out(mixed.transpose(1, 2).reshape(tokens.shape[0], self.n_latents, -1))
        return self.f_out(attended)

    def attention_weights(self, tokens: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """Where each latent looks: softmax attention (N, heads, k, m) of an item's queries over its m tokens."""
        q, k, _ = self._queries_keys(tokens, summary)
        return (q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)).softmax(dim=-1)


class GroupMeanMerger(nn.Module):
    """The mean of each of k contiguous groups of m / k tokens: (N, m, D) -> (N, k, D); k = 1 is RPG's pooling."""

    def __init__(self, n_latents: int) -> None:
        super().__init__()
        self.n_latents = n_latents

    def forward(self, tokens: torch.Tensor, summary: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (N, m, D) -> (N, k, D); the summary is not used."""
        n, m, d = tokens.shape
        return tokens.view(n, self.n_latents, m // self.n_latents, d).mean(dim=2)


class MixingMerger(nn.Module):
    """The "mlp" merger: Z = f_out(W E~), a learned (k, m) mixing of the token axis, the same for every item."""

    def __init__(self, n_digits: int, n_latents: int, hidden: int, width: int) -> None:
        super().__init__()
        self.positions = nn.Parameter(torch.randn(n_digits, hidden) * 0.02)  # P (m, D)
        # each latent starts as the mean of its group of m / k tokens, as the group-mean merger
        group = torch.arange(n_digits) // (n_digits // n_latents)
        start = (group.unsqueeze(0) == torch.arange(n_latents).unsqueeze(1)).float()
        self.mixing = nn.Parameter(start / start.sum(dim=1, keepdim=True))  # (k, m)
        self.f_out = ResidualMLP(hidden, width)

    def forward(self, tokens: torch.Tensor, summary: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (N, m, D) -> (N, k, D); the summary is not used."""
        return self.f_out(torch.einsum("km,nmd->nkd", self.mixing, tokens + self.positions))


class ConvMerger(nn.Module):
    """The "conv" merger: Z = f_out(conv(E~)), a 1-D convolution over the token axis, kernel = stride = m / k."""

    def __init__(self, n_digits: int, n_latents: int, hidden: int, width: int) -> None:
        super().__init__()
        group = n_digits // n_latents
        self.positions = nn.Parameter(torch.randn(n_digits, hidden) * 0.02)  # P (m, D)
        self.conv = nn.Conv1d(hidden, hidden, kernel_size=group, stride=group)
        with torch.no_grad():
            # every tap starts as identity / (m / k): the group mean
            self.conv.weight.copy_(torch.eye(hidden).unsqueeze(-1).expand(-1, -1, group) / group)
            self.conv.bias.zero_()
        self.f_out = ResidualMLP(hidden, width)

    def forward(self, tokens: torch.Tensor, summary: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (N, m, D) -> (N, k, D); the summary is not used."""
        mixed = self.conv((tokens + self.positions).transpose(1, 2)).transpose(1, 2)  # (N, k, D)
        return self.f_out(mixed)


class TokenDecoder(nn.Module):
    """The v2 reconstruction decoder: k latents (N, k, D) -> m rebuilt token embeddings (N, m, D)."""

    def __init__(self, n_digits: int, n_latents: int, hidden: int, width: int) -> None:
        super().__init__()
        self.upsample = nn.Parameter(torch.full((n_digits, n_latents), 1.0 / n_latents))  # (m, k)
        self.positions = nn.Parameter(torch.randn(n_digits, hidden) * 0.02)
        self.mlp = ResidualMLP(hidden, width)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, k, D) -> (N, m, D)."""
        return self.mlp(torch.einsum("mk,nkd->nmd", self.upsample, latents) + self.positions)


class ACERec(RPG):
    """ACERec: ATM latents and one intent token per item, block-causal transformer, MTP + ISA, token-only scoring.

    sids: the catalogue's `SemanticIDs` built with `dedup=False` from PQ/OPQ codes, every
    digit with the same number of codes (row i is item id i + 1). item_counts: training
    interactions per item id, (n_items + 1,) with index 0 the padding, as
    `SequenceData.item_counts()` gives them, for ISA's logQ correction (None: no correction).
    The transformer defaults are RPG's (2 layers, hidden 448, 4 heads, feed-forward 1024,
    dropout 0.5, up to 50 items, temperature 0.03); the others are the paper's: k = 4
    latents, lambda = 0.1 (its grid: 0.1, 0.15, 0.2), ISA temperature 0.07, beta 0.02.
    """

    def __init__(
        self,
        sids: SemanticIDs,
        *,
        n_latents: int = 4,
        merger: Merger = "attention",
        intent_token: bool = True,
        max_len: int = 50,
        hidden: int = 448,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn: int = 1024,
        dropout: float = 0.5,
        resid_dropout: float = 0.0,
        temperature: float = 0.03,
        isa_weight: float = 0.1,
        isa_temperature: float = 0.07,
        logq_beta: float = 0.02,
        item_counts: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        recon_weight: float = 0.0,
    ) -> None:
        if merger not in MERGERS:
            raise ValueError(
                f"merger must be one of {', '.join(map(repr, MERGERS))}, got {merger!r}"
            )
        if not 1 <= n_latents <= sids.n_digits:
            raise ValueError(
                f"n_latents (latents k per item) must be between 1 and the {sids.n_digits} SID digits "
                f"it compresses, got {n_latents}: pick k with m / k >= 1"
            )
        if merger != "attention" and sids.n_digits % n_latents:
            raise ValueError(
                f"merger={merger!r} splits the {sids.n_digits} digits into n_latents={n_latents} equal "
                "groups: pick an n_latents that divides the SID length, or merger='attention'"
            )
        for name, value in (
            ("isa_weight", isa_weight),
            ("logq_beta", logq_beta),
            ("recon_weight", recon_weight),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns the term off), got {value}")
        if isa_temperature <= 0:
            raise ValueError(f"isa_temperature must be > 0, got {isa_temperature}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1 item, got {max_len}")
        # RPG's token table, positions, GPT-2 blocks, digit heads, init and SID checks
        super().__init__(
            sids,
            max_len=max_len,
            hidden=hidden,
            n_layers=n_layers,
            n_heads=n_heads,
            ffn=ffn,
            dropout=dropout,
            resid_dropout=resid_dropout,
            temperature=temperature,
        )
        self.n_latents = n_latents
        self.merger_kind = merger
        self.intent_token = bool(intent_token)
        self.isa_weight = float(isa_weight)
        self.isa_temperature = float(isa_temperature)
        self.logq_beta = float(logq_beta)
        self.recon_weight = float(recon_weight)
        self.register_buffer("log_frequency", self._log_frequency(item_counts))  # (n_items + 1,)
        self.config.update(
            n_latents=n_latents,
            merger=merger,
            intent_token=self.intent_token,
            isa_weight=self.isa_weight,
            isa_temperature=self.isa_temperature,
            logq_beta=self.logq_beta,
            logq=item_counts is not None,
            recon_weight=self.recon_weight,
        )
        m = self.n_digits
        if merger == "attention":
            self.merger: nn.Module = AttentiveTokenMerger(m, n_latents, hidden, n_heads, ffn)
        elif merger == "mean":
            self.merger = GroupMeanMerger(n_latents)
        elif merger == "mlp":
            self.merger = MixingMerger(m, n_latents, hidden, ffn)
        else:
            self.merger = ConvMerger(m, n_latents, hidden, ffn)
        # f_s serves the ATM's queries, the intent tokens' start and ISA's targets; built only
        # when one of them is on, so that every parameter gets a gradient (DDP expects it)
        needs_summary = merger == "attention" or self.intent_token or self.isa_weight > 0
        self.summary = ItemSummary(hidden, ffn) if needs_summary else None
        block = n_latents + int(self.intent_token)
        self.role_emb = nn.Embedding(block, hidden) if block > 1 else None
        if self.role_emb is not None:
            nn.init.normal_(self.role_emb.weight, std=0.02)
        self.decoder = TokenDecoder(m, n_latents, hidden, ffn) if self.recon_weight > 0 else None

    def _log_frequency(
        self, item_counts: Sequence[int] | np.ndarray | torch.Tensor | None
    ) -> torch.Tensor:
        """log f_j / max_i log f_i per item id (n_items + 1,): logQ's popularity term; zeros without counts."""
        ratio = torch.zeros(self.n_items + 1)
        if item_counts is None:
            return ratio
        counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64).reshape(-1)
        if counts.numel() != self.n_items + 1 or bool((counts < 0).any()):
            raise ValueError(
                f"item_counts must hold {self.n_items + 1} non-negative counts, one per item id with "
                f"index 0 the padding (SequenceData.item_counts()), got {counts.numel()} values"
            )
        log_f = counts.clamp(min=1).log()  # an item never trained on: log 1 = 0, no correction
        top = float(log_f[1:].max()) if self.n_items else 0.0
        return (log_f / top).float() if top > 0 else ratio

    # ------------------------------------------------------------------ items
    def _merge(
        self, unique_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Token embeddings E (U, m, D), latents Z (U, k, D) and summaries s (U, D) or None of distinct ids (U,)."""
        tokens = self.token_emb(self.item_tokens[unique_ids])  # (U, m, D); id 0: zeros
        summary = None if self.summary is None else self.summary(tokens)
        return tokens, self.merger(tokens, summary), summary

    def item_latents(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Merged latents Z of item ids: (...) -> (..., k, D)."""
        unique, inverse = torch.unique(item_ids.long(), return_inverse=True)
        latents = self._merge(unique)[1]
        return latents.index_select(0, inverse.reshape(-1)).view(*inverse.shape, *latents.shape[1:])

    def item_summaries(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Summaries s = f_s(E) of item ids: (...) -> (..., D): the intent tokens' start and ISA's targets."""
        if self.summary is None:
            raise ValueError(
                "this ACERec has no item summary f_s: it is built with merger='attention', "
                "intent_token=True or isa_weight > 0"
            )
        unique, inverse = torch.unique(item_ids.long(), return_inverse=True)
        summary = self.summary(self.token_emb(self.item_tokens[unique]))  # (U, D)
        return summary.index_select(0, inverse.reshape(-1)).view(*inverse.shape, -1)

    def merger_attention(self, item_ids: torch.Tensor) -> torch.Tensor:
        """The ATM's attention (N, heads, k, m) of item ids (N,): where each latent of each item looks."""
        if not isinstance(self.merger, AttentiveTokenMerger):
            raise ValueError(
                f"merger={self.merger_kind!r} has no attention weights: use merger='attention'"
            )
        tokens = self.token_emb(self.item_tokens[item_ids.long()])  # (N, m, D)
        return self.merger.attention_weights(tokens, self.summary(tokens))

    # ------------------------------------------------------------------ encoder
    def _forward(
        self, input_ids: torch.Tensor, reconstruct: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prediction states (B, max_len, D) of left-padded item ids (B, L), and the Recon loss if asked."""
        ids = self._fit_length(input_ids.long())  # (B, L)
        batch, length = ids.shape
        keep = ids != 0  # (B, L)
        unique, inverse = torch.unique(ids, return_inverse=True)
        tokens, latents, summary = self._merge(unique)
        # index_select, not latents[inverse]: the backward of advanced indexing sums repeated
        # ids in a thread-dependent order on CPU, so training would not be reproducible
        flat = inverse.reshape(-1)
        parts = [latents.index_select(0, flat).view(batch, length, self.n_latents, self.hidden)]
        if self.intent_token:
            parts.append(
                summary.index_select(0, flat).view(batch, length, 1, self.hidden)
            )  # h_t = s_t
        x = torch.cat(parts, dim=2)  # (B, L, b, D), b = k (+ 1) positions per block
        block = x.shape[2]
        # positions count from the first real item, as RPG's, so left padding changes nothing
        item_pos = (keep.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        x = x + self.pos_emb(item_pos).unsqueeze(2)
        if self.role_emb is not None:
            x = x + self.role_emb.weight  # (b, D): which latent, or the intent token
        x = self.emb_drop(x) * keep[:, :, None, None]
        x = x.reshape(batch, length * block, self.hidden)  # (B, T, D)
        real = keep.repeat_interleave(block, dim=1)  # (B, T)
        sees = block_causal_mask(length, self.n_latents, self.intent_token, ids.device)  # (T, T)
        # the diagonal stays open so that a padding query still has a key (no NaN from SDPA)
        eye = torch.eye(length * block, dtype=torch.bool, device=ids.device)
        attn_mask = ((sees & real.unsqueeze(1)) | eye).unsqueeze(1)  # (B, 1, T, T)
        for layer in self.blocks:
            x = layer(x, attn_mask)
        x = self.final_ln(x)
        # the intent token h_t, or without one the last latent of block t
        states = x.view(batch, length, block, self.hidden)[:, :, -1]  # (B, L, D)
        recon = None
        if reconstruct:
            if self.decoder is None:
                raise ValueError(
                    "this ACERec has no reconstruction decoder: build it with recon_weight > 0"
                )
            real_items = unique != 0
            rebuilt = self.decoder(latents[real_items])  # (U', m, D)
            cosine = F.cosine_similarity(rebuilt, tokens[real_items].detach(), dim=-1)  # (U', m)
            recon = 1 - cosine.mean()
        return states, recon

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Prediction state of every item slot (B, max_len, D) of left-padded item ids (B, L): h_t predicts item t + 1."""
        return self._forward(input_ids)[0]

    # ------------------------------------------------------------------ training
    def isa_loss(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """ISA: in-batch InfoNCE of states (M, D) against the summaries of the distinct next items (M,), logQ-corrected."""
        items, positive = torch.unique(targets, return_inverse=True)  # (U,), (M,)
        keys = F.normalize(self.item_summaries(items), dim=-1)  # (U, D)
        logits = F.normalize(states, dim=-1) @ keys.T / self.isa_temperature  # (M, U)
        logits = logits - self.logq_beta * self.log_frequency.index_select(0, items)
        return F.cross_entropy(logits.float(), positive)

    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """MTP + isa_weight * ISA (+ recon_weight * Recon) of the next item at every labelled slot."""
        input_ids, labels = batch[0], batch[1]  # (B, L) each, 0 = padding / no label
        states, recon = self._forward(input_ids, reconstruct=self.recon_weight > 0)
        labels = self._fit_length(labels.long())
        mask = labels != 0
        if not bool(mask.any()):
            raise ValueError("the batch holds no labels: every position is padding")
        states, targets = states[mask], labels[mask]  # (M, D), (M,)
        loss = mtp_loss(
            self.heads(states), self.token_table(), self.codes[targets - 1], self.temperature
        )
        if self.isa_weight > 0:
            loss = loss + self.isa_weight * self.isa_loss(states, targets)
        if recon is not None:
            loss = loss + self.recon_weight * recon
        return loss

    # ------------------------------------------------------------------ inference
    def scores(self, histories: torch.Tensor) -> torch.Tensor:
        """Exact scores (B, n_items + 1): the sum over digits of each item's code log-probabilities; pad -inf."""
        return self._catalogue_scores(self.digit_log_probs(histories), mode="sum")
