"""The shapes world: a tiny visual universe where every fact about an image is known.

Real captions are noisy and real questions need a human to check. Here each image is
drawn from a scene we generate, so its caption and its question/answer pairs are exact,
and we can choose what the training set never shows (a "red triangle", say) to test
whether a model composes colour and shape or only memorizes pairs.

A scene is 1-4 shapes, each in its own cell of a 3x3 grid (so shapes never overlap and
"left of" / "above" are unambiguous), with a colour, a size and a little jitter.
Everything follows from (seed, split, index): image i of a split is the same on every
machine, and any slice can be generated without generating what comes before it.

Longer than 300 lines because scenes, their rendering and the sentences about them
(captions, questions, answers) share one grammar of colours, shapes and places; split,
the parts would import each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 40),
    "purple": (140, 60, 180),
    "orange": (240, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SPLITS = ("train", "test", "holdout")
GRID = 3
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
QUESTION_KINDS = ("color", "shape", "count", "exists", "spatial")


@dataclass(frozen=True)
class ShapesConfig:
    """What the world may contain. ``holdout`` pairs never appear in the train or test split."""

    image_size: int = 64
    min_shapes: int = 1
    max_shapes: int = 4
    colors: tuple[str, ...] = tuple(COLORS)
    shapes: tuple[str, ...] = SHAPES
    holdout: frozenset[tuple[str, str]] = frozenset()
    background: tuple[int, int, int] = (245, 245, 240)
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.min_shapes <= self.max_shapes <= GRID * GRID:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes <= {GRID * GRID}, "
                             f"got {self.min_shapes} and {self.max_shapes}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {self.image_size}")
        unknown = set(self.colors) - set(COLORS) | set(self.shapes) - set(SHAPES)
        if unknown:
            raise ValueError(f"unknown colours or shapes {sorted(unknown)}; "
                             f"colours: {list(COLORS)}, shapes: {list(SHAPES)}")
        for pair in self.holdout:
            if pair[0] not in self.colors or pair[1] not in self.shapes:
                raise ValueError(f"holdout pair {pair} is not a (colour, shape) of this world")
        if len(self.holdout) >= len(self.colors) * len(self.shapes):
            raise ValueError("holdout cannot hold out every (colour, shape) pair")


@dataclass(frozen=True)
class Shape:
    shape: str
    color: str
    size: str
    row: int          # grid cell, 0 = top
    col: int          # grid cell, 0 = left
    x: float          # centre, in [0, 1] of the image width
    y: float          # centre, in [0, 1] of the image height
    radius: float     # half the extent, as a fraction of the image size


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str         # one of QUESTION_KINDS


@dataclass
class ShapesBatch:
    images: torch.Tensor                      # (n, 3, H, W) float32 in [0, 1]
    captions: list[str]
    questions: list[list[QA]]
    scenes: list[tuple[Shape, ...]] = field(repr=False)


class ShapesWorld:
    """Generates scenes, images, captions and questions, deterministically from the config."""

    def __init__(self, config: ShapesConfig = ShapesConfig()):
        self.config = config

    # --- scenes -----------------------------------------------------------------------

    def scene(self, split: str, index: int) -> tuple[Shape, ...]:
        """Scene ``index`` of ``split``; the same on every machine for the same config."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = np.random.default_rng([self.config.seed, SPLITS.index(split), index])
        while True:  # rejection sampling: a few tries at most, since holdout is a small slice
            scene = self._random_scene(rng)
            pairs = {(s.color, s.shape) for s in scene}
            has_holdout = bool(pairs & self.config.holdout)
            if has_holdout == (split == "holdout"):
                return scene

    def _random_scene(self, rng: np.random.Generator) -> tuple[Shape, ...]:
        c = self.config
        n = int(rng.integers(c.min_shapes, c.max_shapes + 1))
        cells = rng.choice(GRID * GRID, size=n, replace=False)
        shapes = []
        for cell in sorted(cells):
            row, col = divmod(int(cell), GRID)
            size = SIZES[int(rng.integers(len(SIZES)))]
            radius = (0.09 if size == "small" else 0.14) * rng.uniform(0.95, 1.05)
            slack = 0.5 / GRID - radius - 0.01  # keep the shape inside its cell
            x = (col + 0.5) / GRID + rng.uniform(-slack, slack)
            y = (row + 0.5) / GRID + rng.uniform(-slack, slack)
            shapes.append(Shape(shape=c.shapes[int(rng.integers(len(c.shapes)))],
                                color=c.colors[int(rng.integers(len(c.colors)))],
                                size=size, row=row, col=col, x=x, y=y, radius=radius))
        return tuple(shapes)

    # --- batches ----------------------------------------------------------------------

    def sample(self, split: str, n: int, start: int = 0) -> ShapesBatch:
        """Scenes start .. start+n-1 of a split with their images, captions and questions."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        scenes = [self.scene(split, i) for i in range(start, start + n)]
        return ShapesBatch(images=self.render(scenes),
                           captions=[caption(s) for s in scenes],
                           questions=[questions(s, self.config, seed=(self.config.seed, SPLITS.index(split), i))
                                      for i, s in zip(range(start, start + n), scenes)],
                           scenes=scenes)

    def dataset(self, split: str, n: int) -> "ShapesDataset":
        return ShapesDataset(self, split, n)

    def render(self, scenes: list[tuple[Shape, ...]], supersample: int = 4,
               chunk: int = 64) -> torch.Tensor:
        """Draw scenes as a batch: (B, 3, H, W) float32 in [0, 1], anti-aliased.

        Every shape of a chunk of images is rasterized at once as a mask on a grid
        ``supersample`` times finer, then averaged down: fast, and smooth at the edges.
        Shapes sit in distinct grid cells, so their masks never overlap.
        """
        if not scenes:
            raise ValueError("render needs at least one scene")
        images = [self._render_chunk(scenes[i:i + chunk], supersample)
                  for i in range(0, len(scenes), chunk)]
        return torch.cat(images)

    def _render_chunk(self, scenes, supersample: int) -> torch.Tensor:
        shapes = [s for scene in scenes for s in scene]
        owner = torch.tensor([b for b, scene in enumerate(scenes) for _ in scene])  # (K,)
        rows, cols, coverage = _shape_coverage(shapes, self.config.image_size, supersample)
        rgb = torch.tensor([COLORS[s.color] for s in shapes], dtype=torch.float32) / 255  # (K, 3)
        background = torch.tensor(self.config.background, dtype=torch.float32) / 255      # (3,)
        size = self.config.image_size
        # Shapes do not overlap, so each pixel is background plus, for the shape covering
        # a fraction of it, that fraction of (shape colour - background).
        canvas = background.repeat(len(scenes), size, size, 1)                        # (B, H, W, 3)
        canvas.index_put_((owner.view(-1, 1, 1), rows, cols),
                          coverage[..., None] * (rgb - background)[:, None, None, :], accumulate=True)
        return canvas.permute(0, 3, 1, 2).contiguous()                                # (B, 3, H, W)


def _shape_coverage(shapes: list[Shape], size: int, supersample: int):
    """How much of each pixel near each shape the shape covers, in [0, 1].

    Each shape is rasterized in a small window around it on a grid ``supersample`` times
    finer than the image, then averaged down: smooth edges without drawing whole images.
    Returns the window's pixel rows (K, w, 1) and columns (K, 1, w) and coverage (K, w, w).
    """
    x = torch.tensor([s.x for s in shapes]).view(-1, 1, 1)
    y = torch.tensor([s.y for s in shapes]).view(-1, 1, 1)
    r = torch.tensor([s.radius for s in shapes]).view(-1, 1, 1)
    kind = torch.tensor([SHAPES.index(s.shape) for s in shapes]).view(-1, 1, 1)
    reach = 1.1 * r.max().item()                        # no shape extends further than this
    width = min(size, int(math.ceil(2 * reach * size)) + 2)
    top = ((y - reach) * size).floor().long().clamp(0, size - width)               # (K, 1, 1)
    left = ((x - reach) * size).floor().long().clamp(0, size - width)
    fine = width * supersample
    steps = (torch.arange(fine) + 0.5) / (size * supersample)                        # (w*ss,)
    dy = (top / size + steps.view(1, -1, 1)) - y                                     # (K, w*ss, 1)
    dx = (left / size + steps.view(1, 1, -1)) - x                                    # (K, 1, w*ss)
    circle = dx * dx + dy * dy <= r * r
    half = r * 0.85  # a square of the same nominal size as a circle looks larger: shrink it
    square = (dx.abs() <= half) & (dy.abs() <= half)
    t = r * 1.1      # an upright equilateral triangle with circumradius t
    half_width = (dy + t) / (1.5 * t) * (t * math.sqrt(3) / 2)
    triangle = (dy <= t / 2) & (dy >= -t) & (dx.abs() <= half_width)
    inside = torch.where(kind == 0, circle, torch.where(kind == 1, square, triangle))
    coverage = F.avg_pool2d(inside.float()[:, None], supersample)[:, 0]              # (K, w, w)
    pixels = torch.arange(width).view(1, -1)
    rows = (top.view(-1, 1) + pixels).view(-1, width, 1)
    cols = (left.view(-1, 1) + pixels).view(-1, 1, width)
    return rows, cols, coverage


class ShapesDataset(torch.utils.data.Dataset):
    """A torch Dataset over the first n scenes of a split; item -> dict(image, caption, questions)."""

    def __init__(self, world: ShapesWorld, split: str, n: int):
        world.scene(split, 0)  # validates the split early
        self.world, self.split, self.n = world, split, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} scenes")
        batch = self.world.sample(self.split, 1, start=index)
        return {"image": batch.images[0], "caption": batch.captions[0],
                "questions": batch.questions[0]}


# --- language ---------------------------------------------------------------------------

def _a(word: str) -> str:
    """'a red circle', 'an orange square'."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _noun_phrase(color: str, shape: str, count: int) -> str:
    if count == 1:
        return f"{_a(color)} {shape}"
    return f"{NUMBER_WORDS[count]} {color} {shape}s"


