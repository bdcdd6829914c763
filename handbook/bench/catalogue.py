"""Synthetic catalogues: codes sampled per digit, their SID table, random item graphs and histories."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from handbook.bench.config import BenchConfig
from handbook.bench.measure import build_record
from handbook.sid import SemanticIDs


def sample_codes(
    n_items: int, n_digits: int, codebook_size: int, seed: int, distinct: bool = False
) -> np.ndarray:
    """Codes (n_items, n_digits) uniform per digit in [0, codebook_size); all rows different if `distinct`."""
    for name, value, low in (("n_items", n_items, 1), ("n_digits", n_digits, 1), ("codebook_size", codebook_size, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if distinct and n_digits * math.log(codebook_size) < math.log(n_items):
        raise ValueError(
            f"{n_items} distinct codes need more than {codebook_size}^{n_digits} combinations: "
            "raise n_digits or codebook_size"
        )
    rng = np.random.default_rng(seed)
    dtype = np.int16 if codebook_size <= 2**15 else np.int64  # 1M x 64 codes: 128 MB, not 512
    codes = rng.integers(0, codebook_size, size=(n_items, n_digits), dtype=dtype)
    while distinct:
        _, first = np.unique(codes, axis=0, return_index=True)
        repeated = np.setdiff1d(np.arange(n_items), first)
        if repeated.size == 0:
            break
        codes[repeated] = rng.integers(0, codebook_size, size=(repeated.size, n_digits), dtype=dtype)
    return codes


def random_graph(n_items: int, n_edges: int, seed: int) -> torch.Tensor:
    """(n_items, n_edges) int64: each item's `n_edges` uniform random *other* items (repeats possible).

    Stands in for `SemanticIDs.knn_graph` where the exact graph (O(n_items^2)) is too slow
    to build: graph decoding costs the same on any graph of the same degree. Repeated
    neighbours are rare for large catalogues and `graph_decode` deduplicates candidates.
    """
    if n_items < 2 or n_edges < 1:
        raise ValueError(f"need n_items >= 2 and n_edges >= 1, got {n_items} and {n_edges}")
    gen = torch.Generator().manual_seed(seed)
    graph = torch.randint(0, n_items - 1, (n_items, n_edges), generator=gen)  # (n, e)
    # shift draws at or above the row's own index up by one: uniform over the other items
    graph += graph >= torch.arange(n_items).unsqueeze(1)
    return graph


def random_histories(rng: np.random.Generator, n_items: int, rows: int, length: int) -> torch.Tensor:
    """Full random histories (rows, length) of item ids 1..n_items."""
    return torch.from_numpy(rng.integers(1, n_items + 1, size=(rows, length)))


def sid_table(config: BenchConfig, n: int, m: int, dedup: bool, records: list, method: str) -> SemanticIDs:
    """SID table (with its trie) of a sampled catalogue; its build time is recorded."""
    seed = config.seed * 1_000_003 + n * 101 + m  # one catalogue per (n, m), the same in every run
    codes = sample_codes(n, m, config.codebook_size, seed=seed)
    tick = time.perf_counter()
    sids = SemanticIDs.from_codes(codes, config.codebook_size, dedup=dedup)
    records.append(
        build_record(
            "sid_table", method, n, m, time.perf_counter() - tick,
            note="SemanticIDs.from_codes: collision statistics, token offsets and prefix trie",
            collision_rate=sids.collision_rate,
        )
    )  # fmt: skip
    return sids
