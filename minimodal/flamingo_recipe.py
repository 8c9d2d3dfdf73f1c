"""The course's Flamingo: the frozen shapes CLIP and shapes LM, joined on interleaved episodes.

    python -m minimodal.flamingo_recipe          # -> build/checkpoints/shapes-flamingo/

An *episode* is a few images, each followed by its answer, then one more image whose
answer is asked for:

    <|image|>3.<|image|>1.<|image|>2.<|image|>           -> the count of the last image

(each answer follows its image directly, as an answer follows ``<|assistant|>`` in the
chats the language model was trained on, so every answer is one token).

No question is ever written. Which task the episode is about is given only by the
answers of the examples before it: how many shapes, which colour, which shape, or
"match", where each episode picks two colours and answers "yes" for one and "no" for the
other, so that even the rule is defined by the examples alone. With no example the model
can only guess; the more examples, the more it can know. Training episodes hold 0 to
``max_shots`` examples, and every answer in them is learned, each one with the examples
before it as its prompt. Only the connector (resampler or Q-Former) and the gated blocks learn.

For the comparison of lesson 13 the same episodes train LLaVA's projector into the same
frozen language model, its image tokens spliced where ``<|image|>`` stands.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from minimodal.clip import CLIP
from minimodal.convert import build_if_needed, publish
from minimodal.convert_flamingo import load_trained_parts, save_trained_parts
from minimodal.data.shapes import COLORS
from minimodal.device import pick_device, seed_everything
from minimodal.flamingo import Flamingo, FlamingoConfig
from minimodal.llava import IGNORE, LLaVA, LlavaConfig, expand_image_tokens, next_token_loss
from minimodal.llava_recipe import patch_features
from minimodal.lm import LanguageModel
from minimodal.lm_recipe import load_shapes_lm, shapes_world
from minimodal.lm_tokenizer import BOS, LMTokenizer
from minimodal.pretrained import load_shapes_clip
from minimodal.qformer import QFormerConfig
from minimodal.resampler import ResamplerConfig
from minimodal.train import History, TrainConfig, read_history, train, write_history

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-flamingo"
TASKS = ("count", "color", "shape", "match")
CONNECTORS = ("resampler", "qformer", "projector")


@dataclass(frozen=True)
class FlamingoRecipe:
    """Everything that decides the trained weights, besides the code and the two pretrained parts."""

    seed: int = 0
    connector: str = "resampler"   # or "qformer"; "projector" trains LLaVA's instead (lesson 13's comparison)
    visual_tokens: int = 8         # per image: latents, queries, or pooled patches (a square for the projector)
    scenes: int = 4000             # training scenes, encoded once by the frozen tower
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 30
    max_shots: int = 4
    tasks: str = " ".join(TASKS)   # the tasks episodes are drawn from, with even odds

    def __post_init__(self):
        if not set(self.tasks.split()) <= set(TASKS):
            raise ValueError(f"tasks must be among {TASKS}, got {self.tasks!r}")
        if self.connector not in CONNECTORS:
            raise ValueError(f"connector must be one of {CONNECTORS}, got {self.connector!r}")
        side = round(self.visual_tokens ** 0.5)
        if self.connector == "projector" and side * side != self.visual_tokens:
            raise ValueError(f"the projector pools patches into a square grid: visual_tokens must be a "
                             f"square (1, 4, 16, 64), got {self.visual_tokens}")


def answer(scene, task: str, yes_color: str | None = None) -> str:
    """The word an example of ``task`` gives for a scene: its number of shapes, its shape's colour
    or kind, or for "match" whether its shape has the episode's ``yes_color``."""
    if task == "count":
        return str(len(scene))
    if len(scene) != 1:
        raise ValueError(f"the {task} task asks about scenes of one shape, this one has {len(scene)}")
    if task == "match":
        return "yes" if scene[0].color == yes_color else "no"
    return getattr(scene[0], task)


@dataclass
class Pool:
    """Scenes with the frozen tower's patch features, and which of them each task may draw."""

    scenes: list
    features: torch.Tensor                  # (N, P, Dv)
    eligible: dict[str, np.ndarray]         # task -> indices of scenes it can ask about
    single_of_color: dict[str, np.ndarray]  # colour -> scenes of one shape of that colour


