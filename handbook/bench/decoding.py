"""Inference cells: TIGER's beam search, RPG's exact scoring and graph decoding, ACERec's exact scoring.

Each is timed per user at batch 1 (latency) and at a batch of users (throughput), with its
peak memory; what a method builds once per catalogue (graphs) is recorded apart as a
build cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handbook.bench.catalogue import random_graph, random_histories, sid_table
from handbook.bench.config import METHODS, BenchConfig
from handbook.bench.measure import (
    PeakMemory,
    base_record,
    build_record,
    free_memory,
    is_resource_error,
    sync_device,
    time_calls,
)
from handbook.decoding.graph import graph_decode
from handbook.models import RPG, TIGER, ACERec
from handbook.sid import SemanticIDs


def exact_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Item ids (B, k) of the k best scores of (B, n_items + 1) with a -inf padding column 0."""
    return scores.topk(k, dim=1).indices


def _inference_record(base: dict, batch: int, seconds: list[float], mem: PeakMemory, **extra: Any) -> dict:
    median = statistics.median(seconds)
    return {
        **base,
        **extra,
        "batch_size": batch,
        "batched": batch != 1,
        "status": "ok",
        "times_s": seconds,
        "batch_seconds": median,
        "latency_ms_per_user": 1000 * median / batch,
        "users_per_s": batch / median,
        "peak_mem_mb": mem.peak_mb,
        "held_mem_mb": mem.held_mb,
    }


def _skipped(base: dict, batch: int, reason: str, **extra: Any) -> dict:
    return {
        **base,
        **extra,
        "batch_size": batch,
        "batched": batch != 1,
        "status": "skipped",
        "reason": reason,
        "times_s": [],
        "batch_seconds": None,
        "latency_ms_per_user": None,
        "users_per_s": None,
        "peak_mem_mb": None,
        "held_mem_mb": None,
    }


