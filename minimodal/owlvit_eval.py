"""Judging the detector: AP per kind of phrase, the held-out pair, and CLIP's heat maps before it.

Every (patch, query) pair is a scored detection of that query, so one image gives N boxes
for each phrase; COCO's AP ranks a phrase's boxes over the whole test set. A phrase is a
class here: its targets are the shapes it describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minimodal.average_precision import COCO_IOU_THRESHOLDS, average_precision
from minimodal.boxes import center_to_corners
from minimodal.clip import CLIP
from minimodal.data.grounding import GroundingBatch, Phrase
from minimodal.data.transforms import normalize
from minimodal.owlvit import Detections, OWLViT
from minimodal.pretrained import tokenize


@torch.no_grad()
def detect(model: OWLViT, images: torch.Tensor, texts: list[str], chunk: int = 256) -> Detections:
    """Images (B, 3, S, S) in [0, 1] and phrases -> every patch's box and its logit for each phrase."""
    device = next(model.parameters()).device
    queries = model.embed_queries(tokenize(texts).to(device))                            # (Q, E)
    parts = [model(normalize(images[i:i + chunk].to(device)), queries) for i in range(0, len(images), chunk)]
    return Detections(*(torch.cat([getattr(p, f) for p in parts]).cpu() for f in ("logits", "boxes", "class_embeds")))


def as_detections(found: Detections, batch: GroundingBatch) -> tuple[list[dict], list[dict]]:
    """Per image: every patch's box once per query (scores = sigmoid of the logit, label = the query's
    index), and the shapes' boxes once per phrase that describes them. Corner boxes, for AP."""
    patches, queries = found.logits.shape[1:]
    labels = torch.arange(queries).repeat(patches)                                        # (N * Q,)
    detections = [{"boxes": center_to_corners(boxes).repeat_interleave(queries, dim=0),
                   "scores": logits.sigmoid().reshape(-1), "labels": labels}
                  for logits, boxes in zip(found.logits, found.boxes)]
    targets = []
    for boxes, described in zip(batch.boxes, batch.labels):
        shape_index, query = described.nonzero(as_tuple=True)                            # one row per (shape, phrase)
        targets.append({"boxes": center_to_corners(boxes)[shape_index], "labels": query})
    return detections, targets


@dataclass
class PhraseAP:
    """AP of each phrase with at least one target in the set: at IoU 0.5, and averaged over the
    IoU thresholds asked for (COCO's AP@[.5:.95] with its ten)."""

    at_50: dict[str, float]
    averaged: dict[str, float]

    def of_kind(self, vocabulary: list[Phrase], kind: str) -> tuple[int, float, float]:
        """How many phrases of this kind were scored, their mean AP@0.5 and mean averaged AP."""
        texts = [p.text for p in vocabulary if p.kind == kind and p.text in self.at_50]
        return len(texts), float(np.mean([self.at_50[t] for t in texts])), float(np.mean([self.averaged[t] for t in texts]))


def phrase_ap(detections: list[dict], targets: list[dict], vocabulary: list[Phrase],
              thresholds=COCO_IOU_THRESHOLDS) -> PhraseAP:
    """AP of each phrase from ``as_detections``'s lists, labels indexing ``vocabulary``."""
    if not any(np.isclose(thresholds, 0.5)):
        raise ValueError(f"thresholds must include 0.5, got {list(thresholds)}")
    per_threshold = {float(t): average_precision(detections, targets, float(t)) for t in thresholds}
    at_50 = next(aps for t, aps in per_threshold.items() if np.isclose(t, 0.5))
    scored = [q for q, ap in at_50.items() if not np.isnan(ap)]
    return PhraseAP(at_50={vocabulary[q].text: at_50[q] for q in scored},
                    averaged={vocabulary[q].text: float(np.mean([aps[q] for aps in per_threshold.values()]))
                              for q in scored})


@torch.no_grad()
def clip_heat_map(clip: CLIP, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """CLIP's own grounding, before any detector training: (B, Q, grid, grid) cosines between each
    patch token, put through the image tower's last norm and projection as if it were the class
    token, and each phrase's text embedding."""
    visual = clip.visual
    tokens = visual.ln_post(visual.hidden_states(normalize(images))[-1][:, 1:])          # (B, N, D)
    patches = torch.nn.functional.normalize(visual.proj(tokens), dim=-1)                  # (B, N, E)
    words = torch.nn.functional.normalize(clip.encode_text(tokenize(texts)), dim=-1)      # (Q, E)
    grid = visual.config.grid_size
    return (patches @ words.T).transpose(1, 2).reshape(len(images), len(texts), grid, grid)


def pointing_accuracy(maps: torch.Tensor, batch: GroundingBatch, phrase_indices: list[int]) -> tuple[float, float]:
    """The pointing game: over every (image, phrase) pair where the phrase names a shape in the image,
    the share whose hottest patch has its centre inside one of the named shapes' boxes, and the
    share a patch drawn at random would reach (the named boxes' patches over all patches).

    ``maps`` (B, Q, grid, grid) scores each patch for the Q phrases whose indices into the
    batch's vocabulary are ``phrase_indices``.
    """
    grid = maps.shape[-1]
    centres = (torch.arange(grid) + 0.5) / grid                                             # (grid,)
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    hits, chance = [], []
    for image_maps, boxes, described in zip(maps, batch.boxes, batch.labels):
        corners = center_to_corners(boxes)                                                  # (T, 4)
        inside = ((xs[None] >= corners[:, 0, None, None]) & (xs[None] <= corners[:, 2, None, None])
                  & (ys[None] >= corners[:, 1, None, None]) & (ys[None] <= corners[:, 3, None, None]))  # (T, g, g)
        for heat, phrase in zip(image_maps, phrase_indices):
            named = described[:, phrase]                                                    # (T,)
            if not named.any():
                continue
            on_target = inside[named].any(dim=0)                                            # (g, g)
            hits.append(bool(on_target.flatten()[heat.flatten().argmax()]))
            chance.append(on_target.float().mean().item())
    return float(np.mean(hits)), float(np.mean(chance))
