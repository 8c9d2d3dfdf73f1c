"""BERT as a sentence encoder: the post-LN Transformer of 2018, read out by mean pooling.

Lesson 02 checks the blocks of ``minimodal.transformer`` against real pretrained weights:
all-MiniLM-L6-v2, a six-layer BERT that sentence-transformers turns into sentence
embeddings by averaging the last layer over the real (non-padding) tokens. Its weights
are read by ``minimodal.convert_bert``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.transformer import Transformer, TransformerConfig, padding_mask


def mean_pool(x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, N, D) and a (B, N) 0/1 mask -> (B, D), the average of the unmasked positions."""
    weights = attention_mask.to(x.dtype).unsqueeze(-1)                  # (B, N, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@dataclass(kw_only=True)
class SentenceEncoderConfig(TransformerConfig):
    """A BERT-style encoder: post-LN blocks, GELU; the shape of all-MiniLM-L6-v2 by default."""

    vocab_size: int = 30522
    max_length: int = 512
    type_vocab_size: int = 2
    width: int = 384
    layers: int = 6
    heads: int = 12
    mlp_width: int | None = 1536
    pre_norm: bool = False
    norm_eps: float = 1e-12


class SentenceEncoder(nn.Module):
    """A post-LN Transformer encoder that turns a sentence into one vector by mean pooling.

    This is the architecture of BERT and of all-MiniLM-L6-v2, the sentence-embedding model
    lesson 02 loads to check our blocks against real pretrained weights. Token, position
    and segment embeddings are summed and normalized; the encoder attends both ways with
    padding masked out; the sentence vector is the mean over the real tokens.
    """

    def __init__(self, config: SentenceEncoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_length, config.width))
        self.segment_embedding = nn.Parameter(torch.zeros(config.type_vocab_size, config.width))
        self.ln_embed = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.transformer = Transformer(config)

    def hidden_states(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """ids and attention_mask (B, N) -> layers + 1 tensors (B, N, width)."""
        length = ids.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"sequence of {length} tokens is longer than the model's "
                             f"{self.config.max_length} positions; truncate it first")
        # Every token is in segment 0: one sentence per input, as sentence-transformers feeds it.
        x = self.token_embedding(ids) + self.position_embedding[:length] + self.segment_embedding[0]
        return self.transformer.hidden_states(self.ln_embed(x), padding_mask(attention_mask))

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, width) sentence embeddings: the mean of the last layer over real tokens."""
        return mean_pool(self.hidden_states(ids, attention_mask)[-1], attention_mask)