@functools.cache
def scene_pool(split: str, n: int, seed: int = 0) -> Pool:
    """The first n scenes of ``split``, rendered and read once by the frozen tower."""
    world = shapes_world(seed)
    scenes = [world.scene(split, i) for i in range(n)]
    clip, (lm, tokenizer) = load_shapes_clip(), load_shapes_lm()
    features = patch_features(assemble(FlamingoRecipe(), clip, lm, tokenizer), world.render(scenes))
    single = np.array([i for i, s in enumerate(scenes) if len(s) == 1])
    of_color = {c: np.array([i for i in single if scenes[i][0].color == c]) for c in COLORS}
    return Pool(scenes, features, {"count": np.arange(n), "color": single, "shape": single, "match": single},
                of_color)


@dataclass
class Episode:
    ids: list[int]
    labels: list[int]        # the answers' tokens; IGNORE elsewhere
    scenes: list[int]        # the pool's scenes, in the order their images appear
    query: int               # where the last answer's first token is, in ids
    task: str
    answers: list[str]       # each image's answer, the query's last


def draw_scenes(pool: Pool, rng: np.random.Generator, n: int, task: str) -> tuple[list[int], list[str]]:
    """n different scenes for an episode of ``task``, and their answers.

    For "match" the episode first draws its two colours, the one answered "yes" and the
    one answered "no", then each image is one or the other with even odds: which colour
    is "yes" is written nowhere but in the examples.
    """
    if task != "match":
        picked = [int(i) for i in rng.choice(pool.eligible[task], size=n, replace=False)]
        return picked, [answer(pool.scenes[i], task) for i in picked]
    yes, no = rng.choice(list(pool.single_of_color), size=2, replace=False)
    sides = rng.random(n) < 0.5
    picked = [int(rng.choice(pool.single_of_color[yes if side else no])) for side in sides]
    while len(set(picked)) < n:   # the same image twice would tell the answer without reading it
        picked = [int(rng.choice(pool.single_of_color[yes if side else no])) for side in sides]
    return picked, [answer(pool.scenes[i], task, yes) for i in picked]


def episode(pool: Pool, tokenizer: LMTokenizer, rng: np.random.Generator, shots: int, task: str,
            image_tokens: int = 1) -> Episode:
    """``shots`` examples of ``task`` and a query, as token ids with one <|image|> per image
    (or ``image_tokens`` of them, for a model that splices its visual tokens into the text)."""
    picked, answers = draw_scenes(pool, rng, shots + 1, task)
    ids, labels = tokenizer.encode(BOS), [IGNORE]
    for i, said in zip(picked, answers):
        image = expand_image_tokens([tokenizer.image_id], tokenizer.image_id, image_tokens)
        said = tokenizer.encode(f"{said}.")
        query = len(ids) + len(image)
        ids += image + said
        labels += [IGNORE] * len(image) + said
    return Episode(ids, labels, picked, query, task, answers)


