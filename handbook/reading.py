"""The reading configuration of notebooks 05-08, and the baselines every one of them compares against.

Each chapter on a generative model puts most-popular, SASRec and the small TIGER of
`handbook.baselines` beside it. They are trained here, one way, on one history length, so
that the same numbers print in every chapter. Their per-user test ranks (full ranking,
leave-one-out) are cached in `.cache/reading/` under the dataset, the seed, the device,
this configuration and a hash of the code that trains them: a later chapter reuses an
earlier chapter's run, and any change to that code trains them again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import handbook
from handbook.baselines import train_sasrec, train_small_tiger
from handbook.data import items_in_order, load_dataset, prepare
from handbook.decoding.beam import generative_ranks
from handbook.device import resolve_device
from handbook.embed import DEFAULT_MODEL, embed_texts, item_texts
from handbook.io import write_json_atomic
from handbook.metrics import rank_all, summarize
from handbook.models import MostPopular
from handbook.paths import cache_dir

#: items of history every model of notebooks 05-08 reads (papers: 20 for TIGER, 50 for SASRec and RPG)
MAX_ITEMS = 5
#: SASRec of `handbook.baselines.train_sasrec`, full-softmax cross-entropy
SASREC = {"epochs": 20, "batch_size": 256, "hidden": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.2, "lr": 1e-3, "patience": 5}
#: the small TIGER of `handbook.baselines.train_small_tiger`: RK-Means 3 x 64 + de-duplication digit, 1 + 1 layers
TIGER = {"epochs": 2, "batch_size": 256, "width": 64, "beam_size": 10}
#: the files whose code decides the baselines' numbers; a change to any of them invalidates the cache
_SOURCES = (
    "reading.py", "baselines.py", "train.py", "metrics.py", "sid.py", "data/preprocess.py",
    "models/popularity.py", "models/sasrec.py", "models/tiger.py", "models/transformer.py",
    "decoding/beam.py", "tokenizers/kmeans.py", "tokenizers/rkmeans.py",
)  # fmt: skip


@dataclass
class Baselines:
    """Per-user 0-based test ranks of each baseline, and the seconds the run that computed them took."""

    ranks: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)
    from_cache: bool = False

    def metrics(self, ks: tuple[int, ...] = (5, 10)) -> pd.DataFrame:
        """Recall@K and NDCG@K of every baseline, one row each."""
        return pd.DataFrame({name: summarize(r, ks) for name, r in self.ranks.items()}).T


def _cache_key(dataset: str, model_name: str, seed: int, device: torch.device, max_items: int) -> str:
    """A hash of everything that decides the baselines' ranks."""
    package = Path(handbook.__file__).parent
    code = hashlib.sha256(b"".join((package / name).read_bytes() for name in _SOURCES)).hexdigest()
    settings = {"dataset": str(dataset), "model": model_name, "seed": seed, "device": device.type,
                "max_items": max_items, "sasrec": SASREC, "tiger": TIGER, "code": code}  # fmt: skip
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def reading_baselines(
    dataset: str = "ml-100k",
    *,
    model_name: str = DEFAULT_MODEL,
    seed: int = 0,
    device: str | torch.device = "auto",
    max_items: int = MAX_ITEMS,
    cache: bool = True,
) -> Baselines:
    """Test ranks of most-popular, SASRec and TIGER (beam 10) at the reading configuration; cached."""
    dev = resolve_device(device)
    path = cache_dir("reading") / f"{_cache_key(dataset, model_name, seed, dev, max_items)}.npz"
    if cache and path.exists():
        with np.load(path) as stored:
            ranks = {name: stored[name] for name in stored.files}
        seconds = json.loads(path.with_suffix(".json").read_text())
        return Baselines(ranks, seconds, from_cache=True)

    ds = load_dataset(dataset)
    data = prepare(ds)
    X = embed_texts(item_texts(items_in_order(ds.items, data.item_ids)), model=model_name,
                    cache_dir=cache_dir("embeddings"), show_progress=False)  # fmt: skip
    train_sequences = data.train_sequences()
    valid_histories, valid_targets = data.eval_arrays("valid", max_items)
    test_histories, test_targets = data.eval_arrays("test", max_items)
    ranks, seconds = {}, {}

    popular = MostPopular().fit(train_sequences, data.n_items)
    ranks["most-popular"] = rank_all(popular.scores, test_histories, test_targets)

    def validate(model: torch.nn.Module) -> dict[str, float]:
        return summarize(rank_all(model.scores, valid_histories, valid_targets, device=dev), ks=(10,))

    start = time.perf_counter()
    sasrec, _ = train_sasrec(train_sequences, data.n_items, validate, max_len=max_items, seed=seed, device=dev, **SASREC)
    sasrec.eval()
    ranks["SASRec"] = rank_all(sasrec.scores, test_histories, test_targets, device=dev)
    seconds["SASRec"] = time.perf_counter() - start

    start = time.perf_counter()
    tiger, _ = train_small_tiger(
        X, train_sequences, valid_histories, valid_targets, max_items=max_items, epochs=TIGER["epochs"],
        batch_size=TIGER["batch_size"], width=TIGER["width"], beam_size=TIGER["beam_size"], seed=seed, device=dev,
    )  # fmt: skip
    name = f"TIGER (beam {TIGER['beam_size']})"
    ranks[name] = generative_ranks(tiger, test_histories, test_targets, beam_size=TIGER["beam_size"])[0]
    seconds[name] = time.perf_counter() - start

    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".part.npz")
        np.savez(partial, **ranks)
        write_json_atomic(path.with_suffix(".json"), seconds)
        partial.replace(path)  # the ranks appear last, and only whole
    return Baselines(ranks, seconds)
