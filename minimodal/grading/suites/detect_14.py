"""Graded checks for exercises/14_grounding.ipynb: boxes, GIoU, DETR's matching cost, and AP.

Each check compares the learner's function with minimodal's on inputs drawn from ``seed``,
after a small case built so that a classic mistake gives a visibly wrong answer: an area
with the pixel "+1", a GIoU without its enclosing box, a softmax where OWL-ViT uses a
sigmoid, a second box on the same object counted as a hit, a precision curve left with its
zigzags.
"""

from __future__ import annotations

import torch

from minimodal.average_precision import (ap_from_ranked, interpolated_precision, match_detections,
                                         precision_recall_curve)
from minimodal.boxes import (box_area, center_to_corners, corners_to_center, pairwise_generalized_iou,
                             pairwise_iou)
from minimodal.grading.checks import Check, expect_close, expect_equal, expect_like, expect_tensor
from minimodal.matching import hungarian_match, matching_cost

NOTEBOOK = "14_grounding"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _boxes(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Random (cx, cy, w, h) boxes inside the unit square, of every size from thin to large."""
    size = torch.rand(*shape, 2, generator=g) * 0.5 + 0.02
    center = size / 2 + torch.rand(*shape, 2, generator=g) * (1 - size)
    return torch.cat([center, size], dim=-1)


def _check_corners(fn, seed: int) -> None:
    expect_close(fn(torch.tensor([[0.5, 0.4, 0.2, 0.6]])), torch.tensor([[0.4, 0.1, 0.6, 0.7]]),
                 what="center_to_corners([[0.5, 0.4, 0.2, 0.6]]) (half the width each side of the centre)")
    g = _gen(seed)
    for shape in [(7,), (3, 5), (2, 4, 6)]:
        boxes = _boxes(g, *shape)
        expect_close(fn(boxes.clone()), center_to_corners(boxes), what=f"center_to_corners of {shape} boxes")


def _giou_mistakes(a: torch.Tensor, b: torch.Tensor):
    """What GIoU's classic mistakes compute on corner boxes a (N, 4), b (M, 4)."""
    def plus_one(x):
        return torch.cat([x[..., :2], x[..., 2:] + 1], dim=-1)
    lower = torch.minimum(a[:, None, :2], b[None, :, :2])
    upper = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    enclosing = (upper - lower).prod(dim=-1)                                       # (N, M)
    iou = pairwise_iou(a, b)
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2]))
    unclamped = inter.prod(dim=-1)                                                  # negative when apart
    union = box_area(a)[:, None] + box_area(b)[None, :] - unclamped
    return [("an area is (x1 - x0) * (y1 - y0): coordinates are continuous fractions of the image, "
             "with no pixel '+1'", pairwise_generalized_iou(plus_one(a), plus_one(b))),
            ("GIoU subtracts the part of the smallest enclosing box that the union does not cover, "
             "divided by the enclosing box's area: without it, GIoU is just IoU", iou),
            ("the enclosing box's area appears twice: GIoU = IoU - (enclosing - union) / enclosing",
             iou - (enclosing - union) / union),
            ("clamp the overlap's width and height at 0: boxes apart overlap by nothing, not a negative area",
             unclamped / union - (enclosing - union) / enclosing)]


