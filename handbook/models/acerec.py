"""ACERec (Xia et al.): long semantic IDs merged into a few latents, an intent token, dual-granularity loss.

"Unleash the Potential of Long Semantic IDs for Generative Recommendation". Like RPG
(`handbook.models.rpg`), every item has a long OPQ/PQ semantic ID of m digits with W
codes each, one token table holds all digits (digit j's code c is token `offset_j + c`,
see `handbook.sid`), and the digits are predicted in parallel. ACERec changes how an
item enters the sequence model and how the next item is read out:

* **Attentive Token Merger**: r learned queries cross-attend to an item's m token
  embeddings and give r latent vectors per item (compression ratio m / r), where RPG
  takes one rigid mean. `merger="mean"` is the ablation: RPG's mean pooling, one latent;
* a causal transformer over the L * r latents of the history, causal at item
  granularity (an item's r latents see each other and every earlier item's latents);
* **Intent Token**: a learned vector appended after the history; its output state is
  the prediction anchor. `intent_token=False` is the ablation: the state of the last
  item's last latent predicts instead;
* **dual-granularity objective**: token level, RPG's multi-token prediction of the
  target's m digits from the intent state (`mtp_loss`, cosine logits / `temperature`);
  item level, in-batch InfoNCE between the projected intent state and the target's
  merged representation (the mean of its r latents), cosine / `item_temperature`. The
  loss is token + `item_weight` * item;
* **holistic scoring**: `scores` ranks the whole catalogue exactly and in parallel: the
  token-level score (mean digit log-probability, as RPG) plus `score_weight` times the
  item-level log-probability (log-softmax over all items of the intent's cosine with
  every item's merged representation). No beam search. An item never seen in training
  is scored from its SID tokens like any other (cold start).

Choices where the paper is silent: the encoder is RPG's (GPT-2 blocks, dropout on the
inputs and attention weights, learned positions counted from the first real item, so
left padding changes nothing); all r latents of an item share their item's position
and the intent token takes the position of the last item it has seen. The merger is
one multi-head cross-attention layer (`handbook.models.transformer.Attention`) whose
value and output projections start as the identity and whose queries start small, so
it starts as mean pooling and learns where to attend. Training labels every position
at once: one intent token per history slot, each seeing only the latents up to its
slot and itself, and no latent seeing an intent token; the state of each is therefore
exactly that of a single intent token appended to that prefix (a test checks this).
In-batch negatives are the other distinct target items of the batch. `score_weight`
defaults to `item_weight`, so an item's score is minus its own training loss at both
granularities. `merger="mean"` ignores `n_latents` (one latent per item). With the mean
merger, no intent token and `item_weight=0` the model is RPG, parameter for parameter.
The transformer defaults are RPG's; r = 4, `item_weight` = 1 and `item_temperature` =
`temperature` are starting points to tune, not values taken from the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from handbook.models.rpg import RPG, mtp_loss
from handbook.models.transformer import Attention
from handbook.sid import SemanticIDs

Merger = Literal["attention", "mean"]


class AttentiveTokenMerger(nn.Module):
    """r learned queries cross-attend to an item's m token embeddings: (N, m, D) -> (N, r, D).

    The value and output projections start as the identity and the queries near zero, so
    the attention is near uniform and every latent starts as the mean of the tokens.
    """

    def __init__(self, n_latents: int, hidden: int, n_heads: int) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden={hidden} must be divisible by n_heads={n_heads}")
        self.queries = nn.Parameter(torch.randn(n_latents, hidden) * 0.02)  # (r, D)
        self.attn = Attention(hidden, n_heads, hidden // n_heads, dropout=0.0)
        with torch.no_grad():
            nn.init.normal_(self.attn.q.weight, std=0.02)
            nn.init.normal_(self.attn.kv.weight, std=0.02)
            self.attn.kv.weight[hidden:].copy_(torch.eye(hidden))  # values = the tokens
            self.attn.out.weight.copy_(torch.eye(hidden))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (N, m, D) token embeddings of N items -> (N, r, D) latents."""
        queries = self.queries.expand(tokens.shape[0], -1, -1)  # (N, r, D)
        every_key = torch.ones(1, 1, 1, tokens.shape[1], dtype=torch.bool, device=tokens.device)
        return self.attn(queries, tokens, every_key)

    def attention_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """Where each latent looks: softmax attention (N, heads, r, m) of the queries over the m tokens."""
        n, m, _ = tokens.shape
        heads, head_dim = self.attn.n_heads, self.attn.head_dim
        q = self.attn.q(self.queries).view(-1, heads, head_dim).transpose(0, 1)  # (H, r, dh)
        k = self.attn.kv(tokens)[..., : heads * head_dim].view(n, m, heads, head_dim)
        logits = torch.einsum("hrd,nmhd->nhrm", q, k) / head_dim**0.5
        return logits.softmax(dim=-1)


