"""The assignment solver equals scipy's optimum; the matching cost equals a plain per-pair loop."""

import math

import numpy as np
import pytest
import torch

from minimodal.matching import hungarian_match, linear_sum_assignment, matching_cost


@pytest.fixture(scope="module")
def scipy_assignment():
    return pytest.importorskip("scipy.optimize", reason="scipy is the reference solver").linear_sum_assignment


@pytest.fixture(scope="module")
def generalized_box_iou():
    pytest.importorskip("transformers", reason="the 'ref' extra is not installed")
    from transformers.loss.loss_for_object_detection import generalized_box_iou
    return generalized_box_iou


def random_cost(n: int, m: int, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ties":                                      # few distinct values: many optima
        return rng.integers(0, 3, size=(n, m)).astype(np.float64)
    if kind == "negative":
        return rng.integers(-1000, 0, size=(n, m)).astype(np.float64)
    return rng.normal(size=(n, m)) * 10                     # "normal": both signs


def assert_one_to_one(rows: torch.Tensor, cols: torch.Tensor, n: int, m: int) -> None:
    assert rows.dtype == cols.dtype == torch.int64
    assert len(rows) == len(cols) == min(n, m)
    assert (rows.diff() > 0).all(), "rows must be sorted and distinct"
    assert len(set(cols.tolist())) == len(cols), "a column is used twice"
    assert rows.min() >= 0 and rows.max() < n and cols.min() >= 0 and cols.max() < m


SHAPES = [(1, 1), (1, 6), (6, 1), (2, 2), (5, 5), (8, 13), (13, 8), (30, 30), (60, 80), (80, 60)]


@pytest.mark.parametrize("kind", ["normal", "ties", "negative"])
@pytest.mark.parametrize("n, m", SHAPES)
def test_total_cost_equals_scipy(scipy_assignment, n, m, kind):
    for seed in range(5):
        cost = random_cost(n, m, kind, seed=1000 * n + m + seed)
        rows, cols = linear_sum_assignment(cost)
        assert_one_to_one(rows, cols, n, m)
        ours = cost[rows.numpy(), cols.numpy()].sum()
        theirs = cost[scipy_assignment(cost)].sum()
        assert ours == pytest.approx(theirs, abs=1e-9), (seed, ours, theirs)


def test_small_example_by_hand():
    # the best is 1 + 2 + 2 = 5; the greedy choice of the 0 first would cost 0 + 3 + 5
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]


def test_accepts_lists_and_empty_matrices():
    rows, cols = linear_sum_assignment([[5, 1], [1, 5], [9, 9]])      # tall: row 2 is left out
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    rows, cols = linear_sum_assignment(torch.zeros(0, 4))
    assert rows.shape == cols.shape == (0,) and rows.dtype == torch.int64


def test_bad_costs_are_errors():
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="must be finite, got 1 NaN or infinite"):
            linear_sum_assignment(torch.tensor([[0.0, bad], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"2-D \(N, M\) matrix, got shape \(2, 3, 4\)"):
        linear_sum_assignment(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        linear_sum_assignment(torch.zeros(3))


def random_detections(preds: int, targets: int, classes: int, seed: int):
    """Logits (P, C), centre-size boxes (P, 4) and (T, 4) that stay inside [0, 1], classes (T,)."""
    g = torch.Generator().manual_seed(seed)

    def boxes(n: int) -> torch.Tensor:
        centres = 0.3 + 0.4 * torch.rand(n, 2, generator=g, dtype=torch.float64)
        sizes = 0.05 + 0.5 * torch.rand(n, 2, generator=g, dtype=torch.float64)
        return torch.cat([centres, sizes], dim=-1)

    logits = 3 * torch.randn(preds, classes, generator=g, dtype=torch.float64)
    target_classes = torch.randint(classes, (targets,), generator=g)
    return logits, boxes(preds), target_classes, boxes(targets)


def corners(box: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = box.tolist()
    return torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], dtype=torch.float64)


@pytest.mark.parametrize("weights", [{}, {"class_weight": 2.0, "l1_weight": 0.5, "giou_weight": 3.0}])
def test_matching_cost_equals_a_per_pair_loop(generalized_box_iou, weights):
    logits, pred_boxes, target_classes, target_boxes = random_detections(9, 4, classes=5, seed=0)
    w = {"class_weight": 1.0, "l1_weight": 5.0, "giou_weight": 2.0, **weights}
    expected = torch.zeros(9, 4, dtype=torch.float64)
    for p in range(9):
        for t in range(4):
            probability = 1 / (1 + math.exp(-logits[p, target_classes[t]].item()))
            l1 = sum(abs(pred_boxes[p, k].item() - target_boxes[t, k].item()) for k in range(4))
            giou = generalized_box_iou(corners(pred_boxes[p]), corners(target_boxes[t])).item()
            expected[p, t] = (w["class_weight"] * -probability + w["l1_weight"] * l1
                              + w["giou_weight"] * -giou)
    cost = matching_cost(logits, pred_boxes, target_classes, target_boxes, **weights)
    assert torch.allclose(cost, expected, atol=1e-9), (cost - expected).abs().max()


def test_no_targets_give_empty_indices():
    logits, pred_boxes, _, _ = random_detections(7, 0, classes=3, seed=1)
    preds, targets = hungarian_match(logits, pred_boxes, torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))
    assert preds.shape == targets.shape == (0,)
    assert preds.dtype == targets.dtype == torch.int64


def test_a_prediction_equal_to_a_target_is_matched_to_it():
    logits, pred_boxes, target_classes, target_boxes = random_detections(12, 3, classes=4, seed=2)
    logits = logits.clamp(max=0)                           # no other prediction is confident
    answers = {7: 0, 2: 1, 10: 2}                           # prediction -> the target it copies
    for p, t in answers.items():
        pred_boxes[p] = target_boxes[t]
        logits[p, target_classes[t]] = 10.0
    preds, targets = hungarian_match(logits, pred_boxes, target_classes, target_boxes)
    assert preds.tolist() == sorted(answers)
    assert dict(zip(preds.tolist(), targets.tolist())) == answers


def test_mismatched_inputs_are_errors():
    logits, pred_boxes, target_classes, target_boxes = random_detections(5, 2, classes=3, seed=3)
    with pytest.raises(ValueError, match=r"got \(5, 3\), \(4, 4\), \(2,\) and \(2, 4\)"):
        matching_cost(logits, pred_boxes[:4], target_classes, target_boxes)
