"""The course's pictures: one style for every lesson, confusion tables that show the errors, and
block diagrams of the models.

One style, so that a figure in lesson 09 reads like one in lesson 00: legible type at a
resolution a laptop screen shows sharply, and layouts that keep titles from running into
each other. A confusion table is normalized per row, so a rare answer's mistakes show as
plainly as a common one's. A diagram is a list of boxes and arrows, drawn the same way in
every lesson that explains an architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

STYLE = {
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,   # titles and labels never overlap
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
COLORS = {"image": "#dbe9f6", "text": "#fde5cc", "joint": "#e3f1dc", "loss": "#f6d5d5", "data": "#eeeeee"}


def use_course_style() -> None:
    """Set the course's figure style for the rest of the notebook."""
    plt.rcParams.update(STYLE)


def plot_confusion(ax, counts, rows: list[str], columns: list[str] | None = None, title: str = "",
                   annotate: bool = True):
    """A confusion table normalized per row: row i shows where the examples of true class i went.

    The diagonal is each class's recall and everything off it is an error, whatever the
    class's size; the row's count is written beside its name. Returns the image, for a colorbar.
    """
    counts = np.asarray(counts, dtype=float)                      # (true classes, answers)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    columns = rows if columns is None else columns
    ax.set_xticks(range(len(columns)), columns, rotation=90)
    ax.set_yticks(range(len(rows)), [f"{name} ({int(n)})" for name, n in zip(rows, totals[:, 0])])
    ax.set(xlabel="answered", ylabel="true (count)", title=title)
    ax.spines[:].set_visible(False)
    if annotate:
        for (i, j), share in np.ndenumerate(shares):
            if share >= 0.005:
                ax.text(j, i, f"{share:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if share > 0.6 else "black")
    return image


@dataclass(frozen=True)
class Box:
    """A block of a diagram: centred at (x, y) in the diagram's units, ``kind`` picks its colour."""

    text: str
    x: float
    y: float
    kind: str = "data"
    width: float = 2.2
    height: float = 0.8


def draw_diagram(ax, boxes: dict[str, Box], arrows: list[tuple[str, str] | tuple[str, str, str]],
                 title: str = "") -> None:
    """Boxes with their text, and arrows (from, to[, label]) between their edges."""
    for box in boxes.values():
        ax.add_patch(plt.Rectangle((box.x - box.width / 2, box.y - box.height / 2), box.width, box.height,
                                   facecolor=COLORS[box.kind], edgecolor="#555555", linewidth=1))
        ax.text(box.x, box.y, box.text, ha="center", va="center", fontsize=9)
    for start, end, *label in arrows:
        a, b = boxes[start], boxes[end]
        (x0, y0), (x1, y1) = _edge(a, b), _edge(b, a)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=1, shrinkA=0, shrinkB=0))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, f" {label[0]}", fontsize=8, color="#333333",
                    ha="left", va="center")
    xs = [b.x + s * b.width / 2 for b in boxes.values() for s in (-1, 1)]
    ys = [b.y + s * b.height / 2 for b in boxes.values() for s in (-1, 1)]
    ax.set(xlim=(min(xs) - 0.3, max(xs) + 0.3), ylim=(min(ys) - 0.3, max(ys) + 0.3), title=title)
    ax.set_aspect("equal")
    ax.axis("off")


def _edge(box: Box, toward: Box) -> tuple[float, float]:
    """Where the line from ``box``'s centre to ``toward``'s centre leaves ``box``."""
    dx, dy = toward.x - box.x, toward.y - box.y
    scale = min(box.width / 2 / abs(dx) if dx else np.inf, box.height / 2 / abs(dy) if dy else np.inf)
    return box.x + dx * scale, box.y + dy * scale