class ACERec(RPG):
    """ACERec: merged SID latents, causal transformer, intent token, token + item losses, exact scoring.

    sids: the catalogue's `SemanticIDs` built with `dedup=False` from PQ/OPQ codes, every
    digit with the same number of codes (row i is item id i + 1). The transformer
    defaults are RPG's (2 layers, hidden 448, 4 heads, feed-forward 1024, dropout 0.5, up
    to 50 items, temperature 0.03); n_latents r = 4 per item.
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
        item_temperature: float = 0.03,
        item_weight: float = 1.0,
        score_weight: float | None = None,
        score_batch_size: int = 4096,
    ) -> None:
        if item_temperature <= 0:
            raise ValueError(f"item_temperature must be > 0, got {item_temperature}")
        if item_weight < 0 or (score_weight is not None and score_weight < 0):
            raise ValueError(
                f"item_weight and score_weight must be >= 0 (0 turns the item level off), "
                f"got {item_weight} and {score_weight}"
            )
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
            score_batch_size=score_batch_size,
        )
        if merger not in ("attention", "mean"):
            raise ValueError(
                f"merger must be 'attention' (learned queries) or 'mean' (mean pooling), got {merger!r}"
            )
        if merger == "attention" and not 1 <= n_latents <= sids.n_digits:
            raise ValueError(
                f"n_latents (latents per item) must be between 1 and the {sids.n_digits} SID digits "
                f"it compresses, got {n_latents}: pick r with m / r >= 1"
            )
        self.merger_kind = merger
        self.n_latents = 1 if merger == "mean" else n_latents  # latents per item
        self.intent_token = bool(intent_token)
        self.item_temperature = float(item_temperature)
        self.item_weight = float(item_weight)
        self.score_weight = float(item_weight if score_weight is None else score_weight)
        self.config.update(
            n_latents=n_latents,
            merger=merger,
            intent_token=self.intent_token,
            item_temperature=item_temperature,
            item_weight=item_weight,
            score_weight=self.score_weight,
        )
        # projects the prediction state into the space of the items' merged representations
        self.item_proj = nn.Linear(hidden, hidden)
        nn.init.normal_(self.item_proj.weight, std=0.02)
        nn.init.zeros_(self.item_proj.bias)
        self.merger = (
            AttentiveTokenMerger(self.n_latents, hidden, n_heads) if merger == "attention" else None
        )
        self.intent = nn.Parameter(torch.randn(hidden) * 0.02) if self.intent_token else None
        self._item_cache: tuple[tuple, torch.Tensor] | None = None  # see item_keys

    # ------------------------------------------------------------------ items
    def item_latents(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Merged latents of item ids: (...) -> (..., r, D); id 0 gives zeros.

        Each distinct id is merged once, so a batch of histories costs its distinct items.
        """
        unique, inverse = torch.unique(item_ids.long(), return_inverse=True)  # inverse: item_ids' shape
        tokens = self.token_emb(self.item_tokens[unique])  # (U, m, D)
        if self.merger is None:
            latents = tokens.mean(dim=1, keepdim=True)  # (U, 1, D)
        else:
            # the padding item has only zero tokens and the merger no biases: zero latents
            latents = self.merger(tokens)  # (U, r, D)
        # index_select, not latents[inverse]: the backward of advanced indexing accumulates
        # repeated ids in a thread-dependent order on CPU, so training was not reproducible
        picked = latents.index_select(0, inverse.reshape(-1))  # (numel, r or 1, D)
        return picked.view(*inverse.shape, *latents.shape[1:])

    def item_representations(self, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Item-level representation = mean of the r latents: (...) -> (..., D); None: all items (n_items, D)."""
        if item_ids is not None:
            return self.item_latents(item_ids).mean(dim=-2)
        device = self.item_tokens.device
        parts = [
            self.item_latents(
                torch.arange(
                    start + 1, min(start + self.score_batch_size, self.n_items) + 1, device=device
                )
            ).mean(dim=-2)
            for start in range(0, self.n_items, self.score_batch_size)
        ]
        return torch.cat(parts)  # (n_items, D), row i = item id i + 1

    def item_keys(self) -> torch.Tensor:
        """Unit-norm representations of every item (n_items, D): what item-level scoring compares with.

        Without gradients they are merged once per set of weights and cached, since scoring
        needs them for every batch of users; the cache key changes with any update of a
        parameter (in place: its version counter; moved: its storage).
        """
        if torch.is_grad_enabled():
            return F.normalize(self.item_representations(), dim=-1)
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._item_cache is None or self._item_cache[0] != key:
            self._item_cache = (key, F.normalize(self.item_representations(), dim=-1))
        return self._item_cache[1]

    # ------------------------------------------------------------------ encoder
    def _encode(self, input_ids: torch.Tensor, intents: Literal["every", "last"]) -> torch.Tensor:
        """Prediction states of left-padded item ids (B, L): after every slot (B, max_len, D) or the last (B, D).

        The sequence holds the L * r latents and then the intent tokens (one per slot for
        "every", one after the last slot for "last"). Order in the tensor does not matter:
        who sees whom and the positions follow each token's item slot.
        """
        ids = self._fit_length(input_ids.long())  # (B, L)
        batch, length = ids.shape
        device = ids.device
        r = self.n_latents
        keep = ids != 0  # (B, L)
        # positions count from the first real item, as RPG's, so left padding changes nothing
        item_pos = (keep.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        x = self.item_latents(ids).reshape(batch, length * r, self.hidden)  # (B, L * r, D)
        slot = torch.arange(length, device=device).repeat_interleave(r)  # (L * r,)
        real = keep.repeat_interleave(r, dim=1)  # (B, L * r)
        pos = item_pos.repeat_interleave(r, dim=1)  # (B, L * r)
        is_intent = torch.zeros(length * r, dtype=torch.bool, device=device)
        if self.intent is not None:
            # the item slot each intent token follows: every slot, or only the last one
            first = 0 if intents == "every" else length - 1
            anchor = torch.arange(first, length, device=device)
            n = anchor.numel()
            x = torch.cat([x, self.intent.expand(batch, n, -1)], dim=1)
            slot = torch.cat([slot, anchor])
            real = torch.cat([real, real.new_ones(batch, n)], dim=1)
            pos = torch.cat([pos, item_pos[:, anchor]], dim=1)
            is_intent = torch.cat([is_intent, is_intent.new_ones(n)])
        x = self.emb_drop(x + self.pos_emb(pos)) * real.unsqueeze(-1)  # (B, T, D)
        # query q sees key k: k is a real latent of the same or an earlier item slot; intent
        # tokens are seen by nobody but themselves. The diagonal stays open (no NaN from SDPA).
        sees = (slot.unsqueeze(0) <= slot.unsqueeze(1)) & ~is_intent.unsqueeze(0)  # (T, T)
        eye = torch.eye(slot.numel(), dtype=torch.bool, device=device)
        attn_mask = ((sees & real.unsqueeze(1)) | eye).unsqueeze(1)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, attn_mask)
        x = self.final_ln(x)
        if self.intent is not None:
            states = x[:, length * r :]  # (B, L or 1, D)
        else:
            states = x.view(batch, length, r, self.hidden)[:, :, -1]  # last latent of each item
        return states if intents == "every" else states[:, -1]

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Prediction state after every item slot (B, max_len, D) of left-padded item ids (B, L)."""
        return self._encode(input_ids, "every")

    def intent_states(self, histories: torch.Tensor) -> torch.Tensor:
        """Prediction state (B, D) of the next item: the intent token appended after the history."""
        return self._encode(histories, "last")

    # ------------------------------------------------------------------ training
    def item_loss(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """In-batch InfoNCE: states (M, D) against the merged representations of targets' distinct items (M,)."""
        items, positive = torch.unique(targets, return_inverse=True)  # (U,), (M,)
        queries = F.normalize(self.item_proj(states), dim=-1)  # (M, D)
        keys = F.normalize(self.item_representations(items), dim=-1)  # (U, D)
        logits = queries @ keys.T / self.item_temperature  # (M, U)
        return F.cross_entropy(logits.float(), positive)

    def loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Token-level MTP loss + item_weight * item-level InfoNCE of the next item at every labelled slot."""
        input_ids, labels = batch[0], batch[1]  # (B, L) each, 0 = padding / no label
        states = self.encode(input_ids)  # (B, max_len, D)
        labels = self._fit_length(labels.long())
        mask = labels != 0
        if not bool(mask.any()):
            raise ValueError("the batch holds no labels: every position is padding")
        states, targets = states[mask], labels[mask]  # (M, D), (M,)
        token = mtp_loss(
            self.heads(states), self.token_table(), self.codes[targets - 1], self.temperature
        )
        if self.item_weight == 0:
            return token
        return token + self.item_weight * self.item_loss(states, targets)

    # ------------------------------------------------------------------ inference
    def digit_log_probs(self, histories: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every code of every digit for the next item: (B, m, W)."""
        return self._log_probs_from_states(self.intent_states(histories))

    def _item_log_probs(self, states: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Item-level log-probability of every catalogue item: (B, n_items), softmax over all items."""
        queries = F.normalize(self.item_proj(states), dim=-1)  # (B, D)
        return F.log_softmax((queries @ keys.T).float() / self.item_temperature, dim=-1)

    def scores(self, histories: torch.Tensor, item_keys: torch.Tensor | None = None) -> torch.Tensor:
        """Exact holistic scores (B, n_items + 1): token + score_weight * item log-probabilities; pad -inf.

        item_keys: a precomputed (n_items, D) table in place of `self.item_keys()`, e.g. one
        kept beside a serving index.
        """
        states = self.intent_states(histories)  # (B, D)
        out = self._catalogue_scores(self._log_probs_from_states(states))
        if self.score_weight != 0:
            keys = self.item_keys() if item_keys is None else item_keys
            out[:, 1:] += self.score_weight * self._item_log_probs(states, keys)
        return out
