"""Boxes with phrases: the shapes world as a detection dataset.

Every shape's extent is known exactly from the scene, so its box is exact too, and every
phrase has an exact answer: the boxes of the shapes it describes. Four kinds of phrase:

- a colour and a shape, "red circle": the detector's classes, one per (colour, shape);
- a shape alone, "the square": several colours must fire for one word;
- a place, "the blue triangle on the left": the same shape must fire or not by where it is
  (left and right are the outer columns of the 3 x 3 grid, top and bottom the outer rows);
- a relation, "the circle left of the square": a shape answers by where another shape is
  (any one of that kind, in a column to its right; above and below compare rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minimodal.data.shapes import GRID, Shape, ShapesWorld

PLACES = {"on the left": lambda s: s.col == 0, "on the right": lambda s: s.col == GRID - 1,
          "at the top": lambda s: s.row == 0, "at the bottom": lambda s: s.row == GRID - 1}
RELATIONS = {"left of": lambda s, t: s.col < t.col, "right of": lambda s, t: s.col > t.col,
             "above": lambda s, t: s.row < t.row, "below": lambda s, t: s.row > t.row}
PHRASE_KINDS = ("colour-shape", "shape", "place", "relation")


def shape_box(s: Shape) -> tuple[float, float, float, float]:
    """The tight box (cx, cy, w, h) of a shape as the renderer draws it, in [0, 1] of the image."""
    if s.shape == "circle":
        return s.x, s.y, 2 * s.radius, 2 * s.radius
    if s.shape == "square":        # drawn with half-side 0.85 r
        return s.x, s.y, 1.7 * s.radius, 1.7 * s.radius
    t = 1.1 * s.radius             # an upright triangle of circumradius t: from y - t to y + t / 2
    return s.x, s.y - t / 4, t * math.sqrt(3), 1.5 * t


@dataclass(frozen=True)
class Phrase:
    text: str
    kind: str                      # one of PHRASE_KINDS
    color: str | None
    shape: str
    place: str | None = None
    relation: str | None = None
    other: str | None = None       # the shape a relation is to

    def describes(self, s: Shape, scene: tuple[Shape, ...]) -> bool:
        """Whether this phrase picks out shape ``s`` of ``scene``."""
        if s.shape != self.shape or self.color not in (None, s.color):
            return False
        if self.place is not None:
            return PLACES[self.place](s)
        if self.relation is not None:
            return any(t is not s and t.shape == self.other and RELATIONS[self.relation](s, t) for t in scene)
        return True


def phrases(colors, shapes, exclude=frozenset()) -> list[Phrase]:
    """Every phrase about these colours and shapes; (colour, shape) pairs in ``exclude`` get none."""
    pairs = [(c, s) for c in colors for s in shapes if (c, s) not in exclude]
    return ([Phrase(f"{c} {s}", "colour-shape", c, s) for c, s in pairs]
            + [Phrase(f"the {s}", "shape", None, s) for s in shapes]
            + [Phrase(f"the {c} {s} {p}", "place", c, s, p) for c, s in pairs for p in PLACES]
            + [Phrase(f"the {s} {r} the {o}", "relation", None, s, relation=r, other=o)
               for s in shapes for r in RELATIONS for o in shapes])


@dataclass
class GroundingBatch:
    images: torch.Tensor           # (B, 3, S, S) in [0, 1]
    boxes: list[torch.Tensor]      # per image (T, 4): (cx, cy, w, h) of each shape
    labels: list[torch.Tensor]     # per image (T, Q) bool: which phrases describe each shape
    names: list[torch.Tensor]      # per image (T,): the index of each shape's colour-shape phrase, -1 if none
    scenes: list[tuple[Shape, ...]]


def targets(scene: tuple[Shape, ...], vocabulary: list[Phrase]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One scene's boxes (T, 4), phrase labels (T, Q) and colour-shape names (T,)."""
    boxes = torch.tensor([shape_box(s) for s in scene], dtype=torch.float32).view(-1, 4)
    labels = torch.tensor([[p.describes(s, scene) for p in vocabulary] for s in scene], dtype=torch.bool)
    names = {(p.color, p.shape): i for i, p in enumerate(vocabulary) if p.kind == "colour-shape"}
    return boxes, labels.view(len(scene), len(vocabulary)), torch.tensor([names.get((s.color, s.shape), -1)
                                                                           for s in scene], dtype=torch.long)


def grounding_batch(world: ShapesWorld, split: str, n: int, vocabulary: list[Phrase],
                    start: int = 0) -> GroundingBatch:
    """Scenes start .. start+n-1 of a split with each shape's box and phrases."""
    scenes = [world.scene(split, i) for i in range(start, start + n)]
    per_scene = [targets(scene, vocabulary) for scene in scenes]
    return GroundingBatch(images=world.render(scenes), boxes=[t[0] for t in per_scene],
                          labels=[t[1] for t in per_scene], names=[t[2] for t in per_scene], scenes=scenes)
