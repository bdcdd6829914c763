"""Slide figures of the handbook's mechanisms, drawn from code so that they restyle together.

Each function returns a matplotlib Figure: the pipeline (notebook 00), a prefix trie of
real SIDs (04/05), TIGER's encoder-decoder (05), RPG's parallel digit heads and one
graph-decoding step (07), ACERec's token merger and intent tokens and their block-causal
mask (08). Boxes take their colour from `handbook.plotting`, so a model is drawn in the
colour its results are plotted in.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from handbook.plotting import PALETTE, model_colour

#: colours of the parts every diagram shares
INPUT, STATE, TOKEN, MUTED = PALETTE[7], PALETTE[4], PALETTE[5], "#DDDDDD"


def _canvas(width: float, height: float) -> tuple[plt.Figure, plt.Axes]:
    """A figure with one axis in data units = inches, no ticks or frame."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str, colour: str, size: float = 9,
         alpha: float = 0.25) -> None:  # fmt: skip
    """A rounded box centred at (x, y) with a centred label."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                facecolor=colour, edgecolor=colour, alpha=alpha, linewidth=1.2))  # fmt: skip
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], colour: str = "black",
           style: str = "-|>", text: str | None = None, curve: float = 0.0) -> None:  # fmt: skip
    """An arrow from `start` to `end`, optionally labelled at its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=colour, linewidth=1,
                                 connectionstyle=f"arc3,rad={curve}", shrinkA=2, shrinkB=2))  # fmt: skip
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=7,
                color="#444444")  # fmt: skip


# ---------------------------------------------------------------------- notebook 00
PIPELINE = (
    ("datasets", "raw files", "handbook.data"),
    ("preprocess", "5-core, leave-\none-out, windows", "handbook.data"),
    ("embed", "item text ->\nvectors", "handbook.embed"),
    ("tokenizers", "vectors ->\ncodes", "handbook.tokenizers"),
    ("sid", "collisions, tokens,\ntrie, graph", "handbook.sid"),
    ("models", "next-item\ntokens", "handbook.models"),
    ("decoding", "beams or scores\n-> item ids", "handbook.decoding"),
    ("metrics", "Recall@K\nNDCG@K", "handbook.metrics"),
)


def pipeline() -> plt.Figure:
    """The handbook's pipeline: one box per package module, in data-flow order."""
    step, width = 1.45, 1.25
    fig, ax = _canvas(step * len(PIPELINE) + 0.2, 1.9)
    for i, (name, what, module) in enumerate(PIPELINE):
        x = 0.1 + step * (i + 0.5)
        _box(ax, x, 1.15, width, 0.9, f"{name}\n\n{what}", PALETTE[i % 4], size=8)
        ax.text(x, 0.45, module, ha="center", fontsize=6.5, family="monospace", color="#444444")
        if i:
            _arrow(ax, (x - step + width / 2, 1.15), (x - width / 2, 1.15))
    return fig


