"""Building blocks shared by the SID generative models (TIGER's encoder-decoder, GRID's decoder-only).

* `Attention`, `FeedForward`, `Block`, `Stack`: small pre-LN transformer layers on
  `torch.nn.functional.scaled_dot_product_attention`. As in T5 (and TIGER's config), the
  number of heads and the size of a head are separate settings, so the attention's inner
  width `n_heads * head_dim` (TIGER: 6 x 64 = 384) need not equal `d_model` (128).
* `RelativePositionBias`: T5's bucketed relative position bias (`relative_position_bucket`),
  one learned scalar per head and bucket, computed once per stack and shared by its layers,
  added to the attention logits through SDPA's float `attn_mask` (TIGER and GRID run T5).
* `SIDEmbedding`: a SID token plus, with absolute positions, what the flattened sequence
  loses: which digit of its item the token is, and which history slot its item sits in.
* `SIDOutput`: the output head, one softmax over the whole SID vocabulary (TIGER's T5) or
  one softmax per SID level over that level's codes (GRID, cornac).
* `Block.step`: one decoding step on cached keys and values (the KV cache of beam search).
* `SIDGenerativeModel`: what both models share: the item id -> SID token table,
  `make_batches`, the hashed user token and `recommend` through `handbook.decoding.beam`.
  A subclass only provides `encode`, `decode_step` and `loss`.

Histories are item ids (1..n_items, 0 = padding) left-padded as `handbook.data.preprocess`
makes them; a history of L items becomes L * n_digits tokens, item after item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from handbook.decoding.beam import StepFn, beam_search
from handbook.models.dropout import Dropout
from handbook.sid import N_SPECIAL_TOKENS, PAD_TOKEN, SemanticIDs

#: digit index of a special token (BOS, user) in `SIDEmbedding`; digit j of an item is j + 1
NO_DIGIT = 0
#: slot index of a token that belongs to no history item (BOS, user, TIGER's decoder)
NO_SLOT = 0


class Attention(nn.Module):
    """Multi-head attention with T5-style sizes: `n_heads * head_dim` may differ from `d_model`."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        inner = n_heads * head_dim
        # No biases, as in T5.
        self.q = nn.Linear(d_model, inner, bias=False)
        self.kv = nn.Linear(d_model, 2 * inner, bias=False)
        self.out = nn.Linear(inner, d_model, bias=False)
        self.dropout = dropout

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, H, S, dh) each of a context (B, S, D): what a KV cache keeps."""
        b, s, _ = context.shape
        k, v = self.kv(context).view(b, s, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_mask: torch.Tensor,
        group: int = 1,
    ) -> torch.Tensor:
        """x (N, T, D) attends to keys/values (N // group, H, S, dh); attn_mask bool (True = may
        attend) or float (added to the logits), broadcastable to (N // group, H, group * T, S).

        With `group` > 1, rows g * i .. g * i + g - 1 of x share key row i: the beams of one user
        read that user's encoder keys as extra queries, so the keys are never copied per beam.
        """
        n, t, _ = x.shape
        q = self.q(x).view(n, t, self.n_heads, self.head_dim).transpose(1, 2)  # (N, H, T, dh)
        if group > 1:  # (N, H, T, dh) -> (N / g, H, g * T, dh)
            q = q.view(n // group, group, self.n_heads, t, self.head_dim).transpose(1, 2)
            q = q.reshape(n // group, self.n_heads, group * t, self.head_dim)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        if group > 1:  # back to (N, H, T, dh)
            y = y.view(n // group, self.n_heads, group, t, self.head_dim).transpose(1, 2)
            y = y.reshape(n, self.n_heads, t, self.head_dim)
        return self.out(y.transpose(1, 2).reshape(n, t, self.n_heads * self.head_dim))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B, T, D) attends to context (B, S, D); attn_mask (B or 1, 1 or H, T or 1, S), bool
        (True = may attend) or float (added to the logits: relative position bias, -inf = masked)."""
        return self.attend(x, *self.keys_values(context), attn_mask)


class FeedForward(nn.Sequential):
    """Position-wise MLP d_model -> d_ff -> d_model with ReLU (T5's original activation)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(d_model, d_ff, bias=False),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(d_ff, d_model, bias=False),
        )


class Block(nn.Module):
    """Pre-LN layer: self-attention, then (decoder of an encoder-decoder) cross-attention, then MLP."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        head_dim: int,
        d_ff: int,
        dropout: float,
        cross_attention: bool = False,
    ) -> None:
        super().__init__()
        self.ln_self = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, n_heads, head_dim, dropout)
        self.ln_cross = nn.LayerNorm(d_model) if cross_attention else None
        self.cross_attn = (
            Attention(d_model, n_heads, head_dim, dropout) if cross_attention else None
        )
        self.ln_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.drop = Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D); memory (B, S, D) and memory_mask (B, 1, 1, S) for cross-attention."""
        h = self.ln_self(x)
        x = x + self.drop(self.self_attn(h, h, self_mask))
        if self.cross_attn is not None:
            if memory is None or memory_mask is None:
                raise ValueError("a cross-attention block needs the encoder's memory and its mask")
            x = x + self.drop(self.cross_attn(self.ln_cross(x), memory, memory_mask))
        return x + self.drop(self.ff(self.ln_ff(x)))

    def step(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        self_mask: torch.Tensor | None,
        cross: tuple[torch.Tensor, torch.Tensor] | None = None,
        cross_mask: torch.Tensor | None = None,
        group: int = 1,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new token per row, x (N, 1, D), on cached keys: -> (N, 1, D) and the grown cache.

        past: this layer's self-attention keys/values (N, H, t, dh) of the earlier tokens (None
        at t = 0); self_mask: None (attend to all of them and itself, causal by construction) or
        a float bias (1 or N, H, 1, t + 1). cross: the encoder's keys/values (N // group, H, S, dh),
        computed once per user; cross_mask (N // group, 1, 1, S) bool.
        """
        h = self.ln_self(x)
        k, v = self.self_attn.keys_values(h)  # (N, H, 1, dh)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.drop(self.self_attn.attend(h, k, v, self_mask))
        if self.cross_attn is not None:
            if cross is None or cross_mask is None:
                raise ValueError("a cross-attention block needs the cached encoder keys and their mask")
            x = x + self.drop(self.cross_attn.attend(self.ln_cross(x), *cross, cross_mask, group))
        return x + self.drop(self.ff(self.ln_ff(x))), (k, v)


