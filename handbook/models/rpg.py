"""RPG (Hou et al., KDD 2025): long unordered semantic IDs, all digits predicted in parallel.

"Generating Long Semantic IDs in Parallel for Recommendation" (arXiv 2506.05781).
Every item has an OPQ/PQ semantic ID of m digits (16-64 in the paper) with W = 256
codes each, kept without collision handling. The model is a small causal
transformer over the *item* sequence, not over tokens, so a history of L items
costs L positions however long the SIDs are:

* input: an item's embedding is the mean of its m token embeddings, taken from one
  token table over all digits (digit j's code c is token `offset_j + c` of the SID
  token space, see `handbook.sid`);
* m output heads, one per digit, turn the last hidden state into m query vectors;
* multi-token prediction (MTP) loss: for digit j the logits over its W codes are the
  cosine of head j's vector with each of digit j's token embeddings, divided by a
  temperature; the loss is the cross-entropy averaged over the m digits. The same
  token table therefore serves as input and output embeddings;
* scoring: an item's score is the mean of its digits' log-probabilities, so the
  whole catalogue is scored exactly from one (B, m, W) tensor (`scores`), or only
  the items a graph walk visits (`handbook.decoding.graph`).

Where the paper is silent this follows the authors' code (facebookresearch/RPG_KDD2025,
`genrec/models/RPG/model.py` and `genrec/models/RPG/config.yaml`): a GPT-2 block
layout (pre-LN, learned positions counted from the first item, GELU feed-forward,
final LayerNorm, no embedding scaling, LayerNorm eps 1e-12); dropout on the input
embeddings and on the attention weights, none on the residual branches; each digit
head is a residual block `x + SiLU(W x + b)` whose weight starts at zero, so every
head starts as the identity; padding (item id 0) maps to the padding token on all
digits. Sequences here are left-padded as everywhere in the handbook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from handbook.models.dropout import Dropout
from handbook.models.sasrec import CausalSelfAttention, SASRec
from handbook.sid import PAD_TOKEN, SemanticIDs

#: exact scoring uses an embedding bag from this many users on, a plain gather below (`RPG._catalogue_scores`)
BAG_MIN_BATCH = 2


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits (..., W) against targets (...), with the gradient in one pass.

    The same value and gradient as `F.cross_entropy`, which on a CPU spends more time than the
    matmul on RPG's (positions x digits x codes) logits: its backward fills a zero tensor,
    scatters into it and runs log-softmax's backward, three passes where softmax minus one-hot
    written in place is one (`make bench` times a training step before and after).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(logits, dim=-1)  # (...)
        picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (...)
        ctx.save_for_backward(logits, lse, targets)
        return (lse - picked).mean()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, lse, targets = ctx.saved_tensors
        grad = (logits - lse.unsqueeze(-1)).exp_()  # softmax
        grad.scatter_add_(-1, targets.unsqueeze(-1), lse.new_full((*lse.shape, 1), -1.0))  # - one-hot
        return grad.mul_(grad_output / lse.numel()), None


def mtp_loss(
    states: torch.Tensor, token_tables: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Multi-token prediction loss: mean over digits of the cross-entropy of cosine logits / temperature.

    states: (M, m, D) one query vector per digit; token_tables: (m, W, D) each digit's
    token embeddings; targets: (M, m) codes in [0, W). Every digit has the same M targets,
    so the mean over all M * m terms is the mean over digits of each digit's mean cross-entropy.
    """
    queries = F.normalize(states, dim=-1) / temperature  # (M, m, D)
    tokens = F.normalize(token_tables, dim=-1)  # (m, W, D)
    logits = torch.bmm(queries.transpose(0, 1), tokens.transpose(1, 2))  # (m, M, W): a matmul per digit
    return _SoftmaxCrossEntropy.apply(logits.float(), targets.long().t())


