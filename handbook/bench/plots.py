"""Figures of benchmark results: one quantity along one axis, pairs, the overview, training throughput."""

from __future__ import annotations

from typing import Any

from handbook.bench.config import AXIS_METHODS, TRAIN_METHODS
from handbook.bench.report import AXIS_LABELS, METHOD_LABELS, axis_series

#: line style per method; each model keeps its book colour, and graph decoding is RPG's, dashed
STYLES = {"rpg_graph": "s--"}


def _short(n: float) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % size == 0:
            return f"{n // size:g}{suffix}"
    return f"{n:g}"


def _log_axes(ax, x_values: list, x_log_base: int | None) -> None:
    """Log y with plain-number labels; x ticks at the measured values."""
    from matplotlib import ticker

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if x_log_base:
        ax.set_xscale("log", base=x_log_base)
    if x_values:
        ax.set_xticks(x_values, [_short(x) for x in x_values])
        ax.xaxis.set_minor_locator(ticker.NullLocator())


def plot_axis(ax, results: dict[str, Any], axis: str, quantity: str = "latency_ms_per_user", batched: bool = False) -> None:
    """One line per method of `quantity` along `axis` (log scales where the axis spans decades)."""
    from handbook.plotting import model_colour

    series = axis_series(results, axis, quantity, batched)
    for method, (x, y) in series.items():
        ax.plot(x, y, STYLES.get(method, "o-"), label=METHOD_LABELS[method], color=model_colour(METHOD_LABELS[method]))
    x_values = sorted({x for xs, _ in series.values() for x in xs})
    _log_axes(ax, x_values, {"catalogue": 10, "sid_length": 2}.get(axis))
    ax.set_xlabel(AXIS_LABELS[axis])
    batch = results["config"]["batch_size"]
    ax.set_ylabel(
        {"latency_ms_per_user": "ms per user", "users_per_s": "users per second", "peak_mem_mb": "peak memory (MB)"}.get(quantity, quantity)
        + (f", batch {batch}" if batched else ", batch 1")
    )


def plot_pair(results: dict[str, Any], axis: str, batched_quantity: str = "users_per_s"):
    """Batch-1 latency (left) and a batched quantity (right) along one axis; returns the figure."""
    from handbook import plotting

    fig, (left, right) = plotting.subplots(ncols=2, width=4.8, height=3.4)
    plot_axis(left, results, axis, "latency_ms_per_user", batched=False)
    plot_axis(right, results, axis, batched_quantity, batched=True)
    left.legend(fontsize=8)
    return fig


def plot_overview(results: dict[str, Any], title: str | None = None):
    """Batch-1 latency (top) and batched throughput (bottom) along the three axes; returns the figure."""
    from handbook import plotting

    fig, axes = plotting.subplots(ncols=3, nrows=2, width=4.2, height=3.0)
    for col, axis in enumerate(AXIS_METHODS):
        plot_axis(axes[0, col], results, axis, "latency_ms_per_user", batched=False)
        plot_axis(axes[1, col], results, axis, "users_per_s", batched=True)
    handles, labels = {}, {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
            labels[lab] = lab
    fig.legend(list(handles.values()), list(labels), loc="outside lower center", ncols=4)
    if title:
        fig.suptitle(title)
    return fig


def plot_training(ax, results: dict[str, Any], quantity: str = "targets_per_s") -> None:
    """Training `quantity` (targets_per_s or samples_per_s) in fp32 against SID length, one line per model."""
    from handbook.plotting import model_colour

    lengths = set()
    for method in TRAIN_METHODS:
        points = sorted(
            (r["sid_length"], r[quantity])
            for r in results["records"]
            if r["kind"] == "training" and r["method"] == method and r["status"] == "ok"
            and r.get("precision", "fp32") == "fp32"
        )  # fmt: skip
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=METHOD_LABELS[method], color=model_colour(method))
            lengths.update(p[0] for p in points)
    _log_axes(ax, sorted(lengths), 2)
    ax.set_xlabel("SID length (digits)")
    ax.set_ylabel(quantity.replace("_per_s", " per second") + f", batch {results['config']['train_batch_size']}")
    ax.legend()
