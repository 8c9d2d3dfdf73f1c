"""Zero-shot classification: a classifier whose weights are written in words.

A trained CLIP puts an image and a caption that describes it close together. So to sort
images into classes it never was trained to sort, write each class as a caption ("a photo
of a dog"), embed the captions with the text tower, and give each image the class whose
caption embedding is nearest. The normalized caption embeddings are the rows of a linear
classifier's weight matrix; no labelled image is needed to build it.

One caption per class is noisy: the score depends on the exact wording. Prompt
ensembling writes every class with several templates ("a photo of {}", "a drawing of
{}") and averages the normalized embeddings of the class's captions. The average points
in the direction the templates agree on; it is normalized again so that every class
competes on equal footing.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.clip import MAX_LOGIT_SCALE


def prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every class under every template, template by template: T * C captions."""
    if not class_names or not templates:
        raise ValueError("need at least one class name and one template")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"a template must hold exactly one '{{}}' where the class name goes, "
                             f"got {template!r}")
    return [template.format(name) for template in templates for name in class_names]


def ensemble(text_features: torch.Tensor) -> torch.Tensor:
    """(T, C, E) embeddings of C classes under T templates -> (C, E) unit class embeddings.

    Each embedding is normalized first, so that a template whose embeddings happen to be
    long does not outvote the others; the mean is normalized again.
    """
    if text_features.ndim != 3:
        raise ValueError(f"expected (templates, classes, embed_dim) features, got shape "
                         f"{tuple(text_features.shape)}")
    return F.normalize(F.normalize(text_features, dim=-1).mean(dim=0), dim=-1)


def class_embeddings(model: nn.Module, tokenize: Callable[[list[str]], torch.Tensor],
                     class_names: Sequence[str], templates: Sequence[str] = ("{}",)) -> torch.Tensor:
    """(C, E) unit embeddings, one per class, ensembled over the templates."""
    device = next(model.parameters()).device
    ids = tokenize(prompts(class_names, templates)).to(device)        # (T * C, N)
    features = model.encode_text(ids).float()                         # (T * C, E)
    return ensemble(features.view(len(templates), len(class_names), -1))


class ZeroShotClassifier(nn.Module):
    """Image classification with class embeddings as the weights: logits are scaled cosines.

    >>> classifier = ZeroShotClassifier(model, tokenize, ["a red circle", "a blue square"])
    >>> classifier.predict(pixels)   # (B,) class indices
    """

    def __init__(self, model: nn.Module, tokenize: Callable[[list[str]], torch.Tensor],
                 class_names: Sequence[str], templates: Sequence[str] = ("{}",)):
        super().__init__()
        self.model, self.class_names, self.templates = model, list(class_names), list(templates)
        with torch.no_grad():
            self.register_buffer("weights", class_embeddings(model, tokenize, class_names, templates))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C) logits."""
        image = F.normalize(self.model.encode_image(pixels).float(), dim=-1)  # (B, E)
        scale = self.model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        return scale * image @ self.weights.T                                 # (B, C)

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B,) index of the best class for each image."""
        return self(pixels).argmax(dim=-1)
