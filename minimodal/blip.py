"""BLIP's two ways of scoring an image against a caption: contrastive (ITC) and matching (ITM).

Li et al. (2022) train one image tower and one BERT-style text encoder for two jobs.

- **ITC** (image-text contrastive), as CLIP: the image's class token and the caption's
  first token are each projected and normalized, and their dot product is the score.
  Image and text never meet inside the network, so a thousand captions are encoded once
  and ranked by a matrix product: cheap, but one pooled vector per side cannot keep
  "red circle above blue square" apart from its swap.
- **ITM** (image-text matching): the same text encoder runs again with a cross-attention
  in every layer, from each word to every image token, and a two-way head on its first
  token says "match" or "no match". Every word reads every patch, so it can check who is
  where; but it costs a full text pass per (image, caption) pair.

So BLIP ranks with ITC and re-ranks ITC's top-k with ITM. The text layer is BERT's with a
cross-attention between (``CrossAttentionLayer``): post-LN self-attention, cross-attention
with the attention class of lesson 09's decoder, feed-forward; BLIP-2's Q-Former (lesson
13) reads an image with the same layer. Equal to transformers'
``BlipForImageTextRetrieval`` (``use_itm_head=True``: ITM; ``False``: ITC); names in
``minimodal.convert_blip``, hard negatives and the joint loss in ``minimodal.blip_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.mlp import MLP
from minimodal.transformer import MultiHeadAttention, Transformer, TransformerConfig, padding_mask
from minimodal.vit import VisionConfig, check_pixels


def blip_vision_config(**fields) -> VisionConfig:
    """BLIP's ViT-B/16 at 384 px (exact GELU, pre-LN, eps 1e-5), with ``fields`` changed.

    Its ``embed_dim`` is None: BLIP projects the class token with the model's own
    ``vision_proj`` to ``BlipConfig.embed_dim``.
    """
    shape = dict(image_size=384, patch_size=16, width=768, layers=12, heads=12, activation="gelu",
                 embed_dim=None)
    return VisionConfig(**{**shape, **fields})


@dataclass(kw_only=True)
class BlipTextConfig(TransformerConfig):
    """BERT with a cross-attention in every layer: post-LN, GELU, eps 1e-12 (BLIP's shape by default)."""

    vocab_size: int = 30524
    max_length: int = 512
    width: int = 768
    layers: int = 12
    heads: int = 8
    pre_norm: bool = False
    norm_eps: float = 1e-12


@dataclass(kw_only=True)
class BlipConfig:
    vision: VisionConfig
    text: BlipTextConfig
    embed_dim: int = 256    # ITC's shared space (transformers: image_text_hidden_size)

    def __post_init__(self):
        if not self.vision.pre_norm or self.text.pre_norm:
            raise ValueError("BLIP's image tower is pre-LN and its text encoder post-LN (BERT): "
                             "use vision pre_norm=True and text pre_norm=False")
        if self.text.activation != "gelu":
            raise ValueError(f"BLIP's text encoder uses GELU, got {self.text.activation!r}")
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim}")


class BlipVision(nn.Module):
    """Pixels (B, 3, S, S) -> every token normalized, (B, 1 + N, D).

    CLIP's ViT of lesson 03 with three differences: the patch projection has a bias, there
    is no LayerNorm before the blocks, and the final LayerNorm covers all tokens, since
    cross-attention reads every patch, not just the class token.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        width, scale = config.width, config.width ** -0.5
        self.patch_embed = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(config.grid_size ** 2 + 1, width))
        self.transformer = Transformer(config)
        self.ln_post = nn.LayerNorm(width, eps=config.norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        check_pixels(pixels, self.config.image_size)
        patches = self.patch_embed(pixels).flatten(2).transpose(1, 2)              # (B, N, D)
        cls = self.class_embedding.expand(len(patches), 1, -1)                      # (B, 1, D)
        tokens = torch.cat([cls, patches], dim=1) + self.positional_embedding      # (B, 1 + N, D)
        return self.ln_post(self.transformer(tokens))                               # (B, 1 + N, D)


class CrossAttentionLayer(nn.Module):
    """BERT's post-LN layer with a cross-attention between its two halves:
    x = LN(x + self_attn(x)); x = LN(x + cross_attn(x, context)); x = LN(x + mlp(x)).

    BLIP's text encoder is a stack of these over words (the context: the image's tokens);
    BLIP-2's Q-Former is a stack of them over learned queries (``minimodal.qformer``).
    Without a context the cross-attention is skipped: BLIP's contrastive pass reads the
    text alone with the same weights. ``cross=False`` builds a layer without one.
    """

    def __init__(self, width: int, heads: int, mlp_width: int, context_width: int, norm_eps: float,
                 cross: bool = True):
        super().__init__()
        self.self_attn = MultiHeadAttention(width, heads)
        self.self_norm = nn.LayerNorm(width, eps=norm_eps)
        self.cross_attn = MultiHeadAttention(width, heads, context_width=context_width) if cross else None
        self.cross_norm = nn.LayerNorm(width, eps=norm_eps) if cross else None
        self.mlp = MLP(width, mlp_width, "gelu")
        self.mlp_norm = nn.LayerNorm(width, eps=norm_eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), context (B, N, Dc) or None, mask (B, 1, 1, T) hiding padding -> (B, T, D)."""
        x = self.self_norm(x + self.self_attn(x, mask=mask))                     # (B, T, D)
        if self.cross_attn is not None and context is not None:
            x = self.cross_norm(x + self.cross_attn(x, context))                 # (B, T, D)
        return self.mlp_norm(x + self.mlp(x))


