"""InfoNCE, CLIP's contrastive loss, on one process and across many.

A batch of B matching (image, text) pairs gives a B x B matrix of similarities. Row i is
a B-way classification "which text goes with image i?" whose answer is i; column i asks
the same of text i. The loss is the mean cross-entropy of both directions.

More negatives make a harder, more useful task, so CLIP is trained with very large
batches spread over many processes. Each process then gathers every process's features
to build the full matrix, but computes the loss only for its own rows (the "local"
loss): the work is split, and the average over processes is the full-batch loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def clip_logits(image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
    """(Bi, E), (Bt, E) normalized features -> (Bi, Bt) logits per image."""
    return logit_scale * image_features @ text_features.T


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
              logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for B matching pairs; the features are expected normalized."""
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(f"expected two (B, E) feature batches of one shape, got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    if len(image_features) == 0:
        raise ValueError("the contrastive loss needs at least one pair, got an empty batch")
    logits = clip_logits(image_features, text_features, logit_scale)   # (B, B)
    labels = torch.arange(len(logits), device=logits.device)            # pair i is the answer to row i
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class _GatherWithGrad(torch.autograd.Function):
    """all_gather that lets gradients flow back to the process that owns each slice.

    Forward: every process gets the concatenation of all processes' (B, E) tensors.
    Backward: every process holds a gradient for the whole (W*B, E) tensor, since its loss
    used all of it; summing those over processes and keeping our own slice gives the
    gradient of the sum of all the processes' losses with respect to our features.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(features) for _ in range(ctx.world)]
        dist.all_gather(parts, features.contiguous())
        return torch.cat(parts)                                           # (W*B, E)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(ctx.world)[ctx.rank]                            # (B, E)


def gather_with_grad(features: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's features (equal batch sizes), differentiably."""
    return _GatherWithGrad.apply(features)


def distributed_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                          logit_scale: torch.Tensor) -> torch.Tensor:
    """This process's share of the loss over the global batch of all processes.

    Its rows are the local images against every text, and the local texts against every
    image. The mean of this value over processes equals ``clip_loss`` on the concatenated
    batch; with DDP averaging gradients, so do the gradients.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return clip_loss(image_features, text_features, logit_scale)
    all_images = gather_with_grad(image_features)                          # (W*B, E)
    all_texts = gather_with_grad(text_features)                            # (W*B, E)
    batch = len(image_features)
    labels = torch.arange(batch, device=image_features.device) + dist.get_rank() * batch
    per_image = clip_logits(image_features, all_texts, logit_scale)        # (B, W*B)
    per_text = clip_logits(text_features, all_images, logit_scale)         # (B, W*B)
    return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
