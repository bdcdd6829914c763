"""The reading configuration of notebooks 05-08, and the baselines every one of them compares against.

Each chapter on a generative model puts most-popular, SASRec and the small TIGER of
`handbook.baselines` beside it. They are trained here, one way, on one history length, each
until its validation NDCG@10 stops improving, so that the same numbers print in every chapter.
Their per-user test and validation ranks (full ranking, leave-one-out) are cached in `.cache/reading/` under
the dataset, the seed, the device, this configuration and a hash of the code that trains them:
a later chapter reuses an earlier chapter's run, and any change to that code trains them again.

The chapters read them, by default, from a recorded run in results/reading/ (a few KB: the
ranks, the settings, the machine and commit), made by

    python -m handbook.reading --record            # ml-100k, seed 0: about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
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
from handbook.device import cpu_model, resolve_device
from handbook.embed import DEFAULT_MODEL, embed_texts, item_texts
from handbook.io import read_npz, write_json_atomic, write_npz_atomic
from handbook.metrics import rank_all, summarize
from handbook.models import MostPopular
from handbook.paths import cache_dir, resolve
from handbook.provenance import git_commit

#: items of history every model of notebooks 05-08 reads (papers: 20 for TIGER, 50 for SASRec and RPG)
MAX_ITEMS = 5
#: SASRec of `handbook.baselines.train_sasrec`, full-softmax cross-entropy
SASREC = {"epochs": 20, "batch_size": 256, "hidden": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.2, "lr": 1e-3, "patience": 5}
#: the small TIGER of `handbook.baselines.train_small_tiger`: RQ-VAE 3 x 64 + de-duplication digit, 1 + 1 layers
#: (RQ-VAE over RK-Means: +.0073 validation NDCG@10 [.0010, .0142] pooled over 3 seeds, chapter 11 section 7)
TIGER = {"epochs": 20, "patience": 5, "batch_size": 256, "width": 64, "beam_size": 10, "tokenizer": "rqvae"}
#: where `record_baselines` writes and `reading_baselines(recorded=True)` reads, relative to the repository root
RECORDED_DIR = Path("results") / "reading"
#: the files whose code decides the baselines' numbers; a change to any of them invalidates the cache
_SOURCES = (
    "reading.py", "baselines.py", "train.py", "metrics.py", "sid.py", "data/preprocess.py",
    "models/popularity.py", "models/sasrec.py", "models/tiger.py", "models/transformer.py",
    "decoding/beam.py", "tokenizers/kmeans.py", "tokenizers/rkmeans.py", "tokenizers/rqvae.py", "tokenizers/residual.py",
)  # fmt: skip


@dataclass
class Baselines:
    """Per-user 0-based test and validation ranks of each baseline, and the seconds the run that computed them took."""

    ranks: dict[str, np.ndarray]  # test split: read once, for the final tables
    seconds: dict[str, float] = field(default_factory=dict)
    from_cache: bool = False
    best_epoch: dict[str, int] = field(default_factory=dict)
    about: dict = field(default_factory=dict)  # a recorded run's provenance: machine, commit, command
    valid_ranks: dict[str, np.ndarray] = field(default_factory=dict)  # validation split: what choices are made on

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
    recorded: bool = False,
    prefer_recorded: bool = False,
) -> Baselines:
    """Test and validation ranks of most-popular, SASRec and TIGER (beam 10) at the reading configuration; cached.

    `recorded`: read them from results/reading/ (`record_baselines`) instead of training them.
    `prefer_recorded`: read them from there where `has_recorded_baselines` finds a record for these settings,
    else train them (a chapter's `rerun=True`: the baselines do not depend on the chapter's own settings).
    """
    if recorded or (prefer_recorded and has_recorded_baselines(dataset, model_name=model_name, seed=seed, device=device, max_items=max_items)):
        return recorded_baselines(dataset, seed=seed, max_items=max_items)
    dev = resolve_device(device)
    path = cache_dir("reading") / f"{_cache_key(dataset, model_name, seed, dev, max_items)}.npz"
    valid_path = _valid_path(path.with_suffix(""))
    if cache and path.exists() and valid_path.exists():
        about = json.loads(path.with_suffix(".json").read_text())
        return Baselines(read_npz(path), about["seconds"], from_cache=True, best_epoch=about["best_epoch"], valid_ranks=read_npz(valid_path))

    ds = load_dataset(dataset)
    data = prepare(ds)
    X = embed_texts(item_texts(items_in_order(ds.items, data.item_ids)), model=model_name,
                    cache_dir=cache_dir("embeddings"), show_progress=False)  # fmt: skip
    train_sequences = data.train_sequences()
    valid_histories, valid_targets = data.eval_arrays("valid", max_items)
    test_histories, test_targets = data.eval_arrays("test", max_items)
    ranks, valid_ranks, seconds, best_epoch = {}, {}, {}, {}

    def rank_both(name: str, score_fn, device: torch.device = dev) -> None:
        """The full-ranking test and validation ranks of one baseline."""
        ranks[name] = rank_all(score_fn, test_histories, test_targets, device=device)
        valid_ranks[name] = rank_all(score_fn, valid_histories, valid_targets, device=device)

    rank_both("most-popular", MostPopular().fit(train_sequences, data.n_items).scores, torch.device("cpu"))  # counts live on the CPU

    def validate(model: torch.nn.Module) -> dict[str, float]:
        return summarize(rank_all(model.scores, valid_histories, valid_targets, device=dev), ks=(10,))

    start = time.perf_counter()
    sasrec, sasrec_run = train_sasrec(train_sequences, data.n_items, validate, max_len=max_items, seed=seed, device=dev, **SASREC)
    sasrec.eval()
    rank_both("SASRec", sasrec.scores)
    seconds["SASRec"] = time.perf_counter() - start
    best_epoch["SASRec"] = sasrec_run.best_epoch

    start = time.perf_counter()
    tiger, tiger_run = train_small_tiger(
        X, train_sequences, valid_histories, valid_targets, max_items=max_items, epochs=TIGER["epochs"], patience=TIGER["patience"],
        batch_size=TIGER["batch_size"], width=TIGER["width"], beam_size=TIGER["beam_size"], tokenizer=TIGER["tokenizer"], seed=seed, device=dev,
    )  # fmt: skip
    name = f"TIGER (beam {TIGER['beam_size']})"
    ranks[name] = generative_ranks(tiger, test_histories, test_targets, beam_size=TIGER["beam_size"])[0]
    valid_ranks[name] = generative_ranks(tiger, valid_histories, valid_targets, beam_size=TIGER["beam_size"])[0]
    seconds[name] = time.perf_counter() - start
    best_epoch[name] = tiger_run.best_epoch

    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(valid_path, valid_ranks)
        write_json_atomic(path.with_suffix(".json"), {"seconds": seconds, "best_epoch": best_epoch})
        write_npz_atomic(path, ranks)  # the test ranks appear last, and only whole: their file marks a finished run
    return Baselines(ranks, seconds, best_epoch=best_epoch, valid_ranks=valid_ranks)


def _settings(max_items: int) -> dict:
    """What decides the baselines besides the data and the seed."""
    return {"max_items": max_items, "sasrec": SASREC, "tiger": TIGER}


def _recorded_path(dataset: str, seed: int) -> Path:
    return resolve(RECORDED_DIR) / f"{Path(str(dataset)).name.replace(':', '-')}-seed{seed}"


def _valid_path(path: Path) -> Path:
    """Where the validation ranks lie beside the test ranks <path>.npz (a recorded run or a cache entry)."""
    return path.with_name(path.name + ".valid.npz")


def record_baselines(dataset: str = "ml-100k", *, seed: int = 0, device: str | torch.device = "auto", max_items: int = MAX_ITEMS) -> Path:
    """Train (or take from the cache) the baselines and record their ranks and provenance in results/reading/."""
    commit = git_commit()
    baselines = reading_baselines(dataset, seed=seed, device=device, max_items=max_items)
    path = _recorded_path(dataset, seed)
    about = {
        "dataset": str(dataset), "seed": seed, "settings": _settings(max_items), "seconds": baselines.seconds,
        "best_epoch": baselines.best_epoch, "commit": commit, "rerun": f"python -m handbook.reading --record --dataset {dataset} --seed {seed}",
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }  # fmt: skip
    write_npz_atomic(path.with_suffix(".npz"), baselines.ranks)
    write_npz_atomic(_valid_path(path), baselines.valid_ranks)
    write_json_atomic(path.with_suffix(".json"), about)
    return path


def recorded_baselines(dataset: str = "ml-100k", *, seed: int = 0, max_items: int = MAX_ITEMS) -> Baselines:
    """The baselines recorded by `record_baselines`; an error says how to record them when they are missing or differ."""
    path = _recorded_path(dataset, seed)
    how = f"record them with `python -m handbook.reading --record --dataset {dataset} --seed {seed}`, or set the chapter's rerun=True"
    if not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"{path.with_suffix('.json')}: no recorded reading baselines for {dataset}, seed {seed}: {how}")
    about = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    if about["settings"] != json.loads(json.dumps(_settings(max_items))):
        raise ValueError(f"{path.with_suffix('.json')}: recorded with {about['settings']}, asked for {_settings(max_items)}: {how}")
    if not _valid_path(path).is_file():
        raise FileNotFoundError(f"{_valid_path(path)}: the recorded reading baselines have no validation ranks: {how}")
    return Baselines(read_npz(path.with_suffix(".npz")), about["seconds"], best_epoch=about["best_epoch"], about=about,
                     valid_ranks=read_npz(_valid_path(path)))  # fmt: skip


def has_recorded_baselines(dataset: str = "ml-100k", *, model_name: str = DEFAULT_MODEL, seed: int = 0,
                           device: str | torch.device = "auto", max_items: int = MAX_ITEMS) -> bool:  # fmt: skip
    """Whether results/reading/ holds the baselines `reading_baselines` would train here, so a run may read them instead.

    A record is made with the default encoder on a CPU (`python -m handbook.reading --record`), so it stands in
    only for those, and only when its settings and both rank files are there.
    """
    if model_name != DEFAULT_MODEL or resolve_device(device).type != "cpu":
        return False
    path = _recorded_path(dataset, seed)
    if not (path.with_suffix(".json").is_file() and path.with_suffix(".npz").is_file() and _valid_path(path).is_file()):
        return False
    about = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return about["settings"] == json.loads(json.dumps(_settings(max_items)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handbook.reading", description="Record the reading baselines of notebooks 05-08.")
    parser.add_argument("--record", action="store_true", help="train (or take from the cache) and write results/reading/<dataset>-seed<seed>.*")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.record:
        parser.print_help()
        return 2
    path = record_baselines(args.dataset, seed=args.seed, device=args.device)
    baselines = recorded_baselines(args.dataset, seed=args.seed)
    print(f"wrote {path}.npz and .json")
    print(baselines.metrics((5, 10)).round(4).to_string())
    print("best epochs:", baselines.best_epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