# ---------------------------------------------------------------------- notebooks 04-05
def prefix_trie(codes: np.ndarray, item_ids: Sequence[int] | None = None, highlight: Sequence[int] = (),
                root: str = "BOS", first_digit: int = 1) -> plt.Figure:  # fmt: skip
    """The prefix trie of a few SIDs (n, n_digits): one level per digit, one leaf per item.

    `highlight` is a prefix (codes) whose path is drawn in colour: the beams a constrained
    search may follow after it are its children. To draw a subtree, pass the codes below a
    shared prefix, that prefix as `root` and the number of its first drawn digit.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError(f"codes must be a non-empty (n, n_digits) array, got shape {codes.shape}")
    if len(codes) > 24:
        raise ValueError(f"a readable trie has at most 24 leaves, got {len(codes)}: pass a few SIDs")
    order = np.lexsort(codes.T[::-1])
    codes = codes[order]
    items = np.arange(1, len(codes) + 1) if item_ids is None else np.asarray(item_ids)[order]
    n, depth = codes.shape
    fig, ax = _canvas(max(0.55 * n + 0.6, 4.0), 1.0 * (depth + 1) + 0.8)
    width = ax.get_xlim()[1]
    leaf_x = 0.3 + (np.arange(n) + 0.5) * (width - 0.6) / n
    top = ax.get_ylim()[1] - 0.4  # the root sits at the top, one row per digit below it

    def level_y(level: int) -> float:
        return top - level * 1.0

    highlight = tuple(highlight)
    ax.add_patch(plt.Circle((width / 2, level_y(0)), 0.16, color=STATE, alpha=0.5))
    ax.text(width / 2, level_y(0), root, ha="center", va="center", fontsize=6)
    parent_xy = {(): (width / 2, level_y(0))}
    for level in range(1, depth + 1):
        prefixes = [tuple(row[:level]) for row in codes]
        for prefix in dict.fromkeys(prefixes):
            rows = [i for i, p in enumerate(prefixes) if p == prefix]
            xy = (float(leaf_x[rows].mean()), level_y(level))
            on_path = prefix[: len(highlight)] == highlight[: len(prefix)] and len(highlight) > 0
            colour = model_colour("TIGER") if on_path else INPUT
            _arrow(ax, parent_xy[prefix[:-1]], xy, colour=colour, style="-")
            ax.add_patch(plt.Circle(xy, 0.16, color=colour, alpha=0.45))
            ax.text(*xy, str(prefix[-1]), ha="center", va="center", fontsize=7)
            parent_xy[prefix] = xy
    for x, item in zip(leaf_x, items, strict=True):
        ax.text(x, level_y(depth) - 0.4, f"item\n{item}", ha="center", va="top", fontsize=6)
    for level in range(1, depth + 1):
        ax.text(0.05, level_y(level), f"digit {first_digit + level - 1}", fontsize=7, va="center", color="#444444")
    return fig


def encoder_decoder(n_history: int = 3, n_digits: int = 3) -> plt.Figure:
    """TIGER: the history's SID tokens feed the encoder; the decoder generates the next SID digit by digit."""
    step = 0.48  # one token box and its gap
    enc_w, dec_w = n_history * n_digits * step, (n_digits + 1) * step
    enc_left, dec_left = 0.3, 0.3 + enc_w + 1.5
    fig, ax = _canvas(dec_left + dec_w + 0.3, 3.3)
    colour = model_colour("TIGER")
    for j in range(n_history * n_digits):
        label = f"$c^{{{j // n_digits + 1}}}_{j % n_digits + 1}$"
        _box(ax, enc_left + (j + 0.5) * step, 0.55, step - 0.06, 0.36, label, TOKEN, size=7)
    ax.text(enc_left + enc_w / 2, 0.1, "history: digit $j$ of item $i$ is token $c^i_j$", ha="center", fontsize=7)
    _box(ax, enc_left + enc_w / 2, 1.65, enc_w, 0.9, "encoder\nbidirectional self-attention", colour, size=8)
    _arrow(ax, (enc_left + enc_w / 2, 0.75), (enc_left + enc_w / 2, 1.2))
    for d in range(n_digits + 1):
        x = dec_left + (d + 0.5) * step
        _box(ax, x, 0.55, step - 0.06, 0.36, f"$t_{d}$" if d else "BOS", TOKEN if d else STATE, size=7)
        if d < n_digits:  # the output at position d predicts digit d + 1
            ax.text(x, 2.75, f"$t_{d + 1}$", ha="center", fontsize=7)
            _arrow(ax, (x, 2.12), (x, 2.68))
    ax.text(dec_left + dec_w / 2, 3.05, "one softmax per digit", ha="center", fontsize=7, color="#444444")
    ax.text(dec_left + dec_w / 2, 0.1, "BOS + next item's SID (teacher forcing)", ha="center", fontsize=7)
    _box(ax, dec_left + dec_w / 2, 1.65, dec_w, 0.9, "decoder\ncausal self-attn\n+ cross-attn", colour, size=8)
    _arrow(ax, (dec_left + dec_w / 2, 0.75), (dec_left + dec_w / 2, 1.2))
    _arrow(ax, (enc_left + enc_w, 1.65), (dec_left, 1.65), text="keys, values")
    return fig


