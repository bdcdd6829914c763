"""Semantic-ID tokenizers: vectors (n, d) -> codes (n, n_digits) -> approximate vectors.

| name      | class        | paper        | digits                         |
| --------- | ------------ | ------------ | ------------------------------ |
| "rkmeans" | `RKMeans`    | GRID         | n_levels (3) x width (256)     |
| "rvq"     | `ResidualVQ` | GRID         | n_levels (3) x width (256)     |
| "rqvae"   | `RQVAE`      | TIGER        | n_levels (3) x width (256)     |
| "pq"      | `PQ`         | RPG / ACERec | m (4-64) x 2**nbits (256)      |
| "opq"     | `OPQ`        | RPG / ACERec | m (4-64) x 2**nbits (256)      |
"""

from __future__ import annotations

from .base import Tokenizer, codes_perplexity
from .pq import OPQ, PQ
from .rkmeans import RKMeans
from .rqvae import RQVAE
from .rvq import ResidualVQ

TOKENIZERS: dict[str, type[Tokenizer]] = {
    "rkmeans": RKMeans,
    "rvq": ResidualVQ,
    "rqvae": RQVAE,
    "pq": PQ,
    "opq": OPQ,
}


def make_tokenizer(name: str, **kwargs) -> Tokenizer:
    """Build a tokenizer by name ("rkmeans", "rvq", "rqvae", "pq", "opq") with its keyword arguments."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; choose one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[key](**kwargs)


__all__ = [
    "OPQ",
    "PQ",
    "RQVAE",
    "TOKENIZERS",
    "RKMeans",
    "ResidualVQ",
    "Tokenizer",
    "codes_perplexity",
    "make_tokenizer",
]
