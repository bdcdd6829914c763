"""The command line of `python -m handbook.bench` (`make bench`): run, write bench/results-<device>.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import handbook.bench
from handbook.bench.config import METHODS, BenchConfig, missing_cells
from handbook.bench.report import precision_table, write_results
from handbook.bench.run import run_bench


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (`make bench`); returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m handbook.bench",
        description=handbook.bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="reading size (notebook 10), written under runs/bench/")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/, runs/bench/ with --quick)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="inference methods to run")
    parser.add_argument("--batch-size", type=int, default=None, help="users per batched call (default 256 on CUDA, 32 otherwise)")
    parser.add_argument("--repeats", type=int, default=None, help="timed batch-1 calls per cell")
    parser.add_argument("--max-call-s", type=float, default=None, help="skip batched calls estimated longer than this")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {"seed": args.seed}
    for name in ("methods", "batch_size", "repeats", "max_call_s", "threads"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    try:
        config = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
        command = " ".join(["python -m handbook.bench", *(sys.argv[1:] if argv is None else argv)])
        results = run_bench(config, device=args.device, command=command, log=lambda msg: print(msg, flush=True))
    except ValueError as err:
        parser.error(str(err))
    path = write_results(results, args.out or ("runs/bench" if args.quick else "bench"))
    missing = missing_cells(results)
    skipped = sum(r["status"] != "ok" for r in results["records"])
    print(f"wrote {path} ({len(results['records'])} records, {skipped} skipped) in {results['seconds'] / 60:.1f} min")
    if any(r["kind"] == "training" for r in results["records"]):
        print("training samples per second by precision:")
        print(precision_table(results).round(2).to_string())
    if missing:
        print(f"{len(missing)} requested cells have no record: {missing}", file=sys.stderr)
        return 1
    return 0

