"""BLIP-2's Q-Former, the query half: learned queries that read an image through a small BERT.

Li et al. (2023) faced Flamingo's problem (a frozen image tower, a frozen language model,
a fixed number of visual tokens between them) with a different reader. The perceiver
resampler's latents attend to [patches; latents] in one attention; the Q-Former's
queries first attend to each other (self-attention), then to the patches
(cross-attention, in every layer or every other), then pass through a feed-forward of
their own, each step post-LN as in BERT: the layer of BLIP's text encoder
(``minimodal.blip.CrossAttentionLayer``, lesson 10), reading queries instead of words. In BLIP-2 the same layers also read text,
with separate feed-forwards; this is the queries-only path that produces the visual
tokens, equal to transformers' ``Blip2QFormerModel`` given the queries.

The queries start as N(0, 0.02^2), as in Salesforce's code (transformers starts them at
zero, which would make every query the same until training separates them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.blip import CrossAttentionLayer


@dataclass(kw_only=True)
class QFormerConfig:
    width: int                  # the queries' width, and the visual tokens'
    context_width: int          # the patch features' width
    queries: int = 8            # tokens out, per image
    layers: int = 2
    heads: int = 4
    mlp_width: int | None = None  # None: 4 * width
    cross_every: int = 1        # cross-attention in layers 0, k, 2k, ... (BLIP-2: every other)
    norm_eps: float = 1e-12

    def __post_init__(self):
        self.mlp_width = self.mlp_width or 4 * self.width
        if self.queries < 1 or self.layers < 1 or self.cross_every < 1:
            raise ValueError(f"queries, layers and cross_every must be positive, got {self.queries}, "
                             f"{self.layers}, {self.cross_every}")


class QFormer(nn.Module):
    """Patch features (B, N, Dc), or frames (B, F, N, Dc) read together -> (B, queries, D)."""

    def __init__(self, config: QFormerConfig):
        super().__init__()
        self.config = config
        self.queries = nn.Parameter(0.02 * torch.randn(config.queries, config.width))
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.layers = nn.ModuleList(
            CrossAttentionLayer(config.width, config.heads, config.mlp_width, config.context_width, config.norm_eps,
                                cross=i % config.cross_every == 0)
            for i in range(config.layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() not in (3, 4) or features.shape[-1] != self.config.context_width:
            raise ValueError(f"expected patch features (batch, patches, {self.config.context_width}) or "
                             f"(batch, frames, patches, {self.config.context_width}), got {tuple(features.shape)}")
        features = features.flatten(1, -2)                                     # (B, F * N, Dc)
        x = self.norm(self.queries.expand(len(features), -1, -1))              # (B, Q, D)
        for layer in self.layers:
            x = layer(x, features)
        return x
