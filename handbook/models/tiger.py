"""TIGER (Rajput et al., 2023, "Recommender Systems with Generative Retrieval"): an encoder-decoder over SID tokens.

The encoder reads the user's history as a flat token sequence: each of the last
`max_items` items contributes its `n_digits` SID tokens (each digit its own token range,
see `handbook.sid`), optionally after one hashed user token. The decoder starts from BOS
and generates the next item's SID digit by digit (teacher forcing at training); at
inference beam search (`handbook.decoding.beam`) keeps the best prefixes, constrained to
the trie or free.

Defaults are the paper's: 4 encoder and 4 decoder layers, d_model 128, 6 heads of 64
(attention width 384, as in T5 this differs from d_model), feed-forward 1024, dropout 0.1,
histories of up to 20 items. The paper's user token (2,000 hashed bins) is off by default
(`n_user_bins=0`): GRID found it does not help, and without it no call needs user ids.

Two options follow the reference code; their defaults are still this module's first
version, because at reading size the reference choices did not score differently (below):

* `positions="relative"`: T5's bucketed relative position bias, as TIGER (T5X) and GRID
  and cornac (Hugging Face's T5 stacks) use: bidirectional buckets in the encoder, causal
  ones in the decoder's self-attention, none in cross-attention, one table per stack
  shared by its layers. The references feed T5 the raw SID token embeddings and no other
  position signal, and so does this mode: a token's digit is already told by its token
  range, and its order by the bias. Positions count real tokens only (padding takes none),
  so left padding changes nothing. `positions="absolute"` (default): learned embeddings of
  each token's digit and of its item's history slot, no bias.
* `output="per_level"`: one softmax per SID level over that level's codes (GRID's and
  cornac's per-level heads), so training and beam search, which scores only the digit's
  codes, normalise alike. `output="full_vocab"` (default): one softmax over the whole SID
  vocabulary at training (TIGER's T5 output layer), renormalised over the digit's codes by
  beam search. The loss is the mean over the target's tokens (GRID and cornac sum the
  levels' cross-entropies: a constant factor Adam does not see).

Measured as notebook 06's arms on ml-100k (1 + 1 layers, d 64, histories of 5, at most 16
epochs, patience 4) over seeds 0-2 (`sweeps/tiger-reference-choices.yaml`, notebook 11
section 7), on validation: neither per_level (-.0003 [-.0050, .0050]) nor relative (-.0017
[-.0069, .0035]) is a measured difference from the defaults.

Beam search keeps a KV cache (`TIGERBeamStep`): the encoder's cross-attention keys and
values once per user, shared by its beams, and the decoder's self-attention keys and
values of the prefix, reordered with the beams, so each digit runs the decoder on one
new token per beam. `recommend(..., cache=False)` reruns the decoder over the whole
prefix instead (the same results).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from handbook.decoding.beam import StepFn
from handbook.models.transformer import (
    NO_SLOT,
    OUTPUTS,
    POSITIONS,
    SIDEmbedding,
    SIDGenerativeModel,
    SIDOutput,
    Stack,
    check_choice,
    history_positions,
    init_weights,
    token_positions,
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
        output: str = "full_vocab",
        positions: str = "absolute",
    ) -> None:
        super().__init__(sids, max_items=max_items, n_user_bins=n_user_bins)
        check_choice("output", output, OUTPUTS)
        check_choice("positions", positions, POSITIONS)
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
            "output": output,
            "positions": positions,
        }
        self.relative = positions == "relative"
        # One token table for encoder and decoder, as in T5. Slots: NO_SLOT, then 1..max_items.
        self.embed = SIDEmbedding(
            self.vocab_size, self.n_digits, max_items + 1, d_model, dropout, absolute=not self.relative
        )
        self.user_embed = nn.Embedding(n_user_bins, d_model) if n_user_bins else None
        bias = ("bidirectional", "causal") if self.relative else (None, None)
        self.encoder = Stack(
            n_encoder_layers, d_model, n_heads, head_dim, d_ff, dropout, relative_bias=bias[0]
        )
        self.decoder = Stack(
            n_decoder_layers, d_model, n_heads, head_dim, d_ff, dropout,
            cross_attention=True, relative_bias=bias[1],
        )  # fmt: skip
        self.head = SIDOutput(d_model, sids, output)
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
        positions = token_positions(valid) if self.relative else None
        memory = self.encoder(x, valid[:, None, None, :], positions=positions)  # (B, S, D)
        return memory, valid

    def _embed_decoder(self, decoder_tokens: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Embeddings (N, t, D) of decoder tokens at positions first..first + t - 1 (0 = BOS)."""
        # Position p holds BOS (NO_DIGIT = 0) or digit p - 1 (index p): the digit index is p.
        digit = torch.arange(first, first + decoder_tokens.shape[1], device=decoder_tokens.device)
        return self.embed(decoder_tokens, digit, torch.full_like(digit, NO_SLOT))

    def _hidden(
        self, memory: torch.Tensor, mask: torch.Tensor, decoder_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Decoder states (B, t, D) over [BOS, SID tokens so far] (B, t)."""
        t = decoder_tokens.shape[1]
        x = self._embed_decoder(decoder_tokens)  # (B, t, D)
        return self.decoder(x, self.causal[:t, :t], memory, mask[:, None, None, :])

    def decode_step(
        self, memory: torch.Tensor, mask: torch.Tensor, prefix_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Log-probs (B, vocab_size) of the next SID token after BOS and `prefix_tokens` (B, t)."""
        bos = prefix_tokens.new_full((prefix_tokens.shape[0], 1), BOS_TOKEN)
        h = self._hidden(memory, mask, torch.cat([bos, prefix_tokens.long()], dim=1))
        return self.head(h[:, -1], level=prefix_tokens.shape[1])

    def beam_step(self, context: torch.Tensor, mask: torch.Tensor, cache: bool = True) -> StepFn:
        """Beam-search step for one encoded batch: `TIGERBeamStep` (KV cache) or, without `cache`, the plain rerun."""
        if not cache:
            return super().beam_step(context, mask, cache=False)
        return TIGERBeamStep(self, context, mask)

    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher-forced cross-entropy of the target's SID tokens, over its level or the vocabulary (`output`)."""
        history, target, users = self._unpack(batch)  # (B, L * n_digits), (B, n_digits)
        memory, mask = self.encode(history, users)
        bos = target.new_full((target.shape[0], 1), BOS_TOKEN)
        h = self._hidden(memory, mask, torch.cat([bos, target[:, :-1]], dim=1))  # (B, n_digits, D)
        return self.head.loss(h, target)


class TIGERBeamStep:
    """A TIGER's beam-search step with a KV cache: one new decoder token per beam and digit.

    The cross-attention keys and values of every decoder layer are computed once per user
    from the encoder output; the beams of a user read them as extra queries (no copy per
    beam). The self-attention keys and values of the prefix grow by one token per call and
    follow their beams through `reorder`.
    """

    def __init__(self, model: TIGER, memory: torch.Tensor, mask: torch.Tensor) -> None:
        self.model = model
        self.n_users = memory.shape[0]
        blocks = model.decoder.blocks
        self.cross = [block.cross_attn.keys_values(memory) for block in blocks]  # (B, H, S, dh)
        self.cross_mask = mask[:, None, None, :]  # (B, 1, 1, S)
        self.past: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(blocks)
        self.length = 0  # decoder tokens in the cache

    def __call__(self, rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probs (N, vocab_size) of the next token of N beams with prefixes (N, t)."""
        t = prefix.shape[1]
        if t != self.length:
            raise ValueError(
                f"the cache holds {self.length} decoder tokens but the prefix has {t}: call a "
                "TIGERBeamStep once per digit, in order, through beam_search"
            )
        model, n = self.model, rows.shape[0]
        token = prefix[:, -1:].long() if t else prefix.new_full((n, 1), BOS_TOKEN).long()
        x = model._embed_decoder(token, first=t)  # (N, 1, D)
        bias = None  # absolute positions: the new token sees every cached one (causal)
        if model.decoder.bias is not None:
            pos = torch.arange(t + 1, device=x.device).unsqueeze(0)
            bias = model.decoder.bias(pos[:, -1:], pos)  # (1, H, 1, t + 1)
        group = n // self.n_users
        grouped = n == group * self.n_users and torch.equal(
            rows, torch.arange(self.n_users, device=rows.device).repeat_interleave(group)
        )
        cross_mask = self.cross_mask if grouped else self.cross_mask[rows]
        for i, block in enumerate(model.decoder.blocks):
            cross = self.cross[i] if grouped else (self.cross[i][0][rows], self.cross[i][1][rows])
            x, self.past[i] = block.step(
                x, self.past[i], bias, cross, cross_mask, group if grouped else 1
            )
        self.length = t + 1
        return model.head(model.decoder.final_ln(x[:, 0]), level=t)

    def reorder(self, parent: torch.Tensor) -> None:
        """Keep the cache of each surviving beam's parent: parent (N',) indexes the last call's N beams."""
        self.past = [
            None if kv is None else (kv[0].index_select(0, parent), kv[1].index_select(0, parent))
            for kv in self.past
        ]
