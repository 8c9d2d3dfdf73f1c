"""Image captioning: a ViT looks at the image, a decoder writes about it one word at a time.

The encoder turns the image into a grid of patch features, the *memory*. The decoder is a
language model whose every prediction may also look at that memory: it is trained with
*teacher forcing* (fed the true caption shifted right, it predicts each next word in one
pass) and used *autoregressively* (fed its own previous word, one step at a time; see
``minimodal.decoding`` for greedy and beam search).

Two decoders, the two eras of captioning: ``minimodal.lstm_decoder.LSTMDecoder``
(Show, Attend and Tell, 2015) and ``minimodal.decoder.TransformerDecoder`` (cross-attention
and a KV cache). This module joins either to a patch encoder and says how it is trained.

Both decoders speak the same step interface, which is all decoding needs:
``start(memory) -> state`` and ``step(tokens, state) -> (logits, state)``, where a state
is a dict of tensors whose first dimension is the batch (so beam search can reorder it).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.decoder import TransformerDecoder
from minimodal.lstm_decoder import LSTMDecoder
from minimodal.vit import VisionConfig, VisionTransformer


class PatchEncoder(nn.Module):
    """A ViT whose output is every patch's feature, not one pooled vector: (B, N, width).

    The decoder attends to the grid, so it can look at one shape while naming it. The
    class token is left out so each memory row is one place in the image.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(config)
        self.vit.proj.requires_grad_(False)  # the pooled embedding is not used here

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.hidden_states(pixels)[-1]  # (B, 1 + N, D)
        return self.vit.ln_post(tokens[:, 1:])        # (B, N, D)


class Captioner(nn.Module):
    """A patch encoder and a decoder: pixels and the caption so far -> the next word."""

    def __init__(self, vision: VisionConfig, decoder: LSTMDecoder | TransformerDecoder):
        super().__init__()
        memory_width = decoder.config.memory_width
        if memory_width != vision.width:
            raise ValueError(f"the decoder reads memory of width {memory_width} but the encoder's "
                             f"patch features have width {vision.width}; make them equal")
        self.encoder = PatchEncoder(vision)
        self.decoder = decoder

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S), tokens (B, T) -> next-word logits (B, T, V)."""
        return self.decoder(tokens, self.encoder(pixels))


def caption_loss(model: Captioner, batch: tuple[torch.Tensor, torch.Tensor], pad: int = 0) -> torch.Tensor:
    """Teacher forcing: read <bos> w1 .. wn, predict w1 .. wn <eos>; padding does not count."""
    pixels, ids = batch                              # (B, 3, S, S), (B, T)
    logits = model(pixels, ids[:, :-1])              # (B, T-1, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), ignore_index=pad)


def batch_sampler(pixels: torch.Tensor, ids: torch.Tensor, batch_size: int,
                  seed: int = 0) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """batch_at(step): a random batch drawn from (seed, step) alone, as ``train`` needs for
    exact resumes. Each batch is trimmed to its longest caption."""
    lengths = (ids != 0).sum(dim=1)

    def batch_at(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        rows = torch.randint(len(ids), (batch_size,), generator=generator).to(ids.device)
        return pixels[rows], ids[rows, :int(lengths[rows].max())]
    return batch_at
