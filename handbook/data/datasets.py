"""Load a dataset by name or path into one shape: interactions plus an item text table.

Every loader returns a `Dataset` whose `interactions` has the columns user, item (both
strings) and timestamp (int64, only its order matters), in file order, and whose `items`
is indexed by item with string text columns ("" where a field is missing). Sources:

- ``ml-100k``: MovieLens-100K as shipped inside the `recbole` wheel (no download);
- ``amazon2014:<Category>``: the folder ``<data_root>/amazon2014/<Category>``;
- a path to a folder (or file) in one of three layouts, detected from its file names:
  P5 (``sequential_data.txt`` + ``datamaps.json``), raw SNAP Amazon 2014
  (``reviews_<Category>_5.json.gz`` + ``meta_<Category>.json.gz``), or RecBole atomic
  files (``<name>.inter`` + optional ``<name>.item``).

A malformed line raises ValueError starting "<file>:<line>:", so it can be found and fixed.
"""

from __future__ import annotations

import ast
import csv
import gzip
import html
import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from handbook.paths import resolve

KNOWN_DATASETS = {
    "ml-100k": "MovieLens-100K from the installed recbole package (the default)",
    "amazon2014:<Category>": "Amazon 2014 5-core, read from <data_root>/amazon2014/<Category>",
}
LAYOUTS = (
    "a folder with sequential_data.txt + datamaps.json (P5), "
    "reviews_<Category>_5.json.gz + meta_<Category>.json.gz (raw SNAP Amazon 2014), "
    "or <name>.inter (+ <name>.item) RecBole atomic files"
)
AMAZON_COLUMNS = ["title", "brand", "categories", "price"]
RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"


@dataclass(frozen=True)
class Dataset:
    """Interactions (user, item, timestamp) and an item text table indexed by item."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str  # where it was read from, for the record


def load_dataset(
    name_or_path: str | os.PathLike = "ml-100k", data_root: str | os.PathLike | None = None
) -> Dataset:
    """Load a dataset by registry name or by path; see the module docstring for the sources."""
    name = str(name_or_path)
    if name == "ml-100k":
        return _load_ml100k()
    if name.startswith("amazon2014:"):
        category = name.split(":", 1)[1]
        folder = amazon2014_folder(category, data_root)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{name}: no folder {folder}; put the Amazon 2014 files there ({LAYOUTS}), "
                f"e.g. with `python -m handbook.data.download {category}`, "
                "or pass data_root=<folder holding amazon2014/> (or set HANDBOOK_DATA_ROOT)"
            )
        return _load_path(folder, name)
    path = Path(name_or_path).expanduser()
    if not path.exists():  # notebooks run in notebooks/: relative paths also mean "from the checkout"
        path = resolve(path)
    if not path.exists():
        known = ", ".join(KNOWN_DATASETS)
        raise ValueError(f"unknown dataset {name!r}: use one of {known}, or a path to {LAYOUTS}")
    return _load_path(path, name)


def amazon2014_folder(category: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder `amazon2014:<category>` is read from: <data_root>/amazon2014/<category>."""
    root = Path(data_root or os.environ.get("HANDBOOK_DATA_ROOT") or resolve("data"))
    return root / "amazon2014" / category


def _load_path(path: Path, name: str) -> Dataset:
    """Detect the layout of a folder or file from its file names and load it."""
    if path.is_file():
        if path.suffix == ".inter":
            return _load_recbole(path, name)
        path = path.parent if path.name in {"sequential_data.txt", "datamaps.json"} else path
    if path.is_dir():
        if (path / "sequential_data.txt").is_file() and (path / "datamaps.json").is_file():
            return _load_p5(path, name)
        reviews = sorted(path.glob("reviews_*_5.json.gz"))
        if reviews:
            return _load_snap(reviews[0], name)
        inters = sorted(path.glob("*.inter"))
        if inters:
            return _load_recbole(inters[0], name)
    raise ValueError(f"{path}: no known dataset layout here; expected {LAYOUTS}")


# --------------------------------------------------------------------------- line readers


def _open_text(path: Path):
    """Open a plain or gzip-compressed text file."""
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, encoding="utf-8")
    )


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for every non-blank line."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.strip()


def _literal_records(path: Path, parse) -> Iterator[tuple[int, dict]]:
    """Parse each line with `parse` (json.loads or ast.literal_eval) into a dict, naming bad lines."""
    for number, line in _numbered_lines(path):
        try:
            record = parse(line)
        except (ValueError, SyntaxError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{path}:{number}: not a valid record ({err}); fix or delete the line"
            ) from err
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}:{number}: expected a {{...}} record, found {type(record).__name__}"
            )
        yield number, record


