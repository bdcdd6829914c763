"""Sequence models and baselines: plain torch.nn modules with `loss(batch)` and `scores(histories)`."""

from handbook.models.popularity import MostPopular
from handbook.models.sasrec import SASRec

__all__ = ["MostPopular", "SASRec"]
