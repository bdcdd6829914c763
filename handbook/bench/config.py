"""What one benchmark run measures: its sizes (`BenchConfig`) and the cells they ask for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

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
    tiger_uncached: bool = True  # also time TIGER's beam axis without its KV cache (records of kind "uncached")
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
    train_precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16"])  # bf16: autocast
    # (n, k, m) of the matmul timed in each precision first: RPG's states (hidden 448) through its FFN
    precision_matmul: list[int] = field(default_factory=lambda: [4096, 448, 1024])
    tiger_history: int = 20  # items of history (TIGER: 20)
    rpg_history: int = 50  # items of history (RPG, ACERec: 50)
    exact_graph_max_items: int = 10_000  # exact k-NN graph timed up to here, extrapolated above
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
            "train_precisions": ["fp32"],
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
        positive("precision_matmul", self.precision_matmul)
        if len(self.precision_matmul) != 3:
            raise ValueError(f"precision_matmul must be three sizes (n, k, m), got {self.precision_matmul!r}")
        positive("tiger_history", [self.tiger_history])
        positive("rpg_history", [self.rpg_history])
        if self.threads is not None:
            positive("threads", [self.threads])
        positive("exact_graph_max_items", [self.exact_graph_max_items])
        for name in ("batch_size", "train_batch_size"):
            value = getattr(self, name)
            if value != "auto":
                positive(name, [value])
        if not self.max_call_s > 0:
            raise ValueError(f"max_call_s must be > 0 seconds, got {self.max_call_s!r}")
        for name, allowed in (("methods", METHODS), ("train_methods", TRAIN_METHODS), ("train_precisions", ("fp32", "bf16"))):
            unknown = [m for m in getattr(self, name) if m not in allowed]
            if unknown:
                raise ValueError(f"{name} has unknown {unknown}: choose from {list(allowed)}")

    def resolved(self, device: torch.device) -> BenchConfig:
        """A copy with every "auto" replaced by its value on `device`."""
        cuda = device.type == "cuda"
        auto = {
            "batch_size": 256 if cuda else 32,
            "train_batch_size": 256 if cuda else 32,
        }
        return replace(self, **{k: v for k, v in auto.items() if getattr(self, k) == "auto"})


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


def cell_settings(cells: list[dict[str, Any]]) -> dict[tuple, list[str]]:
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
