"""Every notebook executes with papermill at small parameters and writes sane metrics.json.

The committed outputs are checked separately by nbval (`pytest --nbval notebooks/`, run by
`make test` through pyproject's addopts). `make test-gpu` runs these tests with
HANDBOOK_DEVICE=cuda, which sets the `device` parameter of every notebook that has one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from handbook.io import read_npz
from handbook.reading import recorded_baselines
from handbook.runner import execute_notebook
from handbook.sweep import VALID_RANKS, load_sweep

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DEVICE = os.environ.get("HANDBOOK_DEVICE")  # e.g. "cuda" under `make test-gpu`; None: each default

# Small parameters per notebook, and a check of what its metrics.json must hold.
SMALL = {
    "00_overview": {"matrix_size": 64},
    "01_data": {"k": 10, "max_len": 10, "sliding_window": False},
    "02_item_embeddings": {"n_neighbours": 3},
    "03_tokenizers": {"width": 16, "rqvae_epochs": 20, "rvq_epochs": 2, "pq_digits": 8},
    "04_collisions": {
        "levels": [1, 3],
        "widths": [16, 64],
        "dedup_width": 16,
        "pq_digits": [4, 16],
        "opq_digits": 8,
    },
    "05_tiger": {  # 05-08 train here (rerun); test_a_training_chapter_reads_its_recorded_run reads
        "rerun": True,
        "tokenizer": "rkmeans",  # fits in a second; the default RQ-VAE (a minute) runs under nbval
        "max_items": 5,
        "sliding_window": False,
        "d_model": 32,
        "d_ff": 64,
        "n_layers": 1,
        "epochs": 2,
    },
    "06_design_choices": {"rerun": True, "max_items": 5, "d_model": 32, "d_ff": 64, "epochs": 1},
    "07_rpg": {
        "rerun": True,
        "n_digits": 8,
        "digit_sweep": [4, 8],
        "hidden": 32,
        "ffn": 64,
        "epochs": 1,
        "num_beams": 7,
        "n_edges": 10,
    },
    "08_acerec": {
        "rerun": True,
        "n_digits": 8,
        "n_latents": 2,
        "latent_sweep": [1, 2],
        "ablations": ["RPG", "+ intent token", "merger mean"],
        "hidden": 32,
        "ffn": 64,
        "epochs": 1,
        "popularity_edges": [1, 50],
    },
    "09_sweeps": {},  # its defaults: the matmul sweep executed live, the RPG smoke sweep read as recorded
    "11_over_seeds": {},  # its defaults: the four sweeps as recorded in results/sweeps/ (seconds)
    "10_efficiency": {  # the whole grid measured here, at toy sizes
        "rerun": True,
        "catalogue_sizes": [1000, 2000],
        "fixed_catalogue": 1000,
        "sid_lengths": [8],
        "tiger_beams": [5],
        "graph_beams": [5],
        "batch_size": 4,
        "repeats": 1,
        "batch_repeats": 1,
        "train_sid_lengths": [8],
        "train_steps": 1,
        "threads": 1,
    },
}


def check_00_overview(metrics: dict) -> None:
    assert metrics["device"] in {"cpu", "cuda", "mps"}
    assert metrics["matrix_size"] == 64
    assert metrics["matmul_gflops"] > 0


def check_01_data(metrics: dict) -> None:
    assert metrics["raw"]["interactions"] == 100_000 and metrics["raw"]["users"] == 943
    core = metrics["core"]
    assert core["items"] == metrics["n_items"] < 1349  # a 10-core keeps fewer items than the 5-core
    assert core["users"] == metrics["n_users"] == metrics["train_samples"]  # one sample per user


def check_02_item_embeddings(metrics: dict) -> None:
    assert (metrics["n_items"], metrics["dim"]) == (1349, 384)
    # Text embeddings must put same-genre movies together far above chance.
    assert metrics["neighbour_label_agreement"] > metrics["random_label_agreement"] + 0.3


def check_03_tokenizers(metrics: dict) -> None:
    results = metrics["tokenizers"]
    assert set(results) == {"RK-Means", "RVQ", "RQ-VAE", "PQ", "OPQ"}
    for name, r in results.items():
        assert 0 < r["reconstruction_error"] < 1, name  # unit vectors: 1 would keep nothing
        assert 0 < r["codes_used"] <= 1 and 0 <= r["collision_rate"] <= 1, name
        assert len(r["perplexity"]) == r["digits"] and all(p >= 1 for p in r["perplexity"]), name
    assert results["PQ"]["digits"] == 8 and results["RK-Means"]["codes_per_digit"] == 16
    # A residual tokenizer's first code groups same-genre movies above chance.
    assert (
        results["RK-Means"]["first_code_label_agreement"] > metrics["chance_label_agreement"] + 0.2
    )
    assert results["OPQ"]["reconstruction_error"] < results["RK-Means"]["reconstruction_error"]


def check_04_collisions(metrics: dict) -> None:
    rates = metrics["rkmeans_collision_rate"]
    assert set(rates) == {"1x16", "1x64", "3x16", "3x64"}
    assert rates["1x16"] == 1.0  # 16 codes for 1,349 items: everybody collides
    assert rates["3x64"] < rates["3x16"] < rates["1x16"]
    assert metrics["dedup"]["dedup_size"] == metrics["dedup"]["largest_collision_group"] > 1
    assert metrics["pq_collision_rate"]["16"] < metrics["pq_collision_rate"]["4"]
    assert 0 <= metrics["opq_collision_rate"] < 0.1


def check_05_tiger(metrics: dict) -> None:
    test = metrics["test"]
    assert set(test) == {"most-popular", "SASRec", "TIGER (constrained)", "TIGER (free)"}
    for name, scores in test.items():
        assert 0 <= scores["ndcg@5"] <= scores["ndcg@10"] <= scores["recall@10"] <= 1, name
    # Most-popular ignores the history, so the history length does not change it.
    assert test["most-popular"]["ndcg@10"] == pytest.approx(0.0224, abs=5e-4)
    assert 0 <= test["TIGER (free)"]["invalid_share"] <= 1
    assert test["TIGER (constrained)"]["invalid_share"] == 0
    assert len(metrics["tiger_history"]) == 2


def check_06_design_choices(metrics: dict) -> None:
    test = metrics["test"]
    assert set(test) == set(metrics["settings"]) == {
        "baseline", "rqvae", "rvq", "decoder-only", "no-sliding-window", "user-token"
    }  # fmt: skip
    for arm, row in test.items():
        assert 0 <= row["ndcg@5 (constrained)"] <= row["ndcg@10 (constrained)"] <= 1, arm
        assert row["invalid_share (constrained)"] == 0, arm
        assert row["delta low"] <= row["delta ndcg@10"] <= row["delta high"], arm
    assert test["baseline"]["delta ndcg@10"] == 0
    assert metrics["settings"]["decoder-only"]["architecture"] == "decoder-only"


def check_07_rpg(metrics: dict) -> None:
    assert set(metrics["length_sweep"]) == {"4", "8"}
    for m, row in metrics["collisions"].items():
        assert 0 <= row["collision rate"] <= 1, m
    decoding = metrics["decoding"]
    # A parameter outside the default grid is decoded too, and compared in the table.
    assert "graph b=7 s=3" in decoding and "RPG m=8 (graph b=7 s=3)" in metrics["test"]
    assert decoding["exact"]["visited"] == metrics["n_items"]
    for name, row in decoding.items():
        assert 0 <= row["ndcg@10"] <= row["recall@10"] <= 1, name
        assert row["visited"] <= metrics["n_items"] and row["ms per user"] > 0, name
    # One step from 7 start items over 10 edges reaches at most 7 + 7 * 10 items.
    assert decoding["graph b=7 s=1"]["visited"] <= 77
    assert set(metrics["test"]) >= {"most-popular", "SASRec", "TIGER (beam 10)", "RPG m=8 (exact)"}


def check_08_acerec(metrics: dict) -> None:
    assert (metrics["n_digits"], metrics["n_latents"]) == (8, 2)
    assert set(metrics["compression_sweep"]) == {"1", "2"}
    assert metrics["compression_sweep"]["1"]["r = m / k"] == 8
    # the ablation arms asked for and the full model ("+ ISA"); nothing else
    assert set(metrics["ablations"]) == {"RPG", "+ intent token", "+ ISA", "merger mean"}
    assert metrics["ablations"]["+ ISA"]["vs"] == "+ intent token"
    test = metrics["test"]
    assert set(test) == {"most-popular", "SASRec", "TIGER (beam 10)", "RPG", "ACERec"}
    for name, row in test.items():
        assert 0 <= row["ndcg@5"] <= row["ndcg@10"] <= row["recall@10"] <= 1, name
    for name, row in metrics["ablations"].items():
        assert 0 <= row["ndcg@10"] <= row["recall@10"] <= 1, name
    assert test["most-popular"]["ndcg@10"] == pytest.approx(0.0224, abs=5e-4)
    # cold start: two edges make three buckets that together hold every test user
    for name, buckets in metrics["cold_start"].items():
        assert list(buckets) == ["0", "1-49", "50+"], name
        assert sum(row["users"] for row in buckets.values()) == metrics["n_users"], name


def check_09_sweeps(metrics: dict) -> None:
    assert metrics["live_sweep"] == "matmul-throughput-smoke" and metrics["live_n_ok"] == 4  # 2 sizes x 2 seeds
    # the recorded RPG smoke sweep, as committed in results/sweeps/
    assert metrics["read"] == "recorded"
    assert metrics["sweep"] == "rpg-sid-length-smoke" and metrics["notebook"] == "07_rpg.ipynb"
    assert (metrics["n_runs"], metrics["n_ok"], metrics["n_failed"]) == (4, 4, 0)
    summary = metrics["summary"]
    assert set(summary) == {"n_digits=4", "n_digits=8"}  # 2 lengths x 2 seeds
    for setting, row in summary.items():
        assert row["n"] == 2 and 0 <= row["ndcg@10 mean"] <= 1 and row["ndcg@10 std"] >= 0, setting


def check_10_efficiency(metrics: dict) -> None:
    assert metrics["n_missing"] == 0 and metrics["n_requested"] == 16 and metrics["batch_size"] == 4
    methods = {"TIGER beam search", "RPG exact scoring", "RPG graph decoding", "ACERec exact scoring"}
    assert set(metrics["latency_ms_per_user"]) == set(metrics["users_per_s"]) == methods
    for method in methods:
        assert set(metrics["latency_ms_per_user"][method]) == {"1000", "2000"}, method
        assert all(v > 0 for v in metrics["latency_ms_per_user"][method].values()), method
        assert all(v > 0 for v in metrics["users_per_s"][method].values()), method
    assert set(metrics["latency_by_beam"]) == {"TIGER beam search", "RPG graph decoding"}
    assert set(metrics["latency_by_sid_length"]) == {
        "RPG exact scoring", "RPG graph decoding", "ACERec exact scoring"
    }  # fmt: skip
    assert set(metrics["training_samples_per_s"]) == {"tiger m=3", "rpg m=8", "acerec m=8"}
    assert all(v > 0 for v in metrics["training_samples_per_s"].values())


def check_11_over_seeds(metrics: dict) -> None:
    seeds = load_sweep(REPO / "sweeps" / "reading-comparison.yaml").seeds
    assert metrics["seeds"] == seeds and len(seeds) >= 2  # every seed the comparison sweep records
    methods = ["most-popular", "SASRec", "TIGER", "RPG", "ACERec"]
    assert set(metrics["every_method"]) == set(methods)
    for name, values in metrics["every_method"].items():
        assert all(0 <= v <= 1 for v in values["ndcg@10"]) and len(values["ndcg@10"]) == len(seeds), name
    assert len(metrics["pairs"]) == 10  # every pair of the five
    for name, row in metrics["pairs"].items():
        assert row["low"] <= row["difference"] <= row["high"], name
    # every rung, merger variant and k, each against the one it builds on
    assert set(metrics["ladder"]) == {
        "+ merger", "+ intent token", "+ ISA", "+ reconstruction",
        "merger mean", "merger conv", "merger mlp", "k=1", "k=4",
    }  # fmt: skip
    assert metrics["ladder"]["merger mlp"]["vs"] == "+ ISA" and metrics["ladder"]["k=1"]["vs"] == "+ ISA"
    assert metrics["ladder"]["+ ISA"]["vs"] == "+ intent token"
    # choices are made on validation where the recorded runs kept it; only an adopted arm's test is read
    for name, row in metrics["ladder"].items():
        assert row["read on"] == "validation", name
        assert (row["test ndcg@10 if adopted"] != "") == row["adopted"], name
    assert set(metrics["adopted_on_validation"]) == {"ladder", "whitening", "tiger"}
    assert set(metrics["whitening"]) == {"RPG", "ACERec"}
    assert all(row["read on"] == "validation" for row in metrics["whitening"].values())
    tiger = metrics["tiger_reference_choices"]  # both TIGER sweeps, each arm against the one it changes
    assert set(tiger) == {
        "per-level-head", "relative-positions", "tiger-recipe", "grid-recipe",
        "subsequences", "rqvae", "rqvae-through-residuals",
    }  # fmt: skip
    assert tiger["rqvae-through-residuals"]["vs"] == "rqvae (constrained)" and tiger["subsequences"]["vs"] == "baseline (constrained)"
    for name, row in tiger.items():  # the TIGER sweeps keep validation ranks too
        assert row["read on"] == "validation", name
        assert (row["test ndcg@10 if adopted"] != "") == row["adopted"], name
    assert set(metrics["cold_start_acerec_minus_rpg"]) <= {"0", "1-9", "10-49", "50-149", "150+"}


CHECKS = {
    "00_overview": check_00_overview,
    "01_data": check_01_data,
    "02_item_embeddings": check_02_item_embeddings,
    "03_tokenizers": check_03_tokenizers,
    "04_collisions": check_04_collisions,
    "05_tiger": check_05_tiger,
    "06_design_choices": check_06_design_choices,
    "07_rpg": check_07_rpg,
    "08_acerec": check_08_acerec,
    "09_sweeps": check_09_sweeps,
    "10_efficiency": check_10_efficiency,
    "11_over_seeds": check_11_over_seeds,
}


def _parameter_names(name: str) -> set[str]:
    """Names in a notebook's `parameters` cell."""
    import papermill

    return set(papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb")))


def test_every_notebook_has_a_papermill_test() -> None:
    names = {path.stem for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert names == set(SMALL) == set(CHECKS)


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_with_small_parameters(name: str, tmp_path: Path) -> None:
    params = dict(SMALL[name])
    if "runs_dir" in params:  # a sweep's runs go under the test's own folder
        params["runs_dir"] = str(tmp_path / params["runs_dir"])
    if DEVICE is not None and "device" in _parameter_names(name):
        params["device"] = DEVICE
    metrics = execute_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, params)
    CHECKS[name](metrics)
    assert (tmp_path / f"{name}.ipynb").is_file()
    if name in CHOOSE_ON_VALIDATION:  # every ranked model's validation ranks beside its test ranks
        test, valid = read_npz(tmp_path / "ranks.npz"), read_npz(tmp_path / VALID_RANKS)
        assert set(valid) == CHOOSE_ON_VALIDATION[name](set(test)), name
        assert all(len(valid[model]) == len(test[model]) for model in valid), name


#: the chapters whose runs chapter 11 chooses on: what their validation ranks must name, given the test ranks' names
CHOOSE_ON_VALIDATION = {
    "06_design_choices": lambda test: {model for model in test if not model.endswith(" (free)")},
    "08_acerec": lambda test: test - {"target training count"},
}


@pytest.mark.notebook
def test_efficiency_reads_the_recorded_bench_by_default(tmp_path: Path) -> None:
    small = {k: v for k, v in SMALL["10_efficiency"].items() if k != "rerun"}
    metrics = execute_notebook(NOTEBOOKS / "10_efficiency.ipynb", tmp_path, small)
    recorded = json.loads((REPO / "bench" / "results-cpu.json").read_text())
    assert metrics["read"] == "bench/results-cpu.json" and metrics["seconds"] == recorded["seconds"]
    assert set(metrics["latency_ms_per_user"]["RPG exact scoring"]) == {str(n) for n in recorded["config"]["catalogue_sizes"]}
    assert set(metrics["live_latency_ms_per_user"]["RPG exact scoring"]) == {"1000"}  # the one live case


# Chapters 06-08 at their defaults read a recorded run and train one small model live (05 does
# too, under nbval): here the live model is smaller still, the recorded one as committed.
READING = {  # name: (parameters, the recorded sweep it reads, its NDCG@10 column)
    "06_design_choices": ({"d_model": 32, "d_ff": 64, "arms": ["baseline", "rvq"]}, "grid-design-choices", "ndcg@10 (constrained)"),
    "07_rpg": ({"digit_sweep": [32], "hidden": 32, "ffn": 64, "live_epochs": 1}, "rpg-reading", "ndcg@10"),
    "08_acerec": ({"hidden": 32, "ffn": 64, "live_epochs": 1, "ablations": ["RPG", "merger mean"], "latent_sweep": [1, 2]}, "reading-comparison", "ndcg@10"),
}


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(READING))
def test_a_training_chapter_reads_its_recorded_run(name: str, tmp_path: Path) -> None:
    params, sweep, column = READING[name]
    metrics = execute_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, params)
    run = REPO / "results" / "sweeps" / sweep / "seed=0"
    recorded = json.loads((run / "metrics.json").read_text())
    assert metrics["rerun"] is False and json.loads((run / "params.json").read_text())["parameters"]["rerun"] is True
    assert metrics["dataset"] == recorded["dataset"] == "ml-100k"
    assert metrics["test"]  # every test number is recorded, whatever model was trained live:
    baselines = recorded_baselines("ml-100k").metrics((5, 10))  # the reading baselines in results/reading/
    for model, row in metrics["test"].items():
        if model in baselines.index and column == "ndcg@10":
            assert row[column] == pytest.approx(baselines.loc[model, column]), model
        elif model not in baselines.index:  # the chapter's own models: its recorded run
            assert row[column] == recorded["test"][model][column], model


@pytest.mark.notebook
def test_design_choices_names_a_bad_arms_parameter(tmp_path: Path) -> None:
    # The check runs before any data is loaded, so a typo fails in seconds with the fix in the message.
    with pytest.raises(Exception, match="parameter arms=.*keep 'baseline'"):
        execute_notebook(NOTEBOOKS / "06_design_choices.ipynb", tmp_path, {"arms": ["rqvae", "baseline-typo"]})