def _groups(scene) -> dict[tuple[str, str], list[Shape]]:
    """Shapes grouped by (colour, shape), in reading order of their first member."""
    groups: dict[tuple[str, str], list[Shape]] = {}
    for s in sorted(scene, key=lambda s: (s.row, s.col)):
        groups.setdefault((s.color, s.shape), []).append(s)
    return groups


def relation(a: list[Shape], b: list[Shape]) -> str | None:
    """'left of', 'right of', 'above' or 'below' when every shape of a is so placed to b."""
    if all(p.col < q.col for p in a for q in b):
        return "left of"
    if all(p.col > q.col for p in a for q in b):
        return "right of"
    if all(p.row < q.row for p in a for q in b):
        return "above"
    if all(p.row > q.row for p in a for q in b):
        return "below"
    return None


def caption(scene) -> str:
    """'two red circles above a blue square': groups of equal shapes, with a relation for two."""
    groups = _groups(scene)
    phrases = [_noun_phrase(color, shape, len(members)) for (color, shape), members in groups.items()]
    if len(groups) == 2:
        (first, second) = groups.values()
        rel = relation(first, second)
        if rel is not None:
            return f"{phrases[0]} {rel} {phrases[1]}"
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def questions(scene, config: ShapesConfig, seed=(0, 0)) -> list[QA]:
    """Question/answer pairs whose answers follow from the scene, one or more per kind."""
    rng = np.random.default_rng(list(seed))
    qas: list[QA] = []
    by_shape: dict[str, list[Shape]] = {}
    by_color: dict[str, list[Shape]] = {}
    for s in scene:
        by_shape.setdefault(s.shape, []).append(s)
        by_color.setdefault(s.color, []).append(s)
    # colour of a shape kind that occurs once
    for kind, members in by_shape.items():
        if len(members) == 1:
            qas.append(QA(f"what color is the {kind}?", members[0].color, "color"))
    # shape of a colour that occurs once
    for color, members in by_color.items():
        if len(members) == 1:
            qas.append(QA(f"what shape is the {color} object?", members[0].shape, "shape"))
    # counts, including zero for an absent shape kind
    kind = config.shapes[int(rng.integers(len(config.shapes)))]
    qas.append(QA(f"how many {kind}s are there?", str(len(by_shape.get(kind, []))), "count"))
    qas.append(QA("how many shapes are there?", str(len(scene)), "count"))
    # presence, one asked about a shape that is there and one about a random pair
    present = scene[int(rng.integers(len(scene)))]
    qas.append(QA(f"is there {_a(present.color)} {present.shape}?", "yes", "exists"))
    color = config.colors[int(rng.integers(len(config.colors)))]
    kind = config.shapes[int(rng.integers(len(config.shapes)))]
    if (color, kind) != (present.color, present.shape):
        answer = "yes" if any(s.color == color and s.shape == kind for s in scene) else "no"
        qas.append(QA(f"is there {_a(color)} {kind}?", answer, "exists"))
    # spatial relation between two shapes that are each unique by colour and kind
    unique = [members[0] for members in _groups(scene).values() if len(members) == 1]
    if len(unique) >= 2:
        i, j = rng.choice(len(unique), size=2, replace=False)
        a, b = unique[int(i)], unique[int(j)]
        asked = ("left of", "right of", "above", "below")[int(rng.integers(4))]
        truth = _holds(a, b, asked)
        qas.append(QA(f"is the {a.color} {a.shape} {asked} the {b.color} {b.shape}?",
                      "yes" if truth else "no", "spatial"))
    return qas


def _holds(a: Shape, b: Shape, rel: str) -> bool:
    return {"left of": a.col < b.col, "right of": a.col > b.col,
            "above": a.row < b.row, "below": a.row > b.row}[rel]
