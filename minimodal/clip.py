"""CLIP: an image tower and a text tower that meet in one embedding space.

Each tower ends in a projection to the same ``embed_dim``. After L2 normalization the
dot product of an image embedding and a text embedding is their cosine similarity;
multiplied by a learned temperature it becomes the logit of "this caption goes with
this image". The temperature is stored as its log, starts at ln(1 / 0.07) as in the
paper, and is capped at 100 so that training cannot make the softmax arbitrarily sharp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.text import TextConfig, TextTransformer
from minimodal.vit import VisionConfig, VisionTransformer

MAX_LOGIT_SCALE = 100.0


@dataclass
class CLIPConfig:
    """The two towers; the defaults are CLIP ViT-B/32."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)

    def __post_init__(self):
        if self.vision.embed_dim != self.text.embed_dim:
            raise ValueError(f"the towers must share embed_dim, got vision {self.vision.embed_dim} "
                             f"and text {self.text.embed_dim}")

    @property
    def embed_dim(self) -> int:
        return self.vision.embed_dim


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTransformer(config.vision)
        self.text = TextTransformer(config.text)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, embed_dim), not normalized."""
        return self.visual(pixels)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) token ids -> (B, embed_dim), not normalized."""
        return self.text(ids)

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits per image (B_img, B_txt) and per text (B_txt, B_img): scaled cosine similarities."""
        image = F.normalize(self.encode_image(pixels), dim=-1)  # (Bi, E)
        text = F.normalize(self.encode_text(ids), dim=-1)       # (Bt, E)
        scale = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        logits_per_image = scale * image @ text.T                # (Bi, Bt)
        return logits_per_image, logits_per_image.T
