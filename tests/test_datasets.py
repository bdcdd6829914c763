"""Dataset loaders: ml-100k, Amazon (P5, SNAP raw), RecBole atomic files, error messages."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from handbook.data import datasets
from handbook.data.datasets import KNOWN_DATASETS, Dataset, load_dataset
from handbook.data.preprocess import k_core, prepare, statistics


def _shared_beauty() -> Path:
    """The development copy of Amazon Beauty, if this machine has one."""
    root = os.environ.get("HANDBOOK_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared/data"
    return base / "amazon2014/Beauty"


def _ml100k_inter() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example/ml-100k/ml-100k.inter"


def _write_gz_lines(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def _assert_loader_shape(ds: Dataset) -> None:
    """The contract every loader keeps."""
    inter = ds.interactions
    assert list(inter.columns) == ["user", "item", "timestamp"]
    assert inter["timestamp"].dtype == np.int64
    assert all(isinstance(v, str) for v in inter["user"].head()) and all(
        isinstance(v, str) for v in inter["item"].head()
    )
    assert ds.items.index.name == "item"
    assert set(inter["item"]) <= set(ds.items.index)
    assert not ds.items.isna().any().any()


# --------------------------------------------------------------------------- ml-100k


def test_ml100k_counts_match_an_independent_pandas_count() -> None:
    inter_path = _ml100k_inter()
    ds = load_dataset("ml-100k")
    _assert_loader_shape(ds)
    raw = statistics(ds.interactions)
    assert (raw["users"], raw["items"], raw["interactions"]) == (943, 1682, 100000)

    # Independent count: pandas reads the file, a groupby-filter loop does the 5-core.
    df = pd.read_csv(inter_path, sep="\t", dtype=str)
    df.columns = [c.split(":")[0] for c in df.columns]
    while True:
        before = len(df)
        df = df.groupby("user_id").filter(lambda g: len(g) >= 5)
        df = df.groupby("item_id").filter(lambda g: len(g) >= 5)
        if len(df) == before:
            break
    core = statistics(k_core(ds.interactions, 5))
    lengths = df.groupby("user_id").size()
    assert core["users"] == df["user_id"].nunique()
    assert core["items"] == df["item_id"].nunique()
    assert core["interactions"] == len(df)
    assert core["seq_len_max"] == lengths.max()
    assert core["seq_len_p90"] == pytest.approx(lengths.quantile(0.9))
    assert core["density"] == pytest.approx(len(df) / (lengths.size * df["item_id"].nunique()))


def test_ml100k_item_text() -> None:
    _ml100k_inter()
    items = load_dataset().items
    assert list(items.columns) == ["title", "year", "genres"]
    assert items.loc["1"].to_dict() == {
        "title": "Toy Story",
        "year": "1995",
        "genres": "Animation, Children's, Comedy",
    }


def test_ml100k_without_recbole_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps recbole==1\.2\.1"):
        load_dataset("ml-100k")


# --------------------------------------------------------------------------- Amazon Beauty (dev data)


def test_beauty_p5_is_the_papers_5core() -> None:
    folder = _shared_beauty()
    if not folder.is_dir():
        pytest.skip(f"development copy of Amazon Beauty not found at {folder}")
    ds = load_dataset(str(folder))
    _assert_loader_shape(ds)
    stats = statistics(k_core(ds.interactions, 5))
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)
    text = ds.items.loc[ds.interactions["item"].unique()]
    assert ((text["title"] != "") | (text["categories"] != "")).all()
    assert list(ds.items.columns) == ["title", "brand", "categories", "price"]
    # The RecBole item file holds ASIN keys and quoted category tokens.
    assert ds.items.loc["9788072216", "categories"] == "Beauty, Fragrance, Women's, Eau de Parfum"
    seq = prepare(ds)
    assert seq.n_users == 22363 and seq.n_items == 12101


def test_amazon2014_name_resolves_under_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "amazon2014" / "Toy"
    folder.mkdir(parents=True)
    (folder / "sequential_data.txt").write_text("1 1 2 3\n2 2 3\n")
    (folder / "datamaps.json").write_text(
        json.dumps({"id2user": {"1": "U1", "2": "U2"}, "id2item": {"1": "A", "2": "B", "3": "C"}})
    )
    with pytest.warns(UserWarning, match="items have no text"):
        ds = load_dataset("amazon2014:Toy", data_root=tmp_path)
    assert ds.name == "amazon2014:Toy"
    assert list(ds.items.columns) == ["title", "brand", "categories", "price"]
    monkeypatch.setenv("HANDBOOK_DATA_ROOT", str(tmp_path))
    with pytest.warns(UserWarning, match="items have no text"):
        assert len(load_dataset("amazon2014:Toy").interactions) == 5

    with pytest.raises(FileNotFoundError) as err:
        load_dataset("amazon2014:Nope", data_root=tmp_path)
    assert str(tmp_path / "amazon2014" / "Nope") in str(err.value)
    assert "data_root" in str(err.value)


# --------------------------------------------------------------------------- P5 layout


def _write_p5(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequential_data.txt").write_text("1 1 2 3\n2 3 1\n")
    maps = {"id2user": {"1": "UA", "2": "UB"}, "id2item": {"1": "X1", "2": "X2", "3": "X3"}}
    (folder / "datamaps.json").write_text(json.dumps(maps))


def test_p5_with_recbole_item_file(tmp_path: Path) -> None:
    _write_p5(tmp_path)
    (tmp_path / "Toy.item").write_text(
        "item_id:token\ttitle:token\tsales_type:token\tcategories:token_seq\tprice:float\tbrand:token\n"
        "X1\tLip &amp; Cheek\tBeauty\t'Beauty', 'Makeup', 'Beauty'\t5\tAcme\n"
        'X2\t"Say ""hi"""\t\t"\'Beauty\', ""Women\'s"""\t\t\n'
    )
    ds = load_dataset(str(tmp_path))
    _assert_loader_shape(ds)
    assert ds.interactions.to_dict("list") == {
        "user": ["UA", "UA", "UA", "UB", "UB"],
        "item": ["X1", "X2", "X3", "X3", "X1"],
        "timestamp": [0, 1, 2, 0, 1],
    }
    assert ds.items.loc["X1"].to_dict() == {
        "title": "Lip & Cheek",
        "brand": "Acme",
        "categories": "Beauty, Makeup",
        "price": "5.00",
    }
    assert ds.items.loc["X2"].to_dict() == {
        "title": 'Say "hi"',
        "brand": "",
        "categories": "Beauty, Women's",
        "price": "",
    }
    assert (ds.items.loc["X3"] == "").all()  # no text row: kept, empty


