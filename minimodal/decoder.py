"""A Transformer decoder that writes about an image, with a KV cache for generation.

Blocks of causal self-attention over the words so far, cross-attention from the words to
the image's patches (the *memory*), and an MLP. Training sees every position at once
(teacher forcing); generation keeps each layer's keys and values in a *KV cache*, so a
new word costs one position's work rather than the whole prefix again. The cache is an
argument of attention (``cache=``, the same KVCache the language model of lesson 11 uses), not
a second implementation of it. It speaks the step
interface of ``minimodal.decoding``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.decoding import State
from minimodal.kv_cache import KVCache, LayerCache
from minimodal.mlp import MLP
from minimodal.transformer import MultiHeadAttention, TransformerConfig, causal_mask


@dataclass(kw_only=True)
class TransformerDecoderConfig(TransformerConfig):
    vocab_size: int
    width: int = 64             # must equal the encoder's width: cross-attention reads its patches
    layers: int = 2
    heads: int = 4
    max_length: int = 32        # positions, <bos> and <eos> included

    @property
    def memory_width(self) -> int:
        """Cross-attention reads the patches at the decoder's own width."""
        return self.width


class DecoderBlock(nn.Module):
    """Pre-LN: causal self-attention over the words, cross-attention to the patches, MLP.

    The same arithmetic as torch.nn.TransformerDecoderLayer(norm_first=True, gelu, no
    dropout); ``load_from_torch`` copies its weights so the two can be compared.
    """

    def __init__(self, config: TransformerDecoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.self_attn = MultiHeadAttention(config.width, config.heads, config.fused)
        self.ln_2 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.cross_attn = MultiHeadAttention(config.width, config.heads, config.fused)
        self.ln_3 = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.mlp = MLP(config.width, config.mlp_width, "gelu")

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The whole sequence at once: x (B, T, D), memory (B, N, D), mask (T, T) causal."""
        x = x + self.self_attn(self.ln_1(x), mask=mask)
        x = x + self.cross_attn(self.ln_2(x), context=memory)
        return x + self.mlp(self.ln_3(x))

    def step(self, x: torch.Tensor, cache: LayerCache, memory: LayerCache) -> torch.Tensor:
        """New positions only, x (B, 1, D), with this layer's caches of words and of patches.

        Attention appends the new word's keys and values to ``cache``, and its query then
        attends to all of them. No mask is needed: everything cached lies in its past. The
        memory's keys and values were computed once by ``start``.
        """
        x = x + self.self_attn(self.ln_1(x), cache=cache)
        x = x + self.cross_attn(self.ln_2(x), kv=(memory.keys, memory.values))
        return x + self.mlp(self.ln_3(x))


class TransformerDecoder(nn.Module):
    """Word and position embeddings, decoder blocks, a final LayerNorm, and the word logits."""

    def __init__(self, config: TransformerDecoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Parameter(0.02 * torch.randn(config.max_length, config.width))
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.head = nn.Linear(config.width, config.vocab_size, bias=False)

    def embed(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """tokens (B, T) at positions start .. start+T-1 -> (B, T, D)."""
        end = start + tokens.shape[1]
        if end > self.config.max_length:
            raise ValueError(f"position {end - 1} is past the decoder's {self.config.max_length} "
                             "positions; generate fewer tokens or build it with a larger max_length")
        return self.token_embedding(tokens) + self.position_embedding[start:end]

    def decode(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The block stack and final norm on embedded words x (B, T, D): (B, T, D)."""
        mask = causal_mask(x.shape[1], x.device)
        for block in self.blocks:
            x = block(x, memory, mask)
        return self.ln_final(x)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens (B, T) -> next-word logits (B, T, V), every position at once."""
        return self.head(self.decode(self.embed(tokens), memory))

    def start(self, memory: torch.Tensor) -> State:
        """An empty KV cache for the words, and the memory's keys and values made once per layer."""
        patches = KVCache(len(self.blocks))
        for cache, block in zip(patches.layers, self.blocks):
            cache.extend(*block.cross_attn.keys_values(memory))   # (B, H, N, Dh) each
        return {"words": KVCache(len(self.blocks)), "patches": patches}

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """tokens (B,), the words just chosen -> logits for the next (B, V) and the grown cache."""
        words, patches = state["words"], state["patches"]
        x = self.embed(tokens[:, None], start=len(words))         # (B, 1, D)
        for block, cache, memory in zip(self.blocks, words.layers, patches.layers):
            x = block.step(x, cache, memory)
        return self.head(self.ln_final(x))[:, 0], state

    def cross_attention(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The last layer's cross-attention, averaged over heads: (B, T, N), for heat maps."""
        x, mask = self.embed(tokens), causal_mask(tokens.shape[1], tokens.device)
        for block in self.blocks[:-1]:
            x = block(x, memory, mask)
        last = self.blocks[-1]
        x = x + last.self_attn(last.ln_1(x), mask=mask)
        return last.cross_attn.attention_map(last.ln_2(x), memory).mean(dim=1)

    def load_from_torch(self, reference: nn.TransformerDecoder) -> None:
        """Copy a torch.nn.TransformerDecoder's layers and final norm (strict: a missing,
        extra or misshapen tensor raises). The embeddings and head are ours alone."""
        layer = reference.layers[0]
        if not layer.norm_first or reference.norm is None or layer.activation is not F.gelu:
            raise ValueError("can only copy a torch.nn.TransformerDecoder built with norm_first=True, "
                             "activation='gelu' and a final norm: the arrangement this decoder uses")
        renamed = {}
        for key, tensor in reference.state_dict().items():
            renamed.update(_torch_decoder_key(key, tensor))
        own = {k: v for k, v in self.state_dict().items()
               if k.startswith(("token_embedding", "position_embedding", "head"))}
        self.load_state_dict({**own, **renamed}, strict=True)


_TORCH_NAMES = {"self_attn.out_proj": "self_attn.out_proj", "multihead_attn.out_proj": "cross_attn.out_proj",
                "linear1": "mlp.fc1", "linear2": "mlp.fc2",
                "norm1": "ln_1", "norm2": "ln_2", "norm3": "ln_3"}


def _torch_decoder_key(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One torch.nn.TransformerDecoder entry as our names: its packed q/k/v projection
    (in_proj_weight, 3D x D) becomes three."""
    if key.startswith("norm."):
        return {key.replace("norm.", "ln_final.", 1): tensor}
    _, index, rest = key.split(".", 2)  # 'layers.0.linear1.weight'
    module, param = rest.rsplit(".", 1)
    prefix = f"blocks.{index}."
    if param.startswith("in_proj_"):
        attn = {"self_attn": "self_attn", "multihead_attn": "cross_attn"}[module]
        kind = param.removeprefix("in_proj_")
        q, k, v = tensor.chunk(3, dim=0)
        return {f"{prefix}{attn}.{name}_proj.{kind}": part for name, part in zip("qkv", (q, k, v))}
    if module not in _TORCH_NAMES:
        raise KeyError(f"unexpected tensor {key!r} in the torch.nn.TransformerDecoder")
    return {f"{prefix}{_TORCH_NAMES[module]}.{param}": tensor}
