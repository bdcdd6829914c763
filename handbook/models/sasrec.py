"""SASRec (Kang & McAuley, 2018): a causal transformer over item ids, the handbook's strong baseline.

The variant here is the one recent generative-recommendation papers compare against:
it is trained with a full-softmax cross-entropy over the whole catalogue at every
position of the sequence, not with the original paper's one sampled negative per
position. Full softmax is what makes SASRec a hard baseline to beat.
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
from handbook.models.transformer import init_weights


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t only sees positions <= t."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden={hidden} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D); attn_mask: (B, 1, L, L) bool, True = may attend. Returns (B, L, D)."""
        b, length, d = x.shape
        q, k, v = (
            self.qkv(x).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        )
        # q, k, v: (B, H, L, D/H)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, n_heads, dropout)
        self.ln2 = nn.LayerNorm(hidden)
        # SASRec's point-wise feed-forward keeps the width at `hidden` (no 4x expansion).
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, hidden)
        )
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        x = x + self.drop(self.attn(self.ln1(x), attn_mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    """Item-id causal transformer scored against its own (tied) item-embedding table.

    Layout: item embedding (scaled by sqrt(hidden)) + learned position embedding,
    `n_layers` pre-LN blocks and a final LayerNorm. The authors' code also normalises
    before each sub-layer; pre-LN trains stably without warm-up tricks. Sequences are
    left-padded to `max_len` with id 0, so position `max_len - 1` is always the most
    recent item. Training: full-softmax cross-entropy over all items at every position.
    """

    def __init__(
        self,
        n_items: int,
        *,
        max_len: int = 50,
        hidden: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.config = {
            "n_items": n_items,
            "max_len": max_len,
            "hidden": hidden,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "dropout": dropout,
        }
        self.n_items = n_items
        self.max_len = max_len
        self.hidden = hidden
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, n_heads, dropout) for _ in range(n_layers))
        self.final_ln = nn.LayerNorm(hidden)
        self.register_buffer(
            "causal", torch.ones(max_len, max_len, dtype=torch.bool).tril(), persistent=False
        )
        self.apply(init_weights)  # std 0.02 as in BERT4Rec/RecBole; padding row zero

    def _fit_length(self, ids: torch.Tensor) -> torch.Tensor:
        """Keep the last `max_len` columns, or left-pad with 0 up to `max_len`: (B, L) -> (B, max_len)."""
        length = ids.shape[1]
        if length > self.max_len:
            return ids[:, -self.max_len :]
        if length < self.max_len:
            return F.pad(ids, (self.max_len - length, 0), value=0)
        return ids

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Return hidden states (B, max_len, D) for left-padded item ids (B, L)."""
        ids = self._fit_length(input_ids.long())  # (B, L)
        keep = ids != 0  # (B, L)
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.item_emb(ids) * math.sqrt(self.hidden) + self.pos_emb(positions)  # (B, L, D)
        x = self.emb_drop(x) * keep.unsqueeze(-1)
        # Causal and key-padding masks; the diagonal stays open so that a padding query
        # (whose keys are all padding) still has one key and SDPA returns no NaN.
        eye = torch.eye(ids.shape[1], dtype=torch.bool, device=ids.device)
        attn_mask = (self.causal & keep.unsqueeze(1)) | eye  # (B, L, L)
        attn_mask = attn_mask.unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        for block in self.blocks:
            # Zero padded positions after each block, as in the authors' code.
            x = block(x, attn_mask) * keep.unsqueeze(-1)
        return self.final_ln(x)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item id, (..., D) -> (..., n_items + 1); pad column -inf."""
        logits = hidden @ self.item_emb.weight.T
        # Padding is never a prediction; -inf keeps it out of the softmax and the ranking.
        return logits.index_fill(-1, torch.tensor([0], device=logits.device), float("-inf"))

    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Full-softmax cross-entropy of the next item at every non-padding position."""
        input_ids, labels = batch[0], batch[1]  # (B, L) each, 0 = padding / no label
        hidden = self.encode(input_ids)  # (B, max_len, D)
        labels = self._fit_length(labels.long())
        mask = labels != 0
        if not bool(mask.any()):
            raise ValueError("the batch holds no labels: every position is padding")
        # Only score labelled positions: with left padding most of (B, L) is padding and
        # (B, L, n_items + 1) logits would be large for big catalogues.
        logits = self._logits(hidden[mask])  # (M, n_items + 1)
        return F.cross_entropy(logits.float(), labels[mask])

    def scores(self, histories: torch.Tensor) -> torch.Tensor:
        """Return (B, n_items + 1) next-item scores from the last position; pad column -inf."""
        hidden = self.encode(histories)[:, -1]  # (B, D)
        return self._logits(hidden).float()

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        """Same as `scores`."""
        return self.scores(histories)

    @staticmethod
    def make_batches(
        train_sequences: Sequence[Sequence[int] | np.ndarray],
        max_len: int,
        batch_size: int,
        seed: int,
        *,
        windows: Literal["all", "last"] = "all",
        shuffle: bool = True,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Build shuffled (input_ids, labels) batches, each (b, max_len) int64, left-padded with 0.

        For a sequence s, input position t holds s[t] and its label is s[t + 1].
        windows="last" keeps only the most recent `max_len` transitions of each user
        (the original SASRec); "all" also cuts older history into further windows so
        that every training transition is a label exactly once. Sequences shorter
        than 2 give no pairs.
        """
        if windows not in ("all", "last"):
            raise ValueError(f"windows must be 'all' or 'last', got {windows!r}")
        inputs: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for seq in train_sequences:
            seq = np.asarray(seq, dtype=np.int64).reshape(-1)
            seq = seq[seq != 0]  # tolerate already padded rows
            n_pairs = len(seq) - 1
            end = n_pairs
            while end > 0:
                start = max(0, end - max_len)
                row_in = np.zeros(max_len, dtype=np.int64)
                row_lab = np.zeros(max_len, dtype=np.int64)
                row_in[max_len - (end - start) :] = seq[start:end]
                row_lab[max_len - (end - start) :] = seq[start + 1 : end + 1]
                inputs.append(row_in)
                labels.append(row_lab)
                if windows == "last":
                    break
                end = start
        if not inputs:
            raise ValueError("no training pairs: every sequence has fewer than 2 items")
        x = torch.from_numpy(np.stack(inputs))  # (N, max_len)
        y = torch.from_numpy(np.stack(labels))  # (N, max_len)
        order = (
            torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            if shuffle
            else torch.arange(len(x))
        )
        return [(x[idx], y[idx]) for idx in order.split(batch_size)]