def test_p5_with_meta_file(tmp_path: Path) -> None:
    _write_p5(tmp_path)
    _write_gz_lines(
        tmp_path / "meta_Toy.json.gz",
        [
            "{'asin': 'X1', 'title': 'One', 'categories': [['Beauty', 'Skin'], ['Beauty', 'Face']]}",
            "{'asin': 'X9', 'title': 'not in the data'}",
            "{'asin': 'X2', 'brand': 'B', 'price': 19.99}",
        ],
    )
    items = load_dataset(str(tmp_path)).items
    assert items.loc["X1", "categories"] == "Beauty, Skin, Face"
    assert items.loc["X2"].to_dict() == {
        "title": "",
        "brand": "B",
        "categories": "",
        "price": "19.99",
    }
    assert "X9" not in items.index


# --------------------------------------------------------------------------- SNAP raw


def test_snap_raw_files(tmp_path: Path) -> None:
    reviews = [
        {"reviewerID": "U1", "asin": "A", "unixReviewTime": 300, "overall": 5.0},
        {"reviewerID": "U1", "asin": "B", "unixReviewTime": 100, "overall": 4.0},
        {"reviewerID": "U2", "asin": "A", "unixReviewTime": 200, "overall": 3.0},
    ]
    _write_gz_lines(tmp_path / "reviews_Toy_5.json.gz", [json.dumps(r) for r in reviews])
    _write_gz_lines(
        tmp_path / "meta_Toy.json.gz",
        [
            "{'asin': 'A', 'title': \"Kid's Blocks\", 'price': 3.5, 'brand': 'Lego', "
            "'categories': [['Toys & Games', 'Blocks']], 'related': {'also_bought': ['B']}}",
            "{'asin': 'B', 'categories': [['Toys &amp; Games']]}",
        ],
    )
    ds = load_dataset(tmp_path)
    _assert_loader_shape(ds)
    assert ds.interactions.to_dict("list") == {
        "user": ["U1", "U1", "U2"],
        "item": ["A", "B", "A"],
        "timestamp": [300, 100, 200],
    }
    assert ds.items.loc["A"].to_dict() == {
        "title": "Kid's Blocks",
        "brand": "Lego",
        "categories": "Toys & Games, Blocks",
        "price": "3.50",
    }
    assert ds.items.loc["B", "categories"] == "Toys & Games"


