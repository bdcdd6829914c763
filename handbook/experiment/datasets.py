"""The dataset of a run: its file-safe name, loaded, k-cored and split once per process, and its items' text embeddings."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from handbook.data import items_in_order, load_dataset, prepare
from handbook.data.preprocess import SequenceData
from handbook.distributed import DistributedContext, on_main
from handbook.embed import embed_texts, item_texts
from handbook.paths import cache_dir


def dataset_slug(dataset: str | Path) -> str:
    """Filesystem-safe name of a dataset: "amazon2014:Beauty" and ".../amazon2014/Beauty" -> "Beauty"."""
    text = str(dataset).rstrip("/\\")
    if text.startswith("amazon2014:"):
        name = text.split(":", 1)[1]
    else:
        path = Path(text)
        if path.suffix == ".inter":
            name = path.stem
        elif path.name in ("sequential_data.txt", "datamaps.json"):
            name = path.parent.name
        else:
            name = path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "dataset"


@dataclass(frozen=True)
class PreparedData:
    """A dataset after the k-core and leave-one-out split, with its items in internal-id order."""

    name: str
    slug: str
    source: str
    data: SequenceData
    items: pd.DataFrame


@functools.lru_cache(maxsize=2)
def prepare_dataset(dataset: str, k_core: int = 5) -> PreparedData:
    """Load, k-core and split `dataset` once per process (every model of a run shares it)."""
    ds = load_dataset(dataset)
    data = prepare(ds, k=k_core)
    if data.n_users == 0:
        raise ValueError(f"{dataset}: no user is left after the {k_core}-core; lower k_core")
    return PreparedData(
        ds.name, dataset_slug(dataset), ds.source, data, items_in_order(ds.items, data.item_ids)
    )


def _embeddings(prep: PreparedData, config: dict, context: DistributedContext, progress: bool) -> np.ndarray:
    """Item text embeddings (n_items, d), row i = item id i + 1; computed and cached by rank 0."""
    return on_main(
        lambda: embed_texts(
            item_texts(prep.items),
            model=config["embed_model"],
            device=str(context.device),
            cache_dir=cache_dir("embeddings"),
            show_progress=progress,
        ),
        context,
    )
