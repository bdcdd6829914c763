"""Efficiency study: latency, throughput, training speed and peak memory of the SID models.

    python -m handbook.bench                      # make bench: the full grid, bench/results-<device>.json
    python -m handbook.bench --quick              # reading size (notebook 10), into runs/bench/
    python -m handbook.bench --device cuda --out bench/

What is measured, on the package's own models, untrained (latency does not depend on
the weights' values) and at the papers' dimensions by default:

* inference, per user, at batch 1 (latency) and at a batch of `batch_size` users
  (throughput), for four ways of turning a history into a top-k list:
  `tiger_beam` (TIGER, 3 digits x 256 codes + the de-duplication digit, constrained beam
  search through `TIGER.recommend`, history 20 items), `rpg_exact` (RPG, OPQ-like codes of
  m digits x 256, every item scored by `RPG.scores`, then top-k, history 50),
  `rpg_graph` (RPG's digit log-probs, then `handbook.decoding.graph.graph_decode`, 20
  beams / 200 edges / 3 steps by default) and `acerec_exact` (ACERec, r = 4 latents, exact
  holistic scores, then top-k);
* along three axes: catalogue size (10k, 100k, 1M items, every method), beam size
  (TIGER beams, graph-decoding beams) and SID length m (RPG and ACERec);
* training throughput: samples (training rows) and targets (labelled next items) per
  second of AdamW steps on `model.loss(batch)`, batches from the models' `make_batches`;
* peak memory of each measurement, above what was held before it (model, catalogue,
  graph): `torch.cuda.max_memory_allocated` on CUDA; on CPU the peak resident set size
  polled every millisecond by a thread (psutil), after `malloc_trim` has given freed
  memory back, so an approximation that can miss very short peaks;
* what is built once per catalogue, apart: the SID table with its trie, the item graph
  and ACERec's item table.

Catalogues are made by sampling codes uniformly at random per digit (`sample_codes`,
seeded). Choices a reader should know about, because the package's defaults would not
fit a benchmark of 1M items on a CPU:

* **graph**: `SemanticIDs.knn_graph` is exact and O(n_items^2) (about 10 s for 10k
  items at m = 32 on a 2-core CPU, so a day or more at 1M). Graph decoding's cost depends on the
  number of beams, edges and steps, not on how the edges were found, so the decoding
  cells use a random graph (`random_graph`: `n_edges` uniform random other items per
  item). The exact graph's build time is measured for catalogues up to
  `exact_graph_max_items` and extrapolated quadratically above (records with
  `estimated: true`).
* **ACERec's item table**: `ACERec.scores` compares the user's intent with every item's
  merged representation (`ACERec.item_keys`, merged once per set of weights). The benchmark
  builds that table itself (`acerec_item_table`), times it as a build cost and passes it
  to `ACERec.scores(histories, item_keys=...)`.
  Above `acerec_table_max_items` items (CPU default 10k; merging 1M items would take
  minutes) the table holds the first items' real representations repeated to the
  catalogue's size: scoring cost depends on the table's shape, not its values; the build
  time is then extrapolated linearly.
* TIGER's beam search recomputes the decoder over the prefix at every digit (no KV
  cache, see `handbook.models.tiger`), and `graph_decode` keeps a (batch, n_items)
  visited mask on every call: both are measured as they are. The bench's own graph is
  valid by construction, so its per-call range check (`check=False`) is skipped.
* `threads` (`--threads`) sets torch's CPU threads for the run (recorded in the machine
  description). On a machine whose cores are busy with other processes, fewer threads
  than cores avoid oversubscription, which can make small operations 100x slower.

A cell that cannot run is recorded with `status: "skipped"` and its reason, never left
out: a resource error (out of memory), a graph that would not fit in memory, or a batched
call whose estimated time (batch-1 latency x batch size) exceeds `max_call_s`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from handbook.decoding.graph import graph_decode
from handbook.device import cpu_model, resolve_device
from handbook.io import write_json_atomic
from handbook.models import RPG, TIGER, ACERec
from handbook.paths import resolve
from handbook.sid import SemanticIDs

SCHEMA_VERSION = 1
#: inference methods, in plotting order
METHODS = ("tiger_beam", "rpg_exact", "rpg_graph", "acerec_exact")
#: models whose training throughput is measured
TRAIN_METHODS = ("tiger", "rpg", "acerec")
#: inference axes and the methods each one sweeps
AXIS_METHODS = {
    "catalogue": METHODS,
    "beam": ("tiger_beam", "rpg_graph"),
    "sid_length": ("rpg_exact", "rpg_graph", "acerec_exact"),
}
METHOD_LABELS = {
    "tiger_beam": "TIGER beam search",
    "rpg_exact": "RPG exact scoring",
    "rpg_graph": "RPG graph decoding",
    "acerec_exact": "ACERec exact scoring",
    "tiger": "TIGER",
    "rpg": "RPG",
    "acerec": "ACERec",
}
AXIS_LABELS = {
    "catalogue": "catalogue size (items)",
    "beam": "beam size",
    "sid_length": "SID length m (digits)",
}
_AXIS_FIELD = {"catalogue": "n_items", "beam": "beam", "sid_length": "sid_length"}


# ---------------------------------------------------------------------------- configuration
@dataclass
class BenchConfig:
    """Sizes of one benchmark run; `BenchConfig()` is `make bench`, `BenchConfig.quick()` the reading size."""

    catalogue_sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    fixed_catalogue: int = 100_000  # catalogue of the beam, SID-length and training cells
    sid_lengths: list[int] = field(default_factory=lambda: [8, 16, 32, 64])  # RPG / ACERec m
    default_sid_length: int = 32  # m of the catalogue and beam cells (RPG on Beauty: 32)
    tiger_digits: int = 3  # TIGER's tokenizer digits (+ 1 de-duplication digit)
    codebook_size: int = 256  # codes per digit, every model
    tiger_beams: list[int] = field(default_factory=lambda: [10, 20, 50])
    default_tiger_beam: int = 20
    graph_beams: list[int] = field(default_factory=lambda: [10, 20, 50])
    default_graph_beam: int = 20  # RPG's paper scale: 20 beams, 200 edges, 3 steps
    graph_edges: int = 200
    propagation_steps: int = 3
    top_k: int = 10  # items each recommender returns
    batch_size: int | str = "auto"  # users per batched call; "auto": 256 on CUDA, 32 otherwise
    repeats: int = 5  # timed batch-1 calls (each a different user), after one warm-up
    batch_repeats: int = 2  # timed batched calls, after one warm-up
    max_call_s: float = 120.0  # skip a batched cell whose estimated call time exceeds this
    train_sid_lengths: list[int] = field(default_factory=lambda: [8, 16, 32, 64])
    train_batch_size: int | str = "auto"  # rows per training step; "auto": 256 on CUDA, 32 otherwise
    train_steps: int = 2  # timed optimizer steps, after one warm-up step
    tiger_history: int = 20  # items of history (TIGER: 20)
    rpg_history: int = 50  # items of history (RPG, ACERec: 50)
    exact_graph_max_items: int = 10_000  # exact k-NN graph timed up to here, extrapolated above
    acerec_table_max_items: int | str = "auto"  # ACERec items merged for real; "auto": 10k CPU, all on CUDA
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    train_methods: list[str] = field(default_factory=lambda: list(TRAIN_METHODS))
    tiger_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides of TIGER's (paper) defaults
    rpg_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides of RPG's defaults
    acerec_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides of ACERec's defaults
    threads: int | None = None  # torch CPU threads during the run; None keeps torch's default
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """Reading size: 10k and 100k items, two SID lengths and beams; minutes on a laptop CPU."""
        sizes = {
            "catalogue_sizes": [10_000, 100_000],
            "fixed_catalogue": 10_000,
            "sid_lengths": [8, 32],
            "tiger_beams": [10, 20],
            "graph_beams": [10, 20],
            "repeats": 3,
            "batch_repeats": 1,
            "train_sid_lengths": [32],
        }
        return cls(**{**sizes, **overrides})

    def validate(self) -> None:
        """Raise a ValueError naming the first parameter that cannot be benchmarked."""

        def positive(name: str, values: Iterable[Any], low: int = 1) -> None:
            values = list(values)
            if not values:
                raise ValueError(f"{name} is empty: give at least one value")
            for value in values:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                    raise ValueError(f"{name} must hold integers >= {low}, got {value!r}")

        positive("catalogue_sizes", self.catalogue_sizes, low=2)
        positive("fixed_catalogue", [self.fixed_catalogue], low=2)
        positive("sid_lengths", self.sid_lengths)
        positive("train_sid_lengths", self.train_sid_lengths)
        positive("default_sid_length", [self.default_sid_length])
        positive("tiger_digits", [self.tiger_digits])
        positive("codebook_size", [self.codebook_size], low=2)
        positive("tiger_beams", self.tiger_beams)
        positive("graph_beams", self.graph_beams)
        positive("default_tiger_beam", [self.default_tiger_beam])
        positive("default_graph_beam", [self.default_graph_beam])
        positive("graph_edges", [self.graph_edges])
        positive("propagation_steps", [self.propagation_steps], low=0)
        positive("top_k", [self.top_k])
        positive("repeats", [self.repeats])
        positive("batch_repeats", [self.batch_repeats])
        positive("train_steps", [self.train_steps])
        positive("tiger_history", [self.tiger_history])
        positive("rpg_history", [self.rpg_history])
        if self.threads is not None:
            positive("threads", [self.threads])
        positive("exact_graph_max_items", [self.exact_graph_max_items])
        for name in ("batch_size", "train_batch_size", "acerec_table_max_items"):
            value = getattr(self, name)
            if value != "auto":
                positive(name, [value])
        if not self.max_call_s > 0:
            raise ValueError(f"max_call_s must be > 0 seconds, got {self.max_call_s!r}")
        for name, allowed in (("methods", METHODS), ("train_methods", TRAIN_METHODS)):
            unknown = [m for m in getattr(self, name) if m not in allowed]
            if unknown:
                raise ValueError(f"{name} has unknown {unknown}: choose from {list(allowed)}")

    def resolved(self, device: torch.device) -> BenchConfig:
        """A copy with every "auto" replaced by its value on `device`."""
        cuda = device.type == "cuda"
        auto = {
            "batch_size": 256 if cuda else 32,
            "train_batch_size": 256 if cuda else 32,
            "acerec_table_max_items": max(self.catalogue_sizes + [self.fixed_catalogue]) if cuda else 10_000,
        }
        return replace(self, **{k: v for k, v in auto.items() if getattr(self, k) == "auto"})


# ---------------------------------------------------------------------------- catalogues
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


def _histories(rng: np.random.Generator, n_items: int, rows: int, length: int) -> torch.Tensor:
    """Full random histories (rows, length) of item ids 1..n_items."""
    return torch.from_numpy(rng.integers(1, n_items + 1, size=(rows, length)))


# ---------------------------------------------------------------------------- ACERec with a cached item table
@torch.no_grad()
def acerec_item_table(model: ACERec, max_items: int | None = None) -> tuple[torch.Tensor, int]:
    """ACERec's item keys (n_items, D) for `model.scores(h, item_keys=...)`, and how many were merged for real.

    With `max_items` < n_items only the first `max_items` items are merged and their rows
    repeated to n_items rows (a table of the right shape for timing, see the module docstring).
    """
    n = model.n_items
    real = n if max_items is None else max(1, min(n, max_items))
    device = model.item_tokens.device
    step = model.score_batch_size  # the model's own chunk: (chunk, m, D) activations
    parts = [
        model.item_representations(torch.arange(start + 1, min(start + step, real) + 1, device=device))
        for start in range(0, real, step)
    ]
    keys = F.normalize(torch.cat(parts), dim=-1)  # (real, D)
    if real < n:
        keys = keys.repeat(math.ceil(n / real), 1)[:n]
    return keys, real


def exact_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Item ids (B, k) of the k best scores of (B, n_items + 1) with a -inf padding column 0."""
    return scores.topk(k, dim=1).indices


