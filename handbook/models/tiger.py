"""TIGER (Rajput et al., 2023, "Recommender Systems with Generative Retrieval"): an encoder-decoder over SID tokens.

The encoder reads the user's history as a flat token sequence: each of the last
`max_items` items contributes its `n_digits` SID tokens (each digit its own token range,
see `handbook.sid`), plus a learned embedding of the token's digit and of its item's
slot in the history, and optionally one hashed user token in front. The decoder starts
from BOS and generates the next item's SID digit by digit (teacher forcing at training:
cross-entropy of every target token over the whole SID vocabulary); at inference beam
search (`handbook.decoding.beam`) keeps the best prefixes, constrained to the trie or free.

Defaults are the paper's: 4 encoder and 4 decoder layers, d_model 128, 6 heads of 64
(attention width 384, as in T5 this differs from d_model), feed-forward 1024, dropout 0.1,
histories of up to 20 items. TIGER used T5's relative position biases; learned digit and
slot embeddings play that role here. The paper's user token (2,000 hashed bins) is off
by default (`n_user_bins=0`): GRID found it does not help, and without it no call needs
user ids. Decoding recomputes the decoder over the short prefix at every digit instead of
keeping a KV cache: a SID has ~4 tokens, so the saving would be small.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from handbook.models.transformer import (
    NO_SLOT,
    SIDEmbedding,
    SIDGenerativeModel,
    Stack,
    history_positions,
    init_weights,
)
from handbook.sid import BOS_TOKEN, PAD_TOKEN, SemanticIDs


class TIGER(SIDGenerativeModel):
    """Encoder-decoder transformer that generates the next item's SID; see the module docstring."""

    def __init__(
        self,
        sids: SemanticIDs,
        *,
        max_items: int = 20,
        d_model: int = 128,
        n_heads: int = 6,
        head_dim: int = 64,
        d_ff: int = 1024,
        n_encoder_layers: int = 4,
        n_decoder_layers: int = 4,
        dropout: float = 0.1,
        n_user_bins: int = 0,
    ) -> None:
        super().__init__(sids, max_items=max_items, n_user_bins=n_user_bins)
        self.config = {
            "max_items": max_items,
            "d_model": d_model,
            "n_heads": n_heads,
            "head_dim": head_dim,
            "d_ff": d_ff,
            "n_encoder_layers": n_encoder_layers,
            "n_decoder_layers": n_decoder_layers,
            "dropout": dropout,
            "n_user_bins": n_user_bins,
        }
        # One token table for encoder and decoder, as in T5. Slots: NO_SLOT, then 1..max_items.
        self.embed = SIDEmbedding(self.vocab_size, self.n_digits, max_items + 1, d_model, dropout)
        self.user_embed = nn.Embedding(n_user_bins, d_model) if n_user_bins else None
        self.encoder = Stack(n_encoder_layers, d_model, n_heads, head_dim, d_ff, dropout)
        self.decoder = Stack(
            n_decoder_layers, d_model, n_heads, head_dim, d_ff, dropout, cross_attention=True
        )
        self.head = nn.Linear(d_model, self.vocab_size, bias=False)
        self.register_buffer(
            "causal",
            torch.ones(self.n_digits, self.n_digits, dtype=torch.bool).tril(),
            persistent=False,
        )
        self.apply(init_weights)

    def encode(
        self, history_tokens: torch.Tensor, users: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (B, S, D) and key mask (B, S) for flattened history tokens (B, L * n_digits).

        S = min(L, max_items) * n_digits, plus 1 for the user token when the model has one.
        """
        tokens = self._fit_history(history_tokens)  # (B, T)
        batch = tokens.shape[0]
        digit, slot = history_positions(
            tokens.shape[1], self.n_digits, self.max_items, tokens.device
        )
        x = self.embed(tokens, digit, slot)  # (B, T, D)
        valid = tokens != PAD_TOKEN  # (B, T)
        bins = self._user_bins(users, batch)
        if bins is not None:
            x = torch.cat([self.user_embed(bins).unsqueeze(1), x], dim=1)  # (B, 1 + T, D)
            valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)
        # An empty history without a user token has no key: let it attend to its padding
        # rather than get NaN from a softmax over nothing.
        valid = valid | ~valid.any(dim=1, keepdim=True)
        memory = self.encoder(x, valid[:, None, None, :])  # (B, S, D)
        return memory, valid

    def _decode(
        self, memory: torch.Tensor, mask: torch.Tensor, decoder_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Logits (B, t, vocab) of the decoder over [BOS, SID tokens so far] (B, t)."""
        t = decoder_tokens.shape[1]
        # Position p holds BOS (NO_DIGIT = 0) or digit p - 1 (index p): the digit index is p.
        digit = torch.arange(t, device=decoder_tokens.device)
        slot = torch.full_like(digit, NO_SLOT)
        x = self.embed(decoder_tokens, digit, slot)  # (B, t, D)
        h = self.decoder(x, self.causal[:t, :t], memory, mask[:, None, None, :])  # (B, t, D)
        return self.head(h)

    def decode_step(
        self, memory: torch.Tensor, mask: torch.Tensor, prefix_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Log-probs (B, vocab_size) of the next SID token after BOS and `prefix_tokens` (B, t)."""
        bos = prefix_tokens.new_full((prefix_tokens.shape[0], 1), BOS_TOKEN)
        logits = self._decode(memory, mask, torch.cat([bos, prefix_tokens.long()], dim=1))
        return torch.log_softmax(logits[:, -1].float(), dim=-1)

    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher-forced cross-entropy of the target's SID tokens over the SID vocabulary."""
        history, target, users = self._unpack(batch)  # (B, L * n_digits), (B, n_digits)
        memory, mask = self.encode(history, users)
        bos = target.new_full((target.shape[0], 1), BOS_TOKEN)
        logits = self._decode(memory, mask, torch.cat([bos, target[:, :-1]], dim=1))
        return F.cross_entropy(logits.float().reshape(-1, self.vocab_size), target.reshape(-1))
