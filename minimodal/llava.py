"""LLaVA: a vision tower's patch features, projected into a language model's embedding space.

The recipe of Liu et al. (2023), LLaVA-1.5's projector: take a pretrained CLIP image
tower, read its patch features from the second-to-last block (the last one was trained to
serve the pooled class token, which is dropped), map each patch through a two-layer MLP
to the width of a pretrained language model, and put the resulting vectors where the
text holds the image placeholder. From there on the language model reads them as if they
were words: one "image token" per patch, in the same sequence, through the same blocks,
with no new attention anywhere.

The placeholder is expanded in the token ids before the model sees them (one
``<|image|>`` per patch, ``expand_image_tokens``), so a prompt's length is known from its
ids alone, left padding works as for text, and ``splice_images`` only has to overwrite
the embeddings at those positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.kv_cache import KVCache
from minimodal.lm import LanguageModel, LMConfig
from minimodal.vit import VisionConfig, VisionTransformer

IGNORE = -100  # the label cross-entropy skips: image tokens, prompts, questions, padding


@dataclass(kw_only=True)
class LlavaConfig:
    vision: VisionConfig
    lm: LMConfig
    image_token_id: int
    feature_layer: int = -2             # which hidden state of the vision tower: -2 is the second-to-last
    tokens_per_side: int | None = None  # None: one token per patch; k: patches averaged into a k x k grid

    def __post_init__(self):
        if self.vision.embed_dim is not None:
            raise ValueError("LLaVA reads the vision tower's patch features, not its projected embedding: "
                             "build the VisionConfig with embed_dim=None")
        if not 0 <= self.image_token_id < self.lm.vocab_size:
            raise ValueError(f"image_token_id {self.image_token_id} is not in the language model's "
                             f"vocabulary of {self.lm.vocab_size}")
        grid = self.vision.grid_size
        if self.tokens_per_side is not None and not 1 <= self.tokens_per_side <= grid:
            raise ValueError(f"tokens_per_side must be in [1, {grid}] (the patch grid), got {self.tokens_per_side}")

    @property
    def image_tokens(self) -> int:
        """How many tokens one image becomes: the number of patches, unless they are pooled."""
        side = self.tokens_per_side or self.vision.grid_size
        return side * side


class Projector(nn.Module):
    """LLaVA-1.5's connector: vision width -> LM width -> GELU -> LM width, per patch."""

    def __init__(self, vision_width: int, lm_width: int):
        super().__init__()
        self.linear_1 = nn.Linear(vision_width, lm_width)
        self.linear_2 = nn.Linear(lm_width, lm_width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(features)))  # (..., lm_width)


def expand_image_tokens(ids: list[int], image_id: int, tokens_per_image: int) -> list[int]:
    """Each image placeholder repeated ``tokens_per_image`` times: one position per image token."""
    return [t for i in ids for t in ([i] * tokens_per_image if i == image_id else [i])]


def splice_images(embeddings: torch.Tensor, ids: torch.Tensor, image_id: int,
                  image_tokens: torch.Tensor) -> torch.Tensor:
    """Put the image tokens where the ids hold the placeholder, in reading order.

    embeddings (B, T, D) of the ids (B, T); image_tokens (I, N, D) for the I images of the
    batch, in order: image i fills the i-th run of N placeholders, counted across rows.
    """
    if image_tokens.dim() != 3 or image_tokens.shape[-1] != embeddings.shape[-1]:
        raise ValueError(f"image tokens must be (images, tokens, {embeddings.shape[-1]}) to sit among "
                         f"embeddings of width {embeddings.shape[-1]}, got {tuple(image_tokens.shape)}")
    slots = ids == image_id                                                          # (B, T)
    expected = image_tokens.shape[0] * image_tokens.shape[1]
    if int(slots.sum()) != expected:
        raise ValueError(f"the ids hold {int(slots.sum())} image placeholders, but {image_tokens.shape[0]} "
                         f"image(s) of {image_tokens.shape[1]} tokens need {expected}: expand each "
                         f"<|image|> with expand_image_tokens, and give one image per placeholder")
    flat = image_tokens.reshape(-1, embeddings.shape[-1]).to(embeddings.dtype)      # (I * N, D)
    return embeddings.masked_scatter(slots[..., None], flat)                         # (B, T, D)


def chat_labels(ids: torch.Tensor, assistant_id: int, end_id: int) -> torch.Tensor:
    """The tokens to learn in a chat (B, T): each assistant answer and the <|end|> closing it.

    A token is learned when the latest <|assistant|> before it comes after the latest
    <|end|> before it. Everything else (the image, the context, the user's turns, the
    <|assistant|> marker itself, padding) becomes IGNORE: the model is asked to predict
    the answers and where they stop, never what the user says or what the image is.
    """
    learned = _latest_before(ids == assistant_id) > _latest_before(ids == end_id)  # (B, T)
    return ids.masked_fill(~learned, IGNORE)


def _latest_before(flags: torch.Tensor) -> torch.Tensor:
    """(B, T) -> the position of the latest flagged token strictly before each one, -1 if none."""
    positions = torch.arange(flags.shape[1], device=flags.device).expand_as(flags)
    latest = torch.where(flags, positions, -1).cummax(dim=1).values                 # up to and including
    return F.pad(latest[:, :-1], (1, 0), value=-1)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits at t against the label at t + 1, IGNORE skipped."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)


class LLaVA(nn.Module):
    """Token ids (B, T) with expanded image placeholders, and pixels (I, 3, S, S) -> logits (B, T, V)."""

    def __init__(self, config: LlavaConfig):
        super().__init__()
        self.config = config
        self.vision_tower = VisionTransformer(config.vision)
        self.projector = Projector(config.vision.width, config.lm.width)
        self.language_model = LanguageModel(config.lm)

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(I, 3, S, S) -> (I, N, vision width): a hidden state of the tower, class token dropped."""
        return self.vision_tower.hidden_states(pixels)[self.config.feature_layer][:, 1:]

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Patch features (I, N, Dv) -> image tokens (I, n, D) in the LM's embedding space."""
        side = self.config.tokens_per_side
        if side is not None:  # average neighbouring patches: fewer, coarser tokens
            grid = self.config.vision.grid_size
            maps = features.transpose(1, 2).reshape(len(features), -1, grid, grid)  # (I, Dv, g, g)
            features = F.adaptive_avg_pool2d(maps, side).flatten(2).transpose(1, 2)  # (I, side^2, Dv)
        return self.projector(features)

    def forward(self, ids: torch.Tensor, pixels: torch.Tensor | None = None, *,
                features: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """Next-token logits. The images come as ``pixels``, or as ``features`` (their patch
        features computed beforehand, since the tower is frozen); a decoding step after the
        prompt has neither."""
        self.language_model.check_ids(ids)
        x = self.language_model.token_embedding(ids)                                  # (B, T, D)
        if pixels is not None:
            features = self.patch_features(pixels)
        if features is not None:
            x = splice_images(x, ids, self.config.image_token_id, self.image_tokens(features))
        elif (ids == self.config.image_token_id).any():
            raise ValueError("the ids hold image placeholders but no pixels (or features) were given")
        return self.language_model.lm_head(self.language_model.hidden(x, attention_mask, cache))

    def new_cache(self) -> KVCache:
        return self.language_model.new_cache()