def _expect_giou(fn, a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    expect_like(fn(a.clone(), b.clone()), pairwise_generalized_iou(a, b), lambda: _giou_mistakes(a, b), what)


def _check_giou_overlapping(fn, seed: int) -> None:
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    _expect_giou(fn, a, torch.tensor([[0.25, 0.25, 0.75, 0.75]]),
                 "generalized_iou of two half-size boxes overlapping by a quarter of each")
    g = _gen(seed)
    for n, m in [(1, 1), (4, 6), (9, 3)]:
        centre = _boxes(g, n)
        near = centre[torch.randint(0, n, (m,), generator=g)] + torch.randn(m, 4, generator=g) * 0.03
        near[:, 2:] = near[:, 2:].clamp(min=0.02)                                   # overlapping pairs
        a, b = center_to_corners(centre), center_to_corners(near)
        _expect_giou(fn, a, b, f"generalized_iou of {n} boxes against {m} boxes near them")


def _check_giou_apart(fn, seed: int) -> None:
    _expect_giou(fn, torch.tensor([[0.0, 0.0, 0.2, 0.2]]), torch.tensor([[0.6, 0.0, 0.8, 0.2]]),
                 "generalized_iou of two boxes side by side with a gap (their IoU is 0, their GIoU "
                 "-(0.16 - 0.08) / 0.16 = -0.5)")
    g = _gen(seed)
    for n, m in [(3, 5), (8, 8)]:
        a, b = center_to_corners(_boxes(g, n)), center_to_corners(_boxes(g, m))
        _expect_giou(fn, a, b, f"generalized_iou of {n} random boxes against {m}, many apart")


def _cost_mistakes(logits, pred, classes, target):
    l1 = (pred[:, None] - target[None]).abs().sum(-1)
    giou = pairwise_generalized_iou(center_to_corners(pred), center_to_corners(target))
    corners_l1 = (center_to_corners(pred)[:, None] - center_to_corners(target)[None]).abs().sum(-1)
    score = logits.sigmoid()[:, classes]
    return [("each query is scored on its own with a sigmoid, not a softmax over the queries",
             -logits.softmax(-1)[:, classes] + 5 * l1 - 2 * giou),
            ("a likely class makes a pair cheaper: the class term is minus the probability",
             score + 5 * l1 - 2 * giou),
            ("a good overlap makes a pair cheaper: the GIoU term is minus GIoU", -score + 5 * l1 + 2 * giou),
            ("the L1 term compares the (cx, cy, w, h) boxes as they are, not their corners",
             -score + 5 * corners_l1 - 2 * giou),
            ("weigh the three terms 1, 5 and 2 (DETR's weights)", -score + l1 - giou)]


def _check_cost(fn, seed: int) -> None:
    g = _gen(seed)
    for preds, queries, targets in [(1, 1, 1), (6, 3, 2), (16, 5, 4)]:
        logits = torch.randn(preds, queries, generator=g) * 3
        pred, target = _boxes(g, preds), _boxes(g, targets)
        classes = torch.randint(0, queries, (targets,), generator=g)
        expect_like(fn(logits.clone(), pred.clone(), classes.clone(), target.clone()),
                    matching_cost(logits, pred, classes, target),
                    lambda: _cost_mistakes(logits, pred, classes, target),
                    f"matching_cost of {preds} predictions, {queries} queries and {targets} targets")


def _hits(fn, boxes, scores, targets, threshold, what) -> None:
    got = fn(boxes.clone(), scores.clone(), targets.clone(), threshold)
    got = expect_tensor(got, shape=(len(boxes),), what=what)
    expected = match_detections(boxes, scores, targets, threshold)[0]
    expect_equal([bool(h) for h in got.tolist()], expected.tolist(), what=what)


def _check_hits(fn, seed: int) -> None:
    target = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]])
    boxes = torch.tensor([[0.52, 0.5, 0.9, 0.9], [0.6, 0.6, 0.95, 0.95], [0.1, 0.1, 0.45, 0.4]])
    _hits(fn, boxes, torch.tensor([0.2, 0.9, 0.5]), target, 0.5,
          "the hits of 3 boxes ranked by score 0.9, 0.5, 0.2 (sort by score first; each hits its own object)")
    g = _gen(seed)
    for detections, objects in [(5, 2), (12, 4)]:
        target = center_to_corners(_boxes(g, objects))
        near = center_to_corners(corners_to_center(target)[torch.randint(0, objects, (detections,), generator=g)]
                                 + torch.randn(detections, 4, generator=g) * 0.04)
        boxes = torch.cat([near[:, :2], torch.maximum(near[:, 2:], near[:, :2] + 0.01)], dim=-1)
        _hits(fn, boxes, torch.rand(detections, generator=g), target, 0.5,
              f"the hits of {detections} boxes near {objects} objects")


def _check_duplicates(fn, seed: int) -> None:
    target = torch.tensor([[0.2, 0.2, 0.6, 0.6]])
    boxes = torch.tensor([[0.2, 0.2, 0.6, 0.6], [0.22, 0.2, 0.6, 0.62], [0.0, 0.7, 0.2, 0.9]])
    _hits(fn, boxes, torch.tensor([0.9, 0.8, 0.7]), target, 0.5,
          "the hits of two boxes on the same single object (the second is a duplicate: a false positive)")
    target = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.3, 0.1, 0.7, 0.5]])
    boxes = torch.tensor([[0.3, 0.1, 0.7, 0.5], [0.08, 0.1, 0.45, 0.5], [0.0, 0.7, 0.2, 0.9]])
    _hits(fn, boxes, torch.tensor([0.9, 0.8, 0.7]), target, 0.3,
          "the hits of boxes on two overlapping objects (the first box covers the second object exactly and "
          "the first by IoU 1/3: it takes the free object it overlaps most, leaving the first for the next box)")


