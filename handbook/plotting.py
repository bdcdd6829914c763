"""One place for figure defaults, so every notebook's plots look alike."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]

#: one colour per method, the same in every figure of every notebook
MODEL_COLOURS = {
    "most-popular": PALETTE[7],
    "sasrec": PALETTE[5],
    "tiger": PALETTE[0],
    "decoder-only": PALETTE[6],
    "rpg": PALETTE[2],
    "acerec": PALETTE[3],
}


def model_colour(name: str) -> str:
    """The colour of a method, from the start of its label ("TIGER (free)" -> TIGER's); grey when unknown."""
    label = name.lower().replace("_", "-")
    for model in sorted(MODEL_COLOURS, key=len, reverse=True):  # "rpg graph" before "rpg"
        if label.startswith(model):
            return MODEL_COLOURS[model]
    return PALETTE[7]


def setup(dpi: int = 100) -> None:
    """Set the handbook's rcParams (plain settings, no named style sheets)."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": dpi,
            "savefig.dpi": 2 * dpi,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "font.size": 10,
            "legend.frameon": False,
        }
    )


def subplots(ncols: int = 1, nrows: int = 1, width: float = 4.8, height: float = 3.4, **kwargs):
    """plt.subplots with each panel `width` x `height` inches."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kwargs)


def long_tail(ax, counts: np.ndarray, label: str = "items") -> None:
    """Interaction count of each item, most popular first, on log axes."""
    ranked = np.sort(np.asarray(counts))[::-1]
    ax.loglog(np.arange(1, len(ranked) + 1), ranked)
    ax.set_xlabel(f"{label} ranked by popularity")
    ax.set_ylabel("interactions")


def scatter_by_label(ax, xy: np.ndarray, labels: np.ndarray, top: int = 7, size: float = 6) -> None:
    """2-D scatter coloured by the `top` most frequent labels; the rest in grey."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    shown = values[np.argsort(-counts, kind="stable")][:top]
    rest = ~np.isin(labels, shown)
    ax.scatter(xy[rest, 0], xy[rest, 1], s=size, c="#CCCCCC", label="other", linewidths=0)
    for colour, value in zip(PALETTE, shown, strict=False):
        mask = labels == value
        ax.scatter(xy[mask, 0], xy[mask, 1], s=size, color=colour, label=str(value), linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2.5, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))  # never over the points


def training_curve(history, loss_label: str = "training loss", metric: str = "val_ndcg@10", references=None):
    """Training loss per epoch (left axis) and a validation metric (right axis) of a `fit` run.

    history: `TrainResult.history`, a list of per-epoch rows (or a DataFrame of them).
    references: {label: loss} drawn as dotted horizontal lines on the loss axis, for what a model
    that ignores the history reaches (`handbook.plateaus`). The legend sits above the axes, off the data.
    """
    rows = pd.DataFrame(history)
    fig, ax1 = subplots(width=5.5, height=3.4)
    ax1.plot(rows["epoch"], rows["train_loss"], "o-", color=PALETTE[0], label=loss_label)
    for (label, value), colour in zip((references or {}).items(), PALETTE[4:], strict=False):
        ax1.axhline(value, color=colour, linestyle=":", linewidth=1.5, label=f"{label} ({value:.3f})")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax1.twinx()
    label = "validation " + metric.removeprefix("val_").replace("ndcg", "NDCG").replace("recall", "Recall")
    ax2.plot(rows["epoch"], rows[metric], "s--", color=PALETTE[1], label=label)
    ax2.set_ylabel(label)
    ax2.grid(False)  # one grid, the loss axis's
    fig.legend(loc="outside upper center", ncols=2, fontsize=8)
    return fig
