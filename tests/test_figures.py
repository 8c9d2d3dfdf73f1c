"""The course's figure helpers draw what they say: per-row shares, arrows from edge to edge."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from minimodal.figures import Box, _edge, draw_diagram, plot_confusion


def test_confusion_rows_are_shares_of_their_own_row():
    fig, ax = plt.subplots()
    counts = np.array([[90, 10, 0], [1, 1, 0], [0, 0, 0]])
    image = plot_confusion(ax, counts, ["a", "b", "c"])
    shown = image.get_array()
    np.testing.assert_allclose(shown, [[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a (100)", "b (2)", "c (0)"]
    assert sorted(t.get_text() for t in ax.texts) == ["10%", "50%", "50%", "90%"]
    plt.close(fig)


@pytest.mark.parametrize("toward, expected", [((5, 0), (1.1, 0.0)), ((0, -3), (0.0, -0.4)),
                                              ((4, 4), (0.4, 0.4)), ((-11, 1), (-1.1, 0.1))])
def test_an_arrow_leaves_a_box_at_its_edge(toward, expected):
    assert _edge(Box("a", 0, 0), Box("b", *toward)) == pytest.approx(expected)


def test_a_diagram_draws_every_box_and_arrow():
    fig, ax = plt.subplots()
    boxes = {"x": Box("input", 0, 0), "y": Box("model", 3, 0, "image"), "z": Box("loss", 3, 2, "loss")}
    draw_diagram(ax, boxes, [("x", "y"), ("y", "z", "backward")])
    assert sorted(t.get_text() for t in ax.texts if t.get_text()) == [" backward", "input", "loss", "model"]
    assert len(ax.patches) == 3 and len([c for c in ax.get_children() if type(c).__name__ == "Annotation"]) == 2
    plt.close(fig)