def pad_right(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


def collate(pool: Pool, episodes: list[Episode], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """(ids (B, T), labels (B, T), features (B, I, P, Dv)); a shorter episode's missing images are zeros."""
    images = max(len(e.scenes) for e in episodes)
    features = torch.zeros(len(episodes), images, *pool.features.shape[1:])
    for b, e in enumerate(episodes):
        features[b, :len(e.scenes)] = pool.features[e.scenes]
    ids = pad_right([e.ids for e in episodes], pad_id)
    labels = pad_right([e.labels for e in episodes], IGNORE)
    return ids.to(device), labels.to(device), features.to(device)


def assemble(recipe: FlamingoRecipe, clip: CLIP, lm: LanguageModel, tokenizer: LMTokenizer) -> Flamingo | LLaVA:
    """A fresh model around the pretrained parts: CLIP's image tower and a copy of the LM, both frozen."""
    vision = replace(clip.config.vision, embed_dim=None)
    if recipe.connector == "projector":
        model = LLaVA(LlavaConfig(vision=vision, lm=lm.config, image_token_id=tokenizer.image_id,
                                  tokens_per_side=round(recipe.visual_tokens ** 0.5)))
    else:
        connector = (ResamplerConfig(width=vision.width, latents=recipe.visual_tokens) if recipe.connector ==
                     "resampler" else QFormerConfig(width=vision.width, context_width=vision.width,
                                                    queries=recipe.visual_tokens))
        model = Flamingo(FlamingoConfig(vision=vision, lm=lm.config, image_token_id=tokenizer.image_id,
                                        connector=connector))
    tower = {k: v for k, v in clip.visual.state_dict().items() if not k.startswith("proj.")}
    model.vision_tower.load_state_dict(tower)
    model.language_model.load_state_dict(lm.state_dict())
    freeze_pretrained(model)
    return model


def freeze_pretrained(model: Flamingo | LLaVA) -> None:
    """Flamingo's rule, kept for every connector here: the vision tower and the language model never learn."""
    model.vision_tower.requires_grad_(False)
    model.language_model.requires_grad_(False)


def image_tokens_in_text(model: Flamingo | LLaVA) -> int:
    """How many positions an image takes in the text: one marker, or LLaVA's spliced tokens."""
    return model.config.image_tokens if isinstance(model, LLaVA) else 1


def model_loss(model: Flamingo | LLaVA, batch) -> torch.Tensor:
    ids, labels, features = batch
    if isinstance(model, LLaVA):
        return next_token_loss(model(ids, features=features.flatten(0, 1)), labels)
    return next_token_loss(model(ids, features=features), labels)


def batches(recipe: FlamingoRecipe, pool: Pool, tokenizer: LMTokenizer, image_tokens: int, device):
    """batch_at(step): episodes of random tasks with 0..max_shots examples, a function of the step."""
    def batch_at(step: int):
        rng = np.random.default_rng([recipe.seed, step])
        shots = int(rng.integers(recipe.max_shots + 1))  # one number per batch: no padding of images
        tasks = recipe.tasks.split()
        episodes = [episode(pool, tokenizer, rng, shots, tasks[int(rng.integers(len(tasks)))], image_tokens)
                    for _ in range(recipe.batch_size)]
        return collate(pool, episodes, tokenizer.pad_id, device)
    return batch_at


def train_shapes_flamingo(recipe: FlamingoRecipe = FlamingoRecipe(), device: torch.device | str | None = None,
                          progress: bool = True, record_every: int = 20
                          ) -> tuple[Flamingo | LLaVA, LMTokenizer, History]:
    """A model of ``recipe`` trained from the pretrained parts; the gates are recorded every
    ``record_every`` steps in history.evals."""
    device = torch.device(device) if device is not None else pick_device()
    clip, (lm, tokenizer) = load_shapes_clip(), load_shapes_lm()
    pool = scene_pool("train", recipe.scenes, recipe.seed)
    seed_everything(recipe.seed)
    model = assemble(recipe, clip, lm, tokenizer).to(device)
    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup_steps=recipe.warmup_steps, progress=progress,
                         eval_every=record_every)
    history = train(model, model_loss, batches(recipe, pool, tokenizer, image_tokens_in_text(model), device),
                    config, device=device, evaluate=record_gates)
    return model.eval().requires_grad_(False), tokenizer, history


def record_gates(model: Flamingo | LLaVA) -> dict:
    """What training records at each evaluation: the gates' tanh(alpha), (blocks, 2)."""
    return {"gates": model.gates().tolist()} if isinstance(model, Flamingo) else {}


def export(model: Flamingo, folder: str | Path = CHECKPOINT, recipe: FlamingoRecipe = FlamingoRecipe(),
           history: History | None = None) -> Path:
    """The trained parts (connector, gated blocks), recipe.json, and the loss and gates during training."""
    def write(staging: Path) -> None:
        save_trained_parts(model, staging, {"architecture": "minimodal.flamingo (trained parts)", **asdict(recipe)})
        if history is not None:
            write_history(staging, history)
    return publish(folder, write, asdict(recipe))


def load_history(folder: str | Path = CHECKPOINT) -> dict[str, list]:
    """The exported run's steps, losses, training seconds and recorded gates."""
    return read_history(folder)


def load_shapes_flamingo(folder: str | Path = CHECKPOINT, train_if_missing: bool = True
                         ) -> tuple[Flamingo, LMTokenizer]:
    """The course's Flamingo on the CPU in eval mode, trained and exported first if absent."""
    def build(target: Path) -> None:
        model, _, history = train_shapes_flamingo(FlamingoRecipe(), progress=False)
        export(model.cpu(), target, FlamingoRecipe(), history)
    folder = build_if_needed(folder, CHECKPOINT, asdict(FlamingoRecipe()), build,
                             command="python -m minimodal.flamingo_recipe", train_if_missing=train_if_missing)
    recipe = FlamingoRecipe(**json.loads((Path(folder) / "recipe.json").read_text()))
    clip, (lm, tokenizer) = load_shapes_clip(), load_shapes_lm()
    model = load_trained_parts(assemble(recipe, clip, lm, tokenizer), folder)
    return model.eval().requires_grad_(False), tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's shapes Flamingo and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, _, history = train_shapes_flamingo(device=args.device)
    print(f"trained in {time.perf_counter() - start:.0f} s; final loss {history.loss[-1]:.3f}")
    print(f"exported to {export(model.cpu(), args.out, FlamingoRecipe(), history)}")


if __name__ == "__main__":
    main()
