"""The slide figures draw what they are given, and refuse what they cannot draw readably."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from handbook import diagrams  # noqa: E402
from handbook.plotting import MODEL_COLOURS, model_colour  # noqa: E402


def texts(fig: plt.Figure) -> list[str]:
    """Every text drawn on the figure's axes."""
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_pipeline_draws_one_box_per_module_in_data_flow_order():
    labels = [t.split("\n")[0] for t in texts(diagrams.pipeline()) if "\n" in t]
    assert labels == [name for name, _, _ in diagrams.PIPELINE]


def test_prefix_trie_has_one_node_per_distinct_prefix_and_one_leaf_per_item():
    codes = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0]])
    fig = diagrams.prefix_trie(codes, item_ids=[11, 12, 13, 14], root="code 7", first_digit=2)
    drawn = texts(fig)
    n_prefixes = sum(len({tuple(r[:level]) for r in codes}) for level in (1, 2, 3))
    circles = [p for p in fig.axes[0].patches if isinstance(p, plt.Circle)]
    assert len(circles) == 1 + n_prefixes  # the root and every distinct prefix
    assert "code 7" in drawn and "digit 4" in drawn
    assert sorted(t for t in drawn if t.startswith("item")) == [f"item\n{i}" for i in (11, 12, 13, 14)]


def test_prefix_trie_colours_exactly_the_highlighted_subtree():
    codes = np.array([[0, 1], [0, 2], [1, 0]])
    fig = diagrams.prefix_trie(codes, highlight=(0,))
    coloured = [p for p in fig.axes[0].patches if isinstance(p, plt.Circle)
                and matplotlib.colors.to_hex(p.get_facecolor()) == model_colour("TIGER").lower()]  # fmt: skip
    assert len(coloured) == 3  # the prefix 0 and its two children


def test_prefix_trie_rejects_unreadable_input():
    with pytest.raises(ValueError, match="at most 24 leaves"):
        diagrams.prefix_trie(np.zeros((30, 3), dtype=int))
    with pytest.raises(ValueError, match="non-empty"):
        diagrams.prefix_trie(np.zeros((0, 3), dtype=int))


def test_model_diagrams_label_their_parts():
    assert any("encoder" in t for t in texts(diagrams.encoder_decoder(n_history=2, n_digits=4)))
    heads = [t for t in texts(diagrams.parallel_heads(n_digits=5)) if t.startswith("head")]
    assert len(heads) == 5
    assert any("3 queries" in t for t in texts(diagrams.token_merger(n_digits=6, n_latents=3)))


def test_graph_step_marks_each_role_once():
    positions = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    edges = np.array([[1, 2], [0, 3], [0, 3], [1, 2]])
    fig = diagrams.graph_step(positions, edges, beam=[0], candidates=[1, 2], kept=[2])
    assert {"beam", "candidate", "new beam"} <= set(texts(fig))


def test_attention_mask_shows_the_mask_and_checks_its_labels():
    mask = np.tril(np.ones((3, 3), dtype=bool))
    fig = diagrams.attention_mask(mask, ["a", "b", "c"])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), mask)
    with pytest.raises(ValueError, match="labels"):
        diagrams.attention_mask(mask, ["a", "b"])


def test_a_model_keeps_its_colour_whatever_the_label_says_after_its_name():
    assert model_colour("TIGER (free)") == model_colour("tiger") == MODEL_COLOURS["tiger"]
    assert model_colour("RPG graph") == MODEL_COLOURS["rpg"]
    assert model_colour("decoder-only") != model_colour("TIGER")
    assert len(set(MODEL_COLOURS.values())) == len(MODEL_COLOURS)


def test_training_curve_draws_reference_lines_integer_epochs_and_a_legend_off_the_axes():
    from handbook.plotting import training_curve

    history = [{"epoch": e, "train_loss": 6.0 - 0.2 * e, "val_ndcg@10": 0.01 * e} for e in range(1, 8)]
    fig = training_curve(history, references={"plateau": 5.191, "last item": 5.071})
    loss_axis = fig.axes[0]
    lines = {line.get_label(): line for line in loss_axis.get_lines()}
    assert np.allclose(lines["plateau (5.191)"].get_ydata(), 5.191)
    assert np.allclose(lines["last item (5.071)"].get_ydata(), 5.071)
    fig.canvas.draw()
    ticks = [t for t in loss_axis.get_xticks() if 1 <= t <= 7]
    assert ticks and all(float(t).is_integer() for t in ticks)
    legend_box = fig.legends[0].get_window_extent()
    axes_box = loss_axis.get_window_extent()
    assert legend_box.y0 >= axes_box.y1 - 1  # above the data, not on it