# --------------------------------------------------------------------------- text fields


def _text(value) -> str:
    """A field as clean text: HTML entities decoded, whitespace trimmed, missing -> ""."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.unescape(str(value)).strip()


def _price(value) -> str:
    """Prices as "12.50"; anything that is not a number stays as text."""
    text = _text(value)
    try:
        return f"{float(text):.2f}" if text else ""
    except ValueError:
        return text


def _join_unique(values) -> str:
    """Join strings with ", ", dropping empties and repeats but keeping first-seen order."""
    return ", ".join(dict.fromkeys(v for v in (_text(x) for x in values) if v))


def _categories(value) -> str:
    """Amazon categories (nested lists, or RecBole's "'A', 'B'" token_seq) as "A, B"."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(f"[{value}]") if value.strip() else []
        except (ValueError, SyntaxError):
            return _text(value)
    flat = []
    for entry in value or []:
        flat.extend(entry if isinstance(entry, (list, tuple)) else [entry])
    return _join_unique(flat)


def _amazon_row(record: dict) -> dict[str, str]:
    """One Amazon item's text fields from a meta record or a RecBole item row."""
    return {
        "title": _text(record.get("title")),
        "brand": _text(record.get("brand")),
        "categories": _categories(record.get("categories")),
        "price": _price(record.get("price")),
    }


def _item_table(
    rows: dict[str, dict[str, str]], items: pd.Series, columns: list[str]
) -> pd.DataFrame:
    """Text rows for exactly the items that occur in the interactions; missing rows are ""."""
    order = pd.unique(items)
    table = (
        pd.DataFrame.from_dict(rows, orient="index", columns=columns)
        if rows
        else pd.DataFrame(columns=columns)
    )
    table = table.reindex(order).fillna("").astype(str)
    table.index.name = "item"
    return table


def _warn_no_text(folder: Path) -> None:
    warnings.warn(
        f"{folder}: items have no text (no RecBole .item or meta_<Category>.json.gz file found); "
        "embeddings will be of empty strings",
        UserWarning,
        stacklevel=3,
    )


def _amazon_text(
    folder: Path, wanted: set[str], meta_glob: str = "meta_*.json.gz"
) -> dict[str, dict[str, str]] | None:
    """Amazon item text from a RecBole .item file, else a meta_*.json.gz file, else None."""
    item_files = sorted(folder.glob("*.item"))
    if item_files:
        header, rows = _read_atomic(item_files[0])
        key = header[0]
        return {row[key]: _amazon_row(row) for row in rows if row[key] in wanted}
    meta_files = sorted(folder.glob(meta_glob))
    if meta_files:
        return {
            str(record["asin"]): _amazon_row(record)
            for _, record in _literal_records(meta_files[0], ast.literal_eval)
            if str(record.get("asin")) in wanted
        }
    return None


# --------------------------------------------------------------------------- P5


def _load_p5(folder: Path, name: str) -> Dataset:
    """P5/S3-Rec layout: one chronological line per user, ids mapped by datamaps.json."""
    maps = json.loads((folder / "datamaps.json").read_text(encoding="utf-8"))
    id2user, id2item = maps.get("id2user", {}), maps.get("id2item", {})
    path = folder / "sequential_data.txt"
    users, items, positions = [], [], []
    for number, line in _numbered_lines(path):
        tokens = line.split()
        bad = [t for t in tokens if not t.isdigit()]
        if bad:
            raise ValueError(f"{path}:{number}: ids must be integers, found {bad[0]!r}")
        if len(tokens) < 2:
            raise ValueError(f"{path}:{number}: a line needs a user id and at least one item id")
        missing = [t for t in tokens[1:] if t not in id2item]
        if tokens[0] not in id2user or missing:
            raise ValueError(
                f"{path}:{number}: id {(missing or [tokens[0]])[0]} is not in datamaps.json; "
                "the two files must come from the same export"
            )
        user = id2user[tokens[0]]
        for position, item in enumerate(tokens[1:]):
            users.append(user)
            items.append(id2item[item])
            positions.append(position)  # lines are chronological: the position is the time
    interactions = _interactions(users, items, positions)
    text = _amazon_text(folder, set(items))
    if text is None:
        _warn_no_text(folder)
    return Dataset(
        name,
        interactions,
        _item_table(text or {}, interactions["item"], AMAZON_COLUMNS),
        str(folder),
    )


# --------------------------------------------------------------------------- SNAP raw


def _load_snap(reviews: Path, name: str) -> Dataset:
    """Raw SNAP Amazon 2014: JSON review lines, and Python-literal meta lines."""
    users, items, times = [], [], []
    for number, record in _literal_records(reviews, json.loads):
        missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if k not in record]
        if missing:
            raise ValueError(f"{reviews}:{number}: the review has no {missing[0]!r} field")
        users.append(str(record["reviewerID"]))
        items.append(str(record["asin"]))
        times.append(int(record["unixReviewTime"]))
    interactions = _interactions(users, items, times)
    category = reviews.name[len("reviews_") : -len("_5.json.gz")]
    text = _amazon_text(reviews.parent, set(items), meta_glob=f"meta_{category}.json.gz")
    if text is None:
        _warn_no_text(reviews.parent)
    return Dataset(
        name,
        interactions,
        _item_table(text or {}, interactions["item"], AMAZON_COLUMNS),
        str(reviews.parent),
    )