def measure_inference(
    fn: Callable[[torch.Tensor], Any],
    base: dict[str, Any],
    *,
    rng: np.random.Generator,
    n_items: int,
    history: int,
    config: BenchConfig,
    device: torch.device,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Batch-1 and batched records of `fn(histories (B, L)) -> top-k` on random users of the catalogue."""
    extra = extra or {}
    batch = int(config.batch_size)
    records = []
    singles = random_histories(rng, n_items, config.repeats + 1, history)  # warm-up user, then one per repeat
    try:
        with torch.no_grad():
            with PeakMemory(device) as mem:
                fn(singles[:1])  # warm-up, also the memory measurement
            seconds = time_calls(fn, [singles[i : i + 1] for i in range(1, config.repeats + 1)], device)
        records.append(_inference_record(base, 1, seconds, mem, **extra))
    except Exception as err:  # noqa: BLE001 - only resource errors become skipped cells
        if not is_resource_error(err):
            raise
        free_memory(device)
        reason = f"{type(err).__name__} at batch 1: {str(err).splitlines()[0][:200]}"
        return [_skipped(base, 1, reason, **extra), _skipped(base, batch, reason, **extra)]
    if batch == 1:
        return records
    estimate = statistics.median(seconds) * batch
    if estimate > config.max_call_s:
        reason = (
            f"estimated {estimate:.0f} s per call of {batch} users (batch-1 latency x {batch}) "
            f"exceeds max_call_s={config.max_call_s:g}: raise --max-call-s or lower --batch-size"
        )
        return [*records, _skipped(base, batch, reason, **extra)]
    batches = [random_histories(rng, n_items, batch, history) for _ in range(config.batch_repeats + 1)]
    try:
        with torch.no_grad():
            with PeakMemory(device) as mem:
                fn(batches[0])
            seconds = time_calls(fn, batches[1:], device)
        records.append(_inference_record(base, batch, seconds, mem, **extra))
    except Exception as err:  # noqa: BLE001
        if not is_resource_error(err):
            raise
        free_memory(device)
        records.append(_skipped(base, batch, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}", **extra))
    return records


def _describe(rec: dict[str, Any]) -> str:
    head = f"{rec['method']:<13} n={rec['n_items']:<8} m={rec['sid_length']:<3} beam={rec['beam']!s:<5} B={rec['batch_size']:<4}"
    if rec["status"] != "ok":
        return f"{head} skipped: {rec['reason']}"
    return f"{head} {rec['latency_ms_per_user']:9.2f} ms/user {rec['users_per_s']:9.1f} users/s {rec['peak_mem_mb']:8.1f} MB"


def run_tiger_cells(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    wanted = sorted(k for k in settings if k[:2] == ("inference", "tiger_beam"))
    for n in sorted({k[2] for k in wanted}):
        sids = sid_table(config, n, config.tiger_digits, True, records, "tiger_beam")
        torch.manual_seed(config.seed)
        model = TIGER(sids, max_items=config.tiger_history, **config.tiger_kwargs).to(dev).eval()
        for key in (k for k in wanted if k[2] == n):
            _, method, _, m, beam = key
            k = min(config.top_k, beam)

            # the beam axis is measured a second time without the KV cache (kind "uncached")
            uncached = config.tiger_uncached and "beam" in settings[key]
            for kind, cache in [("inference", True), *([("uncached", False)] if uncached else [])]:

                def fn(h: torch.Tensor, model: TIGER = model, beam: int = beam, k: int = k, cache: bool = cache) -> torch.Tensor:
                    return model.recommend(h, k=k, beam_size=beam, batch_size=h.shape[0], cache=cache)[0]

                axes = settings[key] if cache else ["beam"]
                base = base_record(kind, method, axes, n, m, beam)
                extra = {"decoded_digits": sids.n_digits, "history": config.tiger_history, "top_k": k, "kv_cache": cache}
                rng = np.random.default_rng([config.seed, n, m, beam, 1])  # the same users with and without the cache
                for rec in measure_inference(fn, base, rng=rng, n_items=n, history=config.tiger_history, config=config, device=dev, extra=extra):
                    records.append(rec)
                    say(_describe(rec))
        del model, sids
        free_memory(dev)


def _graph_fits(n: int, edges: int, dev: torch.device) -> str | None:
    """None if a (n, edges) int64 graph fits comfortably in memory, else the reason it does not."""
    import psutil

    need = n * edges * 8
    free = torch.cuda.mem_get_info(dev)[0] if dev.type == "cuda" else psutil.virtual_memory().available
    if need > 0.5 * free:
        return f"the {n} x {edges} graph needs {need / 2**30:.1f} GiB, over half the {free / 2**30:.1f} GiB free"
    return None


def run_long_sid_cells(config: BenchConfig, settings: dict, dev: torch.device, records: list, say: Callable) -> None:
    families = ("rpg_exact", "rpg_graph", "acerec_exact")
    wanted = sorted(k for k in settings if k[0] == "inference" and k[1] in families)
    graph_cache: dict[int, torch.Tensor | str] = {}
    exact_graph: dict[int, float] = {}
    for n, m in sorted({(k[2], k[3]) for k in wanted}):
        here = [k for k in wanted if (k[2], k[3]) == (n, m)]
        sids = sid_table(config, n, m, False, records, "rpg")
        extra = {"history": config.rpg_history, "top_k": config.top_k}

        def measure(key: tuple, fn: Callable, more: dict | None = None, n: int = n, m: int = m, extra: dict = extra) -> None:
            base = base_record("inference", key[1], settings[key], n, m, key[4])
            rng = np.random.default_rng([config.seed, n, m, key[4] or 0, METHODS.index(key[1])])
            for rec in measure_inference(fn, base, rng=rng, n_items=n, history=config.rpg_history, config=config, device=dev, extra={**extra, **(more or {})}):
                records.append(rec)
                say(_describe(rec))

        rpg_keys = [k for k in here if k[1] in ("rpg_exact", "rpg_graph")]
        if rpg_keys:
            torch.manual_seed(config.seed)
            model = RPG(sids, max_len=config.rpg_history, **config.rpg_kwargs).to(dev).eval()
            for key in (k for k in rpg_keys if k[1] == "rpg_exact"):
                measure(key, lambda h, model=model: exact_top_k(model.scores(h.to(dev)), config.top_k))
            graph_keys = [k for k in rpg_keys if k[1] == "rpg_graph"]
            if graph_keys and n not in graph_cache:
                graph_cache.clear()  # one catalogue's graph at a time: 1M x 200 edges is 1.6 GB
                free_memory(dev)
                graph_cache[n] = _graph_fits(n, config.graph_edges, dev) or _timed_random_graph(config, n, dev, records)
            graph = graph_cache.get(n)
            for key in graph_keys:
                beam = key[4]
                more = {"n_edges": config.graph_edges, "propagation_steps": config.propagation_steps, "top_k": min(config.top_k, beam), "graph": "random"}
                if isinstance(graph, str):
                    base = base_record("inference", key[1], settings[key], n, m, beam)
                    for batch in sorted({1, int(config.batch_size)}):
                        records.append(_skipped(base, batch, graph, **extra, **more))
                        say(_describe(records[-1]))
                    continue

                def fn(h: torch.Tensor, model: RPG = model, beam: int = beam, graph: torch.Tensor = graph) -> torch.Tensor:
                    log_probs = model.digit_log_probs(h.to(dev))  # (B, m, W)
                    return graph_decode(
                        log_probs, model.codes, graph, num_beams=beam,
                        propagation_steps=config.propagation_steps, k=min(config.top_k, beam), seed=config.seed,
                        check=False,  # a graph built above over these codes; checking costs O(n) a call
                    ).items  # fmt: skip

                measure(key, fn, more)
            if "rpg_graph" in config.methods and m == config.default_sid_length and n in config.catalogue_sizes:
                exact_graph.update(_time_exact_graph(config, sids, model, n, m, dev, records))
            del model
            free_memory(dev)

        acerec_keys = [k for k in here if k[1] == "acerec_exact"]
        if acerec_keys:
            # token-only scoring: the digit log-probs of the last intent token, gathered per item
            torch.manual_seed(config.seed)
            model = ACERec(sids, max_len=config.rpg_history, **config.acerec_kwargs).to(dev).eval()
            for key in acerec_keys:
                measure(key, lambda h, model=model: exact_top_k(model.scores(h.to(dev)), config.top_k))
            del model
            free_memory(dev)
        del sids
    graph_cache.clear()
    _estimate_exact_graphs(config, exact_graph, records)


def _timed_random_graph(config: BenchConfig, n: int, dev: torch.device, records: list) -> torch.Tensor:
    tick = time.perf_counter()
    graph = random_graph(n, config.graph_edges, seed=config.seed).to(dev)
    sync_device(dev)
    records.append(
        build_record(
            "random_graph", "rpg_graph", n, None, time.perf_counter() - tick, n_edges=config.graph_edges,
            note="n_edges uniform random other items per item, the graph the decoding cells walk",
        )
    )  # fmt: skip
    return graph


def _time_exact_graph(
    config: BenchConfig, sids: SemanticIDs, model: RPG, n: int, m: int, dev: torch.device, records: list
) -> dict[int, float]:
    """Time `SemanticIDs.knn_graph` (RPG similarity) where it is affordable; {n: seconds}."""
    if n > int(config.exact_graph_max_items):
        return {}
    edges = min(config.graph_edges, n - 1)
    sync_device(dev)
    tick = time.perf_counter()
    sids.knn_graph(edges, model.token_table().detach(), device=str(dev))
    sync_device(dev)
    seconds = time.perf_counter() - tick
    records.append(
        build_record(
            "exact_knn_graph", "rpg_graph", n, m, seconds, n_edges=edges,
            note="SemanticIDs.knn_graph with RPG's token similarity, O(n_items^2)",
        )
    )  # fmt: skip
    return {n: seconds}


def _estimate_exact_graphs(config: BenchConfig, measured: dict[int, float], records: list) -> None:
    if "rpg_graph" not in config.methods:
        return
    for n in sorted(config.catalogue_sizes):
        if n in measured:
            continue
        m = config.default_sid_length
        if not measured:
            records.append(
                build_record(
                    "exact_knn_graph", "rpg_graph", n, m, None,
                    reason=f"no catalogue <= exact_graph_max_items={config.exact_graph_max_items} was timed to extrapolate from",
                )
            )  # fmt: skip
            continue
        n0 = max(measured)
        records.append(
            build_record(
                "exact_knn_graph", "rpg_graph", n, m, measured[n0] * (n / n0) ** 2, estimated=True,
                n_edges=config.graph_edges, note=f"extrapolated quadratically from {n0} items",
            )
        )  # fmt: skip
