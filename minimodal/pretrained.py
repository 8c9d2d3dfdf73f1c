"""The course's pretrained CLIP: a small model trained on the shapes world, from a seed.

No real CLIP weights can be downloaded here, so the course makes its own reference: a
tiny CLIP trained contrastively on shapes-world images and their captions, exported in
transformers' format. Later lessons and the tests load it; one command rebuilds it:

    python -m minimodal.pretrained            # -> build/checkpoints/shapes-clip/
    torchrun --nproc_per_node=2 -m minimodal.pretrained   # the same run over 2 processes (or GPUs)

What the checkpoint expects:
- images: 64x64 RGB shapes-world renders, scaled to [0, 1], then normalized with CLIP's
  per-channel mean and std (``minimodal.data.transforms.normalize``). Shapes images are rendered at the
  model's size, so there is no resize or crop.
- text: CLIP's BPE tokenizer (its 49,408-token vocabulary, saved in the folder too),
  24 tokens per caption instead of 77; shapes captions need at most 17.

The red triangle is held out: no training image contains one, so lesson 07 can ask
whether the model composes "red" and "triangle" it has only seen apart.
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from minimodal import distributed
from minimodal.clip import CLIP, CLIPConfig, MAX_LOGIT_SCALE
from minimodal.convert import build_if_needed, hf_config, is_built_by, load_hf_checkpoint, publish, save_hf_checkpoint
from minimodal.data.shapes import COLORS, SHAPES, ShapesConfig, ShapesWorld
from minimodal.data.transforms import normalize
from minimodal.device import pick_device, seed_everything
from minimodal.loss import distributed_clip_loss
from minimodal.text import TextConfig
from minimodal.tokenizer import CLIPTokenizer
from minimodal.train import History, TrainConfig, train
from minimodal.vit import VisionConfig
from minimodal.zeroshot import ZeroShotClassifier

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-clip"
IMAGE_SIZE = 64
CONTEXT_LENGTH = 24
HOLDOUT = frozenset({("red", "triangle")})


def shapes_clip_config() -> CLIPConfig:
    """Two layers, 64 wide, in each tower: 64 patches of 8x8 pixels, captions of 24 tokens."""
    return CLIPConfig(
        vision=VisionConfig(image_size=IMAGE_SIZE, patch_size=8, width=64, layers=2, heads=4,
                            embed_dim=64),
        text=TextConfig(context_length=CONTEXT_LENGTH, width=64, layers=2, heads=4, embed_dim=64))


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights, besides the code."""

    seed: int = 0
    steps: int = 1600
    batch_size: int = 64       # scenes with distinct captions (see distinct_captions)
    pool_size: int = 8192      # training scenes, rendered once and drawn from at every step
    max_shapes: int = 2        # shapes per training scene: 1 or 2
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1


def shapes_world(min_shapes: int = 1, max_shapes: int = 4, seed: int = 0) -> ShapesWorld:
    """The world the model is trained on (and variants for probing it): 64x64, red triangles held out."""
    return ShapesWorld(ShapesConfig(image_size=IMAGE_SIZE, min_shapes=min_shapes,
                                    max_shapes=max_shapes, holdout=HOLDOUT, seed=seed))


@functools.cache
def tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer, padding to this model's 24 tokens."""
    tok = CLIPTokenizer.from_openai()
    tok.context_length = CONTEXT_LENGTH  # its __call__ pads (and checks lengths) to this
    return tok


def tokenize(texts: list[str]) -> torch.Tensor:
    """Captions -> (B, 24) ids; a caption longer than 24 tokens is an error, never cut."""
    return tokenizer()(texts)


def color_shape_classes() -> list[str]:
    """The 18 colour-and-shape classes, written as captions: "a red circle", "an orange square"..."""
    return [f"{'an' if color[0] in 'aeiou' else 'a'} {color} {shape}"
            for color in COLORS for shape in SHAPES]


def color_shape_labels(scenes) -> torch.Tensor:
    """(B,) class index of each single-shape scene, in the order of color_shape_classes."""
    if any(len(scene) != 1 for scene in scenes):
        raise ValueError("colour-and-shape labels need scenes of exactly one shape")
    return torch.tensor([list(COLORS).index(s.color) * len(SHAPES) + SHAPES.index(s.shape)
                         for (s,) in scenes])


@functools.cache
def single_shapes(split: str, n: int):
    """n single-shape scenes of a split (rendered once, then reused)."""
    return shapes_world(min_shapes=1, max_shapes=1).sample(split, n)


def zero_shot_accuracy(model: CLIP, split: str = "test", n: int = 540,
                       templates: tuple[str, ...] = ("{}",)) -> float:
    """Zero-shot accuracy over the 18 classes on n single-shape images of a split.

    "test" images are unseen scenes of the 17 trained pairs; "holdout" images are all red
    triangles, the pair the model never saw.
    """
    batch = single_shapes(split, n)
    device = next(model.parameters()).device
    classifier = ZeroShotClassifier(model, tokenize, color_shape_classes(), templates)
    with torch.no_grad():
        predictions = classifier.predict(normalize(batch.images).to(device)).cpu()
    return (predictions == color_shape_labels(batch.scenes)).float().mean().item()


