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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.kv_cache import KVCache, LayerCache
from minimodal.mlp import feed_forward
from minimodal.norm import RMSNorm
from minimodal.rope import apply_rope


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

    ``context_width`` is the width of that other sequence when it differs from ``width``
    (Flamingo's cross-attention reads image latents narrower than the language model).

    With ``kv_heads`` < ``heads`` it is grouped-query attention (Ainslie et al., 2023):
    each key/value head serves heads // kv_heads query heads, which shrinks the KV cache
    by that factor at a small cost in quality. kv_heads = 1 is multi-query attention.
    """

    def __init__(self, width: int, heads: int, fused: bool = True, kv_heads: int | None = None,
                 bias: bool = True, context_width: int | None = None):
        super().__init__()
        kv_heads, context_width = kv_heads or heads, context_width or width
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        if heads % kv_heads:
            raise ValueError(f"{heads} query heads cannot be shared evenly by {kv_heads} key/value heads")
        self.heads, self.kv_heads, self.head_width = heads, kv_heads, width // heads
        self.fused = fused
        self.q_proj = nn.Linear(width, width, bias=bias)
        self.k_proj = nn.Linear(context_width, kv_heads * self.head_width, bias=bias)
        self.v_proj = nn.Linear(context_width, kv_heads * self.head_width, bias=bias)
        self.out_proj = nn.Linear(width, width, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, H * Dh) -> (B, H, N, Dh), for queries (H heads) and keys or values (H_kv heads)."""
        batch, length, width = x.shape
        return x.view(batch, length, width // self.head_width, self.head_width).transpose(1, 2)

    @staticmethod
    def merge_heads(x: torch.Tensor) -> torch.Tensor:
        """(B, H, N, D / H) -> (B, N, D): the heads side by side again, the inverse of split_heads."""
        batch, heads, length, head_width = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * head_width)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values this layer makes of ``context`` (B, N, D): each (B, H_kv, N, Dh)."""
        return self.split_heads(self.k_proj(context)), self.split_heads(self.v_proj(context))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: LayerCache | None = None) -> torch.Tensor:
        """x (B, Nq, D) -> (B, Nq, D).

        ``kv``: keys and values made earlier by ``keys_values`` (an image's patches
        projected once), used instead of projecting ``context`` again. ``rope``: the cos
        and sin of ``minimodal.rope.rope_angles`` at x's positions, turning queries and keys.
        ``cache``: this layer's keys and values of earlier positions, to which x's are
        appended (after their rotation) and which x's queries then attend to.
        """
        q = self.split_heads(self.q_proj(x))                                     # (B, H, Nq, Dh)
        k, v = kv if kv is not None else self.keys_values(x if context is None else context)  # (B, Hkv, Nk, Dh)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.extend(k, v)                                            # (B, Hkv, past + Nk, Dh)
        if self.kv_heads != self.heads:  # each key/value head serves a group of query heads
            k, v = (t.repeat_interleave(self.heads // self.kv_heads, dim=1) for t in (k, v))
        out = attention(q, k, v, mask, self.fused)                               # (B, H, Nq, Dh)
        return self.out_proj(self.merge_heads(out))                              # (B, Nq, D)

    def attention_map(self, x: torch.Tensor, context: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """The weights this layer puts on each key, (B, H, Nq, Nk), for pictures."""
        context = x if context is None else context
        return attention_weights(self.split_heads(self.q_proj(x)),
                                 self.split_heads(self.k_proj(context)), mask)


def pick_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, N, D) and (B, R) positions -> (B, R, D): each sequence's rows at its own positions."""
    return x[torch.arange(len(x), device=x.device)[:, None], rows]


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
    activation: str = "gelu"      # or "quick_gelu", or "swiglu": the gated feed-forward
    pre_norm: bool = True         # True: pre-LN (CLIP, GPT-2); False: post-LN (BERT)
    norm: str = "layer"           # "layer": LayerNorm; "rms": RMSNorm (LLaMA)
    norm_eps: float = 1e-5
    kv_heads: int | None = None   # None: one per query head; fewer: grouped-query attention
    bias: bool = True             # biases in attention (LLaMA has none)
    fused: bool = True            # F.scaled_dot_product_attention, or attention written out

    def __post_init__(self):
        self.mlp_width = self.mlp_width or 4 * self.width
        if self.heads < 1 or self.width % self.heads:
            raise ValueError(f"width {self.width} does not split into {self.heads} heads; "
                             "heads must be a positive divisor of width")


def make_norm(config: TransformerConfig) -> nn.Module:
    if config.norm not in ("layer", "rms"):
        raise ValueError(f"norm must be 'layer' (LayerNorm) or 'rms' (RMSNorm), got {config.norm!r}")
    norm = nn.LayerNorm if config.norm == "layer" else RMSNorm
    return norm(config.width, eps=config.norm_eps)


class Block(nn.Module):
    """Attention then a feed-forward, each inside a residual connection, normalized before or after.

    One block for every model of the course: LayerNorm and a GELU MLP for CLIP and BERT,
    RMSNorm, SwiGLU and grouped-query attention with rotary positions for the LLaMA-style
    language model, as its config says.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.pre_norm = config.pre_norm
        self.ln_1 = make_norm(config)
        self.attn = MultiHeadAttention(config.width, config.heads, config.fused, config.kv_heads, config.bias)
        self.ln_2 = make_norm(config)
        self.mlp = feed_forward(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, rows: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: LayerCache | None = None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); given rows (B, R) of positions, only their outputs, (B, R, D).

        Keys and values always come from all N positions. With rows, the queries, the MLP
        and the residual stream shrink to R rows: all that a model which reads out one token
        needs from its last block. The mask must then fit those R queries: (B, H, R, N).
        ``rope`` and ``cache`` go to attention (see MultiHeadAttention).
        """
        out = x if rows is None else pick_rows(x, rows)  # (B, R, D)
        if self.pre_norm:
            h = self.ln_1(x)
            out = out + self.attn(h if rows is None else pick_rows(h, rows), h, mask, rope=rope, cache=cache)
            return out + self.mlp(self.ln_2(out))
        out = self.ln_1(out + self.attn(out, x, mask))
        return self.ln_2(out + self.mlp(out))


class Transformer(nn.Module):
    """A stack of blocks over (B, N, width) sequences."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))

    def hidden_states(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                      rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                      cache: KVCache | None = None,
                      before_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                      ) -> list[torch.Tensor]:
        """The input and every block's output: layers + 1 tensors of shape (B, N, width).

        ``before_block(i, x)`` rewrites the stream before block i: Flamingo inserts its
        gated cross-attention there, leaving the blocks themselves untouched.
        """
        states = [x]
        for i, block in enumerate(self.blocks):
            x = states[-1] if before_block is None else before_block(i, states[-1])
            states.append(block(x, mask, rope=rope, cache=None if cache is None else cache.layers[i]))
        return states

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None,
                before_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        return self.hidden_states(x, mask, rope, cache, before_block)[-1]

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