class BlipTextEncoder(nn.Module):
    """Token ids (B, T) and their 0/1 mask, optionally an image's tokens -> (B, T, D)."""

    def __init__(self, config: BlipTextConfig, image_width: int):
        super().__init__()
        self.config = config
        # BERT's init, N(0, 0.02^2), for words and positions alike: words at torch's default
        # N(0, 1) would drown the positions, and "red circle left of blue square" would
        # start as the same bag of words as its swap.
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.position_embedding = nn.Parameter(0.02 * torch.randn(config.max_length, config.width))
        self.ln_embed = nn.LayerNorm(config.width, eps=config.norm_eps)
        self.layers = nn.ModuleList(CrossAttentionLayer(config.width, config.heads, config.mlp_width, image_width,
                                                        config.norm_eps) for _ in range(config.layers))

    def check_text(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if ids.dim() != 2 or attention_mask.shape != ids.shape:
            raise ValueError(f"expected ids and attention_mask of one shape (batch, length), got "
                             f"{tuple(ids.shape)} and {tuple(attention_mask.shape)}")
        if ids.shape[1] > self.config.max_length:
            raise ValueError(f"captions of {ids.shape[1]} tokens are longer than the encoder's "
                             f"{self.config.max_length} positions; truncate them")
        if len(ids) and not attention_mask[:, 0].bool().all():
            raise ValueError("every caption's first token must be real (attention_mask 1): it is the "
                             "token the heads read; pad on the right")

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                image: torch.Tensor | None = None) -> torch.Tensor:
        self.check_text(ids, attention_mask)
        x = self.token_embedding(ids) + self.position_embedding[:ids.shape[1]]   # (B, T, D)
        x, mask = self.ln_embed(x), padding_mask(attention_mask)                 # mask (B, 1, 1, T)
        for layer in self.layers:
            x = layer(x, image, mask)
        return x                                                                  # (B, T, D)


class Blip(nn.Module):
    """BLIP's retrieval model: image tower, text encoder, ITC projections and the ITM head."""

    def __init__(self, config: BlipConfig):
        super().__init__()
        self.config = config
        vision_width, text_width = config.vision.width, config.text.width
        self.vision = BlipVision(config.vision)
        self.text = BlipTextEncoder(config.text, vision_width)
        self.vision_proj = nn.Linear(vision_width, config.embed_dim)
        self.text_proj = nn.Linear(text_width, config.embed_dim)
        self.itm_head = nn.Linear(text_width, 2)   # logits of [no match, match]

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, 1 + N, Dv): computed once, read by both heads."""
        return self.vision(pixels)

    def check_features(self, image_features: torch.Tensor) -> None:
        width = self.config.vision.width
        if image_features.dim() != 3 or image_features.shape[-1] != width:
            raise ValueError(f"expected image features (batch, tokens, {width}) from image_features(), "
                             f"got {tuple(image_features.shape)}")

    def itm_logits(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                   image_features: torch.Tensor) -> torch.Tensor:
        """Caption i against image i: (B, 2) logits of [no match, match].

        Every word attends to every image token in every layer; the head reads the first token.
        """
        self.check_features(image_features)
        if len(ids) != len(image_features):
            raise ValueError(f"ITM scores pairs: got {len(ids)} captions for {len(image_features)} images; "
                             "repeat the image (or the captions) to make pairs")
        text = self.text(ids, attention_mask, image_features)     # (B, T, D)
        return self.itm_head(text[:, 0])                          # (B, 2)

    def image_embedding(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, Dv) -> (B, E): the class token projected and normalized."""
        self.check_features(image_features)
        return F.normalize(self.vision_proj(image_features[:, 0]), dim=-1)

    def text_embedding(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, E): the first token of the text encoder run without the image, normalized."""
        return F.normalize(self.text_proj(self.text(ids, attention_mask)[:, 0]), dim=-1)

    def itc_embeddings(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                       image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two unit vectors ITC compares: images (B_img, E) and captions (B_text, E)."""
        return self.image_embedding(image_features), self.text_embedding(ids, attention_mask)

    def itc_similarity(self, ids: torch.Tensor, attention_mask: torch.Tensor,
                       image_features: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every image with every caption, (B_img, B_text), no temperature."""
        images, texts = self.itc_embeddings(ids, attention_mask, image_features)  # (Bi, E), (Bt, E)
        return images @ texts.T                                                   # (Bi, Bt)
