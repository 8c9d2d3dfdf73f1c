"""The Vision Transformer: an image read as a sentence of patches.

Cut the image into a grid of P x P patches, flatten each one and project it to the
model width: now the image is a sequence of tokens and the Transformer of lesson 02
applies unchanged. A learned class token is put in front to collect a summary of the
whole image, learned positional embeddings say where each patch came from (attention
itself is blind to order), and after the last block the class token, normalized and
projected, is the image embedding. This is the image tower of CLIP, laid out as in
OpenAI's model.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.transformer import Transformer, TransformerConfig


@dataclass(kw_only=True)
class VisionConfig(TransformerConfig):
    """Shape of the image tower; the defaults are CLIP ViT-B/32."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    embed_dim: int | None = 512   # size of the output embedding, shared with the text tower;
                                  # None: no projection (a vision tower alone, as LLaVA holds it)
    activation: str = "quick_gelu"

    def __post_init__(self):
        super().__post_init__()
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of "
                             f"patch_size {self.patch_size}")

    @property
    def grid_size(self) -> int:
        """Patches along each side of the image."""
        return self.image_size // self.patch_size


def patchify(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C * P * P): the patches in reading order, each flattened.

    Each patch is flattened channel first, then row, then column, the order of a
    Conv2d weight's (C, P, P) kernel, so that a Linear layer holding the conv weight
    reshaped to (D, C * P * P) computes exactly what the strided convolution does.
    """
    batch, channels, height, width = pixels.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image of {height}x{width} pixels does not split into "
                         f"{patch_size}x{patch_size} patches")
    rows, cols = height // patch_size, width // patch_size
    grid = pixels.reshape(batch, channels, rows, patch_size, cols, patch_size)
    grid = grid.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, P, P)
    return grid.reshape(batch, rows * cols, channels * patch_size * patch_size)


def check_pixels(pixels: torch.Tensor, size: int) -> None:
    """Refuse what a tower cannot read, saying what it accepts: (B, 3, size, size), floating
    point, normalized, finite. Raw uint8 pixels and NaNs otherwise fail deep inside torch
    or, worse, give NaN embeddings without a word."""
    if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, size, size):
        raise ValueError(f"expected pixels of shape (batch, 3, {size}, {size}), got "
                         f"{tuple(pixels.shape)}")
    if not pixels.is_floating_point():
        raise TypeError(f"expected floating-point pixels, normalized as CLIP expects, got {pixels.dtype}; "
                        "turn images into model input with clip_preprocess (or the preprocess that "
                        "minimodal.load returns), or scale [0, 255] to [0, 1] and normalize")
    if pixels.numel() and not torch.isfinite(pixels).all():
        raise ValueError("pixels hold NaN or infinite values; check the image loading and normalization")


class VisionTransformer(nn.Module):
    """Pixels (B, 3, S, S) -> image embeddings (B, embed_dim)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        width, patches = config.width, config.grid_size ** 2
        # A convolution with stride = kernel = patch size is patchify followed by a Linear layer.
        self.patch_embed = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(patches + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=config.norm_eps)
        self.transformer = Transformer(config)
        self.ln_post = nn.LayerNorm(width, eps=config.norm_eps)
        self.proj = nn.Linear(width, config.embed_dim, bias=False) if config.embed_dim else None

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 1 + N, width): class token and patches, positions added."""
        check_pixels(pixels, self.config.image_size)
        patches = self.patch_embed(pixels).flatten(2).transpose(1, 2)             # (B, N, D)
        cls = self.class_embedding.to(patches.dtype).expand(len(patches), 1, -1)  # (B, 1, D)
        tokens = torch.cat([cls, patches], dim=1) + self.positional_embedding     # (B, 1 + N, D)
        return self.ln_pre(tokens)

    def hidden_states(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The input to the first block and every block's output, (B, 1 + N, width) each."""
        return self.transformer.hidden_states(self.embed(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The image embedding (B, embed_dim); without a projection, the normalized class token (B, width)."""
        tokens = self.embed(pixels)                                                     # (B, 1 + N, D)
        # Only the class token is read out, so the last block computes that one row.
        first = torch.zeros(len(tokens), 1, dtype=torch.long, device=tokens.device)    # (B, 1)
        pooled = self.ln_post(self.transformer.read_out(tokens, first)[:, 0])          # (B, D)
        return pooled if self.proj is None else self.proj(pooled)                      # (B, embed_dim)
