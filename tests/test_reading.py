"""The reading baselines are computed once per configuration and code, then read from the cache or a record."""

from __future__ import annotations

import numpy as np
import pytest

from handbook import reading


@pytest.fixture
def quick(monkeypatch, tmp_path):
    """One epoch of each baseline, cached under a temporary folder; RK-Means codes, which fit in a
    fraction of a second where the reading TIGER's RQ-VAE takes a minute (test_baselines covers it)."""
    monkeypatch.setitem(reading.SASREC, "epochs", 1)
    monkeypatch.setitem(reading.TIGER, "epochs", 1)
    monkeypatch.setitem(reading.TIGER, "tokenizer", "rkmeans")
    monkeypatch.setattr(reading, "cache_dir", lambda kind: tmp_path / kind)
    return tmp_path


def test_baselines_rank_every_test_and_validation_user_and_come_back_from_the_cache_unchanged(quick):
    first = reading.reading_baselines("ml-100k", max_items=3, device="cpu")
    assert set(first.ranks) == set(first.valid_ranks) == {"most-popular", "SASRec", "TIGER (beam 10)"}
    n_users = len(first.ranks["most-popular"])
    assert all(len(r) == n_users and r.min() >= 0 for r in [*first.ranks.values(), *first.valid_ranks.values()])
    assert not first.from_cache
    again = reading.reading_baselines("ml-100k", max_items=3, device="cpu")
    assert again.from_cache
    for name, ranks in first.ranks.items():
        np.testing.assert_array_equal(again.ranks[name], ranks)
        np.testing.assert_array_equal(again.valid_ranks[name], first.valid_ranks[name])
    # another split: the validation target is another item than the test target
    assert not np.array_equal(first.valid_ranks["most-popular"], first.ranks["most-popular"])
    table = again.metrics(ks=(10,))
    assert list(table.columns) == ["recall@10", "ndcg@10"]
    assert table.loc["SASRec", "ndcg@10"] > table.loc["most-popular", "ndcg@10"] * 0.5  # trained, not random
    assert len(list((quick / "reading").glob("*.npz"))) == 2  # test and validation ranks


def test_the_cache_key_changes_with_the_configuration_and_the_seed(monkeypatch):
    dev = reading.resolve_device("cpu")
    base = reading._cache_key("ml-100k", "m", 0, dev, 5)
    assert reading._cache_key("ml-100k", "m", 1, dev, 5) != base
    assert reading._cache_key("ml-100k", "m", 0, dev, 4) != base
    monkeypatch.setitem(reading.SASREC, "hidden", 32)
    changed = reading._cache_key("ml-100k", "m", 0, dev, 5)
    assert changed != base
    monkeypatch.setitem(reading.TIGER, "tokenizer", "rkmeans")
    assert reading._cache_key("ml-100k", "m", 0, dev, 5) != changed


def test_recorded_baselines_read_back_and_refuse_another_configuration(quick, monkeypatch):
    monkeypatch.setattr(reading, "RECORDED_DIR", quick / "recorded")
    with pytest.raises(FileNotFoundError, match="python -m handbook.reading --record --dataset ml-100k --seed 0"):
        reading.reading_baselines("ml-100k", max_items=3, recorded=True)
    path = reading.record_baselines("ml-100k", max_items=3, device="cpu")
    trained = reading.reading_baselines("ml-100k", max_items=3, device="cpu")  # from the cache the record filled
    recorded = reading.reading_baselines("ml-100k", max_items=3, recorded=True)
    for name, ranks in trained.ranks.items():
        np.testing.assert_array_equal(recorded.ranks[name], ranks)
        np.testing.assert_array_equal(recorded.valid_ranks[name], trained.valid_ranks[name])
    assert recorded.about["rerun"].endswith("--seed 0") and set(recorded.best_epoch) == {"SASRec", "TIGER (beam 10)"}
    assert path.with_suffix(".npz").is_file()
    path.with_name(path.name + ".valid.npz").unlink()  # a record without validation ranks cannot make choices
    with pytest.raises(FileNotFoundError, match="no validation ranks.*--record"):
        reading.reading_baselines("ml-100k", max_items=3, recorded=True)
    reading.record_baselines("ml-100k", max_items=3, device="cpu")
    monkeypatch.setitem(reading.TIGER, "width", 32)
    with pytest.raises(ValueError, match="recorded with .*--record"):
        reading.reading_baselines("ml-100k", max_items=3, recorded=True)


def test_a_record_stands_in_only_for_its_own_settings_encoder_and_device(quick, monkeypatch):
    monkeypatch.setattr(reading, "RECORDED_DIR", quick / "recorded")
    assert not reading.has_recorded_baselines("ml-100k", max_items=3, device="cpu")
    reading.record_baselines("ml-100k", max_items=3, device="cpu")
    assert reading.has_recorded_baselines("ml-100k", max_items=3, device="cpu")
    read = reading.reading_baselines("ml-100k", max_items=3, device="cpu", prefer_recorded=True)
    assert read.about["rerun"].endswith("--seed 0") and not read.from_cache  # the record, not the cache
    assert not reading.has_recorded_baselines("ml-100k", max_items=3, seed=1, device="cpu")
    assert not reading.has_recorded_baselines("ml-100k", max_items=4, device="cpu")
    assert not reading.has_recorded_baselines("ml-100k", max_items=3, device="cpu", model_name="another-encoder")
    monkeypatch.setattr(reading, "resolve_device", lambda device: reading.torch.device("cuda"))
    assert not reading.has_recorded_baselines("ml-100k", max_items=3, device="cuda")
