"""Rotary position embeddings (RoPE, Su et al., 2021): a position is a rotation of queries and keys.

Split a head's features into pairs and turn each pair by an angle proportional to the
token's position, each pair at its own speed (theta ** (-2i / d) radians per position, fast
for the first pairs and slow for the last). A rotation keeps lengths, and the dot product
of a query turned by angle a with a key turned by angle b depends on a - b only: attention
scores see how far apart two tokens are, never where they are. Nothing is learned, and
positions past the longest training sequence still get well-defined angles.

Which features make a pair is a convention: the paper pairs neighbours (0, 1), (2, 3)...;
LLaMA as transformers writes it pairs feature i with feature i + d/2 ("rotate half"). The
two are the same model up to a permutation of the weights, but not the same code; this
is the rotate-half form, so checkpoints carry over unchanged.
"""

from __future__ import annotations

import torch


def rope_angles(positions: torch.Tensor, head_width: int, theta: float = 10000.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (B, T) -> cos and sin of every pair's angle, each (B, 1, T, head_width), float32.

    Feature i and feature i + head_width / 2 share an angle, so each is listed twice.
    The extra axis broadcasts over the heads.
    """
    if head_width % 2:
        raise ValueError(f"RoPE turns features in pairs: the head width must be even, got {head_width}")
    exponents = torch.arange(0, head_width, 2, device=positions.device, dtype=torch.float32) / head_width
    speeds = theta ** -exponents                                    # (Dh / 2,) radians per position
    angles = positions[..., None].float() * speeds                  # (B, T, Dh / 2)
    angles = torch.cat([angles, angles], dim=-1)                    # (B, T, Dh)
    return angles.cos()[:, None], angles.sin()[:, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis: a quarter turn of every pair."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn each pair (x_i, x_{i+d/2}) of x (B, H, T, Dh) by its angle: x cos + rotate_half(x) sin."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)
