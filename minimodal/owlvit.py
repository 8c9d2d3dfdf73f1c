"""OWL-ViT: a CLIP whose every patch becomes a box, and whose classes are any words.

CLIP pools an image into one vector, so it can say *whether* a red circle is there but
not *where*. OWL-ViT keeps every patch token of the last block. Each one predicts:

- a box, from a small MLP plus a bias that puts the box at the patch's own place on the
  grid and gives it the patch's size: before any training, patch (r, c) already
  "detects" its own square, and the MLP only learns corrections;
- a class embedding, compared by cosine with the text embeddings of the queries. Since
  a query is embedded by CLIP's text tower, any phrase is a class: "red circle", "the
  square", "the blue triangle on the left". A learned per-patch shift and scale turn the
  cosine into a logit, whose sigmoid says "this patch's box is this phrase".

Names follow transformers' ``OwlViTForObjectDetection`` so the conversion is a rename.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.clip import CLIP, CLIPConfig


def box_bias(grid: int) -> torch.Tensor:
    """(grid * grid, 4) logits of the boxes each patch starts from, in row-major order.

    A patch's centre bias is the inverse sigmoid of its lower-right grid corner, (c + 1) / grid
    and (r + 1) / grid, as OWL-ViT computes it (a convention, not the centre: the MLP learns
    the half-patch offset); its size bias the inverse sigmoid of one patch, 1 / grid. The
    1e-4 keeps the last corner, at exactly 1, finite.
    """
    steps = torch.arange(1, grid + 1, dtype=torch.float32) / grid                  # (grid,)
    ys, xs = torch.meshgrid(steps, steps, indexing="ij")
    corners = torch.stack([xs, ys], dim=-1).reshape(-1, 2)                            # (N, 2)
    sizes = torch.full_like(corners, 1 / grid)                                        # (N, 2)

    def inverse_sigmoid(p: torch.Tensor) -> torch.Tensor:
        return torch.log(p + 1e-4) - torch.log1p(-p + 1e-4)
    return torch.cat([inverse_sigmoid(corners), inverse_sigmoid(sizes)], dim=-1)    # (N, 4)


class BoxHead(nn.Module):
    """Patch features -> 4 box logits: two GELU layers, then (cx, cy, w, h)."""

    def __init__(self, width: int):
        super().__init__()
        self.dense0 = nn.Linear(width, width)
        self.dense1 = nn.Linear(width, width)
        self.dense2 = nn.Linear(width, 4)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.dense2(F.gelu(self.dense1(F.gelu(self.dense0(features)))))


class ClassHead(nn.Module):
    """Patch features and query embeddings -> logits: (cosine + shift) * (elu(scale) + 1).

    The shift lets a patch say "I am background" for every query at once; the scale, kept
    positive by elu + 1, how sure it is. Both are read from the patch itself.
    """

    def __init__(self, width: int, embed_dim: int):
        super().__init__()
        self.dense0 = nn.Linear(width, embed_dim)
        self.logit_shift = nn.Linear(width, 1)
        self.logit_scale = nn.Linear(width, 1)

    def forward(self, features: torch.Tensor, queries: torch.Tensor,
                query_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) features, (B, Q, E) queries -> (B, N, Q) logits and (B, N, E) unit class embeddings."""
        patches = self.dense0(features)                                                   # (B, N, E)
        patches = patches / (patches.norm(dim=-1, keepdim=True) + 1e-6)
        queries = queries / (queries.norm(dim=-1, keepdim=True) + 1e-6)
        cosine = patches @ queries.transpose(1, 2)                                        # (B, N, Q)
        logits = (cosine + self.logit_shift(features)) * (F.elu(self.logit_scale(features)) + 1)
        if query_mask is not None:  # padding queries, when images have different numbers of them
            logits = logits.masked_fill(~query_mask[:, None, :], torch.finfo(logits.dtype).min)
        return logits, patches


@dataclass
class Detections:
    logits: torch.Tensor          # (B, N, Q) one logit per patch and query; sigmoid -> score
    boxes: torch.Tensor           # (B, N, 4) (cx, cy, w, h) in [0, 1] of the image
    class_embeds: torch.Tensor    # (B, N, E) unit vectors each patch compared with the queries


class OWLViT(nn.Module):
    """A CLIP (its weights the detector's starting point) with a box head and a class head."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        width = config.vision.width
        self.config = config
        self.clip = CLIP(config)
        self.layer_norm = nn.LayerNorm(width, eps=config.vision.norm_eps)
        self.class_head = ClassHead(width, config.embed_dim)
        self.box_head = BoxHead(width)
        self.register_buffer("box_bias", box_bias(config.vision.grid_size), persistent=False)

    @classmethod
    def from_clip(cls, clip: CLIP) -> "OWLViT":
        """A detector whose towers start as a copy of ``clip``; the heads start fresh."""
        detector = cls(clip.config)
        detector.clip.load_state_dict(clip.state_dict())
        return detector

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, N, width): every patch of the last block, times the class token.

        Multiplying by the class token hands each patch what the whole image is about; the
        extra LayerNorm brings the product back to a common scale.
        """
        visual = self.clip.visual
        tokens = visual.ln_post(visual.hidden_states(pixels)[-1])                         # (B, 1 + N, D)
        return self.layer_norm(tokens[:, 1:] * tokens[:, :1])                              # (B, N, D)

    def embed_queries(self, ids: torch.Tensor) -> torch.Tensor:
        """(Q, L) token ids of phrases -> (Q, E) query embeddings: CLIP's text embeddings."""
        return self.clip.encode_text(ids)

    def forward(self, pixels: torch.Tensor, queries: torch.Tensor,
                query_mask: torch.Tensor | None = None) -> Detections:
        """Pixels (B, 3, S, S) and query embeddings, (Q, E) shared by the batch or (B, Q, E)
        per image with a (B, Q) mask of the real ones -> a box and Q logits per patch."""
        batch, dim = len(pixels), self.config.embed_dim
        if queries.ndim not in (2, 3) or queries.shape[-1] != dim or (queries.ndim == 3 and len(queries) != batch):
            raise ValueError(f"queries must be (Q, {dim}) or ({batch}, Q, {dim}), got {tuple(queries.shape)}")
        features = self.patch_features(pixels)                                             # (B, N, D)
        queries = queries.expand(batch, -1, -1) if queries.ndim == 2 else queries          # (B, Q, E)
        logits, class_embeds = self.class_head(features, queries, query_mask)
        boxes = torch.sigmoid(self.box_head(features) + self.box_bias)                     # (B, N, 4)
        return Detections(logits=logits, boxes=boxes, class_embeds=class_embeds)
