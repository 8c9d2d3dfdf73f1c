"""Average precision (AP): how detection models are scored, as COCO does it.

A detector answers with boxes ranked by score, not with one decision, so its metric scores
the whole ranking: walking down it, a box is a hit when it covers a not-yet-found object by at
least an IoU threshold, and AP is the area under the resulting precision-recall curve.
COCO's "AP" averages this over classes and over thresholds 0.50, 0.55, ..., 0.95.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # 0.50:0.05:0.95, the very floats COCO compares to


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4), (M, 4) corner boxes -> (N, M) intersection over union, in float64; 0 for an empty union."""
    a, b = a.double(), b.double()
    overlap = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2]))
    intersection = overlap.clamp(min=0).prod(dim=-1)                         # (N, M)
    union = (a[:, 2:] - a[:, :2]).prod(dim=-1)[:, None] + (b[:, 2:] - b[:, :2]).prod(dim=-1)[None, :] - intersection
    return torch.where(union > 0, intersection / union, torch.zeros_like(union))


def _check_boxes(boxes: torch.Tensor, what: str) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} must be (N, 4) corner boxes (x0, y0, x1, y1), got shape {tuple(boxes.shape)}")


def _check_threshold(iou_threshold: float) -> None:
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


def precision_recall_curve(is_hit: Sequence[bool] | torch.Tensor, num_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) after each rank of a ranked list of hits, both (D,).

    Recall is the fraction of the num_targets objects found so far; precision is the
    fraction of the boxes so far that were hits. Going down the list, recall never falls
    while precision zigzags: each miss lowers it, each hit raises it.
    """
    hits = torch.as_tensor(is_hit, dtype=torch.bool).cpu().numpy()
    if num_targets < 0:
        raise ValueError(f"num_targets must be at least 0, got {num_targets}")
    if hits.ndim != 1:
        raise ValueError(f"is_hit must be a flat ranked list, got shape {hits.shape}")
    if num_targets < hits.sum():
        raise ValueError(f"{hits.sum()} hits cannot find more than num_targets={num_targets} objects")
    found = np.cumsum(hits, dtype=np.float64)                                # (D,)
    ranks = np.arange(1, len(hits) + 1, dtype=np.float64)                    # (D,)
    recall = found / num_targets if num_targets > 0 else np.zeros_like(found)
    return recall, found / ranks


def interpolated_precision(precision: np.ndarray) -> np.ndarray:
    """Each precision replaced by the best precision at this rank or any later one.

    Later ranks have higher or equal recall, so this is "the best precision you can get with
    at least this much recall": the curve falls monotonely, without the sawtooth that every
    miss followed by a hit draws, and AP no longer depends on where exactly a level samples it.
    """
    return np.maximum.accumulate(precision[::-1])[::-1]


def ap_from_ranked(is_hit: Sequence[bool] | torch.Tensor, num_targets: int, recall_points: int = 101) -> float:
    """AP of one ranked list: interpolated precision averaged at recall 0, 0.01, ..., 1 (for 101 points).

    At each recall level r, the precision is the interpolated precision at the first rank
    whose recall reaches r, and 0 when the list never reaches r (objects never found cost
    their share of the average). With no objects to find there is nothing to recall, so AP
    is undefined: nan, and COCO leaves such a class out of its mean.
    """
    recall, precision = precision_recall_curve(is_hit, num_targets)
    if num_targets == 0:
        return float("nan")
    envelope = np.append(interpolated_precision(precision), 0.0)             # (D + 1,) last: recall never reached
    levels = np.linspace(0.0, 1.0, recall_points)                            # (R,)
    first_rank = np.searchsorted(recall, levels, side="left")                # (R,) first rank with recall >= r, or D
    return float(envelope[first_rank].mean())


def match_detections(pred_boxes: torch.Tensor, scores: torch.Tensor, target_boxes: torch.Tensor,
                     iou_threshold: float, max_detections: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Hit flags (D,) bool and scores (D,), both in descending score order, for one image and one class.

    Greedy, best score first: a detection takes the unmatched target it overlaps most
    (the first one on a tie), if that IoU is at least the threshold. A target is found
    once; a second box on it is a duplicate and counts as a false positive, so a detector
    cannot raise its score by repeating itself. Only the max_detections best boxes count
    (COCO's per-image cap), so a detector cannot flood the image either.
    """
    _check_boxes(pred_boxes, "pred_boxes")
    _check_boxes(target_boxes, "target_boxes")
    _check_threshold(iou_threshold)
    if scores.shape != (len(pred_boxes),):
        raise ValueError(f"scores must be ({len(pred_boxes)},), one per box, got shape {tuple(scores.shape)}")
    order = torch.argsort(scores, descending=True, stable=True)[:max_detections]   # (D,)
    hits = torch.zeros(len(order), dtype=torch.bool)
    if len(order) == 0 or len(target_boxes) == 0:
        return hits, scores[order].detach().cpu()
    overlaps = _iou(pred_boxes[order], target_boxes)                                # (D, T)
    taken = torch.zeros(len(target_boxes), dtype=torch.bool, device=overlaps.device)
    could_hit = (overlaps >= iou_threshold).any(dim=1).nonzero().flatten().tolist()  # the other boxes can only miss
    for rank in could_hit:
        free = overlaps[rank].masked_fill(taken, -1.0)                              # (T,) taken targets never win
        best = free.argmax()
        if free[best] >= iou_threshold:
            taken[best] = True
            hits[rank] = True
            if taken.all():   # every later box can only be a miss
                break
    return hits, scores[order].detach().cpu()


