"""`python -m handbook.experiment`: every model end to end on ml-100k at a tiny size, configs, errors, failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from handbook import experiment
from handbook.device import cpu_model
from handbook.experiment import (
    CONFIGS,
    dataset_slug,
    main,
    make_config,
    parse_overrides,
    run_experiment,
    summary_table,
)
from handbook.metrics import summarize

# Tiny sizes: each model trains one epoch in seconds on a CPU core.
TINY = {
    "most-popular": {},
    "sasrec": {"epochs": 1, "hidden": 8, "n_layers": 1, "max_len": 5, "batch_size": 1024},
    "tiger": {
        "epochs": 1, "d_model": 16, "n_heads": 2, "head_dim": 8, "d_ff": 32, "n_layers": 1,
        "max_items": 3, "augmentation": "none", "rqvae_epochs": 1, "width": 16, "beam_size": 10,
        "batch_size": 1024,
    },
    "rpg": {
        "epochs": 1, "hidden": 16, "n_heads": 2, "ffn": 32, "n_layers": 1, "max_len": 5,
        "n_digits": 4, "nbits": 4, "n_edges": 10, "warmup_steps": 0, "batch_size": 1024,
    },
    "acerec": {
        "epochs": 1, "hidden": 16, "n_heads": 2, "ffn": 32, "n_layers": 1, "max_len": 5,
        "n_digits": 4, "nbits": 4, "n_latents": 2, "warmup_steps": 0, "batch_size": 1024,
    },
}  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def check_metrics(metrics: dict[str, float]) -> None:
    """Sane ranking metrics: 0 <= N@5 <= N@10 <= R@10 <= 1 and N@5 <= R@5 <= R@10."""
    r5, n5, r10, n10 = (metrics[k] for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"))
    assert 0 <= n5 <= n10 <= r10 <= 1
    assert n5 <= r5 <= r10


@pytest.mark.parametrize("model", list(TINY))
def test_model_runs_end_to_end(model, tmp_path) -> None:
    record = run_experiment(model, "ml-100k", device="cpu", seed=3, out_dir=tmp_path, **TINY[model])
    path = tmp_path / "ml-100k" / f"{model}.json"
    saved = json.loads(path.read_text())
    assert saved["test"] == record["test"] and saved["config"] == record["config"]
    # no temporary left; the per-user test ranks beside the results, and they give its metrics
    assert sorted(p.name for p in path.parent.iterdir()) == [f"{model}.json", f"{model}.ranks.npy"]
    assert saved["test_ranks_file"] == f"{model}.ranks.npy"
    ranks = np.load(path.parent / saved["test_ranks_file"])
    assert ranks.shape == (943,) and ranks.dtype == np.int32
    assert summarize(ranks, (5, 10)).items() <= saved["test"].items()
    check_metrics(saved["test"])
    check_metrics(saved["validation"]["best"])
    assert saved["status"] == "ok" and saved["model"] == model and saved["dataset"] == "ml-100k"
    assert saved["config"] == make_config(model, "ml-100k", **TINY[model])
    assert saved["seed"] == 3 and saved["device"] == "cpu" and saved["torch_version"] == torch.__version__
    assert saved["device_name"] == f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)" and saved["world_size"] == 1
    assert saved["command"].startswith("python -m handbook.experiment ml-100k --models " + model)
    assert (saved["n_users"], saved["n_items"]) == (943, 1349)
    assert saved["git_commit"] is None or len(saved["git_commit"].split("+")[0]) == 40
    if model == "most-popular":
        assert saved["validation"]["epochs_run"] == 0 and saved["n_parameters"] == 0
        assert saved["train_steps"] == 0 and saved["plateau"] is None
    else:
        assert saved["validation"]["epochs_run"] == 1 and saved["validation"]["best_epoch"] == 1
        assert saved["train_steps"] > 0
        assert saved["train_seconds"] > 0 and saved["n_parameters"] > 0
        assert saved["validation"]["history"][0]["val_ndcg@10"] == saved["validation"]["best"]["ndcg@10"]
    if model == "tiger":
        assert saved["sid"]["n_digits"] == 4 and saved["sid"]["dedup"]  # 3 levels + the dedup digit
        assert saved["test"]["invalid_share"] == 0.0  # constrained beam search
    if model in ("sasrec", "rpg", "acerec"):  # where the popularity plateau lies, beside the loss
        names = ["entropy of the items (most-popular)"] if model == "sasrec" else ["last-item count model", "per-digit entropy of the codes"]  # fmt: skip
        assert sorted(saved["plateau"]) == names  # each line below a uniform guess's loss
        assert all(0 < line < math.log(1349 if model == "sasrec" else 2 ** TINY[model]["nbits"]) for line in saved["plateau"].values())
    if model == "rpg":
        assert saved["sid"]["n_digits"] == 4 and not saved["sid"]["dedup"]
        assert saved["test_decoding"] == "graph" and "visited" in saved["test"]  # the paper's decoding
        check_metrics(saved["test_exact"])


def test_eval_every_validates_sparsely(tmp_path, capsys) -> None:
    """A long run may validate every few epochs: validation rows only at those epochs and the last."""
    overrides = {**TINY["sasrec"], "epochs": 3, "eval_every": 2}
    record = experiment.run_all("ml-100k", ["sasrec"], overrides, device="cpu", out_dir=tmp_path)[0]["sasrec"]
    history = record["validation"]["history"]
    assert [row["epoch"] for row in history if "val_ndcg@10" in row] == [2, 3]
    assert record["config"]["eval_every"] == 2 and "eval_every=2" in record["command"]
    # the run says where early stopping ended it, against its cap, and the steps it got
    best = record["validation"]["best_epoch"]
    assert f"best epoch {best} of 3 (cap 3), {record['train_steps']} steps" in capsys.readouterr().out


def test_overrides_and_paper_configs() -> None:
    config = make_config("rpg", "ml-100k", epochs=2, lr=1, hidden=32.0, graph_decoding="false")
    assert config["epochs"] == 2 and config["hidden"] == 32 and isinstance(config["hidden"], int)
    assert config["lr"] == 1.0 and isinstance(config["lr"], float)
    assert config["graph_decoding"] is False
    assert config["n_digits"] == 32 and config["temperature"] == 0.03  # Beauty's values by default
    # the RPG README's per-category values, found from the dataset's name or folder
    toys = make_config("rpg", "amazon2014:Toys_and_Games")
    assert (toys["lr"], toys["n_digits"], toys["n_edges"]) == (0.003, 16, 20)
    assert make_config("rpg", "/data/amazon2014/CDs_and_Vinyl")["n_digits"] == 64
    # ACERec's paper: m = 32, k = 4 and its own lr on every dataset, none of RPG's per-dataset values
    for dataset in ("amazon2014:Beauty", "amazon2014:Toys_and_Games", "/data/amazon2014/Sports_and_Outdoors"):
        acerec = make_config("acerec", dataset)
        assert (acerec["n_digits"], acerec["n_latents"], acerec["lr"]) == (32, 4, 0.003), dataset
    assert make_config("rpg", "amazon2014:Toys_and_Games", lr=0.5)["lr"] == 0.5  # -o wins
    assert make_config("tiger", "x")["beam_size"] == 20 and CONFIGS["tiger"]["epochs"] == 400
    # the defaults are not modified by a run's overrides
    assert make_config("rpg", "ml-100k")["epochs"] == 150


def test_parse_overrides() -> None:
    parsed = parse_overrides(["epochs=1", "amp=bf16", "grad_clip=null", "rqvae_hidden_dims=[8,4]"], ["tiger", "acerec"])
    assert parsed == {"epochs": 1, "amp": "bf16", "grad_clip": None, "rqvae_hidden_dims": [8, 4]}
    with pytest.raises(ValueError, match="no chosen model has this setting.*sasrec: .*hidden"):
        parse_overrides(["d_model=8"], ["sasrec"])  # TIGER's name, but TIGER is not chosen
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_overrides(["epochs"], ["sasrec"])


def test_bad_names_are_clear_errors(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="unknown model 'bert4rec'.*sasrec, tiger, rpg, acerec"):
        run_experiment("bert4rec", "ml-100k", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown override.*hiden.*valid names: .*hidden"):
        run_experiment("sasrec", "ml-100k", out_dir=tmp_path, hiden=8)
    with pytest.raises(ValueError, match="unknown dataset 'no-such-data'"):
        run_experiment("most-popular", "no-such-data", out_dir=tmp_path)
    for argv, message in [
        (["ml-100k", "--models", "sasrec,bert4rec"], "unknown model 'bert4rec'"),
        (["ml-100k", "--models", "sasrec", "-o", "n_digits=4"], "no chosen model has this setting"),
        ([str(tmp_path / "missing"), "--models", "most-popular"], "unknown dataset"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--out", str(tmp_path), "--no-progress"])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.json"))


def test_failing_model_is_reported_and_others_run(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    earlier = out / "ml-100k" / "rpg.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"from": "an earlier run"}\n')
    # OPQ cannot cut the 384-d embeddings into 5 digits: RPG fails, most-popular does not.
    argv = ["ml-100k", "--models", "rpg,most-popular", "--out", str(out), "--device", "cpu", "--no-progress"]
    code = main([*argv, "-o", "n_digits=5", "-o", "epochs=1"])
    assert code == 1
    captured = capsys.readouterr()
    assert "rpg" in captured.err and "FAILED" in captured.err and "divisible by m (5)" in captured.err
    assert "most-popular" in captured.out  # the summary table of the models that ran
    check_metrics(json.loads((out / "ml-100k" / "most-popular.json").read_text())["test"])
    # the failed model wrote nothing: its earlier result is intact and no temporary is left
    assert earlier.read_text() == '{"from": "an earlier run"}\n'
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["most-popular.json", "most-popular.ranks.npy", "rpg.json"]

    records, failures = experiment.run_all("ml-100k", ["rpg", "most-popular"], {"n_digits": 5}, out_dir=out, device="cpu")
    assert list(failures) == ["rpg"] and "ValueError" in failures["rpg"]
    assert list(records) == ["most-popular"]


def test_dataset_slug() -> None:
    assert dataset_slug("ml-100k") == "ml-100k"
    assert dataset_slug("amazon2014:Beauty") == "Beauty"
    assert dataset_slug("../shared/data/amazon2014/Beauty/") == "Beauty"
    assert dataset_slug("/data/Beauty/sequential_data.txt") == "Beauty"
    assert dataset_slug("/data/recbole/ml-1m/ml-1m.inter") == "ml-1m"
    assert dataset_slug("/data/My Data (v2)") == "My_Data_v2"


@pytest.mark.parametrize(
    ("items", "models", "message"),
    [
        (["hidden=abc"], ["rpg"], "override hidden=abc: hidden of rpg takes an integer (default 448), e.g. -o hidden=448"),
        (["epochs=1.5"], ["sasrec"], "epochs of sasrec takes an integer"),
        (["hidden=null"], ["rpg"], "hidden of rpg takes an integer"),  # null only where a default is None
        (["lr=fast"], ["tiger"], "lr of tiger takes a number (default 0.001), e.g. -o lr=0.001"),
        (["graph_decoding=yes"], ["rpg"], "graph_decoding of rpg takes true or false"),
        (["tokenizer=3"], ["tiger"], "tokenizer of tiger takes a string (default rqvae), e.g. -o tokenizer=rqvae"),
        (["rqvae_hidden_dims=[8,4.5]"], ["tiger"], "takes a list of integers (default [512,256,128])"),
        (["grad_clip=abc"], ["sasrec"], "grad_clip of sasrec takes a number or null (default null), e.g. -o grad_clip=1.0"),
        (["amp=[1]"], ["rpg"], 'amp of rpg takes true, false, "bf16" or "fp16"'),
        (["n_digits=x"], ["sasrec", "rpg"], "n_digits of rpg takes an integer"),  # the model that has it
    ],
)
def test_override_types_are_checked(items: list[str], models: list[str], message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_overrides(items, models)
    assert message in str(err.value)


def test_overrides_convert_where_lossless() -> None:
    parsed = parse_overrides(["lr=1", "hidden=32.0", "grad_clip=null", "graph_decoding=false"], ["sasrec", "rpg"])
    assert parsed == {"lr": 1.0, "hidden": 32, "grad_clip": None, "graph_decoding": False}
    assert isinstance(parsed["lr"], float) and isinstance(parsed["hidden"], int)
    assert parse_overrides(["amp=true", "grad_clip=2"], ["rpg"]) == {"amp": True, "grad_clip": 2.0}
    with pytest.raises(ValueError, match="hidden of rpg takes an integer"):
        make_config("rpg", "ml-100k", hidden="abc")  # the Python API checks as well


def test_bad_override_type_fails_before_the_data_is_read(tmp_path, capsys) -> None:
    # The dataset does not exist: had the data been loaded first, the error would name it instead.
    argv = [str(tmp_path / "missing"), "--models", "rpg", "-o", "hidden=abc", "--out", str(tmp_path), "--no-progress"]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "override hidden=abc: hidden of rpg takes an integer" in err and "unknown dataset" not in err


def test_rpg_graph_decoding_settings_are_the_readme_commands() -> None:
    # facebookresearch/RPG_KDD2025 README (commit ceed035): --num_beams, --n_edges, --propagation_steps
    readme = {
        "amazon2014:Beauty": (20, 200, 3, 32, 0.01),
        "amazon2014:Sports_and_Outdoors": (100, 30, 5, 16, 0.003),
        "amazon2014:Toys_and_Games": (200, 20, 3, 16, 0.003),
        "amazon2014:CDs_and_Vinyl": (20, 500, 5, 64, 0.001),
    }
    for dataset, expected in readme.items():
        c = make_config("rpg", dataset)
        assert (c["num_beams"], c["n_edges"], c["propagation_steps"], c["n_digits"], c["lr"]) == expected
        assert c["graph_decoding"] and c["whiten"]
    assert make_config("acerec", "amazon2014:Beauty")["whiten"]  # ACERec keeps RPG's tokenizer


def test_paired_differences_read_the_saved_ranks(tmp_path) -> None:
    folder = tmp_path / "ml-100k"
    for model, ranks in {"a": [0, 0, 5, 20], "b": [20, 20, 5, 20], "c": [0, 0, 5, 20]}.items():
        experiment.write_ranks(folder / experiment.ranks_name(model, "cpu"), np.array(ranks))
    table = experiment.paired_differences(folder, ["a", "b", "c", "not-run"], "cpu").set_index(["model", "minus"])
    assert list(table.index) == [("a", "b"), ("a", "c"), ("b", "c")]  # a model without ranks is left out
    assert table.loc[("a", "b"), "ndcg@10 difference"] == pytest.approx(0.5)  # two users at rank 0 instead of 20
    assert table.loc[("a", "c"), "ndcg@10 difference"] == 0 and not table.loc[("a", "c"), "differs"]
    assert not list(folder.glob(".*.tmp"))


def test_rpg_headline_is_graph_decoded_with_exact_scoring_beside_it(tmp_path) -> None:
    tiny = TINY["rpg"]
    exact = run_experiment("rpg", "ml-100k", device="cpu", seed=0, out_dir=tmp_path / "exact", graph_decoding=False, **tiny)  # fmt: skip
    graph = run_experiment("rpg", "ml-100k", device="cpu", seed=0, out_dir=tmp_path / "graph", **tiny)
    assert exact["test_decoding"] == "exact" and exact["test_exact"] is None
    assert graph["test_decoding"] == "graph" and "visited" in graph["test"]
    assert graph["test_exact"] == exact["test"]  # the same model, scored exactly, beside the headline
    graph = json.loads((tmp_path / "graph" / "ml-100k" / "rpg.json").read_text())  # as --compare reads it
    table = summary_table({"rpg": graph})
    assert table.loc["rpg", "decoding"] == "graph"
    assert table.loc["rpg", "ndcg@10"] == graph["test"]["ndcg@10"]
    assert table.loc["rpg", "exact ndcg@10"] == exact["test"]["ndcg@10"]
    assert table.loc["rpg", "best/epochs"] == "1/1" and table.loc["rpg", "steps"] == graph["train_steps"]
    assert table.loc["rpg", "popularity plateau"] == graph["plateau"]["per-digit entropy of the codes"]


def test_compare_prints_saved_results_and_their_paired_intervals(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    assert main(["ml-100k", "--models", "most-popular", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["ml-100k", "--models", "most-popular,sasrec", "--out", str(out), "--compare"]) == 0
    printed = capsys.readouterr().out
    assert "most-popular" in printed and "sasrec" not in printed  # sasrec never ran: left out
    assert "no per-user ranks" not in printed  # most-popular's ranks are saved beside its results
    with pytest.raises(SystemExit):
        main(["ml-100k", "--models", "sasrec", "--out", str(out), "--compare"])
    assert "no results of sasrec at profile 'paper'" in capsys.readouterr().err
