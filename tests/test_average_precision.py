"""Average precision from scratch equals pycocotools' COCOeval on the same detections, and hand cases.

pycocotools is the reference implementation behind every COCO leaderboard. It takes boxes as
[x, y, w, h] in pixels, so the random scenes below give it the normalized corner boxes scaled
to 640 x 640 images; IoU does not change with the scale.
"""

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from minimodal.average_precision import (ap_from_ranked, average_precision, interpolated_precision,
                                         match_detections, mean_average_precision, precision_recall_curve,
                                         ranked_hits)

IMAGE_SIZE = 640
TARGET_CLASSES = (1, 2, 3)
DETECTED_ONLY_CLASS = 4  # detections but never a target: COCO reports -1 for it and leaves it out


def image(boxes, scores=None, labels=None) -> dict:
    """One image's boxes as float64 tensors; scores only for detections; label 1 unless given."""
    boxes = torch.tensor(np.array(boxes), dtype=torch.float64).reshape(-1, 4)
    entry = {"boxes": boxes, "labels": torch.tensor(labels if labels is not None else [1] * len(boxes))}
    if scores is not None:
        entry["scores"] = torch.tensor(scores, dtype=torch.float64)
    return entry


def random_box(rng: np.random.Generator) -> np.ndarray:
    center, size = rng.uniform(0.1, 0.9, 2), rng.uniform(0.05, 0.4, 2)
    return np.concatenate([center - size / 2, center + size / 2])