# ---------------------------------------------------------------------- notebook 07
def parallel_heads(n_history: int = 3, n_digits: int = 4) -> plt.Figure:
    """RPG: an item is the mean of its digit embeddings; one state predicts all digits of the next item at once."""
    fig, ax = _canvas(1.3 * n_history + 3.2, 3.8)
    colour = model_colour("RPG")
    for t in range(n_history):
        x = 0.8 + 1.3 * t
        for d in range(n_digits):
            _box(ax, x - 0.45 + d * 0.3, 0.35, 0.26, 0.3, f"{d + 1}", TOKEN, size=6)
        _arrow(ax, (x, 0.55), (x, 0.95))
        ax.text(x + 0.06, 0.72, "mean", fontsize=6, color="#444444")
        _box(ax, x, 1.15, 0.8, 0.32, f"$e_{{{t + 1}}}$", INPUT, size=8)
    ax.text(0.8 + 1.3 * (n_history - 1) / 2, 0.05, "digit embeddings of each history item", ha="center", fontsize=7)
    mid = 0.8 + 1.3 * (n_history - 1) / 2
    _box(ax, mid, 2.05, 1.3 * n_history, 0.8, "causal transformer (GPT-2 blocks)", colour, size=8)
    for t in range(n_history):
        _arrow(ax, (0.8 + 1.3 * t, 1.32), (0.8 + 1.3 * t, 1.65))
    head_x = 1.3 * n_history + 1.5
    _arrow(ax, (mid + 1.3 * n_history / 2, 2.05), (head_x - 0.7, 2.05), text="$h_L$")
    for d in range(n_digits):
        y = 3.3 - d * 0.55
        _box(ax, head_x, y, 1.2, 0.4, f"head {d + 1}: $p(c_{d + 1}\\mid h_L)$", colour, size=7)
        _arrow(ax, (head_x - 0.7, 2.05), (head_x - 0.6, y), colour="#888888")
    ax.text(head_x, 3.7, "all digits in parallel", ha="center", fontsize=7)
    return fig


def graph_step(positions: np.ndarray, edges: np.ndarray, beam: Sequence[int], candidates: Sequence[int],
               kept: Sequence[int], scores: np.ndarray | None = None) -> plt.Figure:  # fmt: skip
    """One propagation step of graph decoding: the beam, its neighbours (candidates) and the new beam.

    positions (n, 2) place the items; edges (n, degree) are each item's neighbours in the SID graph.
    """
    positions = np.asarray(positions, dtype=float)
    span = np.ptp(positions, axis=0).max() or 1.0
    xy = (positions - positions.min(0)) / span * 3.2 + 0.4
    fig, ax = _canvas(4.0 + 1.6, 4.0)
    for i, row in enumerate(np.asarray(edges)):
        for j in row:
            ax.plot(*zip(xy[i], xy[j], strict=True), color=MUTED, linewidth=0.8, zorder=1)
    role = {}
    for i in candidates:
        role[int(i)] = ("candidate", PALETTE[1])
    for i in beam:
        role[int(i)] = ("beam", INPUT)
    for i in kept:
        role[int(i)] = ("new beam", model_colour("RPG"))
    for i, (x, y) in enumerate(xy):
        name, colour = role.get(i, ("", MUTED))
        ax.add_patch(plt.Circle((x, y), 0.15, color=colour, alpha=0.8 if name else 0.5, zorder=2))
        label = str(i) if scores is None or name == "" else f"{i}\n{scores[i]:.1f}"
        ax.text(x, y, label, ha="center", va="center", fontsize=6, zorder=3)
    for k, (name, colour) in enumerate([("beam", INPUT), ("candidate", PALETTE[1]), ("new beam", model_colour("RPG"))]):
        ax.add_patch(plt.Circle((4.5, 3.4 - 0.4 * k), 0.12, color=colour, alpha=0.8))
        ax.text(4.7, 3.4 - 0.4 * k, name, va="center", fontsize=7)
    return fig