def digit_logits(
    states: torch.Tensor, token_tables: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Cosine similarity of each digit's query with that digit's tokens, / temperature: (..., m, W)."""
    # dividing the (..., m, D) queries costs W / D times fewer operations than the logits
    queries = F.normalize(states, dim=-1) / temperature  # (..., m, D)
    tokens = F.normalize(token_tables, dim=-1)  # (m, W, D)
    return torch.einsum("...md,mwd->...mw", queries, tokens)


def mean_digit_log_prob(digit_log_probs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Score of SIDs = mean over digits of the code's log-probability: (B, C).

    digit_log_probs: (B, m, W); codes: (C, m) shared by every row, or (B, C, m) per row.
    """
    batch, m, width = digit_log_probs.shape
    flat = digit_log_probs.reshape(batch, m * width)  # (B, m * W)
    index = codes.long() + torch.arange(m, device=codes.device) * width  # token of digit j
    if index.ndim == 2:
        picked = flat[:, index]  # (B, C, m)
    else:
        picked = flat.gather(1, index.reshape(batch, -1)).reshape(index.shape)  # (B, C, m)
    return picked.mean(dim=-1)


def trim_left_padding(input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the leading columns (B, L) -> (B, L') where every row of both tensors is padding (0)."""
    used = ((input_ids != 0) | (labels != 0)).any(dim=0)  # (L,)
    first = int(used.long().argmax()) if bool(used.any()) else input_ids.shape[1] - 1
    return input_ids[:, first:], labels[:, first:]


class DigitHeads(nn.Module):
    """One residual projection per digit, `x + SiLU(W_j x + b_j)`, batched over the m digits.

    As in the authors' code (`ResBlock`) W_j starts at zero, so every head starts as the
    identity plus a small bias, and the digits only drift apart as training needs.
    """

    def __init__(self, n_digits: int, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_digits, hidden, hidden))
        # nn.Linear's default bias init, which the authors' heads keep
        bound = 1.0 / math.sqrt(hidden)
        self.bias = nn.Parameter(torch.empty(n_digits, hidden).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., D) -> (..., m, D)."""
        projected = torch.einsum("...d,med->...me", x, self.weight) + self.bias
        return x.unsqueeze(-2) + F.silu(projected)


class GPT2Block(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)) with a GELU feed-forward of width `ffn`."""

    def __init__(
        self, hidden: int, n_heads: int, ffn: int, attn_dropout: float, resid_dropout: float
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        # SASRec's attention applies `attn_dropout` to the attention weights, as GPT-2's attn_pdrop
        self.attn = CausalSelfAttention(hidden, n_heads, attn_dropout)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, ffn), nn.GELU(approximate="tanh"), nn.Linear(ffn, hidden)
        )
        self.drop = Dropout(resid_dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        x = x + self.drop(self.attn(self.ln1(x), attn_mask))
        return x + self.drop(self.mlp(self.ln2(x)))


class RPG(nn.Module):
    """RPG: causal transformer over mean-pooled SID token embeddings, m parallel digit heads, MTP loss.

    sids: the catalogue's `SemanticIDs` built with `dedup=False` from PQ/OPQ codes,
    every digit with the same number of codes (row i is item id i + 1). Defaults are
    the paper's: 2 layers, hidden 448, 4 heads, feed-forward 1024, dropout 0.5, up to
    50 items, temperature 0.03 (the authors' README for all datasets).
    """

    def __init__(
        self,
        sids: SemanticIDs,
        *,
        max_len: int = 50,
        hidden: int = 448,
        n_layers: int = 2,
        n_heads: int = 4,
        ffn: int = 1024,
        dropout: float = 0.5,
        resid_dropout: float = 0.0,
        temperature: float = 0.03,
    ) -> None:
        super().__init__()
        name = type(self).__name__  # the messages serve subclasses too (ACERec)
        if sids.dedup:
            raise ValueError(
                f"{name} predicts the tokenizer's digits in parallel and has no use for a de-duplication "
                "digit: build the table with SemanticIDs.from_codes(codes, sizes, dedup=False)"
            )
        if len(set(sids.codebook_sizes)) != 1:
            raise ValueError(
                f"{name} needs the same number of codes on every digit (PQ/OPQ), got {sids.codebook_sizes}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.n_items = sids.n_items
        self.n_digits = sids.n_digits
        self.codebook_size = sids.codebook_sizes[0]
        self.max_len = max_len
        self.hidden = hidden
        self.temperature = float(temperature)
        self.config = {
            "n_items": self.n_items,
            "n_digits": self.n_digits,
            "codebook_size": self.codebook_size,
            "max_len": max_len,
            "hidden": hidden,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "ffn": ffn,
            "dropout": dropout,
            "resid_dropout": resid_dropout,
            "temperature": temperature,
        }

        # item id -> its m tokens in the SID token space; id 0 (padding) -> padding token
        item_tokens = np.full((self.n_items + 1, self.n_digits), PAD_TOKEN, dtype=np.int64)
        item_tokens[1:] = sids.tokens()
        self.register_buffer("item_tokens", torch.from_numpy(item_tokens))  # (n_items + 1, m)
        self.register_buffer("codes", torch.from_numpy(sids.codes.astype(np.int64)))  # (n, m)
        # digit j's code c as row j * W + c of a flattened (m * W) per-digit table, for exact scoring
        digit_rows = self.codes + torch.arange(self.n_digits) * self.codebook_size
        self.register_buffer("digit_rows", digit_rows, persistent=False)  # (n, m)
        # first token id of each digit's code range, to cut the table into per-digit tables
        self.token_start = int(sids.tokens(np.zeros((1, self.n_digits), dtype=np.int64))[0, 0])

        self.token_emb = nn.Embedding(sids.vocab_size, hidden, padding_idx=PAD_TOKEN)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            GPT2Block(hidden, n_heads, ffn, dropout, resid_dropout) for _ in range(n_layers)
        )
        self.final_ln = nn.LayerNorm(hidden, eps=1e-12)
        self.register_buffer(
            "causal", torch.ones(max_len, max_len, dtype=torch.bool).tril(), persistent=False
        )
        self._init_weights(n_layers)
        # built after the init so that it keeps its own (zero-weight) start
        self.heads = DigitHeads(self.n_digits, hidden)

    def _init_weights(self, n_layers: int) -> None:
        """GPT-2 init, as the authors' Hugging Face model: N(0, 0.02), residual outputs / sqrt(2 n_layers)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            # keeps the residual stream's variance flat with depth
            for layer in (block.attn.out, block.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02 / math.sqrt(2 * n_layers))
        with torch.no_grad():
            self.token_emb.weight[PAD_TOKEN].zero_()

    # ------------------------------------------------------------------ encoder
    def _fit_length(self, ids: torch.Tensor) -> torch.Tensor:
        """Keep the last `max_len` columns: (B, L) -> (B, min(L, max_len)).

        Shorter inputs stay short: positions count from the first real item and padding is
        masked, so left padding changes nothing but the cost (`make_batches` trims it).
        """
        return ids[:, -self.max_len :] if ids.shape[1] > self.max_len else ids

    def token_table(self) -> torch.Tensor:
        """Per-digit token embeddings (m, W, D), e.g. for `SemanticIDs.knn_graph(n, model.token_table())`."""
        stop = self.token_start + self.n_digits * self.codebook_size
        return self.token_emb.weight[self.token_start : stop].view(
            self.n_digits, self.codebook_size, self.hidden
        )

    def item_embeddings(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Mean of each item's m token embeddings: (...) -> (..., D); id 0 gives zeros."""
        # an embedding bag averages each item's m rows without building the (..., m, D) tensor,
        # which at 50 items x 32 digits x hidden 448 is 0.7 GB for 256 users
        bags = self.item_tokens[item_ids.reshape(-1)]  # (N, m)
        pooled = F.embedding_bag(bags, self.token_emb.weight, mode="mean", padding_idx=PAD_TOKEN)  # (N, D)
        return pooled.view(*item_ids.shape, self.hidden)

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L', D) of left-padded item ids (B, L), L' = min(L, max_len)."""
        ids = self._fit_length(input_ids.long())  # (B, L)
        keep = ids != 0  # (B, L)
        # Positions count from the first real item, as the authors' right-padded GPT-2 does,
        # so that the amount of left padding does not change the result.
        positions = (keep.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        x = self.item_embeddings(ids) + self.pos_emb(positions)  # (B, L, D)
        x = self.emb_drop(x) * keep.unsqueeze(-1)
        # The diagonal stays open so that a padding query still has a key (no NaN from SDPA).
        eye = torch.eye(ids.shape[1], dtype=torch.bool, device=ids.device)
        length = ids.shape[1]
        attn_mask = ((self.causal[:length, :length] & keep.unsqueeze(1)) | eye).unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.final_ln(x)

    # ------------------------------------------------------------------ training
    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """MTP loss of the next item at every non-padding position of (input_ids, labels)."""
        input_ids, labels = batch[0], batch[1]  # (B, L) each, 0 = padding / no label
        hidden = self.encode(input_ids)  # (B, L', D)
        labels = self._fit_length(labels.long())
        mask = labels != 0
        if not bool(mask.any()):
            raise ValueError("the batch holds no labels: every position is padding")
        states = self.heads(hidden[mask])  # (M, m, D): only labelled positions
        targets = self.codes[labels[mask] - 1]  # (M, m)
        return mtp_loss(states, self.token_table(), targets, self.temperature)

    @staticmethod
    def make_batches(
        train_sequences: Sequence[Sequence[int] | np.ndarray],
        max_len: int,
        batch_size: int,
        seed: int,
        *,
        windows: Literal["all", "last"] = "all",
        shuffle: bool = True,
        trim: bool = False,
        bucket: bool = False,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled (input_ids, labels) batches (b, L), left-padded, as `SASRec.make_batches`.

        A sequence longer than `max_len` + 1 is cut into windows so that every
        transition is a label once. The authors' code instead slides a window one item
        at a time past the first `max_len` items and labels only its last position
        (more context per late label, more forward passes). With `trim` each batch keeps
        only the columns from its longest window on (L <= max_len): the same loss, since
        RPG's positions count from the first real item, at the cost of real items only
        (on Beauty the mean training sequence is 6.9 items against windows of 50). Trimming
        changes the floating-point order of the sums, so it is off by default until the
        notebooks are re-run with it; `handbook.experiment` turns it on.

        In a random batch one long window makes every row long (on Beauty trimming alone
        keeps 97% of the columns). With `bucket` (implies `trim`) the shuffled windows are
        sorted by length within chunks of 64 batches, cut into batches and the batches
        shuffled: batches of alike lengths, in random order, but no longer i.i.d. samples.
        """
        batches = SASRec.make_batches(
            train_sequences, max_len, batch_size, seed, windows=windows, shuffle=shuffle
        )
        if bucket and batches:
            inputs, labels = (torch.cat([b[i] for b in batches]) for i in (0, 1))
            lengths = (inputs != 0).sum(dim=1)
            chunk = 64 * batch_size
            order = torch.cat([
                part[torch.argsort(lengths[part], stable=True)]
                for part in torch.arange(len(lengths)).split(chunk)
            ])  # fmt: skip
            batches = [(inputs[rows], labels[rows]) for rows in order.split(batch_size)]
            permutation = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed))
            batches = [batches[i] for i in permutation]
        return [trim_left_padding(*batch) for batch in batches] if trim or bucket else batches

    # ------------------------------------------------------------------ inference
    def digit_log_probs(self, histories: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every code of every digit for the next item: (B, m, W)."""
        hidden = self.encode(histories)[:, -1]  # (B, D), left padding: last = most recent
        return self._log_probs_from_states(hidden)

    def _log_probs_from_states(self, states: torch.Tensor) -> torch.Tensor:
        """Prediction states (B, D) -> per-digit log-probabilities (B, m, W)."""
        logits = digit_logits(self.heads(states), self.token_table(), self.temperature)
        return F.log_softmax(logits.float(), dim=-1)

    def _catalogue_scores(self, log_probs: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        """Mean (or with `mode="sum"` the sum) digit log-probability of every item (B, n_items + 1); pad column -inf.

        From `BAG_MIN_BATCH` users on, one embedding bag over the (m * W, B) table of
        log-probabilities, each item's bag its m rows: no (B, n_items, m) gather is built, which on
        Beauty's 12k items is 27x faster (`make bench`, exact scoring). For a single user the bag's
        (m * W, 1) table takes a slow path (12k items: 12.7 ms against 1.0 for the plain gather of
        (1, n_items, m); 1M items: 1.1 s against 0.10), so one user is gathered.
        """
        batch = log_probs.shape[0]
        flat = log_probs.float().reshape(batch, -1)  # (B, m * W)
        if batch < BAG_MIN_BATCH:
            gathered = flat[:, self.digit_rows]  # (B, n_items, m)
            per_item = (gathered.mean(-1) if mode == "mean" else gathered.sum(-1)).t()  # (n_items, B)
        else:
            per_item = F.embedding_bag(self.digit_rows, flat.t().contiguous(), mode=mode)  # (n_items, B)
        padding = per_item.new_full((1, batch), float("-inf"))
        return torch.cat([padding, per_item]).t().contiguous()  # (B, n_items + 1)

    def scores(self, histories: torch.Tensor) -> torch.Tensor:
        """Exact scores (B, n_items + 1): mean digit log-probability of every item; pad column -inf."""
        return self._catalogue_scores(self.digit_log_probs(histories))

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        """Same as `scores`."""
        return self.scores(histories)
