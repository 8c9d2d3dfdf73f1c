"""The course's detector: OWL-ViT fine-tuned from the shapes CLIP on boxes with phrases.

    python -m minimodal.owlvit_recipe        # -> build/checkpoints/shapes-owlvit/

Everything trains: the towers start from the course's CLIP, the heads from scratch. Each
step sees a batch of training scenes and every phrase of the vocabulary as a query; a
shape's targets are all the phrases that describe it. The red triangle is held out as in
the CLIP: no training image holds one, and "red triangle" is never a query, so asking for
it later measures whether the words alone carry over to a box never drawn.
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from minimodal.convert import build_if_needed, publish
from minimodal.convert_owlvit import load_owlvit_checkpoint, save_owlvit_checkpoint
from minimodal.data.grounding import Phrase, grounding_batch, phrases
from minimodal.data.shapes import COLORS, SHAPES
from minimodal.data.transforms import normalize
from minimodal.detection_loss import DetectionTargets, detection_loss
from minimodal.device import pick_device, seed_everything
from minimodal.owlvit import OWLViT
from minimodal.pretrained import HOLDOUT, load_shapes_clip, shapes_world, tokenize
from minimodal.train import History, TrainConfig, read_history, train, write_history

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-owlvit"


@dataclass(frozen=True)
class DetectorRecipe:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 60
    weight_decay: float = 0.05
    scenes: int = 8192        # training scenes, rendered once
    seed: int = 0
    phrase_kinds: str = "colour-shape shape place relation"   # the kinds of phrase queried (data.grounding)


def training_phrases(recipe: DetectorRecipe = DetectorRecipe()) -> list[Phrase]:
    """Every phrase of the recipe's kinds about the training world's pairs: the red triangle's are left out."""
    kinds = recipe.phrase_kinds.split()
    return [p for p in phrases(COLORS, SHAPES, exclude=HOLDOUT) if p.kind in kinds]


@functools.cache
def training_data(recipe: DetectorRecipe):
    """The recipe's training scenes, normalized pixels and targets (rendered once per process)."""
    batch = grounding_batch(shapes_world(seed=recipe.seed), "train", recipe.scenes, training_phrases(recipe))
    targets = [DetectionTargets(boxes=b, labels=l, names=m) for b, l, m in zip(batch.boxes, batch.labels, batch.names)]
    return normalize(batch.images), targets


def batches(recipe: DetectorRecipe, device):
    """batch_at(step) -> (pixels, query ids, targets): a function of the step, so runs resume exactly."""
    pixels, targets = training_data(recipe)
    ids = tokenize([p.text for p in training_phrases(recipe)]).to(device)

    def batch_at(step: int):
        rows = np.random.default_rng([recipe.seed, step]).integers(len(targets), size=recipe.batch_size)
        picked = [targets[i] for i in rows]
        moved = [DetectionTargets(t.boxes.to(device), t.labels.to(device), t.names.to(device)) for t in picked]
        return pixels[torch.from_numpy(rows)].to(device), ids, moved

    return batch_at


def owlvit_loss(model: OWLViT, batch) -> torch.Tensor:
    pixels, ids, targets = batch
    detections = model(pixels, model.embed_queries(ids))
    return detection_loss(detections.logits, detections.boxes, targets).total


def train_shapes_owlvit(recipe: DetectorRecipe = DetectorRecipe(), device: torch.device | str | None = None,
                        progress: bool = True) -> tuple[OWLViT, History]:
    device = torch.device(device) if device is not None else pick_device()
    seed_everything(recipe.seed)
    model = OWLViT.from_clip(load_shapes_clip()).to(device)
    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                         weight_decay=recipe.weight_decay, progress=progress)
    history = train(model, owlvit_loss, batches(recipe, device), config, device=device)
    return model.eval().requires_grad_(False), history


def export(model: OWLViT, folder: str | Path = CHECKPOINT, recipe: DetectorRecipe | None = None,
           history: History | None = None) -> Path:
    """The detector in OwlViTForObjectDetection's format, with recipe.json and the loss curve."""
    def write(staging: Path) -> None:
        save_owlvit_checkpoint(model, staging)
        if history is not None:
            write_history(staging, history)
    return publish(folder, write, asdict(recipe) if recipe is not None else None)


def load_history(folder: str | Path = CHECKPOINT) -> dict[str, list[float]]:
    """The exported run's steps, losses and training seconds (without evaluation)."""
    return read_history(folder)


def load_shapes_owlvit(folder: str | Path = CHECKPOINT, train_if_missing: bool = True) -> OWLViT:
    """The course's detector, on the CPU in eval mode; trained and exported first if absent."""
    def build(target: Path) -> None:
        model, history = train_shapes_owlvit(DetectorRecipe(), progress=False)
        export(model.cpu(), target, DetectorRecipe(), history)
    folder = build_if_needed(folder, CHECKPOINT, asdict(DetectorRecipe()), build,
                             command="python -m minimodal.owlvit_recipe", train_if_missing=train_if_missing)
    return load_owlvit_checkpoint(folder).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's shapes OWL-ViT and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, history = train_shapes_owlvit(device=args.device)
    print(f"trained in {time.perf_counter() - start:.0f} s; final loss {history.loss[-1]:.3f}")
    print(f"exported to {export(model.cpu(), args.out, DetectorRecipe(), history)}")


if __name__ == "__main__":
    main()
