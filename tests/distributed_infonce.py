"""Run by tests/test_loss.py under torchrun: each process computes its share of the loss.

Every process builds the same global batch from a seed, keeps its own slice, computes
distributed_clip_loss, backpropagates, and saves its loss and gradients for the test.
"""

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from minimodal.loss import distributed_clip_loss

GLOBAL_BATCH, DIM = 8, 16


def global_batch():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(GLOBAL_BATCH, DIM, generator=g, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(GLOBAL_BATCH, DIM, generator=g, dtype=torch.float64), dim=-1)
    return images, texts, torch.tensor(14.3, dtype=torch.float64)


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    images, texts, scale = global_batch()
    local = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
    my_images = images[local].clone().requires_grad_()
    my_texts = texts[local].clone().requires_grad_()
    scale = scale.clone().requires_grad_()
    loss = distributed_clip_loss(my_images, my_texts, scale)
    loss.backward()
    torch.save({"loss": loss.detach(), "image_grad": my_images.grad, "text_grad": my_texts.grad,
                "scale_grad": scale.grad}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
