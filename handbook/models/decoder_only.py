"""GRID's decoder-only variant: one causal transformer over history tokens, BOS, then the target's tokens.

The sequence is `[user token] + history tokens + [BOS] + target tokens`, the history
flattened and embedded as in TIGER (`handbook.models.transformer.SIDEmbedding`: token +
digit-within-item + item slot; the target's tokens sit in one more slot after the most
recent item). The model predicts each target token from everything before it, so
generation is the same digit-by-digit beam search as TIGER's, over a prompt instead of
an encoder's memory; each step reruns the whole sequence (no KV cache here, unlike TIGER).

Loss: by default cross-entropy on the target's tokens only (`history_loss=False`), the
same objective as the encoder-decoder, which makes the architecture the only difference
in GRID's comparison. GRID's paper gives no code for its decoder-only model (its release
is the encoder-decoder); a decoder-only `SemanticIDDecoderOnly` found in a version of
GRID's `tiger_generation_model.py` offers both, with `loss_on_all_positions` (next-token
loss on history tokens too, more signal per sequence) as its default and the
target-only loss as the "apples-to-apples" setting its jobs ran. `history_loss=True`
adds the history's next-token loss, here over history tokens predicted from the
previous history token (the user token and padding predict nothing), averaged together
with the target's tokens.

Positions and output head are TIGER's options (`handbook.models.tiger`, with the same
defaults: learned absolute digit and slot embeddings, one softmax over the vocabulary);
`positions="relative"` is T5's causal relative position bias over the real tokens (padding
takes no position) and `output="per_level"` one softmax per SID level, as GRID's
`SemanticIDDecoderOnly` has (a Hugging Face T5 stack with one head per level).

Default depth: 8 layers, the 4 + 4 of TIGER's encoder and decoder, which gives a similar
parameter count (a decoder-only layer has no cross-attention); the other sizes are TIGER's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from handbook.models.transformer import (
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


class DecoderOnly(SIDGenerativeModel):
    """Causal transformer that continues a history's SID tokens with BOS and the next item's SID."""

    def __init__(
        self,
        sids: SemanticIDs,
        *,
        max_items: int = 20,
        d_model: int = 128,
        n_heads: int = 6,
        head_dim: int = 64,
        d_ff: int = 1024,
        n_layers: int = 8,
        dropout: float = 0.1,
        n_user_bins: int = 0,
        history_loss: bool = False,
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
            "n_layers": n_layers,
            "dropout": dropout,
            "n_user_bins": n_user_bins,
            "history_loss": history_loss,
            "output": output,
            "positions": positions,
        }
        self.history_loss = history_loss
        self.relative = positions == "relative"
        # Slots: NO_SLOT (user), 1..max_items (history), max_items + 1 (the generated item).
        self.target_slot = max_items + 1
        self.embed = SIDEmbedding(
            self.vocab_size, self.n_digits, max_items + 2, d_model, dropout, absolute=not self.relative
        )
        self.user_embed = nn.Embedding(n_user_bins, d_model) if n_user_bins else None
        self.stack = Stack(
            n_layers, d_model, n_heads, head_dim, d_ff, dropout,
            relative_bias="causal" if self.relative else None,
        )  # fmt: skip
        self.head = SIDOutput(d_model, sids, output)
        self.apply(init_weights)

    def encode(
        self, history_tokens: torch.Tensor, users: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedded prompt (B, S, D) and its validity mask (B, S): [user token] + history tokens.

        Nothing is run here: a causal model reads the prompt together with the generated
        tokens, in `decode_step`.
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
        return x, valid

    def _run(
        self, prompt: torch.Tensor, valid: torch.Tensor, suffix_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Hidden states (B, S + t, D) of the prompt followed by [BOS, SID tokens so far] (B, t)."""
        t = suffix_tokens.shape[1]
        # Position p of the suffix holds BOS (digit index 0) or digit p - 1 (index p).
        digit = torch.arange(t, device=suffix_tokens.device)
        slot = torch.full_like(digit, self.target_slot)
        x = torch.cat([prompt, self.embed(suffix_tokens, digit, slot)], dim=1)  # (B, S + t, D)
        keys = torch.cat([valid, valid.new_ones(valid.shape[0], t)], dim=1)  # (B, S + t)
        n = x.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        # Left padding: a padding query may have no valid key before it; its own key keeps
        # SDPA from a softmax over nothing (its output is never used).
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        mask = (causal & keys[:, None, :]) | eye  # (B, S + t, S + t)
        positions = token_positions(keys) if self.relative else None
        return self.stack(x, mask.unsqueeze(1), positions=positions)

    def decode_step(
        self, prompt: torch.Tensor, valid: torch.Tensor, prefix_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Log-probs (B, vocab_size) of the next SID token after the prompt, BOS and `prefix_tokens` (B, t)."""
        bos = prefix_tokens.new_full((prefix_tokens.shape[0], 1), BOS_TOKEN)
        hidden = self._run(prompt, valid, torch.cat([bos, prefix_tokens.long()], dim=1))
        return self.head(hidden[:, -1], level=prefix_tokens.shape[1])

    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the target's SID tokens (and, with `history_loss`, of the history's)."""
        history, target, users = self._unpack(batch)  # (B, L * n_digits), (B, n_digits)
        prompt, valid = self.encode(history, users)
        bos = target.new_full((target.shape[0], 1), BOS_TOKEN)
        hidden = self._run(prompt, valid, torch.cat([bos, target[:, :-1]], dim=1))
        states = hidden[:, -self.n_digits :]  # (B, n_digits, D): BOS.. predict the target
        labels = target
        if self.history_loss:
            tokens = self._fit_history(history)  # (B, T)
            start = prompt.shape[1] - tokens.shape[1]  # 1 with a user token, else 0
            # History token i predicts token i + 1 where both are real tokens.
            pred = hidden[:, start : start + tokens.shape[1] - 1]  # (B, T - 1, D)
            nxt = tokens[:, 1:].masked_fill(tokens[:, :-1] == PAD_TOKEN, PAD_TOKEN)
            states = torch.cat([states, pred], dim=1)
            labels = torch.cat([labels, nxt], dim=1)
        return self.head.loss(states, labels)
