"""The course's LLaVA: the shapes CLIP's eyes and the shapes LM's words, joined in two stages.

    python -m minimodal.llava_recipe          # -> build/checkpoints/shapes-llava/

The language model was pretrained on documents that start with a scene's facts written
out ("scene: red circle top left. caption: ..."). LLaVA puts the image where the facts
stood ("scene:<image tokens>. caption: ...") and trains in two stages:

1. **alignment**: only the projector learns, on captions, with the vision tower and the
   language model frozen: the image tokens must come to say what the facts said;
2. **instruction tuning**: the projector and the language model learn, on question and
   answer turns in the chat template; the vision tower stays frozen.

The tower is frozen throughout, so its patch features are computed once per image and
training reads them from memory.
"""

from __future__ import annotations

import argparse
import functools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from minimodal.clip import CLIP
from minimodal.convert import build_if_needed, is_built_by, publish
from minimodal.convert_llava import load_llava_checkpoint, save_llava_checkpoint
from minimodal.data.shapes import questions
from minimodal.data.shapes_text import phrasings
from minimodal.data.transforms import normalize
from minimodal.device import pick_device, seed_everything
from minimodal.llava import IGNORE, LLaVA, LlavaConfig, chat_labels, expand_image_tokens, next_token_loss
from minimodal.lm import LanguageModel
from minimodal.lm_recipe import load_shapes_lm, shapes_world
from minimodal.lm_tokenizer import BOS, EOS, IMAGE, LMTokenizer, chat_text
from minimodal.pretrained import load_shapes_clip
from minimodal.train import History, TrainConfig, train

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-llava"
CONTEXT = f"scene:{IMAGE}."          # where the language model was taught to read a scene's facts
CAPTION_PROMPT = f"{BOS}{CONTEXT} caption:"


@dataclass(frozen=True)
class LlavaRecipe:
    """Everything that decides the trained weights, besides the code and the two pretrained parts."""

    seed: int = 0
    scenes: int = 6000                   # training scenes, rendered and encoded once
    batch_size: int = 32
    align_steps: int = 120               # stage 1: the projector alone, on captions
    align_lr: float = 3e-3
    tune_steps: int = 240                # stage 2: projector and LM, on questions and answers
    tune_lr: float = 3e-3
    turns: int = 6                       # question-answer turns per chat, at most (all a scene has)
    warmup_steps: int = 30
    tokens_per_side: int | None = None   # None: one image token per patch


def assemble(clip: CLIP, lm: LanguageModel, tokenizer: LMTokenizer, tokens_per_side: int | None = None) -> LLaVA:
    """A LLaVA from the pretrained parts: CLIP's image tower (its projection left behind),
    a fresh projector, and a copy of the language model."""
    config = LlavaConfig(vision=replace(clip.config.vision, embed_dim=None), lm=lm.config,
                         image_token_id=tokenizer.image_id, tokens_per_side=tokens_per_side)
    model = LLaVA(config)
    tower = {k: v for k, v in clip.visual.state_dict().items() if not k.startswith("proj.")}
    model.vision_tower.load_state_dict(tower)
    model.language_model.load_state_dict(lm.state_dict())
    return model