# ---------------------------------------------------------------------- notebook 08
def token_merger(n_digits: int = 8, n_latents: int = 2) -> plt.Figure:
    """ACERec: an item's m digit embeddings are merged into k latents by cross-attention, then its intent token."""
    fig, ax = _canvas(0.42 * n_digits + 3.6, 3.6)
    colour = model_colour("ACERec")
    left = 0.4
    for d in range(n_digits):
        _box(ax, left + 0.42 * d + 0.19, 0.4, 0.36, 0.34, f"$E_{{{d + 1}}}$", TOKEN, size=6)
    digits_mid = left + 0.42 * n_digits / 2
    ax.text(digits_mid, 0.05, f"item: {n_digits} digit embeddings (+ subspace positions)", ha="center", fontsize=7)
    _box(ax, digits_mid, 1.55, 0.42 * n_digits, 0.7, "multi-head cross-attention\nkeys, values = digit embeddings",
         colour, size=7)  # fmt: skip
    _arrow(ax, (digits_mid, 0.6), (digits_mid, 1.2))
    q_x = left + 0.42 * n_digits + 1.5
    _box(ax, q_x, 0.4, 1.5, 0.34, "summary $s = f_s(E)$", STATE, size=7)
    _box(ax, q_x, 1.55, 1.5, 0.5, f"{n_latents} queries $Q = f_q(s)$", STATE, size=7)
    _arrow(ax, (left + 0.42 * n_digits, 0.4), (q_x - 0.75, 0.4), text="pool")
    _arrow(ax, (q_x, 0.6), (q_x, 1.3))
    _arrow(ax, (q_x - 0.75, 1.55), (digits_mid + 0.21 * n_digits, 1.55), text="queries")
    for k in range(n_latents):
        x = digits_mid - 0.3 * (n_latents - 1) + 0.6 * k
        _box(ax, x, 2.75, 0.5, 0.36, f"$Z_{{{k + 1}}}$", colour, size=7, alpha=0.5)
        _arrow(ax, (digits_mid, 1.9), (x, 2.55), colour="#888888")
    ax.text(digits_mid + 0.3 * n_latents + 0.1, 2.25, "$Z = f_{out}(\\cdot)$", fontsize=7, color="#444444")
    _box(ax, q_x, 2.75, 0.9, 0.36, "intent $h$", STATE, size=7, alpha=0.5)
    _arrow(ax, (q_x, 0.6), (q_x + 0.6, 0.6), style="-", colour="#888888")
    _arrow(ax, (q_x + 0.6, 0.6), (q_x + 0.6, 2.75), style="-", colour="#888888")
    _arrow(ax, (q_x + 0.6, 2.75), (q_x + 0.45, 2.75), colour="#888888")
    ax.text((digits_mid + q_x) / 2, 3.3, f"one block of the sequence: [{n_latents} latents ; intent token]",
            ha="center", fontsize=7)  # fmt: skip
    return fig


def attention_mask(mask: np.ndarray, labels: Sequence[str], title: str = "") -> plt.Figure:
    """A boolean attention mask (queries x keys, True = may attend) as a grid, positions labelled."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.shape[0] != len(labels):
        raise ValueError(f"need a square (n, n) mask and n labels, got {mask.shape} and {len(labels)} labels")
    n = len(labels)
    fig, ax = plt.subplots(figsize=(0.32 * n + 1.4, 0.32 * n + 1.0), constrained_layout=True)
    ax.imshow(mask, cmap=plt.matplotlib.colors.ListedColormap(["white", model_colour("ACERec")]), vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="#BBBBBB", linewidth=0.5)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="both", length=0)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
