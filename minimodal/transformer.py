"""Attention and the Transformer block, the one piece every model in the course is built from.

Attention lets each position of a sequence gather information from the others: every
query asks "which keys look like me?", the softmax of the scaled dot products answers
with weights that sum to one, and the output is that weighted average of the values.
Many heads do this side by side in smaller subspaces. A block adds a two-layer MLP and
wraps both in residual connections and LayerNorms, in one of two arrangements:

    post-LN (BERT, 2018):  x = LN(x + attn(x));   x = LN(x + mlp(x))
    pre-LN  (GPT-2, CLIP): x = x + attn(LN(x));   x = x + mlp(LN(x))

Pre-LN keeps an untouched residual path from input to output, which is why deep
pre-LN stacks train without warm-up tricks. The ViT, the causal text encoder, the
sentence encoder (``bert``) and the caption decoder all use this one implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention_weights(q: torch.Tensor, k: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)): how much each query attends to each key.

    q (..., Nq, d), k (..., Nk, d); mask is boolean, broadcastable to (..., Nq, Nk),
    True where a query may look. Returns (..., Nq, Nk), each row summing to one.
    Scaling by sqrt(d) keeps the dot products near unit variance, so the softmax does
    not saturate into a one-hot as d grows.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Nq, Nk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
    """Scaled dot-product attention: the weighted average of v, (..., Nq, d).

    fused=False computes it as written above; fused=True calls PyTorch's
    F.scaled_dot_product_attention, the same arithmetic in one kernel that never stores
    the (Nq, Nk) weights (flash or memory-efficient attention on a GPU).
    """
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attention_weights(q, k, mask) @ v


def causal_mask(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(n, n) boolean, True on and below the diagonal: position i sees positions 0..i."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, N) of 1 for real tokens, 0 for padding -> (B, 1, 1, N) boolean key mask.

    Broadcast over heads and queries: no query may look at a padding key.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask should be (batch, length) of 0/1, got shape "
                         f"{tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """Attention in ``heads`` subspaces of width // heads, then mixed by out_proj.

    Queries come from ``x``; keys and values from ``context``, which is ``x`` itself for
    self-attention and another sequence (the image, for a captioner) for cross-attention.
    """

    def __init__(self, width: int, heads: int, fused: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.fused = fused
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, H, N, D / H)."""
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        """(B, H, N, D / H) -> (B, N, D): the heads side by side again, the inverse of split_heads."""
        batch, heads, length, head_width = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * head_width)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values this layer makes of ``context`` (B, N, D): each (B, H, N, D / H)."""
        return self.split_heads(self.k_proj(context)), self.split_heads(self.v_proj(context))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x (B, Nq, D) -> (B, Nq, D).

        ``kv``: keys and values made earlier by ``keys_values`` (a KV cache, or an image's
        patches projected once), used instead of projecting ``context`` again.
        """
        q = self.split_heads(self.q_proj(x))        # (B, H, Nq, Dh)
        k, v = kv if kv is not None else self.keys_values(x if context is None else context)  # (B, H, Nk, Dh)
        out = attention(q, k, v, mask, self.fused)  # (B, H, Nq, Dh)
        return self.out_proj(self.merge_heads(out))  # (B, Nq, D)

    def attention_map(self, x: torch.Tensor, context: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """The weights this layer puts on each key, (B, H, Nq, Nk), for pictures."""
        context = x if context is None else context
        return attention_weights(self.split_heads(self.q_proj(x)),
                                 self.split_heads(self.k_proj(context)), mask)


def pick_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, N, D) and (B, R) positions -> (B, R, D): each sequence's rows at its own positions."""
    return x[torch.arange(len(x), device=x.device)[:, None], rows]


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x): the cheap GELU approximation OpenAI's CLIP was trained with."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": F.gelu, "quick_gelu": quick_gelu}


class MLP(nn.Module):
    """Two linear layers with a nonlinearity between: width -> hidden -> width, per position."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


@dataclass(kw_only=True)
class TransformerConfig:
    """The shape of a stack of blocks.

    Every tower's config (ViT, text encoder, BERT, caption decoder) *is* one of these,
    extended with its own fields, so the six shape fields are declared here once. Fields
    are keyword-only: a config is always built by name, so reordering fields can never
    silently load weights into the wrong shape.
    """

    width: int
    layers: int
    heads: int
    mlp_width: int | None = None  # None: 4 * width, as in BERT, GPT-2 and CLIP
    activation: str = "gelu"
    pre_norm: bool = True         # True: pre-LN (CLIP, GPT-2); False: post-LN (BERT)
    norm_eps: float = 1e-5
    fused: bool = True            # F.scaled_dot_product_attention, or attention written out

    def __post_init__(self):
        self.mlp_width = self.mlp_width or 4 * self.width
        if self.heads < 1 or self.width % self.heads:
            raise ValueError(f"width {self.width} does not split into {self.heads} heads; "
                             "heads must be a positive divisor of width")


class Block(nn.Module):
    """Attention then MLP, each inside a residual connection, LayerNorm before or after."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.ln_1 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.attn = MultiHeadAttention(config.width, config.heads, config.fused)
        self.ln_2 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.mlp = MLP(config.width, config.mlp_width, config.activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); given rows (B, R) of positions, only their outputs, (B, R, D).

        Keys and values always come from all N positions. With rows, the queries, the MLP
        and the residual stream shrink to R rows: all that a model which reads out one token
        needs from its last block. The mask must then fit those R queries: (B, H, R, N).
        """
        out = x if rows is None else pick_rows(x, rows)  # (B, R, D)
        if self.pre_norm:
            h = self.ln_1(x)
            out = out + self.attn(h if rows is None else pick_rows(h, rows), h, mask)
            return out + self.mlp(self.ln_2(out))
        out = self.ln_1(out + self.attn(out, x, mask))
        return self.ln_2(out + self.mlp(out))


class Transformer(nn.Module):
    """A stack of blocks over (B, N, width) sequences."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))

    def hidden_states(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The input and every block's output: layers + 1 tensors of shape (B, N, width)."""
        states = [x]
        for block in self.blocks:
            states.append(block(states[-1], mask))
        return states

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden_states(x, mask)[-1]

    def read_out(self, x: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor | None = None,
                 rows_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last block's output at rows (B, R) only, (B, R, width); the blocks before see
        ``mask``, the R queries of the last one ``rows_mask``. CLIP's towers read out one token."""
        *body, last = self.blocks
        for block in body:
            x = block(x, mask)
        return last(x, rows_mask, rows)


def set_fused_attention(model: nn.Module, fused: bool) -> nn.Module:
    """Switch every attention layer in ``model`` between the fused kernel and the written-out form."""
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.fused = fused
    return model
