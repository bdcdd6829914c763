"""The efficiency benchmark on tiny catalogues: schema, completeness, consistency, samplers, exact scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from handbook import bench
from handbook.bench import BenchConfig
from handbook.models import RPG
from handbook.sid import SemanticIDs

TIGER_TINY = {"d_model": 16, "n_heads": 2, "head_dim": 8, "d_ff": 32, "n_encoder_layers": 1, "n_decoder_layers": 1}
RPG_TINY = {"hidden": 16, "n_layers": 1, "n_heads": 2, "ffn": 32}


def tiny_config(**overrides) -> BenchConfig:
    """Every axis with two values, tiny models."""
    sizes = {
        "catalogue_sizes": [200, 400],
        "fixed_catalogue": 200,
        "sid_lengths": [4, 8],
        "default_sid_length": 8,
        "codebook_size": 16,
        "tiger_beams": [2, 4],
        "default_tiger_beam": 4,
        "graph_beams": [2, 4],
        "default_graph_beam": 4,
        "graph_edges": 5,
        "propagation_steps": 2,
        "top_k": 3,
        "batch_size": 3,
        "repeats": 2,
        "batch_repeats": 2,
        "train_sid_lengths": [4, 8],
        "train_batch_size": 4,
        "train_steps": 2,
        "tiger_history": 4,
        "rpg_history": 6,
        "exact_graph_max_items": 200,
        "tiger_kwargs": TIGER_TINY,
        "rpg_kwargs": RPG_TINY,
        "acerec_kwargs": {**RPG_TINY, "n_latents": 2},
        "threads": 1,  # tiny ops on a shared machine: one thread avoids oversubscription
        "precision_matmul": [64, 16, 32],
    }
    return BenchConfig(**{**sizes, **overrides})


@pytest.fixture(scope="module")
def results_and_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    results = bench.run_bench(tiny_config(), device="cpu", command="pytest tiny")
    path = bench.write_results(results, tmp_path_factory.mktemp("bench"))
    return results, path


@pytest.fixture(scope="module")
def results(results_and_path: tuple[dict, Path]) -> dict:
    return results_and_path[0]


# ---------------------------------------------------------------------------- schema
def test_results_file_holds_the_machine_config_and_records(results_and_path: tuple[dict, Path]) -> None:
    results, path = results_and_path
    assert path.name == "results-cpu.json"
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(results))
    assert loaded["schema_version"] == bench.SCHEMA_VERSION
    machine = loaded["machine"]
    for key in ("cpu_model", "cpu_cores_logical", "ram_gb", "torch_version", "torch_threads", "date", "command", "memory_measure"):
        assert machine[key] not in (None, ""), key
    assert machine["device"] == "cpu" and machine["gpu_name"] is None
    assert machine["torch_threads"] == 1 and machine["command"] == "pytest tiny"
    assert "RSS" in machine["memory_measure"]
    # "auto" values are resolved before the run and saved as used
    assert loaded["config"]["batch_size"] == 3 and loaded["config"]["threads"] == 1
    assert {r["kind"] for r in loaded["records"]} == {"inference", "uncached", "training", "matmul", "build"}
    assert set(bench.load_results(path.parent)) == {"results-cpu"}


def test_run_restores_torch_threads(results: dict) -> None:
    assert results["machine"]["torch_threads"] == 1
    assert torch.get_num_threads() >= 1  # the fixture ran with 1 thread; the default is back
    before = torch.get_num_threads()
    bench.run_bench(tiny_config(methods=["rpg_exact"], train_methods=[], catalogue_sizes=[200], sid_lengths=[8]), "cpu")
    assert torch.get_num_threads() == before


def test_every_requested_cell_has_a_record(results: dict) -> None:
    cells = results["requested"]
    assert bench.missing_cells(results) == []
    # 2 catalogues x 4 methods + 2 beams x 2 methods + 2 lengths x 3 methods, shared cells merged,
    # + training: TIGER once, RPG and ACERec at 2 lengths
    axes = {(c["method"], c["axis"]) for c in cells}
    assert axes >= {("tiger_beam", "catalogue"), ("rpg_graph", "beam"), ("acerec_exact", "sid_length"), ("rpg", "training")}
    assert len([c for c in cells if c["kind"] == "inference"]) == 8 + 4 + 6
    assert len([c for c in cells if c["kind"] == "training"]) == 5
    inference = [r for r in results["records"] if r["kind"] == "inference"]
    assert all(r["status"] == "ok" for r in inference)  # nothing here is too big or too slow
    # a setting on several axes is measured once, at batch 1 and batched
    shared = [r for r in inference if r["method"] == "rpg_graph" and r["n_items"] == 200 and r["sid_length"] == 8 and r["beam"] == 4]
    assert sorted(r["batch_size"] for r in shared) == [1, 3]
    assert set(shared[0]["axes"]) == {"catalogue", "beam", "sid_length"}


def test_tiger_beam_axis_is_timed_with_and_without_its_kv_cache(results: dict) -> None:
    uncached = [r for r in results["records"] if r["kind"] == "uncached"]
    assert {(r["method"], r["beam"], r["batch_size"]) for r in uncached} == {("tiger_beam", b, B) for b in (2, 4) for B in (1, 3)}
    assert all(r["axes"] == ["beam"] and r["kv_cache"] is False and r["status"] == "ok" for r in uncached)
    cached = [r for r in results["records"] if r["kind"] == "inference" and r["method"] == "tiger_beam"]
    assert all(r["kv_cache"] is True for r in cached)
    table = bench.kv_cache_table(results)
    assert list(table.index) == [2, 4] and (table["no cache / KV cache"] > 0).all()
    # the uncached records are not inference cells: axis tables and missing cells ignore them
    assert bench.missing_cells({**results, "records": [r for r in results["records"] if r["kind"] != "uncached"]}) == []


def test_missing_cells_notices_a_dropped_record(results: dict) -> None:
    dropped = {**results, "records": [r for r in results["records"] if not (r["kind"] == "inference" and r["method"] == "tiger_beam" and r["beam"] == 2 and r["batched"])]}
    missing = bench.missing_cells(dropped)
    assert [(c["method"], c["axis"], c["beam"]) for c in missing] == [("tiger_beam", "beam", 2)]


def test_throughput_and_latency_are_positive_and_consistent(results: dict) -> None:
    config = results["config"]
    for r in results["records"]:
        if r["kind"] in ("inference", "uncached"):
            repeats = config["repeats"] if r["batch_size"] == 1 else config["batch_repeats"]
            assert len(r["times_s"]) == repeats and all(t > 0 for t in r["times_s"])
            assert r["batch_seconds"] == pytest.approx(float(np.median(r["times_s"])))
            assert r["users_per_s"] == pytest.approx(r["batch_size"] / r["batch_seconds"])
            assert r["latency_ms_per_user"] == pytest.approx(1000 * r["batch_seconds"] / r["batch_size"])
            assert r["peak_mem_mb"] >= 0 and r["held_mem_mb"] > 0
        elif r["kind"] == "training" and r["status"] != "skipped":  # skipped: bf16 without native bf16
            assert r["status"] == "ok" and r["steps"] == config["train_steps"] == len(r["times_s"])
            assert r["samples_per_s"] == pytest.approx(r["batch_size"] / r["step_seconds"])
            # TIGER predicts one item per row; RPG and ACERec label every history position
            per_row = 1 if r["method"] == "tiger" else config["rpg_history"]
            assert r["targets_per_s"] == pytest.approx(per_row * r["samples_per_s"])
            assert r["n_parameters"] > 0 and r["peak_mem_mb"] >= 0


def test_builds_are_recorded_apart_with_estimates_flagged(results: dict) -> None:
    builds = [r for r in results["records"] if r["kind"] == "build"]
    graph = {r["n_items"]: r for r in builds if r["what"] == "exact_knn_graph"}
    # measured up to exact_graph_max_items = 200, extrapolated quadratically above
    assert not graph[200]["estimated"] and graph[400]["estimated"]
    assert graph[400]["seconds"] == pytest.approx(4 * graph[200]["seconds"])
    assert {r["n_items"] for r in builds if r["what"] == "random_graph"} == {200, 400}
    # ACERec scores from its digit log-probs alone, as RPG: nothing built per catalogue
    assert {r["what"] for r in builds} == {"sid_table", "random_graph", "exact_knn_graph"}


def test_slow_batched_cells_are_skipped_with_a_reason() -> None:
    config = tiny_config(methods=["rpg_exact"], train_methods=[], catalogue_sizes=[200], sid_lengths=[8], max_call_s=1e-9)
    results = bench.run_bench(config, "cpu")
    records = [r for r in results["records"] if r["kind"] == "inference"]
    assert [r["status"] for r in sorted(records, key=lambda r: r["batch_size"])] == ["ok", "skipped"]
    skipped = next(r for r in records if r["status"] == "skipped")
    assert "max_call_s" in skipped["reason"] and skipped["users_per_s"] is None
    assert bench.missing_cells(results) == []  # a skipped cell with its reason counts as present


# ---------------------------------------------------------------------------- catalogues
def test_sample_codes_gives_the_asked_size_and_distinct_rows_when_asked() -> None:
    codes = bench.sample_codes(500, 2, 30, seed=3)
    assert codes.shape == (500, 2) and codes.min() >= 0 and codes.max() < 30
    assert len(np.unique(codes, axis=0)) < 500  # 900 combinations for 500 items: some repeat
    distinct = bench.sample_codes(500, 2, 30, seed=3, distinct=True)
    assert distinct.shape == (500, 2) and len(np.unique(distinct, axis=0)) == 500
    assert np.array_equal(bench.sample_codes(500, 2, 30, seed=3), codes)  # seeded
    assert not np.array_equal(bench.sample_codes(500, 2, 30, seed=4), codes)
    # roughly uniform per digit
    counts = np.bincount(bench.sample_codes(30_000, 1, 3, seed=0)[:, 0])
    assert counts.min() > 9_000
    with pytest.raises(ValueError, match="distinct codes need more"):
        bench.sample_codes(50, 2, 5, seed=0, distinct=True)
    with pytest.raises(ValueError, match="n_items"):
        bench.sample_codes(0, 2, 5, seed=0)


def test_random_graph_links_other_items_only() -> None:
    graph = bench.random_graph(50, 7, seed=0)
    assert graph.shape == (50, 7) and graph.dtype == torch.int64
    assert int(graph.min()) >= 0 and int(graph.max()) < 50
    assert not (graph == torch.arange(50).unsqueeze(1)).any()
    assert len(torch.unique(graph)) > 40  # spread over the catalogue
    assert torch.equal(bench.random_graph(50, 7, seed=0), graph)
    with pytest.raises(ValueError, match="n_items >= 2"):
        bench.random_graph(1, 3, seed=0)


# ---------------------------------------------------------------------------- exact scoring
def _sids(n: int = 40, m: int = 6, width: int = 8) -> SemanticIDs:
    return SemanticIDs.from_codes(bench.sample_codes(n, m, width, seed=1, distinct=True), width, dedup=False)


def test_rpg_exact_top_k_is_the_top_of_model_scores() -> None:
    torch.manual_seed(0)
    model = RPG(_sids(), max_len=5, **RPG_TINY).eval()
    histories = torch.randint(1, 41, (4, 5))
    with torch.no_grad():
        scores = model.scores(histories)
        top = bench.exact_top_k(scores, 5)
    assert top.shape == (4, 5) and int(top.min()) >= 1  # the padding column never ranks
    assert torch.equal(top, scores.argsort(dim=1, descending=True)[:, :5])


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"catalogue_sizes": [0]}, "catalogue_sizes"),
        ({"catalogue_sizes": []}, "catalogue_sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"repeats": 0}, "repeats"),
        ({"tiger_beams": [10, -1]}, "tiger_beams"),
        ({"sid_lengths": [0]}, "sid_lengths"),
        ({"train_steps": 0}, "train_steps"),
        ({"max_call_s": 0}, "max_call_s"),
        ({"train_precisions": ["fp8"]}, "train_precisions"),
        ({"precision_matmul": [64, 16]}, "precision_matmul"),
        ({"methods": ["tiger_beam", "sasrec"]}, "methods"),
    ],
)
def test_bad_sizes_name_their_parameter(overrides: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        tiny_config(**overrides)


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="device='tpu' is unknown"):
        bench.run_bench(tiny_config(), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            bench.run_bench(tiny_config(), device="cuda")


def test_command_line_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--batch-size", "0"])
    assert "batch_size must hold integers >= 1" in capsys.readouterr().err


def test_config_sizes_and_auto_values() -> None:
    full, quick = BenchConfig(), BenchConfig.quick()
    assert full.catalogue_sizes == [10_000, 100_000, 1_000_000] and full.sid_lengths == [8, 16, 32, 64]
    assert max(quick.catalogue_sizes) < max(full.catalogue_sizes)
    cpu = full.resolved(torch.device("cpu"))
    assert (cpu.batch_size, cpu.train_batch_size) == (32, 32)
    cuda = full.resolved(torch.device("cuda"))
    assert cuda.batch_size == 256
    assert full.batch_size == "auto"  # resolved returns a copy


def test_training_is_measured_in_fp32_and_bf16_where_the_cpu_has_bf16(results: dict) -> None:
    matmul = {r["precision"]: r for r in results["records"] if r["kind"] == "matmul"}
    assert set(matmul) == {"fp32", "bf16"} and all(r["gflops"] > 0 for r in matmul.values())
    training = [r for r in results["records"] if r["kind"] == "training"]
    assert {r["precision"] for r in training} == {"fp32", "bf16"}
    assert all(r["status"] == "ok" for r in training if r["precision"] == "fp32")
    table = bench.precision_table(results)
    assert list(table.index.get_level_values("method").unique()) == ["acerec", "rpg", "tiger"]
    bf16 = [r for r in training if r["precision"] == "bf16"]
    if bench.training.cpu_has_native_bf16():
        assert all(r["status"] == "ok" for r in bf16) and (table["bf16 speed-up"] > 0).all()
    else:  # emulated bf16: skipped, with the measured matmul throughputs as the reason
        assert all(r["status"] == "skipped" and "no native bf16" in r["reason"] for r in bf16)
        assert table["bf16"].isna().all()


def test_bf16_training_runs_under_autocast_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.training, "cpu_has_native_bf16", lambda: True)  # autocast runs anyway
    config = tiny_config(methods=["rpg_exact"], catalogue_sizes=[200], sid_lengths=[4], train_sid_lengths=[4], train_methods=["rpg"])
    results = bench.run_bench(config, device="cpu")
    rows = {r["precision"]: r for r in results["records"] if r["kind"] == "training"}
    assert rows["bf16"]["status"] == "ok" and rows["bf16"]["samples_per_s"] > 0
    assert set(bench.precision_table(results).columns) == {"fp32", "bf16", "bf16 speed-up"}


# ---------------------------------------------------------------------------- plots
def test_plots_draw_one_line_per_method_of_each_axis(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = bench.plot_overview(results, title="tiny")
    axes = fig.axes
    assert len(axes) == 6
    assert [len(ax.lines) for ax in axes] == [4, 2, 3, 4, 2, 3]
    catalogue_rpg = bench.axis_series(results, "catalogue", "latency_ms_per_user")["rpg_exact"]
    assert catalogue_rpg[0] == [200, 400]
    pair = bench.plot_pair(results, "beam", "peak_mem_mb")
    assert [len(ax.lines) for ax in pair.axes] == [2, 2]
    assert "memory" in pair.axes[1].get_ylabel()
    fig2, ax = plt.subplots()
    bench.plot_training(ax, results)
    assert len(ax.lines) == 3
    plt.close("all")
    assert "logical cores" in bench.describe_machine(results)
    frame = bench.records_frame(results)
    assert len(frame) == len([r for r in results["records"] if r["kind"] == "inference"])
    assert math.isfinite(frame["users_per_s"].sum())


def test_reading_comparison_takes_the_median_round_and_the_right_direction_of_speed_up() -> None:
    from handbook.bench.reading import comparison_table, steal_seconds

    def rounds(*values):
        return [{"records": [{"case": "RPG", "samples_per_s": s}, {"case": "RPG exact scoring, hidden 128", "ms_per_user": ms}]}
                for s, ms in values]  # fmt: skip

    results = {"current": {"rounds": rounds((200, 1.0), (100, 3.0), (210, 1.2))},
               "baseline": {"rounds": rounds((100, 2.0), (90, 2.4), (5, 9.0))}}  # fmt: skip
    table = comparison_table(results)
    assert table.loc["RPG", "now"] == 200 and table.loc["RPG", "baseline"] == 90
    assert table.loc["RPG", "speed-up"] == pytest.approx(200 / 90)
    # fewer ms per user is faster: the speed-up is baseline / now
    assert table.loc["RPG exact scoring, hidden 128", "speed-up"] == pytest.approx(2.4 / 1.2)
    assert table.loc["RPG exact scoring, hidden 128", "unit"] == "ms per user"
    assert steal_seconds() >= 0 or np.isnan(steal_seconds())


def test_read_results_round_trips_and_names_a_missing_file(results_and_path: tuple[dict, Path]) -> None:
    results, path = results_and_path
    assert bench.read_results(path) == json.loads(path.read_text())
    with pytest.raises(FileNotFoundError, match="make bench"):
        bench.read_results(path.with_name("results-nowhere.json"))


def test_compare_cells_pairs_each_cell_with_the_record_and_leaves_unknown_cells_empty(results: dict) -> None:
    same = bench.compare_cells(results, results)
    assert len(same) == sum(r["kind"] == "inference" and not r["batched"] and r["status"] == "ok" for r in results["records"])
    assert np.allclose(same["here / recorded"], 1.0)
    faster = json.loads(json.dumps(results))
    for r in faster["records"]:
        if r["kind"] == "inference" and not r["batched"]:
            r["latency_ms_per_user"] /= 2
    assert np.allclose(bench.compare_cells(results, faster)["here / recorded"], 2.0)
    elsewhere = {**faster, "records": [r for r in faster["records"] if r["method"] != "rpg_graph"]}
    table = bench.compare_cells(results, elsewhere)
    assert table.loc["RPG graph decoding", "recorded"].isna().all()
    assert table.drop(index="RPG graph decoding")["recorded"].notna().all()