def relative_position_bucket(
    relative_position: torch.Tensor,
    bidirectional: bool,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> torch.Tensor:
    """T5's bucket (int64, same shape) of each relative position `key - query`.

    Half the buckets (all of them when not `bidirectional`, where keys after the query get
    bucket 0) are exact distances 0..n/2 - 1, the other half grow logarithmically up to
    `max_distance`, beyond which all distances share the last bucket. Bidirectional: keys
    after the query use the upper half of the buckets.
    """
    n = num_buckets
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        n //= 2
        bucket = bucket + (relative_position > 0).long() * n
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # only keys before the query count
    exact = n // 2
    # log-spaced buckets for distances exact .. max_distance; clamp(1) keeps log(0) out of
    # the rows torch.where discards anyway
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (n - exact)).long()).clamp(max=n - 1)
    return bucket + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per (bucket, head), added to attention logits."""

    def __init__(
        self, n_heads: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
    ) -> None:
        super().__init__()
        self.bidirectional, self.num_buckets, self.max_distance = (
            bidirectional, num_buckets, max_distance,
        )  # fmt: skip
        self.table = nn.Embedding(num_buckets, n_heads)

    def forward(self, query_pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """Bias (B, H, T, S) for positions query_pos (B, T) and key_pos (B, S) (B may be 1)."""
        relative = key_pos[:, None, :] - query_pos[:, :, None]  # (B, T, S)
        bucket = relative_position_bucket(
            relative, self.bidirectional, self.num_buckets, self.max_distance
        )
        # index_select, not table(bucket): its backward is deterministic on a multi-threaded CPU
        bias = self.table.weight.index_select(0, bucket.reshape(-1))  # (B * T * S, H)
        return bias.view(*bucket.shape, -1).permute(0, 3, 1, 2)


def biased_mask(bias: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Float attention mask: `bias` (B, H, T, S) where `allowed` (B, 1, T, S) bool, -inf elsewhere."""
    return bias.masked_fill(~allowed, float("-inf"))