def contrastive_loss(model: CLIP, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Symmetric InfoNCE on a batch of (pixels, ids) pairs.

    Under torchrun each process holds a slice of the batch, and the loss gathers every
    process's features so that each image is still scored against all the batch's texts.
    """
    pixels, ids = batch
    image = F.normalize(model.encode_image(pixels), dim=-1)   # (B, E)
    text = F.normalize(model.encode_text(ids), dim=-1)        # (B, E)
    return distributed_clip_loss(image, text, model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE))


def distinct_captions(captions: list[str], order, batch_size: int) -> list[int]:
    """The first ``batch_size`` indices in ``order`` whose captions are all different.

    Two images captioned "a red circle" in one batch would each be scored against the
    other's caption as a wrong answer although it is just as right: a false negative that
    pushes apart what should be close. Drawing only distinct captions removes them.
    """
    seen, chosen = set(), []
    for index in order:
        if captions[index] not in seen:
            seen.add(captions[index])
            chosen.append(int(index))
            if len(chosen) == batch_size:
                return chosen
    raise ValueError(f"the pool holds only {len(seen)} distinct captions, fewer than a batch of "
                     f"{batch_size}: use a larger pool or a smaller batch")


def training_batches(recipe: Recipe, device: torch.device):
    """batch_at(step) -> (pixels, ids): a pool of scenes rendered once, a fresh draw each step.

    The draw depends on (seed, step) only, so a resumed run sees the same batches, and no
    caption appears twice in one batch.
    """
    pool = shapes_world(max_shapes=recipe.max_shapes, seed=recipe.seed).sample("train", recipe.pool_size)
    pixels, ids = normalize(pool.images).to(device), tokenize(pool.captions).to(device)

    def batch_at(step: int):
        rng = np.random.default_rng([recipe.seed, step])
        chosen = distinct_captions(pool.captions, rng.permutation(recipe.pool_size), recipe.batch_size)
        chosen = torch.tensor(chosen, device=device)
        return pixels[chosen], ids[chosen]

    return batch_at


def train_config(recipe: Recipe, eval_every: int = 0, progress: bool = True) -> TrainConfig:
    """The recipe's optimizer settings: AdamW, linear warmup, then cosine decay to zero."""
    return TrainConfig(steps=recipe.steps, lr=recipe.lr, weight_decay=recipe.weight_decay,
                       warmup_steps=recipe.warmup_steps, eval_every=eval_every, progress=progress)


def train_shapes_clip(recipe: Recipe = Recipe(), device: torch.device | str | None = None,
                      progress: bool = True, eval_every: int = 0,
                      checkpoint: str | Path | None = None) -> tuple[CLIP, History]:
    """The whole recipe: seed, model, data, AdamW with warmup and cosine decay.

    With ``eval_every``, the history records the zero-shot test accuracy along the way.
    With ``checkpoint``, the run saves there every 100 steps and resumes from it.
    """
    device = torch.device(device) if device is not None else pick_device()
    seed_everything(recipe.seed)
    model = CLIP(shapes_clip_config())
    config = train_config(recipe, eval_every=eval_every, progress=progress)
    evaluate = (lambda m: {"zero-shot accuracy": zero_shot_accuracy(m)}) if eval_every else None
    history = train(model, contrastive_loss, training_batches(recipe, device), config, device=device,
                    evaluate=evaluate, checkpoint=checkpoint, checkpoint_every=100)
    return model.eval(), history


def export(model: CLIP, folder: str | Path = CHECKPOINT, recipe: Recipe | None = None) -> Path:
    """Write the model (transformers' CLIPModel format), its tokenizer and its recipe to ``folder``."""
    def write(staging: Path) -> None:
        save_hf_checkpoint(model, staging)
        tokenizer().save_pretrained(staging)
    return publish(folder, write, asdict(recipe) if recipe is not None else None)


def is_current(folder: str | Path = CHECKPOINT) -> bool:
    """Whether ``folder`` holds a checkpoint built by today's recipe and model shape."""
    return is_built_by(folder, asdict(Recipe()), hf_config(shapes_clip_config()))


def load_shapes_clip(folder: str | Path = CHECKPOINT, train_if_missing: bool = True) -> CLIP:
    """The pretrained shapes CLIP, in eval mode on the CPU; trained and exported first if absent
    (or, in the course's folder, built by another recipe)."""
    def build(target: Path) -> None:
        export(train_shapes_clip(Recipe(), progress=False)[0], target, Recipe())
    folder = build_if_needed(folder, CHECKPOINT, asdict(Recipe()), build, config=hf_config(shapes_clip_config()),
                             command="python -m minimodal.pretrained", train_if_missing=train_if_missing)
    return load_hf_checkpoint(folder).eval()


def main(argv: list[str] | None = None) -> None:
    """Train and export; under torchrun every process trains its slice, and rank 0 exports."""
    parser = argparse.ArgumentParser(description="Train the course's shapes CLIP and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    parser.add_argument("--steps", type=int, default=Recipe.steps)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="a training-state file: saved every 100 steps, resumed from when it exists")
    args = parser.parse_args(argv)
    recipe = Recipe(seed=args.seed, steps=args.steps, warmup_steps=min(Recipe.warmup_steps, args.steps))
    device = pick_device(args.device)
    distributed.start(device)
    start = time.perf_counter()
    model, history = train_shapes_clip(recipe, device=device, checkpoint=args.resume)
    seconds = time.perf_counter() - start
    if distributed.is_main():
        print(f"trained {recipe.steps} steps in {seconds:.0f} s on {distributed.world_size()} process(es); "
              f"final loss {history.loss[-1]:.3f}")
        for split in ("test", "holdout"):
            print(f"zero-shot accuracy on {split} single shapes: {zero_shot_accuracy(model, split):.1%}")
        print(f"exported to {export(model, args.out, recipe)}")
    distributed.stop()


if __name__ == "__main__":
    main()