@torch.no_grad()
def patch_features(model: LLaVA, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Shapes-world renders (N, 3, 64, 64) in [0, 1] -> the frozen tower's patch features (N, P, Dv).

    Flamingo (lesson 13) reads its features the same way, through its own ``patch_features``."""
    device = next(model.parameters()).device
    return torch.cat([model.patch_features(normalize(images[i:i + batch_size]).to(device))
                      for i in range(0, len(images), batch_size)])


def pad_right(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


def caption_example(tokenizer: LMTokenizer, scene, rng: np.random.Generator, image_tokens: int
                    ) -> tuple[list[int], list[int]]:
    """Stage 1: ids of 'scene:<image>. caption: <one phrasing>' and its labels, the caption only."""
    options = phrasings(scene)
    prompt = expand_image_tokens(tokenizer.encode(CAPTION_PROMPT), tokenizer.image_id, image_tokens)
    answer = tokenizer.encode(f" {options[int(rng.integers(len(options)))]}{EOS}")
    return prompt + answer, [IGNORE] * len(prompt) + answer


def chat_example(tokenizer: LMTokenizer, scene, rng: np.random.Generator, image_tokens: int, seed,
                 turns: int) -> tuple[list[int], list[int]]:
    """Stage 2: a chat of up to ``turns`` questions about the scene; labels from ``chat_labels``."""
    qas = questions(scene, shapes_world().config, seed=seed)
    picked = rng.choice(len(qas), size=min(turns, len(qas)), replace=False)
    text = BOS + chat_text([(qas[i].question, qas[i].answer) for i in picked], CONTEXT) + EOS
    ids = expand_image_tokens(tokenizer.encode(text), tokenizer.image_id, image_tokens)
    labels = chat_labels(torch.tensor([ids]), tokenizer.assistant_id, tokenizer.end_id)[0].tolist()
    return ids, labels


@dataclass
class TrainingScenes:
    scenes: list
    features: torch.Tensor       # (N, P, Dv) the frozen tower's patch features


@functools.cache
def training_scenes(recipe_seed: int, n: int) -> TrainingScenes:
    """The first n training scenes with their patch features (rendered and encoded once)."""
    world = shapes_world(recipe_seed)
    scenes = [world.scene("train", i) for i in range(n)]
    clip, (lm, tokenizer) = load_shapes_clip(), load_shapes_lm()
    return TrainingScenes(scenes, patch_features(assemble(clip, lm, tokenizer), world.render(scenes)))


def batches(recipe: LlavaRecipe, stage: str, tokenizer: LMTokenizer, image_tokens: int, device):
    """batch_at(step) -> (ids, labels, features) for stage 'align' or 'tune', a function of the step."""
    data = training_scenes(recipe.seed, recipe.scenes)

    def batch_at(step: int):
        rng = np.random.default_rng([recipe.seed, ("align", "tune").index(stage), step])
        rows = rng.integers(len(data.scenes), size=recipe.batch_size)
        examples = [caption_example(tokenizer, data.scenes[i], rng, image_tokens) if stage == "align" else
                    chat_example(tokenizer, data.scenes[i], rng, image_tokens, (recipe.seed, int(i), step),
                                 recipe.turns)
                    for i in rows]
        ids = pad_right([e[0] for e in examples], tokenizer.pad_id)
        labels = pad_right([e[1] for e in examples], IGNORE)
        return ids.to(device), labels.to(device), data.features[torch.from_numpy(rows)].to(device)

    return batch_at


def llava_loss(model: LLaVA, batch) -> torch.Tensor:
    ids, labels, features = batch
    return next_token_loss(model(ids, features=features), labels)


def freeze(model: LLaVA, stage: str) -> None:
    """The tower never learns; the language model learns in stage 2 only."""
    model.vision_tower.requires_grad_(False)
    model.language_model.requires_grad_(stage == "tune")
    model.projector.requires_grad_(True)


def train_stage(model: LLaVA, recipe: LlavaRecipe, stage: str, tokenizer: LMTokenizer, device,
                progress: bool = True) -> History:
    steps, lr = (recipe.align_steps, recipe.align_lr) if stage == "align" else (recipe.tune_steps, recipe.tune_lr)
    freeze(model, stage)
    config = TrainConfig(steps=steps, lr=lr, warmup_steps=min(recipe.warmup_steps, steps), progress=progress)
    batch_at = batches(recipe, stage, tokenizer, model.config.image_tokens, device)
    return train(model, llava_loss, batch_at, config, device=device)


def train_shapes_llava(recipe: LlavaRecipe = LlavaRecipe(), device: torch.device | str | None = None,
                       progress: bool = True, stages: tuple[str, ...] = ("align", "tune")
                       ) -> tuple[LLaVA, LMTokenizer, dict[str, History]]:
    """Both stages (or the ones named) from the pretrained CLIP and LM."""
    device = torch.device(device) if device is not None else pick_device()
    clip, (lm, tokenizer) = load_shapes_clip(), load_shapes_lm()
    seed_everything(recipe.seed)
    model = assemble(clip, lm, tokenizer, recipe.tokens_per_side).to(device)
    histories = {stage: train_stage(model, recipe, stage, tokenizer, device, progress) for stage in stages}
    return model.eval().requires_grad_(False), tokenizer, histories


def export(model: LLaVA, tokenizer: LMTokenizer, folder: str | Path = CHECKPOINT,
           recipe: LlavaRecipe | None = None) -> Path:
    """The model in LlavaForConditionalGeneration's format, tokenizer.json and recipe.json."""
    def write(staging: Path) -> None:
        save_llava_checkpoint(model, staging)
        tokenizer.save(staging)
    return publish(folder, write, asdict(recipe) if recipe is not None else None)


def is_current(folder: str | Path = CHECKPOINT) -> bool:
    """Whether ``folder`` was built by today's recipe."""
    return is_built_by(folder, asdict(LlavaRecipe()))


def load_shapes_llava(folder: str | Path = CHECKPOINT, train_if_missing: bool = True) -> tuple[LLaVA, LMTokenizer]:
    """The course's LLaVA and tokenizer, on the CPU in eval mode; trained first if absent."""
    def build(target: Path) -> None:
        model, tokenizer, _ = train_shapes_llava(LlavaRecipe(), progress=False)
        export(model.cpu(), tokenizer, target, LlavaRecipe())
    folder = build_if_needed(folder, CHECKPOINT, asdict(LlavaRecipe()), build,
                             command="python -m minimodal.llava_recipe", train_if_missing=train_if_missing)
    return load_llava_checkpoint(folder).eval(), LMTokenizer.load(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's shapes LLaVA and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, tokenizer, histories = train_shapes_llava(device=args.device)
    print(f"trained in {time.perf_counter() - start:.0f} s; final losses " +
          ", ".join(f"{stage} {h.loss[-1]:.3f}" for stage, h in histories.items()))
    print(f"exported to {export(model.cpu(), tokenizer, args.out, LlavaRecipe())}")


if __name__ == "__main__":
    main()
