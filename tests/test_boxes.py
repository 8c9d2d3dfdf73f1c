"""Box formats round-trip; IoU and GIoU equal transformers' DETR functions and hand-computed values."""

import pytest
import torch

from minimodal.boxes import (box_area, center_to_corners, corners_to_center, pairwise_generalized_iou,
                             pairwise_iou)


@pytest.fixture(scope="module")
def reference():
    """transformers' box_iou and generalized_box_iou, the ones its DETR losses use."""
    pytest.importorskip("transformers", reason="the 'ref' extra is not installed")
    from transformers.loss.loss_for_object_detection import box_iou, generalized_box_iou
    return box_iou, generalized_box_iou


def random_corner_boxes(n: int, seed: int) -> torch.Tensor:
    """(n, 4) valid corner boxes in [0, 1]: the corners are two random points, sorted."""
    points = torch.rand(n, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.cat([points.min(dim=1).values, points.max(dim=1).values], dim=-1)


def test_center_to_corners_by_hand():
    box = torch.tensor([0.5, 0.5, 0.25, 0.5])
    assert torch.equal(center_to_corners(box), torch.tensor([0.375, 0.25, 0.625, 0.75]))


@pytest.mark.parametrize("shape", [(4,), (7, 4), (3, 5, 4)])
def test_conversions_round_trip(shape):
    centers = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape)), dtype=torch.float64)
    corners = random_corner_boxes(12, seed=1)
    assert torch.allclose(corners_to_center(center_to_corners(centers)), centers, atol=1e-12)
    assert torch.allclose(center_to_corners(corners_to_center(corners)), corners, atol=1e-12)


@pytest.mark.parametrize("n, m", [(1, 1), (5, 7), (40, 30)])
def test_iou_and_giou_equal_transformers(reference, n, m):
    box_iou, generalized_box_iou = reference
    a, b = random_corner_boxes(n, seed=n), random_corner_boxes(m, seed=100 + m)
    iou, giou = pairwise_iou(a, b), pairwise_generalized_iou(a, b)
    assert iou.shape == giou.shape == (n, m)
    assert torch.allclose(iou, box_iou(a, b)[0], atol=1e-6, rtol=0)
    assert torch.allclose(giou, generalized_box_iou(a, b), atol=1e-6, rtol=0)


def test_identical_boxes_overlap_fully():
    boxes = random_corner_boxes(6, seed=3)
    ones = torch.ones(6, dtype=torch.float64)
    assert torch.allclose(pairwise_iou(boxes, boxes).diagonal(), ones)
    assert torch.allclose(pairwise_generalized_iou(boxes, boxes).diagonal(), ones)


def test_disjoint_boxes_by_hand():
    # areas 1/16 and 1/4, union 5/16; the enclosing box is the whole unit square
    a, b = torch.tensor([[0.0, 0.0, 0.25, 0.25]]), torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    assert pairwise_iou(a, b).item() == 0.0
    assert pairwise_generalized_iou(a, b).item() == pytest.approx(0 - (1 - 5 / 16) / 1)


def test_box_inside_another_by_hand():
    # the union and the enclosing box are both the outer box, so GIoU = IoU = 1/4
    outer, inner = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    assert pairwise_iou(outer, inner).item() == pytest.approx(0.25)
    assert pairwise_generalized_iou(inner, outer).item() == pytest.approx(0.25)


def test_partial_overlap_by_hand_has_no_plus_one():
    # overlap 1/16, union 1/4 + 1/4 - 1/16 = 7/16, enclosing (3/4)^2 = 9/16
    a, b = torch.tensor([[0.0, 0.0, 0.5, 0.5]]), torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    assert box_area(a).item() == 0.25
    assert pairwise_iou(a, b).item() == pytest.approx(1 / 7)
    assert pairwise_generalized_iou(a, b).item() == pytest.approx(1 / 7 - (9 / 16 - 7 / 16) / (9 / 16))


def test_scores_stay_in_range():
    a, b = random_corner_boxes(50, seed=4), random_corner_boxes(60, seed=5)
    iou, giou = pairwise_iou(a, b), pairwise_generalized_iou(a, b)
    assert iou.min() >= 0 and iou.max() <= 1
    assert giou.min() >= -1 and giou.max() <= 1
    assert (giou <= iou + 1e-12).all()


def test_malformed_boxes_are_errors():
    good = torch.tensor([[0.1, 0.1, 0.2, 0.2]])
    bad = torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.5, 0.1, 0.4, 0.2], [0.1, 0.5, 0.2, 0.4]])
    with pytest.raises(ValueError, match=r"b: 2 of 3 corner boxes are malformed .* the first is \[0\.5"):
        pairwise_iou(good, bad)
    with pytest.raises(ValueError, match=r"a: 1 of 1 corner boxes are malformed"):
        pairwise_generalized_iou(torch.tensor([[0.1, float("nan"), 0.2, 0.2]]), good)
    with pytest.raises(ValueError, match=r"2 of 3 corner boxes"):
        box_area(bad)


def test_wrong_shapes_are_errors():
    with pytest.raises(ValueError, match=r"last dimension of 4, got shape \(2, 3\)"):
        center_to_corners(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"last dimension of 4, got shape \(5,\)"):
        box_area(torch.zeros(5))
    with pytest.raises(ValueError, match=r"expected \(N, 4\) and \(M, 4\) boxes, got \(4,\)"):
        pairwise_iou(torch.zeros(4), torch.zeros(1, 4))