class Stack(nn.Module):
    """`n_layers` pre-LN blocks, the final LayerNorm pre-LN needs, and (relative positions) T5's bias.

    With `relative_bias` ("bidirectional" for an encoder, "causal" for a decoder) one
    `RelativePositionBias` serves every layer of the stack, as in T5 (the first layer owns it,
    the others reuse its output); cross-attention has none.
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        head_dim: int,
        d_ff: int,
        dropout: float,
        cross_attention: bool = False,
        relative_bias: str | None = None,
    ) -> None:
        super().__init__()
        if relative_bias not in (None, "bidirectional", "causal"):
            raise ValueError(
                f"relative_bias must be None, 'bidirectional' or 'causal', got {relative_bias!r}"
            )
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, head_dim, d_ff, dropout, cross_attention)
            for _ in range(n_layers)
        )
        self.final_ln = nn.LayerNorm(d_model)
        self.bias = (
            RelativePositionBias(n_heads, bidirectional=relative_bias == "bidirectional")
            if relative_bias
            else None
        )

    def self_mask(self, allowed: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """The self-attention mask every layer uses: `allowed` bool (B or 1, 1, T, T), plus the
        relative bias of `positions` (B or 1, T) (default 0..T-1) when the stack has one."""
        if self.bias is None:
            return allowed
        if positions is None:
            positions = torch.arange(allowed.shape[-1], device=allowed.device).unsqueeze(0)
        return biased_mask(self.bias(positions, positions), allowed)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, D) -> (B, T, D); self_mask bool (B or 1, 1, T, T), positions (B or 1, T)."""
        mask = self.self_mask(self_mask, positions)  # once per stack, shared by its layers
        for block in self.blocks:
            x = block(x, mask, memory, memory_mask)
        return self.final_ln(x)


class SIDEmbedding(nn.Module):
    """Token embedding, with `absolute` positions + digit-within-item + item-slot embeddings, then dropout."""

    def __init__(
        self,
        vocab_size: int,
        n_digits: int,
        n_slots: int,
        d_model: int,
        dropout: float,
        absolute: bool = True,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=PAD_TOKEN)
        # row NO_DIGIT for special tokens, row j + 1 for digit j
        self.digits = nn.Embedding(n_digits + 1, d_model) if absolute else None
        # row NO_SLOT for tokens outside the history; the model decides what the others mean
        self.slots = nn.Embedding(n_slots, d_model) if absolute else None
        self.drop = Dropout(dropout)

    def forward(
        self, tokens: torch.Tensor, digit: torch.Tensor, slot: torch.Tensor
    ) -> torch.Tensor:
        """tokens (B, T) and digit, slot (T,) or (B, T) (ignored without absolute positions) -> (B, T, D)."""
        x = self.tokens(tokens)
        if self.digits is not None and self.slots is not None:
            x = x + self.digits(digit) + self.slots(slot)
        return self.drop(x)


def token_positions(valid: torch.Tensor) -> torch.Tensor:
    """Relative-bias positions (B, T) of a padded sequence: the number of real tokens before each.

    Padding takes no position, so neither left padding nor a user token in front of it
    changes the distance between two tokens.
    """
    return valid.long().cumsum(dim=1) - 1


