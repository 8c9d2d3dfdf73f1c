"""The feed-forward half of a block: the same small network applied at every position.

Attention mixes positions; this mixes features. Two forms: the MLP of BERT, GPT-2 and
CLIP (up, a nonlinearity, down) and the gated SwiGLU of LLaMA.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x): the cheap GELU approximation OpenAI's CLIP was trained with."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": F.gelu, "quick_gelu": quick_gelu, "relu": F.relu}
GATED = "swiglu"


class MLP(nn.Module):
    """Two linear layers with a nonlinearity between: width -> hidden -> width, per position."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)} "
                             f"(or {GATED!r} for the gated feed-forward)")
        self.fc1 = nn.Linear(width, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, width, bias=bias)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class SwiGLU(nn.Module):
    """The gated feed-forward of LLaMA (Shazeer, 2020): down(silu(gate(x)) * up(x)).

    Two projections up instead of one: one passes through SiLU and multiplies the other
    element by element, so each hidden unit is a learned gate times a learned value. At
    equal parameter count it trains to a lower loss than a plain MLP; no biases, as in LLaMA.
    """

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (..., D)


def feed_forward(config) -> nn.Module:
    """The feed-forward a TransformerConfig asks for: SwiGLU, or an MLP with its activation."""
    if config.activation == GATED:
        return SwiGLU(config.width, config.mlp_width)
    return MLP(config.width, config.mlp_width, config.activation)
