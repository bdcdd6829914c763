"""One experiment end to end (`run_experiment`: config, recipe, training, test, the results and
per-user ranks files it writes), and `run_all`, every chosen model in turn.
"""

from __future__ import annotations

import datetime
import functools
import json
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handbook.decoding.graph import evaluate_graph
from handbook.device import device_name, seed_everything
from handbook.distributed import init_distributed, is_main_process
from handbook.experiment.configs import CONFIGS, METRICS, PUBLISHED, _check_model
from handbook.experiment.datasets import prepare_dataset
from handbook.experiment.overrides import make_config
from handbook.experiment.recipes import RECIPES
from handbook.io import write_json_atomic, write_npy_atomic
from handbook.paths import repo_root
from handbook.profiles import profile_overrides, results_name
from handbook.provenance import git_commit
from handbook.train import fit

#: the commit this process imported, read once, when its first experiment starts
git_commit = functools.cache(git_commit)


def command_line(
    dataset: str, model: str, seed: int, device: str, overrides: dict, world_size: int, profile: str = "paper"
) -> str:
    """The shell command that reruns one experiment."""
    args = [str(dataset), "--models", model, "--seed", str(seed), "--device", str(device)]
    if profile != "paper":
        args += ["--profile", profile]
    for key, value in overrides.items():
        args += ["-o", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    launcher = f"torchrun --nproc_per_node={world_size}" if world_size > 1 else "python"
    return f"{launcher} -m handbook.experiment {shlex.join(args)}"


def run_experiment(
    model: str,
    dataset: str | Path,
    *,
    device: str = "auto",
    seed: int = 0,
    out_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    show_progress: bool = False,
    profile: str = "paper",
    **overrides: Any,
) -> dict[str, Any]:
    """Train and test `model` on `dataset`; write `<out_dir>/<dataset>/<model>.json` (`<model>-<profile>.json`).

    The config is the paper's, then the `profile`'s overrides (`handbook.profiles`), then
    `overrides` (`make_config`); `out_dir` defaults to results/ in the checkout. Returns the
    record written (on other torchrun ranks than 0, which write nothing, a record without
    test metrics).
    """
    name = _check_model(model)
    config = make_config(name, dataset, **{**profile_overrides(profile, name), **overrides})  # bad names fail before any work
    dataset = str(dataset)
    out = Path(out_dir) if out_dir is not None else repo_root() / "results"
    context = init_distributed(device)
    started = time.perf_counter()
    commit = git_commit()  # the code this run imported, not the checkout when it ends
    prep = prepare_dataset(dataset, config["k_core"])
    seed_everything(seed)
    recipe = RECIPES[name](config, prep, context, seed, show_progress)

    run = None
    if recipe.batches is not None:
        # one folder per results file, so a cpu run never resumes from a paper-settings one
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / prep.slug / results_name(name, profile).removesuffix(".json")
        run = fit(
            recipe.model, recipe.batches, lambda m: recipe.evaluate(m, "valid", (5, 10)),
            epochs=config["epochs"], lr=config["lr"], optimizer=config["optimizer"], weight_decay=config["weight_decay"],
            warmup_steps=config["warmup_steps"], schedule=config["schedule"], grad_clip=config["grad_clip"],
            patience=config["patience"], eval_every=config["eval_every"], metric="ndcg@10", device=context.device, amp=config["amp"],
            seed=seed, steps_per_epoch=recipe.steps_per_epoch, checkpoint_dir=ckpt, show_progress=show_progress,
        )  # fmt: skip
    record: dict[str, Any] = {
        "model": name,
        "dataset": prep.slug,
        "profile": profile,
        "world_size": context.world_size,
        "rank": context.rank,
    }
    if not context.is_main:
        return record

    with torch.no_grad():
        valid = recipe.evaluate(recipe.model, "valid", (5, 10)) if run is None else run.best_metrics
        test, test_ranks = recipe.evaluate(recipe.model, "test", (5, 10), return_ranks=True)
        test_exact, decoding = None, recipe.decoding
        if config.get("graph_decoding"):  # the paper's decoding is the headline, exact scoring beside it
            graph = recipe.sids.knn_graph(
                config["n_edges"], recipe.model.token_table().detach(), device=str(context.device)
            )
            histories, targets = prep.data.eval_arrays("test", config["max_len"])
            test_exact, decoding = test, "graph"
            test, test_ranks = evaluate_graph(
                recipe.model, histories, targets, graph, ks=(5, 10), num_beams=config["num_beams"],
                propagation_steps=config["propagation_steps"], seed=seed, batch_size=config["eval_batch_size"],
                return_ranks=True,
            )  # fmt: skip
    n_parameters = (
        sum(p.numel() for p in recipe.model.parameters())
        if isinstance(recipe.model, torch.nn.Module)
        else 0
    )
    record.update(
        {
            "status": "ok",
            "dataset_name": prep.name,
            "dataset_source": prep.source,
            "n_users": prep.data.n_users,
            "n_items": prep.data.n_items,
            "test": test,  # the headline: graph-decoded where the config asks for it, as RPG reports
            "test_decoding": decoding,  # "graph", "beam" or "exact"
            "test_exact": test_exact,  # exact scoring of every item, beside a graph-decoded headline
            "published": PUBLISHED.get(prep.slug, {}).get(name),
            "validation": {
                "metric": "ndcg@10",
                "best": valid,
                "best_epoch": None if run is None else run.best_epoch,
                "epochs_run": 0 if run is None else run.epochs_run,
                "stopped_early": False if run is None else run.stopped_early,
                "history": [] if run is None else run.history,
            },
            "train_steps": 0 if run is None else len(run.step_losses),
            "plateau": recipe.plateau,  # losses of models that ignore the history, to read history's last train_loss against
            "config": config,
            "sid": None if recipe.sids is None else recipe.sids.summary(),
            "n_parameters": n_parameters,
            "seed": seed,
            "device": str(context.device),
            "device_name": device_name(context.device),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "train_seconds": 0.0 if run is None else run.seconds,
            "total_seconds": time.perf_counter() - started,
            "command": command_line(dataset, name, seed, device, overrides, context.world_size, profile),
            "git_commit": commit,
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    # the headline's per-user test ranks first, so a results file always has its ranks beside it
    record["test_ranks_file"] = write_ranks(out / prep.slug / ranks_name(name, profile), test_ranks).name
    write_json_atomic(out / prep.slug / results_name(name, profile), record)
    return record


def ranks_name(model: str, profile: str) -> str:
    """File of a model's per-user test ranks, beside its results: `<model>[-<profile>].ranks.npy`."""
    return results_name(model, profile).removesuffix(".json") + ".ranks.npy"


def write_ranks(path: Path, ranks: np.ndarray) -> Path:
    """Save per-user 0-based ranks (int32, users in the dataset's order) atomically."""
    return write_npy_atomic(path, np.asarray(ranks, dtype=np.int32))


def run_all(
    dataset: str,
    models: list[str],
    overrides: dict[str, Any],
    **kwargs: Any,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run every model in turn; a failure is recorded and the next model still runs.

    Returns ({model: record}, {model: "ErrorType: message"}).
    """
    records: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for name in models:
        own = {k: v for k, v in overrides.items() if k in CONFIGS[name]}
        if is_main_process():  # one line per model, not one per torchrun rank
            print(f"--> {name} on {dataset}", flush=True)
        try:
            records[name] = run_experiment(name, dataset, **own, **kwargs)
        except Exception as err:  # reported below; the other models still run
            message = str(err).strip().splitlines()
            failures[name] = f"{type(err).__name__}: {message[-1] if message else ''}"
            print(f"    {name} FAILED: {failures[name]}", file=sys.stderr, flush=True)
            traceback.print_exc(file=sys.stderr)
            continue
        record = records[name]
        if "test" in record:
            metrics = ", ".join(f"{k} {record['test'][k]:.4f}" for k in METRICS)
            if record.get("test_exact"):
                metrics += f" ({record['test_decoding']} decoding; exact scoring: ndcg@10 {record['test_exact']['ndcg@10']:.4f})"
            validation = record["validation"]
            stopping = (
                f"best epoch {validation['best_epoch']} of {validation['epochs_run']} (cap {record['config']['epochs']}), "
                f"{record['train_steps']} steps, "
                if validation["epochs_run"]
                else ""
            )
            print(f"    {metrics} ({stopping}{record['train_seconds']:.0f} s training)", flush=True)
    return records, failures
