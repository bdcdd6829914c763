"""Collision rates of the papers' tokenizer settings on one catalogue, and their recorded result.

`paper_collisions(X, texts)` fits the four settings notebook 04 compares at paper scale
(RK-Means 3 x 256 and 4 x 256, PQ and OPQ with m = 32 digits of 256 codes) and counts the
items whose code is shared. `python -m handbook.collisions <dataset>` runs it on a dataset
and records the table, the command, the date and the machine in
`results/<dataset>/collisions.json`, which notebook 04 shows when the data is not at hand.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from handbook.tokenizers import OPQ, PQ, RKMeans, Tokenizer

Setting = tuple[str, Callable[[int], Tokenizer]]

#: (label, tokenizer of a seed) of each paper setting, 256 codes per digit throughout
SETTINGS: tuple[Setting, ...] = (
    ("RK-Means 3 x 256", lambda seed: RKMeans(n_levels=3, width=256, seed=seed)),
    ("RK-Means 4 x 256", lambda seed: RKMeans(n_levels=4, width=256, seed=seed)),
    ("PQ m = 32", lambda seed: PQ(m=32, seed=seed)),
    ("OPQ m = 32", lambda seed: OPQ(m=32, seed=seed)),
)


def paper_collisions(
    X: np.ndarray, texts: Sequence[str], seed: int = 0, settings: Sequence[Setting] = SETTINGS
) -> pd.DataFrame:
    """One row per setting: colliding items, their share, the largest group, and how many share their text."""
    duplicated_text = pd.Series(list(texts)).duplicated(keep=False).to_numpy()
    if len(duplicated_text) != len(X):
        raise ValueError(f"{len(texts)} texts for {len(X)} embeddings: pass the texts the embeddings came from")
    rows = []
    for label, make in settings:
        codes = make(seed).fit_encode(X)
        _, group, size = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        colliding = size[group.reshape(-1)] > 1
        rows.append({
            "tokenizer": label,
            "colliding_items": int(colliding.sum()),
            "collision_rate": float(colliding.mean()),
            "largest_group": int(size.max()),
            "colliding_with_duplicated_text": int((colliding & duplicated_text).sum()),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("tokenizer")


def main(argv: list[str] | None = None) -> int:
    """Command line: fit the paper settings on a dataset and record the table as JSON."""
    from handbook.data import items_in_order, load_dataset, prepare
    from handbook.device import cpu_model
    from handbook.embed import DEFAULT_MODEL, embed_texts, item_texts
    from handbook.experiment import dataset_slug
    from handbook.io import write_json_atomic
    from handbook.paths import cache_dir, repo_root

    parser = argparse.ArgumentParser(prog="python -m handbook.collisions", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help='"ml-100k", "amazon2014:<Category>" or a dataset folder')
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence encoder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file to write (default: results/<dataset>/collisions.json)")
    args = parser.parse_args(argv)

    ds = load_dataset(args.dataset)
    data = prepare(ds)
    texts = item_texts(items_in_order(ds.items, data.item_ids))
    X = embed_texts(texts, model=args.model, cache_dir=cache_dir("embeddings"), show_progress=False)
    table = paper_collisions(X, texts, seed=args.seed)
    print(table.to_string())
    out = Path(args.out) if args.out else repo_root() / "results" / dataset_slug(args.dataset) / "collisions.json"
    write_json_atomic(out, {
        "dataset": dataset_slug(args.dataset),
        "n_items": int(len(X)),
        "model": args.model,
        "seed": args.seed,
        "command": shlex.join(["python", "-m", "handbook.collisions", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.date.today().isoformat(),
        "machine": f"cpu ({cpu_model()})",
        "table": table.reset_index().to_dict(orient="records"),
    })  # fmt: skip
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