#: output heads of `SIDOutput`
OUTPUTS = ("per_level", "full_vocab")
#: position encodings of the SID models
POSITIONS = ("relative", "absolute")


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """`value` if it is one of `choices`, else a ValueError naming the parameter."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class SIDOutput(nn.Module):
    """Next-token head: one softmax over the whole SID vocabulary (`full_vocab`, TIGER's T5), or
    one per SID level over that level's codes (`per_level`, GRID and cornac's heads).

    Both return log-probs over the vocabulary (..., vocab_size); per level, a level's token
    range holds its own log-softmax and the special tokens -inf, so training and beam search,
    which keeps only the digit's range, normalise alike.
    """

    def __init__(self, d_model: int, sids: SemanticIDs, output: str) -> None:
        super().__init__()
        self.output = check_choice("output", output, OUTPUTS)
        self.vocab_size = sids.vocab_size
        self.starts = [N_SPECIAL_TOKENS + int(o) for o in sids.offsets]
        self.sizes = [int(n) for n in sids.codebook_sizes]
        if output == "full_vocab":
            self.proj = nn.Linear(d_model, sids.vocab_size, bias=False)
        else:
            self.levels = nn.ModuleList(nn.Linear(d_model, n, bias=False) for n in self.sizes)

    def forward(self, h: torch.Tensor, level: int | None = None) -> torch.Tensor:
        """Log-probs (..., vocab_size) of hidden states h (..., D), float32.

        `level`: per_level computes only that level's head (the rest -inf), as a decoding step
        needs; None computes every level's, as a loss over tokens of mixed levels needs.
        """
        if self.output == "full_vocab":
            return torch.log_softmax(self.proj(h).float(), dim=-1)
        out = h.new_full((*h.shape[:-1], self.vocab_size), float("-inf"), dtype=torch.float32)
        for j in range(len(self.sizes)) if level is None else [level]:
            start = self.starts[j]
            out[..., start : start + self.sizes[j]] = torch.log_softmax(
                self.levels[j](h).float(), dim=-1
            )
        return out

    def loss(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of label tokens (...,) under h (..., D); PAD labels are ignored.

        Per level, a token is scored by its own level's softmax, so the mean over a target
        SID is the mean of the levels' cross-entropies (GRID and cornac sum them: a constant
        factor n_digits, which Adam does not see).
        """
        logp = self(h)  # (..., vocab)
        keep = labels != PAD_TOKEN
        nll = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (...,)
        return nll.masked_fill(~keep, 0.0).sum() / keep.sum().clamp(min=1)


