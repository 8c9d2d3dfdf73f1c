"""Graded checks for exercises/05_clip_infonce.ipynb: CLIP's logits and its symmetric InfoNCE loss.

Each check compares the learner's function with minimodal's on random features drawn from
``seed``, after a small case built so that the classic mistake gives a visibly wrong answer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minimodal.grading.checks import Check, expect_close, in_learner
from minimodal.loss import clip_logits, clip_loss, distributed_clip_loss

NOTEBOOK = "05_clip_infonce"


def _features(g: torch.Generator, batch: int, dim: int, *, unit: bool) -> torch.Tensor:
    x = torch.randn(batch, dim, generator=g)
    if unit:
        return F.normalize(x, dim=-1)
    return x * (torch.rand(batch, 1, generator=g) * 20 + 0.05)  # lengths must not matter


def _reference_logits(images, texts, scale):
    return clip_logits(F.normalize(images, dim=-1), F.normalize(texts, dim=-1), scale)


def _check_logits(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    images, texts = _features(g, 3, 8, unit=False), _features(g, 5, 8, unit=False)
    expect_close(fn(images, texts, torch.tensor(1.0)), _reference_logits(images, texts, 1.0),
                 what="logits at scale 1 for features of random lengths (normalize both sides first)")
    expect_close(fn(images, texts, torch.tensor(14.3)), _reference_logits(images, texts, 14.3),
                 what="logits at scale 14.3 (multiply the cosines by logit_scale)")
    for _ in range(5):
        images, texts = _features(g, 7, 16, unit=False), _features(g, 4, 16, unit=False)
        scale = torch.rand((), generator=g) * 99 + 1
        expect_close(fn(images, texts, scale), _reference_logits(images, texts, scale),
                     what="logits for random features", atol=1e-4)


def _check_loss(fn, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    images, texts = _features(g, 4, 8, unit=True), _features(g, 4, 8, unit=True)
    expect_close(fn(images, texts, torch.tensor(1.0)), clip_loss(images, texts, torch.tensor(1.0)),
                 what="the loss at scale 1")
    for batch, dim in [(1, 4), (6, 8), (16, 32), (33, 64)]:
        images, texts = _features(g, batch, dim, unit=True), _features(g, batch, dim, unit=True)
        scale = torch.rand((), generator=g) * 99 + 1
        expect_close(fn(images, texts, scale), clip_loss(images, texts, scale),
                     what=f"the loss for a batch of {batch} pairs at scale {scale.item():.1f}")


def _check_both_directions(fn, seed: int) -> None:
    # Image 0 and image 1 both point at text 0: the image->text rows are easy to get right,
    # but text 1 has no image of its own near it, so the text->image direction is much worse.
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scale = torch.tensor(10.0)
    per_image = F.cross_entropy(scale * images @ texts.T, torch.arange(2))
    loss = fn(images, texts, scale)
    expect_close(loss, clip_loss(images, texts, scale),
                 what="the loss when two images share one text"
                      + (" (it equals the image->text cross-entropy alone: average it with the "
                         "text->image one, the columns)" if torch.isclose(torch.as_tensor(loss).float(), per_image)
                         else ""))


def _gradients(loss_fn, raw: torch.Tensor) -> tuple:
    """In the loss's process: the loss of unit features, then its gradients (None where there are none)."""
    features = raw.clone().requires_grad_()
    scale = torch.tensor(12.0, requires_grad=True)
    loss = loss_fn(F.normalize(features[0], dim=-1), F.normalize(features[1], dim=-1), scale)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return False, None, None
    loss.backward()
    return True, features.grad, scale.grad


def _check_gradients(fn, seed: int) -> None:
    raw = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(seed))
    differentiable, feature_grad, scale_grad = in_learner(fn, _gradients, raw)
    if not differentiable:
        raise AssertionError("the loss must be a tensor that autograd can differentiate; "
                             "do not call .item() or detach it")
    if scale_grad is None:
        raise AssertionError("the loss does not depend on logit_scale: use it to scale the logits")
    _, expected_features, expected_scale = _gradients(clip_loss, raw)
    expect_close(feature_grad, expected_features, what="the gradient with respect to the features")
    expect_close(scale_grad, expected_scale, what="the gradient with respect to logit_scale")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "similarity_logits": (clip_logits,),
    "clip_loss": (clip_loss, clip_logits, distributed_clip_loss),
}


CHECKS = [
    Check("logits are scaled cosine similarities", "similarity_logits", 3, _check_logits,
          timeout=10, references=OWN["similarity_logits"]),
    Check("clip_loss equals the symmetric InfoNCE", "clip_loss", 3, _check_loss,
          timeout=10, references=OWN["clip_loss"]),
    Check("clip_loss averages both directions", "clip_loss", 2, _check_both_directions,
          timeout=10, references=OWN["clip_loss"]),
    Check("clip_loss gradients flow to features and logit_scale", "clip_loss", 2, _check_gradients,
          timeout=10, references=OWN["clip_loss"]),
]
