"""Flamingo: a frozen language model taught to read images by layers slipped in between its own.

Alayrac et al. (2022) keep both pretrained parts frozen, a vision tower and a language
model, and train only what joins them:

1. a **perceiver resampler** (``minimodal.resampler``) turns each image's patch features
   into a fixed number of visual tokens (or BLIP-2's Q-Former, ``minimodal.qformer``,
   does the same job another way);
2. a **gated cross-attention block** before every k-th block of the language model: the
   text attends to the visual tokens, then a feed-forward, each added to the residual
   stream times tanh(alpha). With alpha = 0 at the start both additions are exactly
   zero, so the untrained model *is* the frozen language model, and training opens
   the gates only as far as the image helps.

Text and images interleave: ``<|image|>`` marks where an image stands, and each text
token cross-attends only to the visual tokens of the latest image at or before it
(tokens before the first image see none, and their cross-attention output is zeroed).
What an earlier image said reaches a later token only through the language model's own
self-attention over the text that followed it: that is how examples in the prompt
teach a task (few-shot).

The block is transformers' ``IdeficsGatedCrossAttentionLayer``: RMSNorm before each
half, no biases, SwiGLU, one scalar alpha per half.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.lm import LanguageModel, LMConfig
from minimodal.mlp import SwiGLU
from minimodal.norm import RMSNorm
from minimodal.qformer import QFormer, QFormerConfig
from minimodal.resampler import PerceiverResampler, ResamplerConfig
from minimodal.transformer import MultiHeadAttention
from minimodal.vit import VisionConfig, VisionTransformer


class GatedCrossAttentionBlock(nn.Module):
    """x (B, T, D) reads visual tokens (B, V, Dv): x + tanh(a) xattn, then + tanh(b) feed-forward."""

    def __init__(self, width: int, context_width: int, heads: int, mlp_width: int, norm_eps: float = 1e-6):
        super().__init__()
        self.attn_norm = RMSNorm(width, eps=norm_eps)
        self.cross_attn = MultiHeadAttention(width, heads, bias=False, context_width=context_width)
        self.attn_gate = nn.Parameter(torch.zeros(1))   # alpha: tanh(0) = 0, the block starts closed
        self.mlp_norm = RMSNorm(width, eps=norm_eps)
        self.mlp = SwiGLU(width, mlp_width)
        self.mlp_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, visual: torch.Tensor, mask: torch.Tensor,
                sees_image: torch.Tensor) -> torch.Tensor:
        """``mask`` (B, 1, T, V): which visual tokens each text token may read. ``sees_image``
        (B, T): tokens with an image before them; the others get no cross-attention at all."""
        safe = mask | ~sees_image[:, None, :, None]        # a row with no key would give NaN
        read = self.cross_attn(self.attn_norm(x), visual, safe) * sees_image[..., None]  # (B, T, D)
        x = x + self.attn_gate.tanh() * read
        return x + self.mlp_gate.tanh() * self.mlp(self.mlp_norm(x))


def latest_image(ids: torch.Tensor, image_id: int) -> torch.Tensor:
    """(B, T) ids -> (B, T) the index of the latest image at or before each token, -1 if none."""
    return (ids == image_id).long().cumsum(dim=1) - 1


def latest_image_mask(ids: torch.Tensor, image_id: int, images: int, tokens_per_image: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which visual tokens each text token reads: (B, 1, T, images * tokens_per_image) and (B, T).

    Visual token j belongs to image j // tokens_per_image; token t reads it when that
    image is the latest at or before t. The second tensor says which tokens read any.
    """
    latest = latest_image(ids, image_id)                                          # (B, T)
    if latest.numel() and int(latest.max()) >= images:
        raise ValueError(f"a sequence holds {int(latest.max()) + 1} <|image|> markers but only {images} "
                         "image(s) per sequence were given")
    owner = torch.arange(images * tokens_per_image, device=ids.device) // tokens_per_image  # (V,)
    return (owner == latest[..., None])[:, None], latest >= 0


