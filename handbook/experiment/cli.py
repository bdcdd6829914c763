"""The command line of `python -m handbook.experiment` (`make reproduce`, `make reproduce-plan`,
gpu/reproduce.sh): run the chosen models, or project their cost (`--dry-run`), or `--compare` saved results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import handbook.experiment
from handbook.distributed import shutdown
from handbook.experiment.compare import print_comparison
from handbook.experiment.configs import CONFIGS, DATA, MODELS, _check_model
from handbook.experiment.datasets import PreparedData, dataset_slug, prepare_dataset
from handbook.experiment.overrides import make_config, parse_overrides
from handbook.experiment.run import run_all
from handbook.paths import repo_root
from handbook.profiles import PROFILES, profile_overrides, results_name
from handbook.projection import plan

# Effective 6NT throughput (see handbook.projection), in TFLOP/s. CPU: calibrated on this project's
# 2-core CPU, where an RPG step (hidden 448, batch 256) took 6.8 s and a TIGER step (4+4 layers,
# d 128, batch 256) 4.3 s: 0.15 and 0.14 "TFLOP/s" of 6NT. GPU: an assumption for one H100/H200
# in bf16 (about 5% of its dense peak for models this small), to be replaced by a measured value.
DRY_RUN_TFLOPS = {"cpu": 0.15, "gpu": 50.0}


def dry_run(
    prep: PreparedData, models: list[str], overrides: dict[str, Any], profile: str, tflops: float | None = None
) -> pd.DataFrame:
    """One row per model: its schedule's steps, training FLOPs and time projected at `tflops` (see `handbook.projection`)."""
    tflops = tflops if tflops is not None else DRY_RUN_TFLOPS["gpu" if profile == "gpu" else "cpu"]
    rows = []
    for name in models:
        own = {k: v for k, v in overrides.items() if k in CONFIGS[name]}
        config = make_config(name, prep.slug, **{**profile_overrides(profile, name), **own})
        rows.append(plan(name, prep.data, config, tflops))
    table = pd.DataFrame(rows).set_index("model")
    table.loc["total"] = table.select_dtypes("number").sum()
    table.attrs["tflops"] = tflops
    print(f"{profile} profile on {prep.slug}, projected at {tflops:g} effective TFLOP/s (training only, no early stop):")
    return table


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 if any model failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m handbook.experiment",
        description=handbook.experiment.__doc__,  # --help prints the package's docstring
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", help='"ml-100k", "amazon2014:<Category>" or a dataset folder')
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(MODELS)}")
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda"')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/ in the checkout)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="save each model's best weights here, and its training state every epoch: a killed run started again resumes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--profile", default="paper", choices=list(PROFILES), help="paper settings, or a budget (handbook.profiles)")
    parser.add_argument("--dry-run", action="store_true", help="print each model's steps, FLOPs and projected time; train nothing")
    parser.add_argument("--tflops", type=float, default=None,
                        help="effective 6NT TFLOP/s for --dry-run (default: DRY_RUN_TFLOPS, gpu or cpu by --profile)")  # fmt: skip
    parser.add_argument("--compare", action="store_true",
                        help="train nothing: print the saved results of --models and --profile, with paired intervals")  # fmt: skip
    parser.add_argument("-o", "--override", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else repo_root() / "results"
    if args.compare:
        folder = out / dataset_slug(args.dataset)
        saved = {m: folder / results_name(m, args.profile) for m in args.models.split(",") if m.strip()}
        records = {m: json.loads(path.read_text()) for m, path in saved.items() if path.exists()}
        if not records:
            parser.error(f"no results of {', '.join(saved)} at profile {args.profile!r} in {folder}: run make reproduce first")
        print_comparison(folder, records, args.profile)
        return 0

    try:
        models = [_check_model(m) for m in args.models.split(",") if m.strip()]
        if not models:
            raise ValueError("--models is empty: name at least one model")
        overrides = parse_overrides(args.override, models)
        k_core = overrides.get("k_core", DATA["k_core"])
        prep = prepare_dataset(args.dataset, int(k_core))  # a bad dataset fails here, once
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as err:
        parser.error(str(err))

    if args.dry_run:
        print(dry_run(prep, models, overrides, args.profile, args.tflops).to_string())
        return 0

    try:
        records, failures = run_all(
            args.dataset, models, overrides, device=args.device, seed=args.seed, out_dir=args.out,
            checkpoint_dir=args.checkpoints, show_progress=not args.no_progress, profile=args.profile,
        )  # fmt: skip
        done = {name: r for name, r in records.items() if "test" in r}
        if done:
            print_comparison(out / dataset_slug(args.dataset), done, args.profile)
        if failures:
            print(f"\n{len(failures)} model(s) failed: {', '.join(failures)}", file=sys.stderr)
            return 1
        return 0
    finally:
        shutdown()
