"""The course's ViLT: trained from scratch on the shapes world's questions (lesson 10).

    python -m minimodal.vilt_recipe          # -> build/checkpoints/shapes-vilt/

The questions and scenes are lesson 08's: 4,000 training scenes of 1-4 shapes, every
question the world asks about them (colour, shape, count, presence, left/right/above/below),
so the table of lesson 10 compares ViLT with lesson 08's models on the same test set.

Two choices are ours, each said where it is made:

- Questions are read as ``<bos> words <eos>``, lesson 09's caption vocabulary, where BERT
  reads ``[CLS] words [SEP]``: the pooler needs a first token that is no word of the
  question, so that it can gather the answer without being one of the things asked about.
- The 64-pixel images are resized to 48 pixels, so that each 16-pixel patch is exactly one
  cell of the world's 3x3 grid: one token per place a shape can be. The original ViLT
  resizes its images too (to 384 on the short side); here the size is picked for the grid.

The targets are the world's exact answers, so each question's soft score is 1 for its
answer and 0 elsewhere (every "annotator" agrees); the loss is still ViLT's binary
cross-entropy over all answers (``minimodal.vilt.vqa_bce_loss``).

The checkpoint is a transformers ``ViltForQuestionAnswering`` folder (``convert_vilt``),
with the question words and answers beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from minimodal.convert import build_if_needed, publish, read_config, read_weights, write_checkpoint
from minimodal.convert_vilt import load_vilt_state_dict, to_vilt_state_dict, vilt_hf_config
from minimodal.data.transforms import normalize
from minimodal.device import autocast, pick_device, seed_everything
from minimodal.pretrained import shapes_world
from minimodal.train import History, TrainConfig, read_history, train, write_history
from minimodal.vilt import ViLT, ViltConfig, vqa_bce_loss
from minimodal.vocab import CaptionVocab
from minimodal.vqa_data import VQAData, shapes_vqa

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-vilt"


@dataclass(frozen=True)
class ViltRecipe:
    """Everything that decides the trained weights, besides the code."""

    seed: int = 0
    train_scenes: int = 4000   # lesson 08's training scenes
    test_scenes: int = 1000
    image_size: int = 48       # 3 x 16-pixel patches per side: one patch per grid cell
    patch_size: int = 16
    width: int = 64            # 2.2x the questions per second of width 128 on two cores
    layers: int = 4
    heads: int = 4
    image_position_std: float = 2.0   # see start_image_positions
    steps: int = 3000          # about 3 minutes on two CPU cores
    batch_size: int = 128      # questions, each with its own image
    lr: float = 2e-3
    warmup_steps: int = 150
    weight_decay: float = 0.01


def shapes_vilt_config(recipe: ViltRecipe, vocab_size: int, answers: int, max_length: int) -> ViltConfig:
    return ViltConfig(vocab_size=vocab_size, max_length=max_length, answers=answers,
                      image_size=recipe.image_size, patch_size=recipe.patch_size, width=recipe.width,
                      layers=recipe.layers, heads=recipe.heads, norm_eps=1e-5)


@dataclass
class ShapesVQA:
    """Lesson 08's questions with ViLT's reading of them: <bos> question <eos>."""

    train: VQAData
    test: VQAData
    vocab: CaptionVocab
    answers: list[str]


def shapes_questions(recipe: ViltRecipe = ViltRecipe(), vocab: CaptionVocab | None = None,
                     answers: list[str] | None = None) -> ShapesVQA:
    """The train and test splits; the vocabulary and answers are built from training unless given."""
    world = shapes_world()
    train_batch = world.sample("train", recipe.train_scenes)
    test_batch = world.sample("test", recipe.test_scenes)
    questions = [qa.question for qas in train_batch.questions for qa in qas]
    vocab = vocab or CaptionVocab.build(questions)
    answers = answers or sorted({qa.answer for qas in train_batch.questions for qa in qas})
    return ShapesVQA(shapes_vqa(train_batch, vocab, answers), shapes_vqa(test_batch, vocab, answers),
                     vocab, answers)


def resized_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, 64, 64) in [0, 1] -> (B, 3, size, size), resized with antialiasing and normalized.

    At 48 pixels a 16-pixel patch is one cell of the 3x3 grid; BLIP's recipe reads the same.
    """
    resized = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return normalize(resized)


def question_batch(data: VQAData, pixels: torch.Tensor, questions: torch.Tensor):
    """ids (Q, T), their 0/1 mask, and each question's image (Q, 3, S, S), T the longest here."""
    lengths = data.lengths[questions]                                            # (Q,)
    T = int(lengths.max())
    mask = (torch.arange(T, device=lengths.device) < lengths[:, None]).long()   # (Q, T)
    return data.question_ids[questions, :T], mask, pixels[data.image_index[questions]]