@dataclass(kw_only=True)
class FlamingoConfig:
    vision: VisionConfig
    lm: LMConfig
    image_token_id: int
    connector: ResamplerConfig | QFormerConfig
    cross_every: int = 1          # a gated block before LM blocks 0, k, 2k, ...
    feature_layer: int = -2       # which hidden state of the vision tower (as LLaVA reads it)

    def __post_init__(self):
        if self.vision.embed_dim is not None:
            raise ValueError("Flamingo reads the vision tower's patch features: build the VisionConfig "
                             "with embed_dim=None")
        c = self.connector
        reads = c.width if isinstance(c, ResamplerConfig) else c.context_width
        if reads != self.vision.width:
            raise ValueError(f"the connector reads features of width {reads}, but the vision tower's "
                             f"patch features are {self.vision.width} wide")
        if not 1 <= self.cross_every <= self.lm.layers:
            raise ValueError(f"cross_every must be in [1, {self.lm.layers}], got {self.cross_every}")

    @property
    def tokens_per_image(self) -> int:
        c = self.connector
        return c.latents if isinstance(c, ResamplerConfig) else c.queries

    @property
    def visual_width(self) -> int:
        return self.connector.width


class Flamingo(nn.Module):
    """Ids (B, T) with one ``<|image|>`` per image, and (B, I, ...) images -> logits (B, T, V)."""

    def __init__(self, config: FlamingoConfig):
        super().__init__()
        self.config = config
        self.vision_tower = VisionTransformer(config.vision)
        self.connector = (PerceiverResampler(config.connector) if isinstance(config.connector, ResamplerConfig)
                          else QFormer(config.connector))
        self.language_model = LanguageModel(config.lm)
        lm = config.lm
        self.gated = nn.ModuleList(
            GatedCrossAttentionBlock(lm.width, config.visual_width, lm.heads, lm.mlp_width, lm.norm_eps)
            for _ in range(0, lm.layers, config.cross_every))

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(I, 3, S, S) -> (I, N, vision width): a hidden state of the tower, class token dropped."""
        return self.vision_tower.hidden_states(pixels)[self.config.feature_layer][:, 1:]

    def visual_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Patch features (B, I, N, Dv) of I images per sequence -> (B, I * tokens_per_image, Dv)."""
        return self.connector(features.flatten(0, 1)).reshape(len(features), -1, self.config.visual_width)

    def forward(self, ids: torch.Tensor, pixels: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits. Images come as ``pixels`` (B, I, 3, S, S) or their patch features
        (B, I, N, Dv) computed beforehand; a sequence with fewer than I images pads the rest."""
        self.language_model.check_ids(ids)
        if pixels is not None:
            features = self.patch_features(pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2])
        x = self.language_model.token_embedding(ids)                                  # (B, T, D)
        if features is None:
            if (ids == self.config.image_token_id).any():
                raise ValueError("the ids hold <|image|> markers but no pixels (or features) were given")
            return self.language_model.lm_head(self.language_model.hidden(x, attention_mask))
        if features.dim() != 4 or len(features) != len(ids):
            raise ValueError(f"images must come as (batch={len(ids)}, images, patches, width), got "
                             f"{tuple(features.shape)}")
        visual = self.visual_tokens(features)                                          # (B, V, Dv)
        mask, sees = latest_image_mask(ids, self.config.image_token_id, features.shape[1],
                                       self.config.tokens_per_image)

        def cross_attend(i: int, h: torch.Tensor) -> torch.Tensor:
            if i % self.config.cross_every:
                return h
            return self.gated[i // self.config.cross_every](h, visual, mask, sees)

        return self.language_model.lm_head(self.language_model.hidden(x, attention_mask, before_block=cross_attend))

    def gates(self) -> torch.Tensor:
        """(blocks, 2): tanh(alpha) of each gated block's cross-attention and feed-forward."""
        return torch.stack([torch.cat([g.attn_gate, g.mlp_gate]).tanh() for g in self.gated]).detach()


@contextmanager
def closed_gates(model: Flamingo):
    """Every alpha set to 0 inside the block (the model is then its language model), restored after."""
    saved = [(g.attn_gate.detach().clone(), g.mlp_gate.detach().clone()) for g in model.gated]
    with torch.no_grad():
        for g in model.gated:
            g.attn_gate.zero_()
            g.mlp_gate.zero_()
    try:
        yield model
    finally:
        with torch.no_grad():
            for g, (a, b) in zip(model.gated, saved):
                g.attn_gate.copy_(a)
                g.mlp_gate.copy_(b)