def jittered(rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """A copy of box, moved and resized by a few percent of its size, or by a lot."""
    scale = rng.choice([0.05, 0.3])
    size = box[2:] - box[:2]
    center = (box[:2] + box[2:]) / 2 + rng.normal(0, scale, 2) * size
    size = size * np.exp(rng.normal(0, scale, 2))
    return np.concatenate([center - size / 2, center + size / 2])


def random_scene(seed: int, score_decimals: int | None = None) -> tuple[list[dict], list[dict]]:
    """20-50 images: 0-5 targets each; 0-2 detections per target (missed, found, duplicated),
    some with the wrong class; 0-3 random false positives, some of a class with no targets.
    Scores rounded to score_decimals tie often, so the order among equal scores is tested too."""
    rng = np.random.default_rng(seed)
    detections, targets = [], []
    for _ in range(rng.integers(20, 51)):
        target_boxes = [random_box(rng) for _ in range(rng.integers(0, 6))]
        target_labels = [int(rng.choice(TARGET_CLASSES)) for _ in target_boxes]
        boxes, labels = [], []
        for box, label in zip(target_boxes, target_labels):
            for _ in range(rng.integers(0, 3)):
                boxes.append(jittered(rng, box))
                labels.append(label if rng.random() < 0.9 else int(rng.choice(TARGET_CLASSES)))
        for _ in range(rng.integers(0, 4)):
            boxes.append(random_box(rng))
            labels.append(int(rng.choice([*TARGET_CLASSES, DETECTED_ONLY_CLASS])))
        scores = rng.uniform(0, 1, len(boxes))
        detections.append(image(boxes, (scores if score_decimals is None else scores.round(score_decimals)).tolist(),
                                labels))
        targets.append(image(target_boxes, labels=target_labels))
    return detections, targets


def coco_bbox(box: torch.Tensor) -> list[float]:
    """Normalized corners (x0, y0, x1, y1) -> COCO's pixel [x, y, w, h]."""
    x0, y0, x1, y1 = (box * IMAGE_SIZE).tolist()
    return [x0, y0, x1 - x0, y1 - y0]


def coco_evaluate(detections: list[dict], targets: list[dict]) -> COCOeval:
    """COCOeval over the scene after evaluate, accumulate and summarize, run quietly; image i has id i + 1."""
    annotations = []
    for i, truth in enumerate(targets):
        for box, label in zip(truth["boxes"], truth["labels"]):
            bbox = coco_bbox(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    results = [{"image_id": i + 1, "category_id": int(label), "bbox": coco_bbox(box), "score": float(score)}
               for i, found in enumerate(detections)
               for box, score, label in zip(found["boxes"], found["scores"], found["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": [{"id": i + 1, "width": IMAGE_SIZE, "height": IMAGE_SIZE} for i in range(len(targets))],
            "annotations": annotations,
            "categories": [{"id": c} for c in (*TARGET_CLASSES, DETECTED_ONLY_CLASS)]}
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluator.params.maxDets = [1, 10, 100]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed, score_decimals", [(0, None), (1, None), (2, None), (3, 1), (4, 1)])
def test_mean_average_precision_matches_pycocotools(seed, score_decimals):
    detections, targets = random_scene(seed, score_decimals)
    evaluator = coco_evaluate(detections, targets)
    ours = mean_average_precision(detections, targets)
    assert ours["map"] == pytest.approx(evaluator.stats[0], abs=1e-6)
    assert ours["map_50"] == pytest.approx(evaluator.stats[1], abs=1e-6)
    assert 0.05 < ours["map"] < ours["map_50"] < 0.95  # a scene that tests something


@pytest.mark.parametrize("seed", range(5))
def test_per_class_ap_matches_pycocotools_and_skips_class_without_targets(seed):
    detections, targets = random_scene(seed)
    precision = coco_evaluate(detections, targets).eval["precision"]   # (IoU, recall, class, area, maxDets)
    ours = mean_average_precision(detections, targets)["per_class_50"]
    for k, label in enumerate(TARGET_CLASSES):
        assert ours[label] == pytest.approx(precision[0, :, k, 0, 2].mean(), abs=1e-6)
    assert (precision[:, :, len(TARGET_CLASSES), 0, 2] == -1).all()   # COCO: class 4 has nothing to find
    assert np.isnan(ours[DETECTED_ONLY_CLASS])


def test_perfect_detections_score_one():
    targets = [image([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]], labels=[1, 2]), image([[0.2, 0.3, 0.6, 0.7]])]
    detections = [image([[0.5, 0.5, 0.9, 0.8], [0.1, 0.1, 0.4, 0.4]], [0.9, 0.3], labels=[2, 1]),
                  image([[0.2, 0.3, 0.6, 0.7]], [0.5])]
    result = mean_average_precision(detections, targets)
    assert result["map"] == result["map_50"] == 1.0
    assert ap_from_ranked([True, True, True], 3) == 1.0


def test_duplicate_ranked_above_a_false_positive_counts_as_a_miss():
    # three objects A, B, C; ranked: A (0.9), A again (0.8), empty space (0.7), B (0.6); C is missed
    a, b, c = [0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6], [0.7, 0.7, 0.9, 0.9]
    hits, scores = match_detections(image([a, a, [0.3, 0.0, 0.4, 0.1], b])["boxes"],
                                    torch.tensor([0.9, 0.8, 0.7, 0.6]), image([a, b, c])["boxes"], 0.5)
    assert hits.tolist() == [True, False, False, True]
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    # recall 1/3 1/3 1/3 2/3, precision 1 1/2 1/3 1/2, interpolated 1 1/2 1/2 1/2:
    # 34 levels 0..0.33 at 1, 33 levels 0.34..0.66 at 1/2, 34 levels 0.67..1 never reached -> (34 + 16.5) / 101
    assert ap_from_ranked(hits, 3) == pytest.approx(0.5)


def test_ap_of_a_small_list_by_hand():
    # hit, miss, hit, miss, miss with 3 objects: recall 1/3 1/3 2/3 2/3 2/3, precision 1 1/2 2/3 1/2 2/5,
    # interpolated 1 2/3 2/3 1/2 2/5; levels 0..0.33 (34 of them) first reached at rank 1 -> 1,
    # 0.34..0.66 (33) at rank 3 -> 2/3, 0.67..1 (34) never -> 0: AP = (34 + 33 * 2/3) / 101 = 56 / 101
    assert ap_from_ranked([True, False, True, False, False], 3) == pytest.approx(56 / 101, abs=1e-12)
    recall, precision = precision_recall_curve([True, False, True, False, False], 3)
    assert recall == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert precision == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2, 2 / 5])


def test_no_hits_score_zero_and_no_targets_is_nan():
    assert ap_from_ranked([False, False, False], 2) == 0.0
    assert ap_from_ranked([], 2) == 0.0
    assert np.isnan(ap_from_ranked([False, False], 0))


def test_interpolation_changes_the_score():
    # miss, hit, hit, hit with 3 objects: raw precision at the first rank of each recall 1/2, 2/3, 3/4 gives
    # (34 * 1/2 + 33 * 2/3 + 34 * 3/4) / 101 = 64.5 / 101; interpolated, all three become 3/4 -> 0.75
    is_hit = [False, True, True, True]
    _, precision = precision_recall_curve(is_hit, 3)
    assert interpolated_precision(precision) == pytest.approx([3 / 4, 3 / 4, 3 / 4, 3 / 4])
    assert ap_from_ranked(is_hit, 3) == pytest.approx(0.75)
    assert ap_from_ranked(is_hit, 3) != pytest.approx(64.5 / 101)


def test_detection_takes_the_best_overlapping_target_not_the_first():
    # boxes on a line: the first detection overlaps target 0 at IoU 7/13 and target 1 at 9/11,
    # so it takes target 1; the second detection, exactly target 1, is then a duplicate
    targets = image([[0, 0, 10, 1], [4, 0, 14, 1]])["boxes"]
    hits, _ = match_detections(image([[3, 0, 13, 1], [4, 0, 14, 1]])["boxes"], torch.tensor([0.9, 0.8]), targets, 0.5)
    assert hits.tolist() == [True, False]


def test_detection_falls_back_to_an_unmatched_target():
    # target 1 is taken by the exact box; the next detection still overlaps target 0 at 7/13 >= 0.5
    targets = image([[0, 0, 10, 1], [4, 0, 14, 1]])["boxes"]
    hits, _ = match_detections(image([[4, 0, 14, 1], [3, 0, 13, 1]])["boxes"], torch.tensor([0.9, 0.8]), targets, 0.5)
    assert hits.tolist() == [True, True]


def test_second_box_on_a_lone_target_is_a_duplicate():
    target = image([[0.2, 0.2, 0.6, 0.6]])["boxes"]
    hits, _ = match_detections(image([[0.2, 0.2, 0.6, 0.6], [0.21, 0.2, 0.6, 0.6]])["boxes"],
                               torch.tensor([0.9, 0.8]), target, 0.5)
    assert hits.tolist() == [True, False]


def test_wrong_class_is_not_a_hit_and_undetected_class_scores_zero():
    targets = [image([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], labels=[1, 2])]
    detections = [image([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.8], labels=[1, 3])]
    per_class = average_precision(detections, targets)
    assert per_class[1] == 1.0 and per_class[2] == 0.0 and np.isnan(per_class[3])
    assert mean_average_precision(detections, targets)["map_50"] == 0.5


def test_only_the_best_hundred_detections_per_image_count():
    # 100 confident boxes in empty space, then one exact box on the object
    boxes = [[0.0, 0.0, 0.01, 0.01]] * 100 + [[0.5, 0.5, 0.9, 0.9]]
    detections = [image(boxes, [1.0] * 100 + [0.5])]
    targets = [image([[0.5, 0.5, 0.9, 0.9]])]
    assert average_precision(detections, targets)[1] == 0.0
    assert average_precision(detections, targets, max_detections=101)[1] == pytest.approx(1 / 101)


def test_mistakes_raise_clear_errors():
    one = image([[0, 0, 1, 1]], [0.5])
    with pytest.raises(ValueError, match="one entry per image, got 1 and 2"):
        average_precision([one], [image([[0, 0, 1, 1]]), image([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] must be \(N, 4\).*\(1, 3\)"):
        average_precision([one], [{"boxes": torch.zeros(1, 3), "labels": torch.ones(1)}])
    with pytest.raises(ValueError, match=r"detections\[0\]\['scores'\] must be \(1,\)"):
        average_precision([{**one, "scores": torch.ones(2)}], [one])
    with pytest.raises(ValueError, match=r"scores must be \(1,\)"):
        match_detections(one["boxes"], torch.ones(3), one["boxes"], 0.5)
    for threshold in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"iou_threshold must be in \(0, 1\]"):
            average_precision([one], [one], iou_threshold=threshold)
    with pytest.raises(ValueError, match="cannot find more than num_targets=1"):
        ap_from_ranked([True, True], 1)
    with pytest.raises(ValueError, match="num_targets must be at least 0, got -1"):
        ap_from_ranked([], -1)



def test_ranked_hits_are_what_a_class_ap_is_computed_from():
    truth = [image([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]), image([[0.2, 0.2, 0.6, 0.6]])]
    found = [image([[0.1, 0.1, 0.4, 0.4], [0.0, 0.0, 0.05, 0.05]], scores=[0.3, 0.9]),
             image([[0.2, 0.2, 0.6, 0.6], [0.21, 0.2, 0.6, 0.6]], scores=[0.8, 0.7])]
    hits, objects = ranked_hits(found, truth, 1)
    assert hits.tolist() == [False, True, False, True] and objects == 3   # scores 0.9, 0.8, 0.7 (a duplicate), 0.3
    assert average_precision(found, truth)[1] == pytest.approx(ap_from_ranked(hits, objects))
