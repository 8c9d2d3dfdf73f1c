"""DETR's set loss, as OWL-ViT trains with it: match first, then score the matched pairs.

A detector predicts one box per patch, far more boxes than there are objects. Which
prediction should answer for which object? DETR's answer: the one-to-one matching of
least cost (``minimodal.matching``). A matched patch learns its object's box (L1 and
GIoU) and its object's phrases; every other patch learns "no object", a zero for every
query. Since only one patch may claim each object, the detector learns not to repeat
itself, and needs no non-maximum suppression afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minimodal.boxes import center_to_corners, pairwise_generalized_iou
from minimodal.matching import hungarian_match


@dataclass
class DetectionTargets:
    """One image's objects."""

    boxes: torch.Tensor       # (T, 4) (cx, cy, w, h) in [0, 1]
    labels: torch.Tensor      # (T, Q) bool: the queries that describe each object
    names: torch.Tensor       # (T,) the one query each object is matched by (its colour and shape)


@dataclass
class DetectionLoss:
    total: torch.Tensor
    classification: torch.Tensor
    l1: torch.Tensor
    giou: torch.Tensor


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Binary cross-entropy per element, down-weighted by (1 - p_t)^gamma where it is already right.

    Almost every (patch, query) pair is a "no": plain cross-entropy would spend its whole
    gradient on the easy ones. alpha weighs positives, 1 - alpha negatives (Lin et al., 2017).
    """
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return weight * (1 - p_t) ** gamma * bce


def detection_loss(logits: torch.Tensor, boxes: torch.Tensor, targets: list[DetectionTargets],
                   class_weight: float = 2.0, l1_weight: float = 5.0, giou_weight: float = 2.0) -> DetectionLoss:
    """logits (B, N, Q) and boxes (B, N, 4) of a batch, its targets per image -> the loss.

    Every term is summed over objects (or over all patches and queries, for the focal
    term) and divided by the number of objects in the batch, as DETR normalizes.
    """
    if len(targets) != len(logits):
        raise ValueError(f"one DetectionTargets per image: got {len(targets)} for {len(logits)} images")
    class_targets = torch.zeros_like(logits)                                             # (B, N, Q)
    matched_boxes, object_boxes = [], []
    for b, target in enumerate(targets):
        patches, objects = hungarian_match(logits[b], boxes[b], target.names, target.boxes,
                                           class_weight=class_weight, l1_weight=l1_weight,
                                           giou_weight=giou_weight)
        class_targets[b, patches] = target.labels[objects].to(logits.dtype)
        matched_boxes.append(boxes[b, patches])
        object_boxes.append(target.boxes[objects])
    predicted, wanted = torch.cat(matched_boxes), torch.cat(object_boxes)                # (M, 4) each
    count = max(len(wanted), 1)
    classification = sigmoid_focal_loss(logits, class_targets).sum() / count
    l1 = (predicted - wanted).abs().sum() / count
    giou = (1 - pairwise_generalized_iou(center_to_corners(predicted), center_to_corners(wanted)).diagonal()).sum() / count
    total = class_weight * classification + l1_weight * l1 + giou_weight * giou
    return DetectionLoss(total=total, classification=classification, l1=l1, giou=giou)