def _check_image(entry: dict, name: str, per_box_keys: tuple[str, ...]) -> None:
    _check_boxes(entry["boxes"], f"{name}['boxes']")
    for key in per_box_keys:
        if entry[key].shape != (len(entry["boxes"]),):
            raise ValueError(f"{name}['{key}'] must be ({len(entry['boxes'])},), one per box, "
                             f"got shape {tuple(entry[key].shape)}")


def _check_dataset(detections: list[dict], targets: list[dict]) -> None:
    if len(detections) != len(targets):
        raise ValueError(f"detections and targets must have one entry per image, "
                         f"got {len(detections)} and {len(targets)}")
    for i, (found, truth) in enumerate(zip(detections, targets)):
        _check_image(found, f"detections[{i}]", ("scores", "labels"))
        _check_image(truth, f"targets[{i}]", ("labels",))


def _by_class(entry: dict, keys: tuple[str, ...]) -> dict[int, dict[str, torch.Tensor]]:
    """One image's boxes grouped by class in one sort, each class keeping the order given: {label: {key: tensor}}."""
    order = torch.argsort(entry["labels"], stable=True)
    labels, counts = torch.unique_consecutive(entry["labels"][order], return_counts=True)
    pieces = {key: entry[key][order].split(counts.tolist()) for key in keys}
    return {label: {key: pieces[key][i] for key in keys} for i, label in enumerate(labels.tolist())}


def _class_ranking(detections: list[dict], targets: list[dict], label: int,
                   iou_threshold: float, max_detections: int) -> tuple[torch.Tensor, int]:
    """One class's hits over the dataset, best score first, and its number of objects: match
    image by image, then rank all the class's detections together.

    ``detections`` and ``targets`` are grouped by class (``_by_class``), once for all classes.
    """
    hits, scores, num_targets = [], [], 0
    for found, truth in zip(detections, targets):
        target_boxes = truth[label]["boxes"] if label in truth else torch.zeros(0, 4)
        num_targets += len(target_boxes)
        if label not in found:
            continue
        if len(target_boxes) == 0:   # nothing to find: the best max_detections boxes are all false positives
            kept = found[label]["scores"].topk(min(len(found[label]["scores"]), max_detections)).values
            hits.append(torch.zeros(len(kept), dtype=torch.bool))
            scores.append(kept.detach().cpu())
            continue
        image_hits, image_scores = match_detections(found[label]["boxes"], found[label]["scores"], target_boxes,
                                                    iou_threshold, max_detections)
        hits.append(image_hits)
        scores.append(image_scores)
    if not hits:
        return torch.zeros(0, dtype=torch.bool), num_targets
    order = torch.argsort(torch.cat(scores), descending=True, stable=True)   # (all D,) ties keep image order
    return torch.cat(hits)[order], num_targets


def ranked_hits(detections: list[dict], targets: list[dict], label: int, iou_threshold: float = 0.5,
                max_detections: int = 100) -> tuple[torch.Tensor, int]:
    """The hits of class ``label`` over the dataset in descending score order, and its number of
    objects: what its AP, and its precision-recall curve, are computed from."""
    _check_dataset(detections, targets)
    _check_threshold(iou_threshold)
    found = [_by_class(entry, ("boxes", "scores")) for entry in detections]
    truth = [_by_class(entry, ("boxes",)) for entry in targets]
    return _class_ranking(found, truth, label, iou_threshold, max_detections)


def average_precision(detections: list[dict], targets: list[dict], iou_threshold: float = 0.5,
                      max_detections: int = 100) -> dict[int, float]:
    """AP per class over a dataset at one IoU threshold: {class: AP}, nan for a class with no targets.

    ``detections[i]`` holds image i's "boxes" (D, 4), "scores" (D,) and "labels" (D,);
    ``targets[i]`` its "boxes" (T, 4) and "labels" (T,). A class is ranked across all images
    at once, so a confident false positive in one image lowers the precision of hits in others.
    """
    _check_dataset(detections, targets)
    _check_threshold(iou_threshold)
    found = [_by_class(entry, ("boxes", "scores")) for entry in detections]
    truth = [_by_class(entry, ("boxes",)) for entry in targets]
    classes = sorted({label for groups in [*found, *truth] for label in groups})
    return {label: ap_from_ranked(*_class_ranking(found, truth, label, iou_threshold, max_detections))
            for label in classes}


def _mean_over_classes(per_class: dict[int, float]) -> float:
    """Mean AP over the classes that have targets (nan when none has)."""
    defined = [ap for ap in per_class.values() if not np.isnan(ap)]
    return float(np.mean(defined)) if defined else float("nan")


def mean_average_precision(detections: list[dict], targets: list[dict],
                           iou_thresholds: Sequence[float] | None = None) -> dict:
    """COCO's headline numbers: {"map_50": mAP at IoU 0.5, "map": mAP averaged over iou_thresholds,
    "per_class_50": {class: AP at 0.5}}.

    The default thresholds 0.50:0.05:0.95 make "map" COCO's AP@[.5:.95], which rewards boxes
    that fit tightly; "map_50" (PASCAL VOC's threshold) only asks that a box roughly cover its object.
    """
    thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds
    if len(thresholds) == 0:
        raise ValueError("iou_thresholds must hold at least one threshold")
    per_class_50 = average_precision(detections, targets, 0.5)
    class_means = [_mean_over_classes(average_precision(detections, targets, float(t))) for t in thresholds]
    return {"map_50": _mean_over_classes(per_class_50), "map": float(np.mean(class_means)),
            "per_class_50": per_class_50}