# --------------------------------------------------------------------------- RecBole atomic


def _read_atomic(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A RecBole atomic file: tab-separated, typed header ("name:type"), CSV-style quotes."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quotechar='"')
        try:
            header = [field.split(":", 1)[0] for field in next(reader)]
        except StopIteration:
            raise ValueError(
                f"{path}:1: the file is empty; expected a header such as user_id:token"
            ) from None
        rows = []
        for fields in reader:
            if not fields or fields == [""]:
                continue
            if len(fields) != len(header):
                raise ValueError(
                    f"{path}:{reader.line_num}: expected {len(header)} tab-separated fields "
                    f"({', '.join(header)}), found {len(fields)}"
                )
            rows.append(dict(zip(header, fields, strict=True)))
    return header, rows


def _timestamps(values: list[str], path: Path) -> np.ndarray:
    """Timestamps as int64; fractional ones become their dense rank, which keeps the order."""
    try:
        seconds = np.array([float(v) for v in values])
    except ValueError as err:
        raise ValueError(f"{path}: a timestamp is not a number ({err})") from err
    if np.all(seconds == np.round(seconds)):
        return seconds.astype(np.int64)
    return pd.Series(seconds).rank(method="dense").to_numpy(dtype=np.int64)


def _load_recbole(inter: Path, name: str) -> Dataset:
    """RecBole atomic files: <name>.inter and, when present, <name>.item beside it."""
    header, rows = _read_atomic(inter)
    for field in ("user_id", "item_id"):
        if field not in header:
            raise ValueError(
                f"{inter}:1: the header has no {field} column (found {', '.join(header)})"
            )
    users = [row["user_id"] for row in rows]
    items = [row["item_id"] for row in rows]
    if "timestamp" in header:
        times = _timestamps([row["timestamp"] for row in rows], inter)
    else:  # no time: each user's rows are taken in file order
        times = pd.Series(users).groupby(users).cumcount().to_numpy(dtype=np.int64)
    interactions = _interactions(users, items, times)

    item_file = inter.with_suffix(".item")
    if item_file.is_file():
        item_header, item_rows = _read_atomic(item_file)
        key, columns = item_header[0], item_header[1:]
        text = {row[key]: {c: _text(row[c]) for c in columns} for row in item_rows}
    else:
        _warn_no_text(inter.parent)
        columns, text = ["title"], {}
    return Dataset(name, interactions, _item_table(text, interactions["item"], columns), str(inter))


def _interactions(users, items, times) -> pd.DataFrame:
    return pd.DataFrame(
        {"user": pd.Series(users, dtype=object), "item": pd.Series(items, dtype=object),
         "timestamp": np.asarray(times, dtype=np.int64)}
    )  # fmt: skip


# --------------------------------------------------------------------------- MovieLens-100K


def _load_ml100k() -> Dataset:
    """MovieLens-100K from the recbole wheel: title, release year and genres as item text."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"ml-100k is read from the recbole package, which is not installed: {RECBOLE_INSTALL} "
            "(make setup does this)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    inter = folder / "ml-100k.inter"
    if not inter.is_file():
        raise FileNotFoundError(f"{inter} is missing: reinstall recbole with {RECBOLE_INSTALL}")
    ds = _load_recbole(inter, "ml-100k")
    # Rename RecBole's fields to the handbook's, and list genres as words ("Children's" is one).
    items = ds.items.rename(
        columns={"movie_title": "title", "release_year": "year", "class": "genres"}
    )
    items["genres"] = items["genres"].str.split().str.join(", ")
    return Dataset("ml-100k", ds.interactions, items[["title", "year", "genres"]], str(folder))
