"""Saved results compared: ours beside the published numbers, and the paired bootstrap interval of
each pair of models' NDCG@10 difference over the same test users (`--compare`, and after a run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from handbook.experiment.configs import METRICS
from handbook.experiment.run import ranks_name
from handbook.metrics import seed_paired_difference
from handbook.plateaus import POPULARITY_LINES


def paired_differences(
    folder: str | Path, models: list[str], profile: str = "paper", k: int = 10, confidence: float = 0.95
) -> pd.DataFrame:
    """NDCG@k of each pair of models whose ranks are saved in `folder`, and the paired bootstrap
    interval of their difference over the same test users (row minus column model).

    A model without a ranks file (a results file written before ranks were saved) is left out.
    """
    ranks = {}
    for model in models:
        path = Path(folder) / ranks_name(model, profile)
        if path.exists():
            ranks[model] = np.load(path)
    rows = []
    names = list(ranks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if ranks[a].shape != ranks[b].shape:
                raise ValueError(f"{a} and {b} ranked different test users ({ranks[a].shape} vs {ranks[b].shape}) in {folder}")
            # one seed: the pooled difference of notebook 11 reduces to the paired bootstrap over users
            d = seed_paired_difference([ranks[a]], [ranks[b]], metric=f"ndcg@{k}", confidence=confidence)
            rows.append({"model": a, "minus": b, f"ndcg@{k} difference": d["difference"], "low": d["low"],
                         "high": d["high"], "differs": d["measured"]})  # fmt: skip
    return pd.DataFrame(rows)


def summary_table(records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Ours beside the published numbers: one row per model, headline test metrics, how they were decoded, train time."""
    rows = []
    for name, record in records.items():
        row = {"model": name, **{k: record["test"].get(k) for k in METRICS}}
        row["decoding"] = record.get("test_decoding", "exact")
        row["exact ndcg@10"] = (record.get("test_exact") or {}).get("ndcg@10")  # beside graph decoding
        published = record.get("published") or {}
        row.update({f"paper {k}": published.get(k) for k in METRICS})
        row["train s"] = round(record.get("train_seconds", 0.0))
        validation = record.get("validation") or {}
        if validation.get("epochs_run"):
            row["best/epochs"] = f"{validation['best_epoch']}/{validation['epochs_run']}"
            row["steps"] = record.get("train_steps")
            row["final loss"] = validation["history"][-1]["train_loss"]
            # the loss of a model that ignores the history: a final loss there has learned only popularity
            plateau = record.get("plateau") or {}
            row["popularity plateau"] = next((plateau[k] for k in POPULARITY_LINES if k in plateau), None)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def print_comparison(folder: Path, records: dict[str, dict[str, Any]], profile: str) -> None:
    """The summary table of `records` (results in `folder`), then the paired intervals of their ranks."""
    with pd.option_context("display.width", 160, "display.max_columns", None):
        print(f"\nTest split, profile {profile}, results in {folder}:")
        print(summary_table(records).round(4).to_string())
        pairs = paired_differences(folder, list(records), profile)
        if len(pairs):
            print("\nPaired differences of test NDCG@10 (row model minus `minus`; 95% bootstrap over test users):")
            print(pairs.round(4).to_string(index=False))
        unranked = [m for m in records if not (folder / ranks_name(m, profile)).exists()]
        if unranked:
            print(f"(no per-user ranks saved for {', '.join(unranked)}: results written before ranks were kept)")
