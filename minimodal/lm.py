"""A small LLaMA-style language model: the causal Transformer of lesson 04, as 2024 builds it.

What sets it apart from CLIP's text encoder is four swaps inside the same block (RMSNorm
for LayerNorm, SwiGLU for the GELU MLP, grouped-query attention, rotary positions instead
of a learned position table) and a different job: instead of pooling one vector, it
predicts the next token at every position, through a head that may share its weights
with the token embedding ("tied"). Generation (``minimodal.generate``) feeds its
predictions back in, one token at a time, with a KV cache.

Padding is on the left when prompts of different lengths share a batch, so that every
prompt ends at the last column and the next token of all of them is predicted at once.
Positions count real tokens only, so a padded prompt sees exactly what it would alone.

Initialisation follows LLaMA's: every linear and embedding weight ~ N(0, 0.02^2), norms at 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.kv_cache import KVCache
from minimodal.norm import RMSNorm
from minimodal.rope import rope_angles
from minimodal.transformer import Transformer, TransformerConfig

INIT_STD = 0.02


@dataclass(kw_only=True)
class LMConfig(TransformerConfig):
    """Shape of the language model; the defaults are the course's small LM (lesson 11)."""

    vocab_size: int
    max_length: int = 128          # the longest sequence it is trained on (RoPE itself has no limit)
    width: int = 96
    layers: int = 3
    heads: int = 4
    kv_heads: int | None = 2
    mlp_width: int | None = 256    # SwiGLU's hidden width, about 8/3 of the width as in LLaMA
    activation: str = "swiglu"
    norm: str = "rms"
    norm_eps: float = 1e-6
    bias: bool = False
    rope_theta: float = 10000.0
    tie_embeddings: bool = True

    @property
    def head_width(self) -> int:
        return self.width // self.heads


def positions_of(attention_mask: torch.Tensor | None, length: int, past: int,
                 device: torch.device) -> torch.Tensor:
    """(B, T) position of each new token: its count of real tokens before it, padding skipped."""
    if attention_mask is None:
        return torch.arange(past, past + length, device=device)[None]                # (1, T)
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)[:, -length:]      # (B, T)


def decoder_mask(attention_mask: torch.Tensor | None, length: int, past: int,
                 device: torch.device) -> torch.Tensor:
    """Which keys each new query may see: (T, past + T) causal, or (B, 1, T, past + T) with padding.

    A padding query is let see itself: a query that sees nothing gives NaN, and NaN times
    a zero attention weight is still NaN in the next layer's real rows.
    """
    queries = past + torch.arange(length, device=device)                             # (T,)
    keys = torch.arange(past + length, device=device)                                # (K,)
    causal = keys[None, :] <= queries[:, None]                                        # (T, K)
    if attention_mask is None:
        return causal
    real = attention_mask.bool()[:, None, None, :]                                    # (B, 1, 1, K)
    return causal & (real | (keys[None, :] == queries[:, None]))                      # (B, 1, T, K)


class LanguageModel(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.transformer = Transformer(config)
        self.norm = RMSNorm(config.width, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:  # one matrix reads tokens in and writes them out
            self.lm_head.weight = self.token_embedding.weight

    def check_ids(self, ids: torch.Tensor) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"expected integer token ids of shape (batch, length), got {ids.dtype} "
                             f"of shape {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")

    def hidden(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
               cache: KVCache | None = None,
               before_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Embedded tokens x (B, T, D) -> the final normalized hidden states (B, T, D).

        ``attention_mask`` (B, past + T) covers the cached positions and the new ones;
        ``cache`` receives the new keys and values. LLaVA calls this with image features
        spliced into x, which is why the embedding is not done here; Flamingo passes
        ``before_block`` to add its gated cross-attention before chosen blocks.
        """
        length, past = x.shape[1], 0 if cache is None else len(cache)
        if attention_mask is not None and attention_mask.shape != (x.shape[0], past + length):
            raise ValueError(f"attention_mask should be (batch, cached + new) = "
                             f"{(x.shape[0], past + length)}, got {tuple(attention_mask.shape)}")
        positions = positions_of(attention_mask, length, past, x.device)                 # (B, T)
        rope = rope_angles(positions, self.config.head_width, self.config.rope_theta)  # 2 x (B, 1, T, Dh)
        mask = decoder_mask(attention_mask, length, past, x.device)
        return self.norm(self.transformer(x, mask, rope=rope, cache=cache, before_block=before_block))

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        self.check_ids(ids)
        return self.lm_head(self.hidden(self.token_embedding(ids), attention_mask, cache))  # (B, T, V)

    def new_cache(self) -> KVCache:
        return KVCache(self.config.layers)


def init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=INIT_STD)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