def _ap_mistakes(hits: torch.Tensor, targets: int):
    recall, precision = precision_recall_curve(hits, targets)
    levels = torch.linspace(0, 1, 101).double().numpy()
    first = recall.searchsorted(levels, side="left")
    raw = torch.tensor(list(precision) + [0.0]).double()[torch.from_numpy(first)].mean()
    at_hits = torch.tensor(precision[hits.numpy()]).double().sum() / max(targets, 1)
    return [("make precision monotone first: at each rank take the best precision at that rank or any later one",
             raw),
            ("average the interpolated precision at the 101 recall levels 0, 0.01, ..., 1, not at the hits",
             at_hits)]


def _expect_ap(fn, hits: torch.Tensor, targets: int, what: str) -> None:
    got = fn(hits.clone(), targets)
    got = torch.tensor(float(got.item() if isinstance(got, torch.Tensor) else got)).double()
    expect_like(got, torch.tensor(ap_from_ranked(hits, targets)).double(), lambda: _ap_mistakes(hits, targets),
                what, tol=1e-6)


def _check_ap(fn, seed: int) -> None:
    _expect_ap(fn, torch.tensor([True, True, True]), 3, "ap_from_ranked of three hits for three objects")
    _expect_ap(fn, torch.tensor([True, False, False]), 2,
               "ap_from_ranked when one of two objects is never found (recall above 0.5 is never reached)")
    g = _gen(seed)
    for _ in range(4):  # hits first, then misses: precision never rises, so interpolation changes nothing
        found, missed = (int(n) for n in torch.randint(1, 12, (2,), generator=g))
        hits = torch.tensor([True] * found + [False] * missed)
        targets = found + int(torch.randint(0, 6, (), generator=g))
        _expect_ap(fn, hits, targets, f"ap_from_ranked of {found} hits then {missed} misses for {targets} objects")


def _check_interpolation(fn, seed: int) -> None:
    _expect_ap(fn, torch.tensor([True, False, False, True, True]), 3,
               "ap_from_ranked of hit, miss, miss, hit, hit for 3 objects (precision 1, 1/2, 1/3, 1/2, 3/5)")
    g = _gen(seed)
    for length, extra in [(8, 0), (30, 2), (60, 5)]:
        hits = torch.rand(length, generator=g) < 0.4
        hits[-3:] = True   # a late run of hits raises the precision after a dip
        _expect_ap(fn, hits, int(hits.sum()) + extra, f"ap_from_ranked of a random list of {length} ending in hits")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "center_to_corners": (center_to_corners,),
    "generalized_iou": (pairwise_generalized_iou, pairwise_iou, box_area),
    "matching_cost": (matching_cost, hungarian_match, pairwise_generalized_iou),
    "ranked_hits": (match_detections,),
    "ap_from_ranked": (ap_from_ranked, interpolated_precision, precision_recall_curve),
}

CHECKS = [
    Check("corners from centre and size", "center_to_corners", 1, _check_corners, timeout=5,
          references=OWN["center_to_corners"]),
    Check("GIoU of overlapping boxes", "generalized_iou", 2, _check_giou_overlapping, timeout=5,
          references=OWN["generalized_iou"]),
    Check("GIoU of boxes apart, by the enclosing box", "generalized_iou", 2, _check_giou_apart, timeout=5,
          references=OWN["generalized_iou"]),
    Check("DETR's matching cost", "matching_cost", 2, _check_cost, timeout=5, references=OWN["matching_cost"]),
    Check("hits of a ranked list of boxes", "ranked_hits", 2, _check_hits, timeout=5,
          references=OWN["ranked_hits"]),
    Check("a duplicate box is a false positive", "ranked_hits", 1, _check_duplicates, timeout=5,
          references=OWN["ranked_hits"]),
    Check("AP at 101 recall levels", "ap_from_ranked", 2, _check_ap, timeout=5, references=OWN["ap_from_ranked"]),
    Check("AP with interpolated precision", "ap_from_ranked", 2, _check_interpolation, timeout=5,
          references=OWN["ap_from_ranked"]),
]