# --------------------------------------------------------------------------- RecBole atomic


def test_recbole_atomic_with_quoted_fields(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\n"  # no timestamp: order index stands in
        "u1\ti1\t5\nu2\ti2\t3\nu1\ti2\t4\n\n"
    )
    (folder / "shop.item").write_text(
        'item_id:token\tname:token\tnote:token_seq\n"i1"\t"Tab\tand ""quote"""\tx y\ni2\t\t\n'
    )
    ds = load_dataset(folder)
    _assert_loader_shape(ds)
    assert ds.interactions["timestamp"].tolist() == [0, 0, 1]
    assert ds.items.loc["i1"].to_dict() == {"name": 'Tab\tand "quote"', "note": "x y"}
    assert ds.items.loc["i2"].to_dict() == {"name": "", "note": ""}
    # An .inter file can be named directly too.
    assert len(load_dataset(folder / "shop.inter").interactions) == 3


def test_recbole_float_timestamps_keep_their_order(tmp_path: Path) -> None:
    (tmp_path / "t.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\nu\ta\t1.5\nu\tb\t1.2\nu\tc\t7\n"
    )
    ts = load_dataset(tmp_path).interactions["timestamp"].to_numpy()
    assert ts.dtype == np.int64 and list(np.argsort(ts)) == [1, 0, 2]


# --------------------------------------------------------------------------- errors


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as err:
        load_dataset("ml-100m")
    message = str(err.value)
    for name in KNOWN_DATASETS:
        assert name in message
    assert "sequential_data.txt" in message and ".inter" in message


def _error_of(path: Path | str) -> str:
    with pytest.raises(ValueError) as err:
        load_dataset(str(path))
    return str(err.value)


def test_malformed_sequential_data_names_file_and_line(tmp_path: Path) -> None:
    _write_p5(tmp_path)
    (tmp_path / "sequential_data.txt").write_text("1 1 2 3\n2 3 x1\n")
    assert f"{tmp_path / 'sequential_data.txt'}:2:" in _error_of(tmp_path)


def test_malformed_inter_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "d.inter").write_text("user_id:token\titem_id:token\nu1\ti1\nu2\ti2\textra\n")
    message = _error_of(tmp_path)
    assert f"{tmp_path / 'd.inter'}:3:" in message and "found 3" in message


def test_malformed_meta_names_file_and_line(tmp_path: Path) -> None:
    _write_gz_lines(
        tmp_path / "reviews_Toy_5.json.gz",
        [json.dumps({"reviewerID": "U", "asin": "A", "unixReviewTime": 1})],
    )
    _write_gz_lines(
        tmp_path / "meta_Toy.json.gz", ["{'asin': 'Z'}", "{'asin': 'A', 'title': 'broken"]
    )
    assert f"{tmp_path / 'meta_Toy.json.gz'}:2:" in _error_of(tmp_path)


def test_malformed_reviews_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"reviewerID": "U", "asin": "A", "unixReviewTime": 1})
    _write_gz_lines(
        tmp_path / "reviews_Toy_5.json.gz", [good, good, '{"reviewerID": "U", "asin": ']
    )
    assert f"{tmp_path / 'reviews_Toy_5.json.gz'}:3:" in _error_of(tmp_path)
    _write_gz_lines(tmp_path / "reviews_Toy_5.json.gz", [good, json.dumps({"reviewerID": "U"})])
    message = _error_of(tmp_path)
    assert f"{tmp_path / 'reviews_Toy_5.json.gz'}:2:" in message and "asin" in message


def test_folder_without_a_known_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    message = _error_of(tmp_path)
    assert str(tmp_path) in message and "datamaps.json" in message
