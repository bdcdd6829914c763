"""Run profiles of make reproduce: every override names a real setting, results say their profile, the dry run counts."""

from __future__ import annotations

import json

import pytest

from handbook import experiment
from handbook.profiles import PROFILES, profile_overrides, results_name


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_override_is_a_setting_of_its_model(profile):
    for model, overrides in PROFILES[profile].items():
        config = experiment.make_config(model, "ml-100k", **overrides)  # raises on an unknown name or type
        assert all(config[k] == v for k, v in overrides.items())


def test_budgets_reach_their_peak_learning_rate():
    # RPG's reference warms up for 10,000 of its 13,200 steps on Beauty (88 an epoch): a shorter
    # budget must warm up within its own steps, or it ends before the learning rate peaks.
    for profile in ("cpu", "gpu"):
        for model in ("rpg", "acerec"):
            config = experiment.make_config(model, "Beauty", **PROFILES[profile][model])
            assert config["warmup_steps"] < 0.8 * config["epochs"] * 88


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown profile 'laptop'.*paper, cpu, gpu"):
        profile_overrides("laptop", "rpg")


def test_a_profile_run_records_its_profile_and_keeps_the_paper_file_apart(tmp_path):
    record = experiment.run_experiment("most-popular", "ml-100k", device="cpu", out_dir=tmp_path, profile="cpu")
    assert record["profile"] == "cpu" and "--profile cpu" in record["command"]
    written = json.loads((tmp_path / "ml-100k" / results_name("most-popular", "cpu")).read_text())
    assert written["profile"] == "cpu"
    assert not (tmp_path / "ml-100k" / "most-popular.json").exists()


def test_dry_run_counts_the_schedule_and_projects_time_inversely_to_throughput():
    prep = experiment.prepare_dataset("ml-100k")
    table = experiment.dry_run(prep, ["most-popular", "sasrec", "rpg"], {"epochs": 3}, "cpu", tflops=1.0)
    for model in ("sasrec", "rpg"):
        row = table.loc[model]
        assert row["steps"] == 3 * row["steps_per_epoch"] > 0
        assert row["train_flops"] == pytest.approx(6 * row["n_parameters"] * row["positions_per_step"] * row["steps"])
    faster = experiment.dry_run(prep, ["rpg"], {"epochs": 3}, "cpu", tflops=2.0)
    assert faster.loc["rpg", "projected_minutes"] == pytest.approx(table.loc["rpg", "projected_minutes"] / 2)
    assert table.loc["total", "steps"] == table.loc[["sasrec", "rpg"], "steps"].sum()
