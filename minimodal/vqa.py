"""Visual question answering, the classic baseline: a CNN looks, an LSTM reads, a classifier answers.

Before attention-based models, VQA was treated as classification over a fixed set of
answers. An image encoder turns the picture into one vector, a question encoder (word
embeddings read by an LSTM) turns the question into another, the two are fused into a
single vector, and a small MLP scores every answer in the vocabulary.

Fusion is where the two modalities meet. Concatenation keeps them side by side and
leaves the MLP to find how they interact; the element-wise product (after projecting
both to one width) makes every feature of the fused vector an interaction, "is the
question asking about red AND is the image red", which is what answering needs.

The image encoder is pluggable: the small CNN below, trained along with the rest, or
any module mapping images (B, 3, H, W) to features (B, D), such as the course's
pretrained CLIP image tower, kept frozen. A frozen encoder gives the same features at
every epoch, so they are computed once (``frozen_features``) and the model reads them
through ``nn.Identity``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minimodal.data.transforms import normalize
from minimodal.device import autocast
from minimodal.lstm import LSTM, LSTMConfig, init_forget_bias

FUSIONS = ("product", "concat")


@dataclass(kw_only=True)
class VQAConfig:
    vocab_size: int
    num_answers: int
    word_dim: int = 32
    question_dim: int = 64      # LSTM hidden size
    lstm_layers: int = 1
    image_dim: int = 64         # image features, from the CNN or any encoder of this width
    fused_dim: int = 128
    fusion: str = "product"     # or "concat"

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")


class SmallCNN(nn.Module):
    """A strided 5x5 convolution, three convolution + max-pool blocks, a global max, one linear layer.

    The first layer halves the image cheaply (flat colour needs no full resolution);
    max-pooling keeps the strongest edge and corner responses that tell a triangle from a
    circle. The global max asks "is this pattern anywhere?", which makes the features the
    same wherever the shape sits, so they are learned from few images; the price is that
    *where* things are is lost. The closing batch norm keeps the features varying from
    image to image, so training cannot settle on a constant image vector.
    """

    def __init__(self, out_dim: int, width: int = 32):
        super().__init__()
        layers = [nn.Conv2d(3, width // 2, 5, stride=2, padding=2), nn.BatchNorm2d(width // 2), nn.ReLU()]
        channels = width // 2
        for out_channels in (width, width, 2 * width):
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                       nn.ReLU(), nn.MaxPool2d(2)]
            channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.convs(images)                      # (B, C, H/16, W/16)
        return self.norm(self.proj(x.amax(dim=(2, 3))))   # (B, out_dim)


class QuestionEncoder(nn.Module):
    """Word embeddings read by the LSTM; the question is the last layer's final hidden state."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=0)
        self.lstm = LSTM(LSTMConfig(input_size=config.word_dim, hidden_size=config.question_dim,
                                    num_layers=config.lstm_layers))
        for cell in self.lstm.layers:
            init_forget_bias(cell, 1.0)

    def forward(self, question_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embed(question_ids), lengths)  # h (L, Q, question_dim)
        return h[-1]                                              # (Q, question_dim)


def fuse(v: torch.Tensor, q: torch.Tensor, fusion: str) -> torch.Tensor:
    """(Q, D) and (Q, D) -> (Q, D) for "product", (Q, 2D), image first, for "concat"."""
    if fusion == "product":
        return v * q
    if fusion == "concat":
        return torch.cat([v, q], dim=-1)
    raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")


class FusedClassifier(nn.Module):
    """Projects both features to fused_dim with a ReLU, fuses them, scores every answer."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.fusion = config.fusion
        self.image_proj = nn.Linear(config.image_dim, config.fused_dim)
        self.question_proj = nn.Linear(config.question_dim, config.fused_dim)
        fused_width = config.fused_dim * (2 if config.fusion == "concat" else 1)
        self.head = nn.Sequential(nn.Linear(fused_width, config.fused_dim), nn.ReLU(),
                                  nn.Linear(config.fused_dim, config.num_answers))

    def forward(self, image_features: torch.Tensor, question_features: torch.Tensor) -> torch.Tensor:
        v = torch.relu(self.image_proj(image_features))         # (Q, fused_dim)
        q = torch.relu(self.question_proj(question_features))   # (Q, fused_dim)
        return self.head(fuse(v, q, self.fusion))               # (Q, num_answers)


class VQAModel(nn.Module):
    """Image encoder + question encoder + fused classifier.

    ``image_encoder`` defaults to a SmallCNN trained with the rest; pass any module that
    maps the images to (B, image_dim), e.g. ``nn.Identity()`` over features computed once.
    """

    def __init__(self, config: VQAConfig, image_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder if image_encoder is not None else SmallCNN(config.image_dim)
        self.question_encoder = QuestionEncoder(config)
        self.classifier = FusedClassifier(config)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        features = self.image_encoder(images)
        if features.dim() != 2 or features.shape[1] != self.config.image_dim:
            raise ValueError(f"the image encoder must give (B, {self.config.image_dim}) features, "
                             f"got {tuple(features.shape)}")
        return features                             # (B, image_dim)

    def forward(self, images: torch.Tensor, question_ids: torch.Tensor, lengths: torch.Tensor,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Answer logits (Q, num_answers). Question q is about images[image_index[q]];
        without image_index, images holds one image per question."""
        image_features = self.encode_images(images)                  # (N_images, image_dim)
        if image_index is not None:
            image_features = image_features[image_index]             # (Q, image_dim)
        question_features = self.question_encoder(question_ids, lengths)  # (Q, question_dim)
        return self.classifier(image_features, question_features)


class CLIPImageEncoder(nn.Module):
    """The image tower of a CLIP, fed [0, 1] images: normalizes them as CLIP expects, then embeds."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(normalize(images))   # (B, embed_dim)


@torch.no_grad()
def frozen_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Every image through a frozen encoder once: (N, 3, H, W) -> (N, D), on the images' device."""
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks = []
    for start in range(0, len(images), batch_size):
        with autocast(device):
            chunks.append(encoder(images[start:start + batch_size].to(device)).float())
    return torch.cat(chunks).to(images.device)