def history_positions(
    n_tokens: int, n_digits: int, max_items: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Digit index (T,) and item slot (T,) of a left-padded flattened history of T = L * n_digits tokens.

    Slots count from the end, so the most recent item is always slot `max_items` and the
    oldest kept one `max_items - L + 1` (1-based: slot 0 is `NO_SLOT`).
    """
    n_hist = n_tokens // n_digits
    position = torch.arange(n_tokens, device=device)
    digit = position % n_digits + 1
    slot = position // n_digits + (max_items - n_hist + 1)
    return digit, slot


def init_weights(module: nn.Module) -> None:
    """Small normal init (std 0.02) for linear and embedding layers; padding rows stay zero."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def item_token_table(sids: SemanticIDs) -> torch.Tensor:
    """SID tokens of every item id (n_items + 1, n_digits); row 0 (padding) is all `PAD_TOKEN`."""
    table = np.full((sids.n_items + 1, sids.n_digits), PAD_TOKEN, dtype=np.int64)
    table[1:] = sids.tokens()  # SID row i belongs to item id i + 1
    return torch.from_numpy(table)


def _check_item_ids(ids: torch.Tensor, n_items: int, what: str, allow_pad: bool) -> None:
    """Raise a clear error for item ids outside 1..n_items (0 allowed where `allow_pad`)."""
    if ids.numel() == 0:
        return
    low = 0 if allow_pad else 1
    if int(ids.min()) < low or int(ids.max()) > n_items:
        raise ValueError(
            f"{what} hold item ids in [{int(ids.min())}, {int(ids.max())}], expected "
            f"{low}..{n_items}: build the SemanticIDs from every item of the catalogue "
            "(row i is item id i + 1)"
        )


class SIDGenerativeModel(nn.Module):
    """Shared part of the SID generative models: token table, batches, user token, `recommend`.

    Subclasses implement `encode(history_tokens, users) -> (context, mask)`,
    `decode_step(context, mask, prefix_tokens) -> (B, vocab_size) log-probs` and `loss(batch)`.
    A batch is `(history_tokens (B, L * n_digits), target_tokens (B, n_digits))`, plus
    `users (B,)` when given to `make_batches`.
    """

    def __init__(self, sids: SemanticIDs, max_items: int, n_user_bins: int) -> None:
        super().__init__()
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        if n_user_bins < 0:
            raise ValueError(f"n_user_bins must be >= 0 (0 = no user token), got {n_user_bins}")
        self.sids = sids
        self.n_digits = sids.n_digits
        self.vocab_size = sids.vocab_size
        self.max_items = max_items
        self.n_user_bins = n_user_bins
        self.register_buffer("item_tokens", item_token_table(sids), persistent=False)

    # ------------------------------------------------------------------ inputs
    def history_tokens(self, histories: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Item-id histories (B, L), left-padded with 0 -> flattened SID tokens (B, L * n_digits)."""
        ids = torch.as_tensor(histories, device=self.item_tokens.device).long()
        if ids.ndim != 2:
            raise ValueError(f"histories must be (B, L) item ids, got shape {tuple(ids.shape)}")
        _check_item_ids(ids, self.sids.n_items, "histories", allow_pad=True)
        return self.item_tokens[ids].reshape(ids.shape[0], -1)

    def _fit_history(self, tokens: torch.Tensor) -> torch.Tensor:
        """Keep the last `max_items` items' tokens of a flattened history (B, L * n_digits)."""
        if tokens.ndim != 2 or tokens.shape[1] % self.n_digits:
            raise ValueError(
                f"history tokens must be (B, L * n_digits) with n_digits={self.n_digits}, "
                f"got shape {tuple(tokens.shape)}: convert item ids with history_tokens()"
            )
        return tokens[:, -self.max_items * self.n_digits :].long()

    def _user_bins(self, users: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Hashed user token ids (B,), or None when the model has no user token."""
        if self.n_user_bins == 0:
            return None  # users are ignored, so one batch format serves both settings
        if users is None:
            raise ValueError(
                f"this model has a user token (n_user_bins={self.n_user_bins}): pass users, "
                "or build it with n_user_bins=0"
            )
        users = torch.as_tensor(users, device=self.item_tokens.device).long().reshape(-1)
        if users.shape[0] != batch or (users.numel() and int(users.min()) < 0):
            raise ValueError(f"users must be {batch} non-negative user indices")
        # The fixed hash is user index mod n_user_bins (GRID's remainder hashing; TIGER
        # hashes raw user ids into 2,000 bins), so users beyond the table share rows.
        return users % self.n_user_bins

    @staticmethod
    def _unpack(
        batch: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(history_tokens, target_tokens, users or None) of a batch from `make_batches`."""
        if len(batch) not in (2, 3):
            raise ValueError(
                "a batch is (history_tokens, target_tokens) or (history_tokens, target_tokens, users)"
            )
        return batch[0], batch[1].long(), batch[2] if len(batch) == 3 else None

    @staticmethod
    def make_batches(
        histories: np.ndarray | torch.Tensor,
        targets: np.ndarray | torch.Tensor,
        sids: SemanticIDs,
        batch_size: int,
        seed: int,
        users: np.ndarray | torch.Tensor | None = None,
        shuffle: bool = True,
    ) -> list[tuple[torch.Tensor, ...]]:
        """Item ids -> token batches `(history_tokens (b, L * n_digits), target_tokens (b, n_digits)[, users (b,)])`.

        histories (N, L) left-padded with 0 and targets (N,), as `training_samples` gives them;
        users (N,) non-negative user indices, for models with a user token.
        """
        hist = torch.as_tensor(histories).long()
        tgt = torch.as_tensor(targets).long().reshape(-1)
        if hist.ndim != 2 or hist.shape[0] != tgt.shape[0]:
            raise ValueError(
                f"need histories (N, L) and targets (N,), got {tuple(hist.shape)} and {tuple(tgt.shape)}"
            )
        if tgt.numel() == 0:
            raise ValueError("no training samples: histories and targets are empty")
        table = item_token_table(sids)
        _check_item_ids(hist, sids.n_items, "histories", allow_pad=True)
        _check_item_ids(tgt, sids.n_items, "targets", allow_pad=False)
        columns = [table[hist].reshape(hist.shape[0], -1), table[tgt]]
        if users is not None:
            user = torch.as_tensor(users).long().reshape(-1)
            if user.shape[0] != tgt.shape[0]:
                raise ValueError(f"{user.shape[0]} users for {tgt.shape[0]} samples")
            columns.append(user)
        order = (
            torch.randperm(len(tgt), generator=torch.Generator().manual_seed(seed))
            if shuffle
            else torch.arange(len(tgt))
        )
        return [tuple(column[idx] for column in columns) for idx in order.split(batch_size)]

    # ------------------------------------------------------------------ model interface
    def encode(
        self, history_tokens: torch.Tensor, users: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context the decoder reads (B, S, D) and its validity mask (B, S)."""
        raise NotImplementedError

    def decode_step(
        self, context: torch.Tensor, mask: torch.Tensor, prefix_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Next-token log-probs (B, vocab_size) after BOS and `prefix_tokens` (B, t)."""
        raise NotImplementedError

    def beam_step(self, context: torch.Tensor, mask: torch.Tensor, cache: bool = True) -> StepFn:
        """The `step_fn` of `beam_search` for one batch of encoded users.

        Without `cache` (or for a model without a KV cache) every step reruns `decode_step`
        over the whole prefix; a subclass with a cache returns a stateful step instead
        (`__call__` + `reorder`, see `handbook.decoding.beam`) whose results are the same.
        """

        def step(rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
            return self.decode_step(context[rows], mask[rows], prefix)

        return step

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def recommend(
        self,
        histories: torch.Tensor | np.ndarray,
        k: int = 10,
        beam_size: int | None = None,
        constrained: bool = True,
        users: torch.Tensor | np.ndarray | None = None,
        batch_size: int = 256,
        cache: bool = True,
    ) -> tuple[torch.Tensor, float]:
        """Top-k item ids (B, k) by beam search (0 where fewer beams are items) and the invalid-beam share.

        histories: item ids (B, L), left-padded with 0. `beam_size` defaults to `k`. The
        share is that of finished beams whose SID is no item: 0 when `constrained`.
        `cache=False` decodes without the KV cache (same results, slower; for comparison).
        """
        beam_size = k if beam_size is None else beam_size
        if not 1 <= k <= beam_size:
            raise ValueError(f"need 1 <= k <= beam_size, got k={k}, beam_size={beam_size}")
        hist = torch.as_tensor(histories).long()
        user = None if users is None else torch.as_tensor(users).long().reshape(-1)
        was_training = self.training
        self.eval()
        try:
            items, n_invalid, n_beams = [], 0, 0
            for start in range(0, hist.shape[0], batch_size):
                tokens = self.history_tokens(hist[start : start + batch_size])
                part = None if user is None else user[start : start + batch_size]
                context, mask = self.encode(tokens, part)
                result = beam_search(
                    self.beam_step(context, mask, cache=cache),
                    tokens.shape[0],
                    self.sids,
                    beam_size,
                    constrained=constrained,
                    device=tokens.device,
                )
                items.append(result.items[:, :k].cpu())
                n_invalid += result.n_invalid
                n_beams += result.n_beams
        finally:
            self.train(was_training)
        out = torch.cat(items) if items else torch.zeros(0, k, dtype=torch.long)
        return out, n_invalid / max(n_beams, 1)