# ---------------------------------------------------------------------------- measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so that RSS peaks are not hidden by reuse."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Context manager: peak memory above the level at entry (`peak_mb`) and that level (`held_mb`)."""

    def __init__(self, device: torch.device, interval_s: float = 0.001) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.held_mb = 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            gc.collect()
            _malloc_trim()
            self._process = psutil.Process()
            self._before = self._max = self._process.memory_info().rss
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            _sync(self.device)
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._process.memory_info().rss)
        self.peak_mb = max(0, peak - self._before) / 2**20
        self.held_mb = self._before / 2**20


def time_calls(fn: Callable[[Any], Any], inputs: Sequence[Any], device: torch.device) -> list[float]:
    """Wall seconds of `fn(x)` for each x of `inputs`, synchronising the device around each call."""
    seconds = []
    for x in inputs:
        _sync(device)
        tick = time.perf_counter()
        fn(x)
        _sync(device)
        seconds.append(max(time.perf_counter() - tick, 1e-9))
    return seconds


def _is_resource_error(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- the plan
def requested_cells(config: BenchConfig) -> list[dict[str, Any]]:
    """Every (kind, method, axis, values) cell the config asks for; each must end up in the records."""
    cells = []
    tiger_m = config.tiger_digits

    def add(method: str, axis: str, n: int, m: int, beam: int | None, kind: str = "inference") -> None:
        cell = {"kind": kind, "method": method, "axis": axis, "n_items": n, "sid_length": m, "beam": beam}
        if cell not in cells:
            cells.append(cell)

    default_beam = {"tiger_beam": config.default_tiger_beam, "rpg_graph": config.default_graph_beam}
    for method in config.methods:
        m = tiger_m if method == "tiger_beam" else config.default_sid_length
        for n in config.catalogue_sizes:
            add(method, "catalogue", n, m, default_beam.get(method))
        if method in AXIS_METHODS["beam"]:
            beams = config.tiger_beams if method == "tiger_beam" else config.graph_beams
            for beam in beams:
                add(method, "beam", config.fixed_catalogue, m, beam)
        if method in AXIS_METHODS["sid_length"]:
            for length in config.sid_lengths:
                add(method, "sid_length", config.fixed_catalogue, length, default_beam.get(method))
    for method in config.train_methods:
        lengths = [tiger_m] if method == "tiger" else config.train_sid_lengths
        for length in lengths:
            add(method, "training", config.fixed_catalogue, length, None, kind="training")
    return cells


def _settings(cells: list[dict[str, Any]]) -> dict[tuple, list[str]]:
    """Distinct measurements (kind, method, n_items, sid_length, beam) -> the axes they serve."""
    settings: dict[tuple, list[str]] = {}
    for c in cells:
        key = (c["kind"], c["method"], c["n_items"], c["sid_length"], c["beam"])
        settings.setdefault(key, []).append(c["axis"])
    return settings


def missing_cells(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Requested cells with no record (ok or skipped with a reason) at every batch size asked."""
    batch = results["config"]["batch_size"]
    missing = []
    for cell in results["requested"]:
        found = {
            r["batch_size"]
            for r in results["records"]
            if r["kind"] == cell["kind"]
            and r["method"] == cell["method"]
            and cell["axis"] in r["axes"]
            and (r["n_items"], r["sid_length"], r["beam"]) == (cell["n_items"], cell["sid_length"], cell["beam"])
            and (r["status"] == "ok" or r.get("reason"))
        }
        wanted = {1, batch} if cell["kind"] == "inference" else {results["config"]["train_batch_size"]}
        if not wanted <= found:
            missing.append(cell)
    return missing


# ---------------------------------------------------------------------------- records
def _base(kind: str, method: str, axes: list[str], n: int, m: int, beam: int | None) -> dict[str, Any]:
    return {"kind": kind, "method": method, "axes": axes, "n_items": n, "sid_length": m, "beam": beam}


def _inference_record(base: dict, batch: int, seconds: list[float], mem: PeakMemory, **extra: Any) -> dict:
    median = statistics.median(seconds)
    return {
        **base,
        **extra,
        "batch_size": batch,
        "batched": batch != 1,
        "status": "ok",
        "times_s": seconds,
        "batch_seconds": median,
        "latency_ms_per_user": 1000 * median / batch,
        "users_per_s": batch / median,
        "peak_mem_mb": mem.peak_mb,
        "held_mem_mb": mem.held_mb,
    }


def _skipped(base: dict, batch: int, reason: str, **extra: Any) -> dict:
    return {
        **base,
        **extra,
        "batch_size": batch,
        "batched": batch != 1,
        "status": "skipped",
        "reason": reason,
        "times_s": [],
        "batch_seconds": None,
        "latency_ms_per_user": None,
        "users_per_s": None,
        "peak_mem_mb": None,
        "held_mem_mb": None,
    }


def _build_record(what: str, method: str, n: int, m: int, seconds: float | None, **extra: Any) -> dict:
    return {
        "kind": "build",
        "what": what,
        "method": method,
        "axes": [],
        "n_items": n,
        "sid_length": m,
        "beam": None,
        "batch_size": None,
        "status": "ok" if seconds is not None else "skipped",
        "seconds": seconds,
        "estimated": False,
        **extra,
    }


def measure_inference(
    fn: Callable[[torch.Tensor], Any],
    base: dict[str, Any],
    *,
    rng: np.random.Generator,
    n_items: int,
    history: int,
    config: BenchConfig,
    device: torch.device,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Batch-1 and batched records of `fn(histories (B, L)) -> top-k` on random users of the catalogue."""
    extra = extra or {}
    batch = int(config.batch_size)
    records = []
    singles = _histories(rng, n_items, config.repeats + 1, history)  # warm-up user, then one per repeat
    try:
        with torch.no_grad():
            with PeakMemory(device) as mem:
                fn(singles[:1])  # warm-up, also the memory measurement
            seconds = time_calls(fn, [singles[i : i + 1] for i in range(1, config.repeats + 1)], device)
        records.append(_inference_record(base, 1, seconds, mem, **extra))
    except Exception as err:  # noqa: BLE001 - only resource errors become skipped cells
        if not _is_resource_error(err):
            raise
        _free(device)
        reason = f"{type(err).__name__} at batch 1: {str(err).splitlines()[0][:200]}"
        return [_skipped(base, 1, reason, **extra), _skipped(base, batch, reason, **extra)]
    if batch == 1:
        return records
    estimate = statistics.median(seconds) * batch
    if estimate > config.max_call_s:
        reason = (
            f"estimated {estimate:.0f} s per call of {batch} users (batch-1 latency x {batch}) "
            f"exceeds max_call_s={config.max_call_s:g}: raise --max-call-s or lower --batch-size"
        )
        return [*records, _skipped(base, batch, reason, **extra)]
    batches = [_histories(rng, n_items, batch, history) for _ in range(config.batch_repeats + 1)]
    try:
        with torch.no_grad():
            with PeakMemory(device) as mem:
                fn(batches[0])
            seconds = time_calls(fn, batches[1:], device)
        records.append(_inference_record(base, batch, seconds, mem, **extra))
    except Exception as err:  # noqa: BLE001
        if not _is_resource_error(err):
            raise
        _free(device)
        records.append(_skipped(base, batch, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}", **extra))
    return records


def measure_training(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    base: dict[str, Any],
    *,
    targets_per_row: Callable[[tuple[torch.Tensor, ...]], int],
    device: torch.device,
    seed: int,
) -> dict[str, Any]:
    """Samples/s and targets/s of AdamW steps on `model.loss`: the first batch warms up, the rest are timed."""
    torch.manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [tuple(t.to(device) for t in b) for b in batches]

    def step(batch: tuple[torch.Tensor, ...]) -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch).backward()
        optimizer.step()

    rows = int(batches[0][0].shape[0])
    try:
        with PeakMemory(device) as mem:
            step(batches[0])  # warm-up; creates AdamW's state, so its memory counts
        seconds = time_calls(step, batches[1:], device)
    except Exception as err:  # noqa: BLE001
        if not _is_resource_error(err):
            raise
        _free(device)
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        return {**base, "batch_size": rows, "batched": True, "status": "skipped", "reason": reason, "times_s": []}
    median = statistics.median(seconds)
    targets = statistics.mean(targets_per_row(b) for b in batches[1:])
    return {
        **base,
        "batch_size": rows,
        "batched": True,
        "status": "ok",
        "steps": len(seconds),
        "times_s": seconds,
        "step_seconds": median,
        "samples_per_s": rows / median,
        "targets_per_s": targets / median,
        "targets_per_sample": targets / rows,
        "peak_mem_mb": mem.peak_mb,
        "held_mem_mb": mem.held_mb,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }


# ---------------------------------------------------------------------------- machine
def machine_info(device: torch.device, command: str) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, RAM, GPU, versions, threads, date, command."""
    import psutil

    info: dict[str, Any] = {
        "device": device.type,
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu_name": None,
        "gpu_mem_gb": None,
        "cuda_version": torch.version.cuda,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "memory_measure": (
            "torch.cuda.max_memory_allocated above the allocation before each measurement"
            if device.type == "cuda"
            else "peak process RSS above the RSS before each measurement (psutil, polled every 1 ms, "
            "after malloc_trim); approximate"
        ),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_mem_gb"] = round(props.total_memory / 2**30, 1)
    return info


def device_slug(machine: dict[str, Any]) -> str:
    """"cpu", or "cuda-<gpu name lower-cased>", for the results file name."""
    if machine["device"] == "cuda" and machine.get("gpu_name"):
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", machine["gpu_name"].lower()).strip("-")
    return machine["device"]


def _check_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
        raise ValueError(f"device={device!r} is unknown: use 'auto', 'cpu' or 'cuda'")
    return resolve_device(device)


# ---------------------------------------------------------------------------- the run
def run_bench(
    config: BenchConfig | None = None,
    device: str | torch.device = "auto",
    command: str = "handbook.bench.run_bench",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every requested cell of `config` on `device`; return the results (machine, config, records)."""
    config = BenchConfig() if config is None else config
    config.validate()
    dev = _check_device(device)
    config = config.resolved(dev)
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    default_threads = torch.get_num_threads()
    # Oversubscribed cores (other busy processes) make multi-threaded small ops orders of
    # magnitude slower; `threads` lets a shared machine measure with fewer threads.
    torch.set_num_threads(config.threads or default_threads)
    try:
        machine = machine_info(dev, command)
        cells = requested_cells(config)
        settings = _settings(cells)
        records: list[dict[str, Any]] = []
        say(f"{len(cells)} cells on {machine['gpu_name'] or machine['cpu_model']}, {machine['torch_threads']} threads")
        _run_tiger(config, settings, dev, records, say)
        _run_long_sid_models(config, settings, dev, records, say)
        _run_training(config, settings, dev, records, say)
    finally:
        torch.set_num_threads(default_threads)

    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "schema_version": SCHEMA_VERSION,
        "machine": machine,
        "config": asdict(config),
        "requested": cells,
        "records": records,
        "seconds": time.perf_counter() - start,
    }


def _describe(rec: dict[str, Any]) -> str:
    head = f"{rec['method']:<13} n={rec['n_items']:<8} m={rec['sid_length']:<3} beam={rec['beam']!s:<5} B={rec['batch_size']:<4}"
    if rec["status"] != "ok":
        return f"{head} skipped: {rec['reason']}"
    return f"{head} {rec['latency_ms_per_user']:9.2f} ms/user {rec['users_per_s']:9.1f} users/s {rec['peak_mem_mb']:8.1f} MB"


def _sids(config: BenchConfig, n: int, m: int, dedup: bool, records: list, method: str) -> SemanticIDs:
    """SID table (with its trie) of a sampled catalogue; its build time is recorded."""
    seed = config.seed * 1_000_003 + n * 101 + m  # one catalogue per (n, m), the same in every run
    codes = sample_codes(n, m, config.codebook_size, seed=seed)
    tick = time.perf_counter()
    sids = SemanticIDs.from_codes(codes, config.codebook_size, dedup=dedup)
    records.append(
        _build_record(
            "sid_table", method, n, m, time.perf_counter() - tick,
            note="SemanticIDs.from_codes: collision statistics, token offsets and prefix trie",
            collision_rate=sids.collision_rate,
        )
    )  # fmt: skip
    return sids


def _run_tiger(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    wanted = sorted(k for k in settings if k[:2] == ("inference", "tiger_beam"))
    for n in sorted({k[2] for k in wanted}):
        sids = _sids(config, n, config.tiger_digits, True, records, "tiger_beam")
        torch.manual_seed(config.seed)
        model = TIGER(sids, max_items=config.tiger_history, **config.tiger_kwargs).to(dev).eval()
        for key in (k for k in wanted if k[2] == n):
            _, method, _, m, beam = key
            k = min(config.top_k, beam)

            def fn(h: torch.Tensor, model: TIGER = model, beam: int = beam, k: int = k) -> torch.Tensor:
                return model.recommend(h, k=k, beam_size=beam, batch_size=h.shape[0])[0]

            base = _base("inference", method, settings[key], n, m, beam)
            extra = {"decoded_digits": sids.n_digits, "history": config.tiger_history, "top_k": k}
            rng = np.random.default_rng([config.seed, n, m, beam, 1])
            for rec in measure_inference(fn, base, rng=rng, n_items=n, history=config.tiger_history, config=config, device=dev, extra=extra):
                records.append(rec)
                say(_describe(rec))
        del model, sids
        _free(dev)


def _graph_fits(n: int, edges: int, dev: torch.device) -> str | None:
    """None if a (n, edges) int64 graph fits comfortably in memory, else the reason it does not."""
    import psutil

    need = n * edges * 8
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else psutil.virtual_memory().available
    if need > 0.5 * free:
        return f"the {n} x {edges} graph needs {need / 2**30:.1f} GiB, over half the {free / 2**30:.1f} GiB free"
    return None


def _run_long_sid_models(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    families = ("rpg_exact", "rpg_graph", "acerec_exact")
    wanted = sorted(k for k in settings if k[0] == "inference" and k[1] in families)
    graph_cache: dict[int, torch.Tensor | str] = {}
    exact_graph: dict[int, float] = {}
    for n, m in sorted({(k[2], k[3]) for k in wanted}):
        here = [k for k in wanted if (k[2], k[3]) == (n, m)]
        sids = _sids(config, n, m, False, records, "rpg")
        extra = {"history": config.rpg_history, "top_k": config.top_k}

        def measure(key: tuple, fn: Callable, more: dict | None = None, n: int = n, m: int = m, extra: dict = extra) -> None:
            base = _base("inference", key[1], settings[key], n, m, key[4])
            rng = np.random.default_rng([config.seed, n, m, key[4] or 0, METHODS.index(key[1])])
            for rec in measure_inference(fn, base, rng=rng, n_items=n, history=config.rpg_history, config=config, device=dev, extra={**extra, **(more or {})}):
                records.append(rec)
                say(_describe(rec))

        rpg_keys = [k for k in here if k[1] in ("rpg_exact", "rpg_graph")]
        if rpg_keys:
            torch.manual_seed(config.seed)
            model = RPG(sids, max_len=config.rpg_history, **config.rpg_kwargs).to(dev).eval()
            for key in (k for k in rpg_keys if k[1] == "rpg_exact"):
                measure(key, lambda h, model=model: exact_top_k(model.scores(h.to(dev)), config.top_k))
            graph_keys = [k for k in rpg_keys if k[1] == "rpg_graph"]
            if graph_keys and n not in graph_cache:
                graph_cache.clear()  # one catalogue's graph at a time: 1M x 200 edges is 1.6 GB
                _free(dev)
                graph_cache[n] = _graph_fits(n, config.graph_edges, dev) or _timed_random_graph(config, n, dev, records)
            graph = graph_cache.get(n)
            for key in graph_keys:
                beam = key[4]
                more = {"n_edges": config.graph_edges, "propagation_steps": config.propagation_steps, "top_k": min(config.top_k, beam), "graph": "random"}
                if isinstance(graph, str):
                    base = _base("inference", key[1], settings[key], n, m, beam)
                    for batch in sorted({1, int(config.batch_size)}):
                        records.append(_skipped(base, batch, graph, **extra, **more))
                        say(_describe(records[-1]))
                    continue

                def fn(h: torch.Tensor, model: RPG = model, beam: int = beam, graph: torch.Tensor = graph) -> torch.Tensor:
                    log_probs = model.digit_log_probs(h.to(dev))  # (B, m, W)
                    return graph_decode(
                        log_probs, model.codes, graph, num_beams=beam,
                        propagation_steps=config.propagation_steps, k=min(config.top_k, beam), seed=config.seed,
                        check=False,  # a graph built above over these codes; checking costs O(n) a call
                    ).items  # fmt: skip

                measure(key, fn, more)
            if "rpg_graph" in config.methods and m == config.default_sid_length and n in config.catalogue_sizes:
                exact_graph.update(_time_exact_graph(config, sids, model, n, m, dev, records))
            del model
            _free(dev)

        acerec_keys = [k for k in here if k[1] == "acerec_exact"]
        if acerec_keys:
            torch.manual_seed(config.seed)
            model = ACERec(sids, max_len=config.rpg_history, **config.acerec_kwargs).to(dev).eval()
            cap = int(config.acerec_table_max_items)
            _sync(dev)
            tick = time.perf_counter()
            table, real = acerec_item_table(model, cap)
            _sync(dev)
            seconds = time.perf_counter() - tick
            records.append(
                _build_record(
                    "acerec_item_table", "acerec_exact", n, m, seconds * n / real, estimated=real < n,
                    measured_items=real, measured_seconds=seconds,
                    note="merged item representations, computed once for scoring"
                    + ("" if real == n else f"; the first {real} items merged and repeated, time scaled linearly"),
                )
            )  # fmt: skip
            for key in acerec_keys:
                measure(key, lambda h, model=model, table=table: exact_top_k(model.scores(h.to(dev), item_keys=table), config.top_k), {"item_table": "model" if real == n else f"first {real} items repeated"})
            del model, table
            _free(dev)
        del sids
    graph_cache.clear()
    _estimate_exact_graphs(config, exact_graph, records)


def _timed_random_graph(config: BenchConfig, n: int, dev: torch.device, records: list) -> torch.Tensor:
    tick = time.perf_counter()
    graph = random_graph(n, config.graph_edges, seed=config.seed).to(dev)
    _sync(dev)
    records.append(
        _build_record(
            "random_graph", "rpg_graph", n, None, time.perf_counter() - tick, n_edges=config.graph_edges,
            note="n_edges uniform random other items per item, the graph the decoding cells walk",
        )
    )  # fmt: skip
    return graph


def _time_exact_graph(
    config: BenchConfig, sids: SemanticIDs, model: RPG, n: int, m: int, dev: torch.device, records: list
) -> dict[int, float]:
    """Time `SemanticIDs.knn_graph` (RPG similarity) where it is affordable; {n: seconds}."""
    if n > int(config.exact_graph_max_items):
        return {}
    edges = min(config.graph_edges, n - 1)
    _sync(dev)
    tick = time.perf_counter()
    sids.knn_graph(edges, model.token_table().detach(), device=str(dev))
    _sync(dev)
    seconds = time.perf_counter() - tick
    records.append(
        _build_record(
            "exact_knn_graph", "rpg_graph", n, m, seconds, n_edges=edges,
            note="SemanticIDs.knn_graph with RPG's token similarity, O(n_items^2)",
        )
    )  # fmt: skip
    return {n: seconds}


def _estimate_exact_graphs(config: BenchConfig, measured: dict[int, float], records: list) -> None:
    if "rpg_graph" not in config.methods:
        return
    for n in sorted(config.catalogue_sizes):
        if n in measured:
            continue
        m = config.default_sid_length
        if not measured:
            records.append(
                _build_record(
                    "exact_knn_graph", "rpg_graph", n, m, None,
                    reason=f"no catalogue <= exact_graph_max_items={config.exact_graph_max_items} was timed to extrapolate from",
                )
            )  # fmt: skip
            continue
        n0 = max(measured)
        records.append(
            _build_record(
                "exact_knn_graph", "rpg_graph", n, m, measured[n0] * (n / n0) ** 2, estimated=True,
                n_edges=config.graph_edges, note=f"extrapolated quadratically from {n0} items",
            )
        )  # fmt: skip


def _run_training(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    wanted = sorted(k for k in settings if k[0] == "training")
    rows = int(config.train_batch_size)
    for key in wanted:
        _, method, n, m, _ = key
        rng = np.random.default_rng([config.seed, n, m, TRAIN_METHODS.index(method), 2])
        total = rows * (config.train_steps + 1)
        base = _base("training", method, settings[key], n, m, None)
        sids = _sids(config, n, m, method == "tiger", records, method)
        torch.manual_seed(config.seed)
        if method == "tiger":
            model = TIGER(sids, max_items=config.tiger_history, **config.tiger_kwargs)
            histories = rng.integers(1, n + 1, size=(total, config.tiger_history))
            targets = rng.integers(1, n + 1, size=total)
            batches = TIGER.make_batches(histories, targets, sids, rows, seed=config.seed, shuffle=False)

            def per_batch(b: tuple) -> int:
                return int(b[1].shape[0])  # one target item per row
        else:
            cls = RPG if method == "rpg" else ACERec
            kwargs = config.rpg_kwargs if method == "rpg" else config.acerec_kwargs
            model = cls(sids, max_len=config.rpg_history, **kwargs)
            # sequences of history + 1 items: one window per row, every position labelled
            sequences = list(rng.integers(1, n + 1, size=(total, config.rpg_history + 1)))
            batches = RPG.make_batches(sequences, config.rpg_history, rows, seed=config.seed, shuffle=False)

            def per_batch(b: tuple) -> int:
                return int((b[1] != 0).sum())  # labelled positions
        rec = measure_training(model, batches, base, targets_per_row=per_batch, device=dev, seed=config.seed)
        records.append(rec)
        if rec["status"] == "ok":
            say(f"train {method:<7} n={n} m={m} B={rows}: {rec['samples_per_s']:.1f} samples/s, {rec['targets_per_s']:.0f} targets/s, {rec['peak_mem_mb']:.0f} MB")
        else:
            say(f"train {method:<7} n={n} m={m} skipped: {rec['reason']}")
        del model, batches, sids
        _free(dev)


# ---------------------------------------------------------------------------- files
def write_results(results: dict[str, Any], out_dir: str | os.PathLike = "bench") -> Path:
    """Write `results` to OUT_DIR/results-<device>.json atomically; return the path."""
    path = resolve(out_dir) / f"results-{device_slug(results['machine'])}.json"
    return write_json_atomic(path, results)


def load_results(folder: str | os.PathLike = "bench") -> dict[str, dict[str, Any]]:
    """Every results-*.json of `folder` (relative to the repository root): {file stem: results}."""
    import json

    folder = resolve(folder)
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("results-*.json"))
    }


def describe_machine(results: dict[str, Any]) -> str:
    """One line on where and when the results were measured, and how long the run took."""
    m = results["machine"]
    where = f"{m['gpu_name']} ({m['gpu_mem_gb']} GB)" if m.get("gpu_name") else f"{m['cpu_model']} CPU"
    load = f", load average {m['load_average'][0]:.1f} at start" if m.get("load_average") else ""
    return (
        f"{where}; {m['cpu_cores_logical']} logical cores, {m['ram_gb']} GB RAM, {m['torch_threads']} torch "
        f"threads, torch {m['torch_version']}, {m['date'][:10]}{load}; `{m['command']}` took "
        f"{results['seconds'] / 60:.1f} min"
    )


def records_frame(results: dict[str, Any], kind: str = "inference"):
    """The records of one kind ("inference", "training", "build") as a pandas DataFrame."""
    import pandas as pd

    rows = [r for r in results["records"] if r["kind"] == kind]
    frame = pd.DataFrame(rows)
    if "axes" in frame:
        frame["axes"] = frame["axes"].map(lambda axes: ",".join(axes))
    return frame.drop(columns=["times_s"], errors="ignore")


def axis_series(
    results: dict[str, Any], axis: str, quantity: str = "latency_ms_per_user", batched: bool = False
) -> dict[str, tuple[list, list]]:
    """{method: (x values, quantity)} of the ok inference records of `axis`, sorted by x."""
    out: dict[str, tuple[list, list]] = {}
    field_name = _AXIS_FIELD[axis]
    for method in AXIS_METHODS[axis]:
        points = sorted(
            (r[field_name], r[quantity])
            for r in results["records"]
            if r["kind"] == "inference" and r["method"] == method and axis in r["axes"]
            and r["batched"] == batched and r["status"] == "ok"
        )  # fmt: skip
        if points:
            out[method] = ([p[0] for p in points], [p[1] for p in points])
    return out


def axis_table(
    results: dict[str, Any], axis: str, quantity: str = "latency_ms_per_user", batched: bool = False
):
    """`axis_series` as a DataFrame: one row per axis value, one column per method (labels)."""
    import pandas as pd

    columns = {
        METHOD_LABELS[method]: pd.Series(y, index=x)
        for method, (x, y) in axis_series(results, axis, quantity, batched).items()
    }
    table = pd.DataFrame(columns)
    table.index.name = _AXIS_FIELD[axis]
    return table


def _short(n: float) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % size == 0:
            return f"{n // size:g}{suffix}"
    return f"{n:g}"


def _log_axes(ax, x_values: list, x_log_base: int | None) -> None:
    """Log y with plain-number labels; x ticks at the measured values."""
    from matplotlib import ticker

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if x_log_base:
        ax.set_xscale("log", base=x_log_base)
    if x_values:
        ax.set_xticks(x_values, [_short(x) for x in x_values])
        ax.xaxis.set_minor_locator(ticker.NullLocator())


def plot_axis(ax, results: dict[str, Any], axis: str, quantity: str = "latency_ms_per_user", batched: bool = False) -> None:
    """One line per method of `quantity` along `axis` (log scales where the axis spans decades)."""
    from handbook.plotting import PALETTE

    series = axis_series(results, axis, quantity, batched)
    for method, (x, y) in series.items():
        ax.plot(x, y, "o-", label=METHOD_LABELS[method], color=PALETTE[METHODS.index(method)])
    x_values = sorted({x for xs, _ in series.values() for x in xs})
    _log_axes(ax, x_values, {"catalogue": 10, "sid_length": 2}.get(axis))
    ax.set_xlabel(AXIS_LABELS[axis])
    batch = results["config"]["batch_size"]
    ax.set_ylabel(
        {"latency_ms_per_user": "ms per user", "users_per_s": "users per second", "peak_mem_mb": "peak memory (MB)"}.get(quantity, quantity)
        + (f", batch {batch}" if batched else ", batch 1")
    )


def plot_pair(results: dict[str, Any], axis: str, batched_quantity: str = "users_per_s"):
    """Batch-1 latency (left) and a batched quantity (right) along one axis; returns the figure."""
    from handbook import plotting

    fig, (left, right) = plotting.subplots(ncols=2, width=4.8, height=3.4)
    plot_axis(left, results, axis, "latency_ms_per_user", batched=False)
    plot_axis(right, results, axis, batched_quantity, batched=True)
    left.legend(fontsize=8)
    return fig


def plot_overview(results: dict[str, Any], title: str | None = None):
    """Batch-1 latency (top) and batched throughput (bottom) along the three axes; returns the figure."""
    from handbook import plotting

    fig, axes = plotting.subplots(ncols=3, nrows=2, width=4.2, height=3.0)
    for col, axis in enumerate(AXIS_METHODS):
        plot_axis(axes[0, col], results, axis, "latency_ms_per_user", batched=False)
        plot_axis(axes[1, col], results, axis, "users_per_s", batched=True)
    handles, labels = {}, {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
            labels[lab] = lab
    fig.legend(list(handles.values()), list(labels), loc="outside lower center", ncols=4)
    if title:
        fig.suptitle(title)
    return fig


def plot_training(ax, results: dict[str, Any], quantity: str = "targets_per_s") -> None:
    """Training `quantity` (targets_per_s or samples_per_s) against SID length, one line per model."""
    from handbook.plotting import PALETTE

    lengths = set()
    for i, method in enumerate(TRAIN_METHODS):
        points = sorted(
            (r["sid_length"], r[quantity])
            for r in results["records"]
            if r["kind"] == "training" and r["method"] == method and r["status"] == "ok"
        )
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=METHOD_LABELS[method], color=PALETTE[i])
            lengths.update(p[0] for p in points)
    _log_axes(ax, sorted(lengths), 2)
    ax.set_xlabel("SID length (digits)")
    ax.set_ylabel(quantity.replace("_per_s", " per second") + f", batch {results['config']['train_batch_size']}")
    ax.legend()


# ---------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (`make bench`); returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reading size (notebook 10), written under runs/bench/")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/, runs/bench/ with --quick)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="inference methods to run")
    parser.add_argument("--batch-size", type=int, default=None, help="users per batched call (default 256 on CUDA, 32 otherwise)")
    parser.add_argument("--repeats", type=int, default=None, help="timed batch-1 calls per cell")
    parser.add_argument("--max-call-s", type=float, default=None, help="skip batched calls estimated longer than this")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {"seed": args.seed}
    for name in ("methods", "batch_size", "repeats", "max_call_s", "threads"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    try:
        config = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
        command = " ".join(["python -m handbook.bench", *(sys.argv[1:] if argv is None else argv)])
        results = run_bench(config, device=args.device, command=command, log=lambda msg: print(msg, flush=True))
    except ValueError as err:
        parser.error(str(err))
    path = write_results(results, args.out or ("runs/bench" if args.quick else "bench"))
    missing = missing_cells(results)
    skipped = sum(r["status"] != "ok" for r in results["records"])
    print(f"wrote {path} ({len(results['records'])} records, {skipped} skipped) in {results['seconds'] / 60:.1f} min")
    if missing:
        print(f"{len(missing)} requested cells have no record: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
