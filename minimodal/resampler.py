"""Flamingo's perceiver resampler: any number of patch features in, a fixed number of tokens out.

A language model that reads images through cross-attention pays for every visual token
at every text position, and images (or video frames) come with different numbers of
patches. Alayrac et al. (2022) put a small Perceiver (Jaegle et al., 2021) in between:
a fixed set of learned vectors, the *latents*, ask questions of the patches. Each layer
lets the latents attend to the patches *and to themselves* (keys and values are the
concatenation [patches; latents]), then runs a feed-forward, both as residuals. What
comes out is always ``latents`` tokens, whether the image had 16 patches or 4 frames of 64.

The arithmetic is that of transformers' ``IdeficsPerceiverResampler``: LayerNorms before
attention (one for the patches, one for the latents), no biases in the projections, a
ReLU feed-forward four times wider, a final LayerNorm, and no per-frame time embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.mlp import MLP
from minimodal.transformer import MultiHeadAttention


@dataclass(kw_only=True)
class ResamplerConfig:
    width: int                  # the patch features' width; the latents have the same
    latents: int = 8            # tokens out, per image
    layers: int = 2
    heads: int = 4
    norm_eps: float = 1e-5

    def __post_init__(self):
        if self.latents < 1 or self.layers < 1:
            raise ValueError(f"a resampler needs at least one latent and one layer, got "
                             f"latents={self.latents}, layers={self.layers}")


class PerceiverAttention(nn.Module):
    """The latents' queries over keys and values from [patches; latents]."""

    def __init__(self, config: ResamplerConfig):
        super().__init__()
        self.context_norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.latents_norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.attn = MultiHeadAttention(config.width, config.heads, bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """features (B, N, D), latents (B, L, D) -> the update of the latents (B, L, D)."""
        latents = self.latents_norm(latents)
        context = torch.cat([self.context_norm(features), latents], dim=1)  # (B, N + L, D)
        return self.attn(latents, context)


class ResamplerLayer(nn.Module):
    def __init__(self, config: ResamplerConfig):
        super().__init__()
        self.attention = PerceiverAttention(config)
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.mlp = MLP(config.width, 4 * config.width, "relu", bias=False)

    def forward(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = latents + self.attention(features, latents)
        return latents + self.mlp(self.norm(latents))


class PerceiverResampler(nn.Module):
    """Patch features (B, N, D), or frames (B, F, N, D) read together -> (B, latents, D)."""

    def __init__(self, config: ResamplerConfig):
        super().__init__()
        self.config = config
        self.latents = nn.Parameter(torch.randn(config.latents, config.width))
        self.layers = nn.ModuleList(ResamplerLayer(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width, eps=config.norm_eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() not in (3, 4) or features.shape[-1] != self.config.width:
            raise ValueError(f"expected patch features (batch, patches, {self.config.width}) or "
                             f"(batch, frames, patches, {self.config.width}), got {tuple(features.shape)}")
        features = features.flatten(1, -2)                                    # (B, F * N, D)
        latents = self.latents.expand(len(features), -1, -1)                  # (B, L, D)
        for layer in self.layers:
            latents = layer(features, latents)
        return self.norm(latents)
