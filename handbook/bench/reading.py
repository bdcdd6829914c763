"""Training throughput at reading size, for this checkout and an earlier commit in one run.

Each model of notebooks 05-08 takes `STEPS` AdamW steps on MovieLens-100K batches at its
chapter's reading size (`CASES`), each step timed (samples/s from the median step), then
validates once over every validation user; RPG's exact scorer also ranks 1,024 users against a
catalogue of Beauty's 12,101 items (random codes, m = 32, hidden 128 and 448). `--baseline REV`
measures the same cases with the package of commit REV, checked out in a temporary git worktree
and run in a subprocess: `make bench` passes the commit before the throughput work.

This machine is a virtual one whose neighbours take CPU time now and then (the "steal" of
/proc/stat: one epoch of the same model took 22 s and 94 s an hour apart). So the two versions
are measured in alternating rounds (now, before, now, before), each round records the steal
it suffered, and the table compares the medians over rounds. Results go to
`bench/reading-cpu.json` with the machine.

This file also runs as a script inside the baseline's worktree (`--worker`): it imports only
what both versions of the package have.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: model -> its chapter's reading size (notebook parameters at their defaults)
CASES = {
    "SASRec": "handbook.reading's SASRec: d 64, 2 layers, batch 256",
    # RK-Means SIDs for every TIGER: the reading TIGER's RQ-VAE gives SIDs of the same shape, so steps cost the same
    "TIGER": "handbook.reading's TIGER size: 3 x 64 + dedup SIDs, 1 + 1 layers, d 64, sliding windows, batch 256",
    "TIGER 05": "notebook 05's TIGER: 2 + 2 layers, d 64, sliding windows, batch 256",
    "decoder-only": "notebook 06's decoder-only arm: 2 layers, d 64, sliding windows, batch 256",
    "RPG": "notebook 07's RPG: whitened OPQ 32 x 256, hidden 128, FFN 256, batch 256",
    "ACERec": "notebook 08's ACERec: OPQ 16 x 256, k = 2, hidden 64, FFN 128, batch 256",
}
#: exact scoring at Beauty's catalogue size: (hidden, label)
SCORING = {128: "RPG exact scoring, 12,101 items, m = 32, hidden 128", 448: "the same at hidden 448"}
MAX_ITEMS = 5
WARMUP, STEPS = 3, 30  # untimed and timed training steps per model and round
ROUNDS = 2  # rounds of each version, alternating


def measure(models: list[str], threads: int, seed: int = 0) -> list[dict[str, Any]]:
    """One record per model (epoch seconds, samples/s, validation seconds) and per scoring case."""
    import numpy as np
    import torch

    from handbook.data import items_in_order, load_dataset, prepare, training_samples
    from handbook.decoding.beam import evaluate_generative
    from handbook.embed import embed_texts, item_texts
    from handbook.metrics import rank_all, summarize
    from handbook.models import RPG, TIGER, ACERec, DecoderOnly, SASRec
    from handbook.paths import cache_dir
    from handbook.sid import SemanticIDs
    from handbook.tokenizers import OPQ, make_tokenizer

    torch.set_num_threads(threads)
    ds = load_dataset("ml-100k")
    data = prepare(ds)
    X = embed_texts(item_texts(items_in_order(ds.items, data.item_ids)), model="all-MiniLM-L6-v2",
                    cache_dir=cache_dir("embeddings"), show_progress=False)  # fmt: skip
    sequences = data.train_sequences()
    valid_histories, valid_targets = data.eval_arrays("valid", MAX_ITEMS)
    train_rows = np.unique(np.concatenate(sequences)) - 1
    windows, window_targets = training_samples(sequences, MAX_ITEMS, sliding_window=True)

    def full_ranking(model):
        return summarize(rank_all(model.scores, valid_histories, valid_targets), ks=(10,))

    def beam(model):
        return evaluate_generative(model, valid_histories, valid_targets, ks=(10,), beam_size=10)

    def opq_sids(m, whiten):
        codes = OPQ(m=m, nbits=8, seed=seed, whiten=whiten).fit_encode(X, train_rows=train_rows)
        return SemanticIDs.from_codes(codes, 256, dedup=False)

    rkmeans = None
    records = []
    for name in models:
        torch.manual_seed(seed)
        if name == "SASRec":
            model = SASRec(data.n_items, max_len=MAX_ITEMS, hidden=64, n_layers=2, n_heads=2, dropout=0.2)
            batches = SASRec.make_batches(sequences, MAX_ITEMS, 256, seed=seed)
            validate = full_ranking
        elif name in ("TIGER", "TIGER 05", "decoder-only"):
            if rkmeans is None:
                codes = make_tokenizer("rkmeans", n_levels=3, width=64, seed=seed).fit_encode(X)
                rkmeans = SemanticIDs.from_codes(codes, 64, dedup=True)
            torch.manual_seed(seed)
            sizes = dict(max_items=MAX_ITEMS, d_model=64, n_heads=4, head_dim=16, d_ff=256)
            if name == "decoder-only":
                model = DecoderOnly(rkmeans, n_layers=2, **sizes)
            else:
                layers = 1 if name == "TIGER" else 2
                model = TIGER(rkmeans, n_encoder_layers=layers, n_decoder_layers=layers, **sizes)
            batches = type(model).make_batches(windows, window_targets, rkmeans, 256, seed=seed)
            validate = beam
        elif name in ("RPG", "ACERec"):
            sids = opq_sids(32, True) if name == "RPG" else opq_sids(16, False)
            torch.manual_seed(seed)
            if name == "RPG":
                model = RPG(sids, max_len=MAX_ITEMS, hidden=128, n_layers=2, n_heads=4, ffn=256, dropout=0.5)
            else:
                model = ACERec(sids, n_latents=2, isa_weight=0.1, item_counts=data.item_counts(), max_len=MAX_ITEMS,
                               hidden=64, n_layers=2, n_heads=4, ffn=128, dropout=0.5)  # fmt: skip
            batches = RPG.make_batches(sequences, MAX_ITEMS, 256, seed=seed)
            validate = full_ranking
        else:
            raise ValueError(f"unknown model {name!r}: pick from {sorted(CASES)}")
        batches = batches[: WARMUP + STEPS]
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        seconds = []
        for i, batch in enumerate(batches):
            tick = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if i >= WARMUP:
                seconds.append(time.perf_counter() - tick)
        step_s = float(np.median(seconds))
        rows = float(np.median([int(b[0].shape[0]) for b in batches[WARMUP:]]))
        tick = time.perf_counter()
        model.eval()
        with torch.no_grad():
            validate(model)
        records.append({"case": name, "what": CASES[name], "steps": len(seconds), "batch_rows": rows,
                        "step_s": step_s, "samples_per_s": rows / step_s,
                        "validation_s": time.perf_counter() - tick})  # fmt: skip
    for hidden, what in SCORING.items():
        rng = np.random.default_rng(seed)
        sids = SemanticIDs.from_codes(rng.integers(0, 256, size=(12_101, 32)), 256, dedup=False)
        torch.manual_seed(seed)
        model = RPG(sids, max_len=50, hidden=hidden, ffn=4 * hidden if hidden == 128 else 1024).eval()
        histories = torch.from_numpy(rng.integers(1, 12_102, size=(1024, 50)))
        with torch.no_grad():
            model.scores(histories[:256])  # warm-up
            tick = time.perf_counter()
            for start in range(0, 1024, 256):
                model.scores(histories[start : start + 256])
        seconds = time.perf_counter() - tick
        records.append({"case": f"RPG exact scoring, hidden {hidden}", "what": what, "users": 1024,
                        "ms_per_user": seconds / 1024 * 1e3})  # fmt: skip
    return records


def steal_seconds() -> float:
    """CPU time this virtual machine's host gave to others so far (the steal column of /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def measure_round(models: list[str], threads: int) -> dict[str, Any]:
    """`measure` with this checkout's package, and the steal it suffered."""
    start, tick = steal_seconds(), time.perf_counter()
    records = measure(models, threads)
    return {"records": records, "seconds": time.perf_counter() - tick, "steal_s": steal_seconds() - start}


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def baseline_round(tree: Path, models: list[str], threads: int, repo: Path) -> dict[str, Any]:
    """One round of `measure` with the package in the worktree `tree`, in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp:
        out = Path(tmp) / "records.json"
        # this file, copied out, imports `handbook` from the worktree (PYTHONPATH comes before
        # the installed checkout); run from `repo` so the embedding cache is shared
        script = Path(tmp) / "bench_reading.py"
        script.write_text(Path(__file__).read_text())
        env = {**os.environ, "PYTHONPATH": str(tree)}
        start, tick = steal_seconds(), time.perf_counter()
        subprocess.run([sys.executable, str(script), "--worker", "--threads", str(threads), "--json", str(out),
                        "--models", *models], cwd=repo, env=env, check=True)  # fmt: skip
        seconds = time.perf_counter() - tick
        return {"records": json.loads(out.read_text()), "seconds": seconds, "steal_s": steal_seconds() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handbook.bench.reading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--models", nargs="+", default=list(CASES), help=f"from {list(CASES)}")
    parser.add_argument("--baseline", default=None, help="a commit to measure beside this checkout")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the CI machine has 2)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of each version, alternating")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="results folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(CASES))
    if unknown:
        parser.error(f"unknown model(s) {unknown}: pick from {list(CASES)}")
    if args.worker:  # with the baseline's package: measure and hand the records back
        import handbook

        print(f"measuring the package in {Path(handbook.__file__).parent}", flush=True)
        args.json.write_text(json.dumps(measure(args.models, args.threads)))
        return 0

    import torch

    from handbook.bench.report import machine_info
    from handbook.io import write_json_atomic

    repo = Path(__file__).resolve().parents[2]
    command = " ".join(["python -m handbook.bench.reading", *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(torch.device("cpu"), command), "threads": args.threads,
                               "warmup_steps": WARMUP, "timed_steps": STEPS}  # fmt: skip
    results["current"] = {"commit": _git("rev-parse", "HEAD", cwd=repo),
                          "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", cwd=repo)),
                          "rounds": []}  # fmt: skip
    with contextlib.ExitStack() as stack:
        tree = None
        if args.baseline:
            commit = _git("rev-parse", "--verify", f"{args.baseline}^{{commit}}", cwd=repo)
            results["baseline"] = {"commit": commit, "rounds": []}
            tree = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-baseline-"))) / "tree"
            _git("worktree", "add", "--detach", str(tree), commit, cwd=repo)
            stack.callback(_git, "worktree", "remove", "--force", str(tree), cwd=repo)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}: this checkout", flush=True)
            results["current"]["rounds"].append(measure_round(args.models, args.threads))
            if tree is not None:
                print(f"round {round_ + 1} of {args.rounds}: {args.baseline}", flush=True)
                results["baseline"]["rounds"].append(baseline_round(tree, args.models, args.threads, repo))
    results["seconds"] = time.perf_counter() - started
    path = args.out / "reading-cpu.json"
    write_json_atomic(path, results)
    print(comparison_table(results).round(2).to_string())
    print(f"wrote {path} in {results['seconds'] / 60:.1f} min")
    return 0


def comparison_table(results: dict[str, Any]):
    """One row per case: the median over rounds of samples/s (or ms per user) now and at the baseline, and the speed-up."""
    import pandas as pd

    def column(side: str) -> pd.Series:
        rounds = results[side]["rounds"] if side in results else []
        values = pd.DataFrame([{r["case"]: r.get("samples_per_s", r.get("ms_per_user")) for r in one["records"]}
                               for one in rounds])  # fmt: skip
        return values.median() if len(values) else pd.Series(dtype=float)

    table = pd.DataFrame({"baseline": column("baseline"), "now": column("current")})
    scoring = table.index.str.contains("scoring")
    # samples/s grow with speed, ms per user shrink: the speed-up is now/baseline or baseline/now
    table["speed-up"] = (table["now"] / table["baseline"]).where(~scoring, table["baseline"] / table["now"])
    table["unit"] = ["ms per user" if s else "samples/s" for s in scoring]
    return table


if __name__ == "__main__":
    sys.exit(main())