def start_image_positions(positions: nn.Parameter, std: float) -> None:
    """Draw a model's image position embeddings at ``std``, not at ViLT's 0.02 (or CLIP's D^-0.5).

    A shapes image's patch embedding has a norm near 9 per token at width 64, most of it the
    white background every patch shares; positions drawn at 0.02 (norm 0.16) are 2% of the
    token. A model must read a position before the gradient has any reason to grow it, so
    small positions stay small: asked "where is the red circle?" about scenes of one shape,
    a width-64 ViLT stayed at chance (11%) for 300 steps with positions drawn at 0.5, and
    reached 100% within 200 steps with positions at 3 (at 2, 98% on scenes of 1-4 shapes
    after 600 steps). The real ViLT starts from a pretrained ViT's positions instead.
    BLIP's recipe starts its ViT's positions the same way (there CLIP's D^-0.5 = 0.125 had
    left relation swaps at chance).
    """
    nn.init.normal_(positions, std=std)


def train_shapes_vilt(recipe: ViltRecipe = ViltRecipe(), device: torch.device | str | None = None,
                      progress: bool = True) -> tuple[ViLT, ShapesVQA, History]:
    """A ViLT trained from scratch on batches of random training questions."""
    device = torch.device(device) if device is not None else pick_device()
    data = shapes_questions(recipe)
    train_data = data.train.to(device)
    pixels = resized_pixels(data.train.images, recipe.image_size).to(device)
    seed_everything(recipe.seed)
    config = shapes_vilt_config(recipe, len(data.vocab), len(data.answers), data.train.question_ids.shape[1])
    model = ViLT(config)
    start_image_positions(model.image_position_embedding, recipe.image_position_std)
    model = model.to(device)

    def batch_at(step: int) -> torch.Tensor:
        draw = torch.Generator().manual_seed(recipe.seed * 100_003 + step)
        return torch.randint(len(train_data), (recipe.batch_size,), generator=draw).to(device)

    def loss_fn(model: ViLT, questions: torch.Tensor) -> torch.Tensor:
        logits = model(*question_batch(train_data, pixels, questions)).logits    # (Q, answers)
        targets = F.one_hot(train_data.answers[questions], len(data.answers))    # soft scores: all agree
        return vqa_bce_loss(logits.float(), targets)

    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                         weight_decay=recipe.weight_decay, progress=progress)
    history = train(model, loss_fn, batch_at, config, device=device)
    return model.eval(), data, history


@torch.no_grad()
def predict_vilt(model: ViLT, data: VQAData, image_size: int, batch_size: int = 512) -> torch.Tensor:
    """The highest-scoring answer of every question (Q,), on the CPU."""
    device = next(model.parameters()).device
    pixels = resized_pixels(data.images, image_size).to(device)
    data = data.to(device)
    model.eval()
    predictions = []
    for start in range(0, len(data), batch_size):
        questions = torch.arange(start, min(start + batch_size, len(data)), device=device)
        with autocast(device):
            predictions.append(model(*question_batch(data, pixels, questions)).logits.argmax(dim=-1))
    return torch.cat(predictions).cpu()


def export(model: ViLT, data: ShapesVQA, folder: str | Path = CHECKPOINT, recipe: ViltRecipe = ViltRecipe(),
           history: History | None = None) -> Path:
    """A ViltForQuestionAnswering folder, the words and answers, recipe.json and the loss curve."""
    def write(staging: Path) -> None:
        config = {**vilt_hf_config(model.config), "architectures": ["ViltForQuestionAnswering"],
                  "id2label": dict(enumerate(data.answers))}
        write_checkpoint(staging, config, to_vilt_state_dict(model))
        (staging / "vocab.json").write_text(json.dumps(data.vocab.words))
        if history is not None:
            write_history(staging, history)
    return publish(folder, write, asdict(recipe))


def load_history(folder: str | Path = CHECKPOINT) -> dict[str, list]:
    return read_history(folder)


def load_shapes_vilt(folder: str | Path = CHECKPOINT, train_if_missing: bool = True) -> tuple[ViLT, ShapesVQA]:
    """The course's ViLT on the CPU in eval mode, with its data; trained and exported first if absent."""
    def build(target: Path) -> None:
        model, data, history = train_shapes_vilt(ViltRecipe(), progress=False)
        export(model.cpu(), data, target, ViltRecipe(), history)
    folder = Path(build_if_needed(folder, CHECKPOINT, asdict(ViltRecipe()), build,
                                  command="python -m minimodal.vilt_recipe", train_if_missing=train_if_missing))
    recipe = ViltRecipe(**json.loads((folder / "recipe.json").read_text()))
    config = read_config(folder)
    answers = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    vocab = CaptionVocab(json.loads((folder / "vocab.json").read_text()))
    data = shapes_questions(recipe, vocab, answers)
    model = ViLT(shapes_vilt_config(recipe, len(vocab), len(answers), config["max_position_embeddings"]))
    load_vilt_state_dict(model, read_weights(folder))
    return model.eval().requires_grad_(False), data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's shapes ViLT and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, data, history = train_shapes_vilt(device=args.device)
    print(f"trained in {time.perf_counter() - start:.0f} s; final loss {history.loss[-1]:.3f}")
    print(f"exported to {export(model.cpu(), data, args.out, ViltRecipe(), history)}")


if __name__ == "__main__":
    main()
