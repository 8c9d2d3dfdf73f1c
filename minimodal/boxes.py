"""Box geometry for detection: the two box formats, areas, IoU and generalized IoU.

A detector regresses boxes as centre and size (cx, cy, w, h); overlap is easier on corners
(x0, y0, x1, y1). Coordinates are continuous, normalized to [0, 1], so a box's area is
simply (x1 - x0) * (y1 - y0).
"""

from __future__ import annotations

import torch


def _check_last_dim(boxes: torch.Tensor, name: str) -> None:
    if boxes.shape[-1:] != (4,):
        raise ValueError(f"{name} must have a last dimension of 4, got shape {tuple(boxes.shape)}")


def _check_corners(boxes: torch.Tensor, name: str) -> None:
    """A corner box needs x1 >= x0 and y1 >= y0; written so that NaN counts as malformed."""
    _check_last_dim(boxes, name)
    x0, y0, x1, y1 = boxes.unbind(-1)
    malformed = ~((x1 >= x0) & (y1 >= y0))
    if malformed.any():
        first = boxes[malformed][0].tolist()
        raise ValueError(f"{name}: {int(malformed.sum())} of {malformed.numel()} corner boxes are "
                         f"malformed (need x1 >= x0 and y1 >= y0), the first is {first}")


def center_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (cx, cy, w, h) -> (..., 4) (x0, y0, x1, y1)."""
    _check_last_dim(boxes, "boxes")
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def corners_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (x0, y0, x1, y1) -> (..., 4) (cx, cy, w, h)."""
    _check_last_dim(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corner boxes -> (...) areas.

    No "+1": that convention counts integer pixels, so a box from pixel 0 to pixel 9 is 10
    wide. Our coordinates are continuous, where it would be an off-by-one (the exercise
    tests catch it).
    """
    _check_corners(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _overlap_and_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4), (M, 4) corner boxes -> (N, M) intersection areas and (N, M) union areas."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected (N, 4) and (M, 4) boxes, got {tuple(a.shape)} and {tuple(b.shape)}")
    _check_corners(a, "a")
    _check_corners(b, "b")
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])           # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])       # (N, M, 2)
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=-1)      # (N, M), 0 when disjoint
    union = box_area(a)[:, None] + box_area(b)[None, :] - overlap      # (N, M)
    return overlap, union


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) and (M, 4) corner boxes -> (N, M) intersection over union, in [0, 1].

    Areas use continuous coordinates, (x1 - x0) * (y1 - y0), with no "+1" pixel
    convention. IoU is 0 for every pair of disjoint boxes, however far apart, so it gives
    no gradient to move a prediction towards a target it misses.
    """
    overlap, union = _overlap_and_union(a, b)
    return overlap / union


def pairwise_generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) and (M, 4) corner boxes -> (N, M) generalized IoU, in [-1, 1].

    GIoU = IoU - (enclosing - union) / enclosing, where enclosing is the area of the
    smallest box holding both. The penalty grows as disjoint boxes move apart, so, unlike
    IoU, it still says which way to move a box that misses its target.
    """
    overlap, union = _overlap_and_union(a, b)
    top_left = torch.minimum(a[:, None, :2], b[None, :, :2])           # (N, M, 2)
    bottom_right = torch.maximum(a[:, None, 2:], b[None, :, 2:])       # (N, M, 2)
    enclosing = (bottom_right - top_left).prod(dim=-1)                 # (N, M)
    return overlap / union - (enclosing - union) / enclosing
