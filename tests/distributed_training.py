"""Run by tests/test_distributed.py, under torchrun and in one process: a short shapes-CLIP run.

The course recipe's model, batches and loss, trained by minimodal's one training loop, in
float64 so that what remains between two processes and one is the order of additions.
Under torchrun each process trains on its half of every batch. The script trains once
straight through, then again stopped after 8 steps and resumed from its checkpoint; rank 0
saves both results in OUT_DIR.

    torchrun --nproc_per_node=2 tests/distributed_training.py OUT_DIR
"""

import sys

import torch

from minimodal import distributed
from minimodal.clip import CLIP
from minimodal.device import seed_everything
from minimodal.pretrained import Recipe, contrastive_loss, shapes_clip_config, train_config, training_batches
from minimodal.train import train

RECIPE = Recipe(steps=20, batch_size=16, pool_size=256, warmup_steps=5)


def short_run(checkpoint: str | None = None, stop_after: int | None = None):
    """(model, history) after the recipe's first steps (or ``stop_after`` of them)."""
    seed_everything(RECIPE.seed)
    model = CLIP(shapes_clip_config()).double()
    batches = training_batches(RECIPE, torch.device("cpu"))

    def batch_at(step: int):
        pixels, ids = batches(step)
        return pixels.double(), ids

    history = train(model, contrastive_loss, batch_at, train_config(RECIPE, progress=False),
                    checkpoint=checkpoint, stop_after=stop_after)
    return model, history


def save(model, history, path) -> None:
    if distributed.is_main():
        torch.save({"model": model.state_dict(), "loss": torch.tensor(history.loss, dtype=torch.float64),
                    "world": distributed.world_size()}, path)


def main(out_dir: str) -> None:
    distributed.start("cpu")
    save(*short_run(), f"{out_dir}/straight.pt")
    checkpoint = f"{out_dir}/state.pt"
    save(*short_run(checkpoint, stop_after=8), f"{out_dir}/first.pt")
    torch.manual_seed(1234 + distributed.rank())  # disturb the random state: the checkpoint must restore it
    save(*short_run(checkpoint), f"{out_dir}/resumed.pt")
    distributed.stop()


if __name__ == "__main__":
    main(sys.argv[1])
