"""The semantic-ID table of a catalogue: collisions, tokens, prefix trie, code -> item lookup, k-NN graph.

Input: the codes (n_items, n_digits) a tokenizer gave every item. `SemanticIDs`
turns them into what the sequence models need:

* collision handling: with `dedup=True` (TIGER, GRID) one more digit is appended,
  0 for the first item of a group of items sharing a code, 1, 2, ... for the next
  ones in item order, so that every SID is unique. With `dedup=False` (RPG's long
  SIDs, where collisions are rare) the codes are kept and collisions only reported.
* tokens: digit j's code c is token `N_SPECIAL_TOKENS + offset_j + c`, where
  `offset_j` is the number of codes of the digits before j; tokens 0..2 are special
  (`PAD_TOKEN`, `BOS_TOKEN`, `EOS_TOKEN`). Each digit has its own token range, as in
  TIGER, GRID and RPG, so the same code at two positions is two different tokens.
* a prefix trie of the valid SIDs, stored level by level as sorted integer arrays,
  so that a whole batch of beams is checked with a few `np.searchsorted` calls.
* `lookup`: full SID -> item index.
* `knn_graph`: each item's most similar items by SID-token similarity, for RPG's
  graph-constrained decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: token id of padding
PAD_TOKEN = 0
#: token id that starts a generated SID (decoder start)
BOS_TOKEN = 1
#: token id that ends a sequence
EOS_TOKEN = 2
#: number of special tokens; SID tokens start at this id
N_SPECIAL_TOKENS = 3


class SemanticIDs:
    """Semantic IDs of every item of a catalogue; build with `SemanticIDs.from_codes`."""

    def __init__(
        self, codes: np.ndarray, codebook_sizes: Sequence[int], base_codes: np.ndarray, dedup: bool
    ) -> None:
        #: final codes (n_items, n_digits), the de-duplication digit last when `dedup`
        self.codes = codes
        #: codes as the tokenizer gave them (n_items, n_base_digits)
        self.base_codes = base_codes
        #: number of codes of each final digit
        self.codebook_sizes = tuple(int(s) for s in codebook_sizes)
        #: whether a de-duplication digit was appended
        self.dedup = dedup
        self.n_items, self.n_digits = codes.shape
        self.n_base_digits = base_codes.shape[1]

        # collision statistics, always on the tokenizer's codes
        _, group, group_size = np.unique(
            base_codes, axis=0, return_inverse=True, return_counts=True
        )
        group = group.reshape(-1)
        shared = group_size[group] > 1
        #: number of distinct tokenizer codes
        self.n_unique_base = int(group_size.size)
        #: number of items whose tokenizer code is shared with at least one other item
        self.n_colliding_items = int(shared.sum())
        #: share of items whose tokenizer code is shared with another item
        self.collision_rate = self.n_colliding_items / max(self.n_items, 1)
        #: size of the largest group of items sharing one code (1 = no collisions)
        self.largest_collision_group = int(group_size.max()) if group_size.size else 0
        #: max de-duplication digit + 1 (the size the extra digit needs)
        self.dedup_size = self.largest_collision_group

        #: start of each digit's code range in the SID token space (before the special tokens)
        self.offsets = np.concatenate([[0], np.cumsum(self.codebook_sizes)[:-1]]).astype(np.int64)
        #: number of tokens: special tokens + all digits' codes
        self.vocab_size = N_SPECIAL_TOKENS + int(sum(self.codebook_sizes))
        self._build_trie()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_codes(
        cls, codes: np.ndarray, codebook_sizes: int | Sequence[int], dedup: bool = True
    ) -> SemanticIDs:
        """SID table from tokenizer codes (n_items, n_digits); `codebook_sizes` is one int or one per digit."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(
                f"codes must be a non-empty 2-D array (n_items, n_digits), got shape {codes.shape}"
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        n_digits = codes.shape[1]
        sizes = (
            [int(codebook_sizes)] * n_digits
            if np.isscalar(codebook_sizes)
            else [int(s) for s in codebook_sizes]
        )
        if len(sizes) != n_digits:
            raise ValueError(f"got {len(sizes)} codebook sizes for {n_digits} digits")
        for j, size in enumerate(sizes):
            if codes[:, j].min() < 0 or codes[:, j].max() >= size:
                raise ValueError(
                    f"digit {j} has codes in [{codes[:, j].min()}, {codes[:, j].max()}], outside [0, {size})"
                )
        if not dedup:
            return cls(codes, sizes, codes, dedup=False)
        extra = dedup_digit(codes)
        return cls(
            np.column_stack([codes, extra]), [*sizes, int(extra.max()) + 1], codes, dedup=True
        )

    def _build_trie(self) -> None:
        # Level l's nodes are the distinct prefixes of length l+1, numbered in sorted order of
        # key = parent node * codebook_size_l + code. A child is found by binary search of its key,
        # and the children of node p are the keys in [p * size_l, (p + 1) * size_l).
        self._keys: list[np.ndarray] = []
        parent = np.zeros(self.n_items, dtype=np.int64)
        for level, size in enumerate(self.codebook_sizes):
            keys, parent = np.unique(parent * size + self.codes[:, level], return_inverse=True)
            parent = parent.reshape(-1)
            self._keys.append(keys)
        #: trie node of each item's full SID
        self._leaf = parent
        n_leaves = self._keys[-1].size
        self._leaf_item = np.full(n_leaves, self.n_items, dtype=np.int64)
        np.minimum.at(self._leaf_item, parent, np.arange(self.n_items))

    # ------------------------------------------------------------------ tokens
    def tokens(self, codes: np.ndarray | None = None) -> np.ndarray:
        """Token ids (…, n_digits) of `codes` (default: every item's SID, (n_items, n_digits))."""
        codes = self.codes if codes is None else np.asarray(codes, dtype=np.int64)
        return codes + self.offsets[: codes.shape[-1]] + N_SPECIAL_TOKENS

    def codes_from_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Inverse of `tokens`: token ids (…, k) of digits 0..k-1 -> codes; raises on a token out of its digit's range."""
        tokens = np.asarray(tokens, dtype=np.int64)
        k = tokens.shape[-1]
        codes = tokens - N_SPECIAL_TOKENS - self.offsets[:k]
        bad = (codes < 0) | (codes >= np.asarray(self.codebook_sizes[:k]))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"token {int(tokens[where])} at position {where} is not a code of digit {where[-1]}"
            )
        return codes

    def token_digit(self, tokens: np.ndarray) -> np.ndarray:
        """Digit position of each SID token; -1 for special tokens."""
        tokens = np.asarray(tokens, dtype=np.int64) - N_SPECIAL_TOKENS
        digit = np.searchsorted(self.offsets, tokens, side="right") - 1
        return np.where(tokens < 0, -1, digit)

    # ------------------------------------------------------------------ trie
    def _walk(self, prefixes: np.ndarray) -> np.ndarray:
        """Trie node (B,) reached by each prefix (B, l); -1 where the prefix is not a valid one."""
        batch, length = prefixes.shape
        if length > self.n_digits:
            raise ValueError(f"a prefix has at most {self.n_digits} digits, got {length}")
        node = np.zeros(batch, dtype=np.int64)
        valid = np.ones(batch, dtype=bool)
        for level in range(length):
            size, keys = self.codebook_sizes[level], self._keys[level]
            code = prefixes[:, level]
            key = np.where(valid, node, 0) * size + code
            pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            valid &= (code >= 0) & (code < size) & (keys[pos] == key)
            node = np.where(valid, pos, -1)
        return node

    def _children(self, node: int, level: int) -> np.ndarray:
        """Sorted codes that follow trie node `node` of the previous level at digit `level`."""
        size, keys = self.codebook_sizes[level], self._keys[level]
        lo, hi = np.searchsorted(keys, [node * size, (node + 1) * size])
        return keys[lo:hi] - node * size

    def allowed_next(self, prefix: Sequence[int], tokens: bool = False) -> np.ndarray:
        """Sorted codes (or token ids) that may follow `prefix` (len < n_digits); empty if the prefix is invalid."""
        prefix = np.asarray(prefix, dtype=np.int64).reshape(1, -1)
        level = prefix.shape[1]
        if level >= self.n_digits:
            raise ValueError(f"a full SID ({self.n_digits} digits) has no next digit")
        node = int(self._walk(prefix)[0])
        out = np.zeros(0, dtype=np.int64) if node < 0 else self._children(node, level)
        return out + N_SPECIAL_TOKENS + self.offsets[level] if tokens else out

    def allowed_mask(self, prefixes: np.ndarray, tokens: bool = False) -> np.ndarray:
        """Bool mask of allowed next digits for a batch of equal-length prefixes (B, l).

        Shape (B, codebook_sizes[l]) over codes, or (B, vocab_size) over token ids with
        `tokens=True` (ready to add `-inf` to a decoder's logits). Invalid prefixes get
        an all-False row. This is the constrained beam search's per-step call.
        """
        prefixes = np.asarray(prefixes, dtype=np.int64)
        if prefixes.ndim == 1:
            prefixes = prefixes[None, :]
        batch, level = prefixes.shape
        if level >= self.n_digits:
            raise ValueError(f"a full SID ({self.n_digits} digits) has no next digit")
        size, keys = self.codebook_sizes[level], self._keys[level]
        node = self._walk(prefixes)
        ok = node >= 0
        lo = np.searchsorted(keys, np.where(ok, node, 0) * size)
        hi = np.searchsorted(keys, (np.where(ok, node, 0) + 1) * size)
        counts = np.where(ok, hi - lo, 0)
        rows = np.repeat(np.arange(batch), counts)
        # positions lo[r], lo[r] + 1, ..., hi[r] - 1 of every row, concatenated
        pos = (
            np.arange(counts.sum())
            - np.repeat(np.cumsum(counts) - counts, counts)
            + np.repeat(lo, counts)
        )
        cols = keys[pos] - node[rows] * size
        if tokens:
            mask = np.zeros((batch, self.vocab_size), dtype=bool)
            mask[rows, cols + N_SPECIAL_TOKENS + self.offsets[level]] = True
        else:
            mask = np.zeros((batch, size), dtype=bool)
            mask[rows, cols] = True
        return mask

    def is_valid(self, codes: np.ndarray) -> bool | np.ndarray:
        """Whether `codes` (l,) or (B, l), l <= n_digits, is a prefix of (or equal to) some item's SID."""
        codes = np.asarray(codes, dtype=np.int64)
        single = codes.ndim == 1
        valid = self._walk(codes.reshape(1, -1) if single else codes) >= 0
        return bool(valid[0]) if single else valid

    def lookup(self, codes: np.ndarray) -> int | np.ndarray:
        """Item index of a full SID (n_digits,) or of each row of (B, n_digits); -1 where no item has it.

        Without de-duplication several items may share a SID: the lowest item index is
        returned (`items_with` lists them all).
        """
        codes = np.asarray(codes, dtype=np.int64)
        single = codes.ndim == 1
        codes2 = codes.reshape(1, -1) if single else codes
        if codes2.shape[1] != self.n_digits:
            raise ValueError(
                f"lookup needs full SIDs of {self.n_digits} digits, got {codes2.shape[1]}"
            )
        leaf = self._walk(codes2)
        item = np.where(leaf >= 0, self._leaf_item[np.maximum(leaf, 0)], -1)
        return int(item[0]) if single else item

    def items_with(self, codes: Sequence[int]) -> np.ndarray:
        """All item indices whose SID is `codes` (n_digits,), in increasing order."""
        codes = np.asarray(codes, dtype=np.int64).reshape(1, -1)
        if codes.shape[1] != self.n_digits:
            raise ValueError(
                f"items_with needs a full SID of {self.n_digits} digits, got {codes.shape[1]}"
            )
        leaf = int(self._walk(codes)[0])
        return np.zeros(0, dtype=np.int64) if leaf < 0 else np.flatnonzero(self._leaf == leaf)

    def prefixes(self, length: int) -> np.ndarray:
        """All distinct valid prefixes of `length` digits (n_prefixes, length), sorted lexicographically."""
        if not 0 <= length <= self.n_digits:
            raise ValueError(f"length must be in [0, {self.n_digits}], got {length}")
        return np.unique(self.codes[:, :length], axis=0)

    @property
    def trie_sizes(self) -> list[int]:
        """Number of distinct prefixes of length 1, 2, ..., n_digits."""
        return [int(k.size) for k in self._keys]

    # ------------------------------------------------------------------ k-NN graph
    def knn_graph(
        self,
        n_edges: int,
        token_embeddings: np.ndarray | Sequence[np.ndarray] | None = None,
        similarity: str = "rpg",
        batch_size: int = 1024,
        device: str = "cpu",
    ) -> np.ndarray:
        """Each item's `n_edges` most similar other items (n_items, n_edges), most similar first.

        Similarity of two items, computed in batches of `batch_size` rows:

        * no `token_embeddings`: the share of the tokenizer's digits (the
          de-duplication digit left out) on which their codes agree, a model-free
          default; ties, frequent here, go to the lower item index;
        * `token_embeddings` with `similarity="rpg"`: RPG's `build_ii_sim_mat`
          (facebookresearch/RPG_KDD2025): per digit the cosine of the two tokens'
          embeddings mapped to [0, 1], averaged over digits. RPG calls it on the
          trained model's token table at decoding time. RPG keeps the item itself (its
          own best match) in its top-k; here self is excluded;
        * `similarity="mean"`: cosine of the items' mean token embeddings (the item
          representation RPG feeds its transformer).

        `token_embeddings` is the model's token table (vocab_size, dim) indexed by
        `tokens()`, or one (codebook_size_j, dim) table per digit (a list, or an array
        (n_digits, W, dim)); numpy arrays or torch tensors.
        """
        import torch

        if not 1 <= n_edges <= self.n_items - 1:
            raise ValueError(
                f"n_edges must be in [1, n_items - 1 = {self.n_items - 1}], got {n_edges}"
            )
        if similarity not in ("rpg", "mean"):
            raise ValueError(f"similarity must be 'rpg' or 'mean', got {similarity!r}")
        dev = torch.device(device)
        codes = torch.from_numpy(self.codes).to(dev)
        tables = None if token_embeddings is None else self._digit_tables(token_embeddings, dev)

        if tables is None:
            from scipy import sparse

            # agreement on the tokenizer's digits (a shared de-duplication digit means nothing);
            # one-hot rows over the token space, so that a sparse product counts shared tokens
            n_base = self.n_base_digits
            cols = (self.base_codes + self.offsets[:n_base]).reshape(-1)
            rows = np.repeat(np.arange(self.n_items), n_base)
            onehot = sparse.csr_matrix(
                (np.ones(rows.size, dtype=np.float32), (rows, cols)),
                shape=(self.n_items, self.vocab_size),
            )
            onehot_t = onehot.T.tocsr()

            def block(start: int, stop: int) -> np.ndarray:
                return (onehot[start:stop] @ onehot_t).toarray() / n_base
        elif similarity == "rpg":
            # per digit, token-token similarity mapped to [0, 1]: (size_j, size_j)
            token_sims = []
            for t in tables:
                t = torch.nn.functional.normalize(t, dim=-1)
                token_sims.append(0.5 * (t @ t.T + 1.0))

            def block(start: int, stop: int) -> np.ndarray:
                total = torch.zeros(stop - start, self.n_items, device=dev)
                for j, sims in enumerate(token_sims):
                    total += sims[codes[start:stop, j]][:, codes[:, j]]  # (b, n)
                return (total / self.n_digits).cpu().numpy()
        else:
            item_vecs = torch.stack([tables[j][codes[:, j]] for j in range(self.n_digits)]).mean(0)
            item_vecs = torch.nn.functional.normalize(item_vecs, dim=-1)  # (n, dim)

            def block(start: int, stop: int) -> np.ndarray:
                return (item_vecs[start:stop] @ item_vecs.T).cpu().numpy()

        out = np.empty((self.n_items, n_edges), dtype=np.int64)
        for start in range(0, self.n_items, batch_size):
            stop = min(start + batch_size, self.n_items)
            sim = np.asarray(block(start, stop), dtype=np.float64)
            sim[
                np.arange(stop - start), np.arange(start, stop)
            ] = -np.inf  # never your own neighbour
            out[start:stop] = _top_k_rows(sim, n_edges)
        return out

    def _digit_tables(self, token_embeddings, device) -> list:
        """Per-digit token embedding tables [(size_j, dim)] as torch float32 tensors."""
        import torch

        if isinstance(token_embeddings, (list, tuple)):
            tables = [
                torch.as_tensor(np.asarray(t) if not torch.is_tensor(t) else t)
                for t in token_embeddings
            ]
        else:
            emb = (
                token_embeddings
                if torch.is_tensor(token_embeddings)
                else torch.as_tensor(np.asarray(token_embeddings))
            )
            if emb.ndim == 3:
                tables = list(emb)
            elif emb.ndim == 2 and emb.shape[0] == self.vocab_size:
                starts = N_SPECIAL_TOKENS + self.offsets
                tables = [
                    emb[s : s + size] for s, size in zip(starts, self.codebook_sizes, strict=True)
                ]
            else:
                raise ValueError(
                    f"token_embeddings of shape {tuple(emb.shape)}: give the token table (vocab_size="
                    f"{self.vocab_size}, dim), an array (n_digits, W, dim) or a list of per-digit tables"
                )
        if len(tables) != self.n_digits or any(
            t.shape[0] != s for t, s in zip(tables, self.codebook_sizes, strict=True)
        ):
            raise ValueError(
                f"expected {self.n_digits} per-digit tables with {list(self.codebook_sizes)} rows"
            )
        return [t.detach().to(device=device, dtype=torch.float32) for t in tables]

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        """Key numbers of the table, JSON-ready (for metrics.json and notebook tables)."""
        return {
            "n_items": self.n_items,
            "n_digits": self.n_digits,
            "n_base_digits": self.n_base_digits,
            "dedup": self.dedup,
            "codebook_sizes": list(self.codebook_sizes),
            "vocab_size": self.vocab_size,
            "n_unique_base": self.n_unique_base,
            "collision_rate": self.collision_rate,
            "n_colliding_items": self.n_colliding_items,
            "largest_collision_group": self.largest_collision_group,
            "dedup_size": self.dedup_size,
        }

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        return (
            f"SemanticIDs(n_items={self.n_items}, n_digits={self.n_digits}, dedup={self.dedup}, "
            f"collision_rate={self.collision_rate:.4f}, vocab_size={self.vocab_size})"
        )


def dedup_digit(codes: np.ndarray) -> np.ndarray:
    """Per item, its rank (0, 1, 2, ...) among the items with the same code row, in item order."""
    codes = np.asarray(codes)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")  # items grouped, item order kept inside a group
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, sorted_group.size]))
    rank = np.empty_like(group)
    rank[order] = np.arange(group.size) - first
    return rank.astype(np.int64)


def _top_k_rows(sim: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest values of each row, largest first; ties -> lower index first."""
    n = sim.shape[1]
    if k < n:
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        kth = sim[np.arange(sim.shape[0])[:, None], part].min(
            axis=1, keepdims=True
        )  # k-th largest value
        above = sim > kth
        tie = sim == kth
        need = k - above.sum(axis=1, keepdims=True)
        keep = above | (tie & (np.cumsum(tie, axis=1) <= need))  # lowest-index ties first
        cand = np.nonzero(keep)[1].reshape(sim.shape[0], k)  # row-major: increasing index per row
    else:
        cand = np.broadcast_to(np.arange(n), sim.shape)
    vals = np.take_along_axis(sim, cand, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")  # stable: equal values stay in index order
    return np.take_along_axis(cand, order, axis=1)
