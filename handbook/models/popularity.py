"""Most-popular baseline: recommend the items seen most often in training, to everyone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch


class MostPopular:
    """Scores every item by its training frequency, ignoring the user's history."""

    def __init__(self) -> None:
        self.n_items: int | None = None
        self.counts: np.ndarray | None = None  # (n_items + 1,) interactions per item id; [0] = 0
        self._scores: torch.Tensor | None = None  # (n_items + 1,)

    def fit(
        self,
        data: Iterable[Sequence[int] | np.ndarray] | np.ndarray | torch.Tensor,
        n_items: int,
    ) -> MostPopular:
        """Count item frequencies from training sequences, or take ready counts of shape (n_items + 1,).

        A 1-D NumPy array or tensor is read as counts indexed by item id; anything
        else is read as an iterable of item-id sequences (0 entries are padding).
        """
        if isinstance(data, (np.ndarray, torch.Tensor)) and np.ndim(data) == 1:
            counts = np.asarray(data, dtype=np.float64).copy()
            if counts.shape[0] != n_items + 1:
                raise ValueError(
                    f"counts must have length n_items + 1 = {n_items + 1} (index = item id), got {counts.shape[0]}"
                )
        else:
            counts = np.zeros(n_items + 1, dtype=np.float64)
            for seq in data:
                ids = np.asarray(seq, dtype=np.int64).reshape(-1)
                if ids.size and (ids.min() < 0 or ids.max() > n_items):
                    raise ValueError(f"a training sequence holds ids outside 0..{n_items}")
                counts += np.bincount(ids, minlength=n_items + 1)
        counts[0] = 0.0
        self.n_items = n_items
        self.counts = counts
        # Turn counts into distinct scores (more popular first, then lower id first), so
        # that pessimistic tie counting in the metrics does not punish equally popular items.
        order = np.lexsort((np.arange(n_items + 1), -counts))  # position 0 = most popular
        scores = np.empty(n_items + 1, dtype=np.float32)
        scores[order] = np.arange(n_items + 1, 0, -1, dtype=np.float32)
        scores[0] = -np.inf
        self._scores = torch.from_numpy(scores)
        return self

    def top_items(self, k: int) -> np.ndarray:
        """Return the k most popular item ids, most popular first."""
        scores = self._require_fitted()
        return torch.topk(scores, min(k, scores.shape[0] - 1)).indices.numpy()

    def scores(self, histories: torch.Tensor) -> torch.Tensor:
        """Return (B, n_items + 1) scores, the same row for every user; the pad column is -inf."""
        scores = self._require_fitted()
        return scores.to(histories.device).unsqueeze(0).expand(histories.shape[0], -1)

    def _require_fitted(self) -> torch.Tensor:
        """Return the score vector or say that fit must come first."""
        if self._scores is None:
            raise RuntimeError(
                "MostPopular is not fitted yet: call .fit(train_sequences, n_items) first"
            )
        return self._scores
