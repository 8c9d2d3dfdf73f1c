"""The course's language model: a small LLaMA trained on the shapes world's text, from a seed.

No pretrained language model can be had here, so the course pretrains its own, the way
the course CLIP (``minimodal.pretrained``) was made. One command rebuilds it:

    python -m minimodal.lm_recipe            # -> build/checkpoints/shapes-lm/

The corpus: captions of shapes-world scenes in several phrasings, and chats about scenes
in the chat template, most of them after the scene's facts written out as a prefix
("scene: red circle top left. caption: a red circle"); lessons 12 and 13 put an image
where those facts stand. Exported in transformers' LlamaForCausalLM format, with the
tokenizer (a BPE trained on the same corpus) and the recipe beside it.
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

from minimodal.convert import build_if_needed, is_built_by, publish
from minimodal.convert_llama import load_lm_checkpoint, save_lm_checkpoint
from minimodal.data.shapes import ShapesConfig, ShapesWorld, questions
from minimodal.data.shapes_text import facts, scene_document
from minimodal.device import pick_device, seed_everything
from minimodal.lm import LanguageModel, LMConfig
from minimodal.lm_tokenizer import BOS, EOS, LMTokenizer, chat_text
from minimodal.train import History, TrainConfig, train

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-lm"
HOLDOUT = frozenset({("red", "triangle")})  # as for the course CLIP: never in a training scene


@dataclass(frozen=True)
class LMRecipe:
    """Everything that decides the trained weights, besides the code."""

    seed: int = 0
    steps: int = 1800
    batch_size: int = 32         # documents per step
    documents: int = 20000       # training documents, drawn from at every step
    facts_fraction: float = 0.8  # documents that start with the scene's facts
    chat_fraction: float = 0.4   # documents that are a chat rather than a caption
    vocab_size: int = 512        # an upper bound: BPE stops once every word is one token
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1


def shapes_world(seed: int = 0) -> ShapesWorld:
    return ShapesWorld(ShapesConfig(min_shapes=1, max_shapes=4, holdout=HOLDOUT, seed=seed))


def document(scene, index: int, recipe: LMRecipe) -> str:
    """Training text number ``index``: a caption or a chat, with the scene's facts first or not."""
    rng = np.random.default_rng([recipe.seed, index])
    with_facts = rng.random() < recipe.facts_fraction
    if rng.random() < recipe.chat_fraction:
        qas = questions(scene, shapes_world().config, seed=(recipe.seed, index))
        picked = rng.choice(len(qas), size=min(2, len(qas)), replace=False)
        context = f"scene: {facts(scene)}." if with_facts else ""
        text = chat_text([(qas[i].question, qas[i].answer) for i in picked], context)
    else:
        text = scene_document(scene, rng, with_facts)
    return f"{BOS}{text}{EOS}"


def corpus(recipe: LMRecipe, split: str, n: int) -> list[str]:
    world = shapes_world(recipe.seed)
    return [document(world.scene(split, i), i, recipe) for i in range(n)]


def encode(tokenizer: LMTokenizer, documents: list[str]) -> torch.Tensor:
    """Documents -> (N, T) ids, right-padded with <|pad|> to the longest."""
    rows = [tokenizer.encode(d) for d in documents]
    ids = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids


def lm_loss(model: LanguageModel, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Next-token cross-entropy: read tokens 0..T-2, predict 1..T-1; padding does not count.

    Padding sits at the right, after every real token, so the causal mask alone keeps
    real tokens from seeing it and no attention mask is needed.
    """
    logits = model(ids[:, :-1])                                            # (B, T-1, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), ignore_index=pad_id)


def lm_config(tokenizer: LMTokenizer, length: int) -> LMConfig:
    """Three blocks of width 96, grouped-query attention with 2 key/value heads, tied embeddings."""
    return LMConfig(vocab_size=tokenizer.vocab_size, max_length=length)


@functools.cache
def data(recipe: LMRecipe) -> tuple[LMTokenizer, torch.Tensor]:
    """The tokenizer trained on the training corpus, and that corpus encoded."""
    documents = corpus(recipe, "train", recipe.documents)
    tokenizer = LMTokenizer.train("".join(documents), recipe.vocab_size)
    return tokenizer, encode(tokenizer, documents)


def train_shapes_lm(recipe: LMRecipe = LMRecipe(), device: torch.device | str | None = None,
                    progress: bool = True) -> tuple[LanguageModel, LMTokenizer, History]:
    device = torch.device(device) if device is not None else pick_device()
    tokenizer, ids = data(recipe)
    seed_everything(recipe.seed)
    model = LanguageModel(lm_config(tokenizer, ids.shape[1]))
    ids = ids.to(device)

    def batch_at(step: int) -> torch.Tensor:
        rows = torch.from_numpy(np.random.default_rng([recipe.seed, step]).integers(len(ids), size=recipe.batch_size))
        batch = ids[rows.to(device)]
        return batch[:, :int((batch != tokenizer.pad_id).sum(dim=1).max())]  # trim to the longest

    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, weight_decay=recipe.weight_decay,
                         warmup_steps=recipe.warmup_steps, progress=progress)
    history = train(model, lambda m, batch: lm_loss(m, batch, tokenizer.pad_id), batch_at, config, device=device)
    return model.eval(), tokenizer, history


def export(model: LanguageModel, tokenizer: LMTokenizer, folder: str | Path = CHECKPOINT,
           recipe: LMRecipe | None = None) -> Path:
    """Write the model (LlamaForCausalLM format), tokenizer.json and recipe.json to ``folder``."""
    def write(staging: Path) -> None:
        save_lm_checkpoint(model, staging)
        tokenizer.save(staging)
    return publish(folder, write, asdict(recipe) if recipe is not None else None)


def is_current(folder: str | Path = CHECKPOINT) -> bool:
    """Whether ``folder`` was built by today's recipe."""
    return is_built_by(folder, asdict(LMRecipe()))


def load_shapes_lm(folder: str | Path = CHECKPOINT, train_if_missing: bool = True
                   ) -> tuple[LanguageModel, LMTokenizer]:
    """The course's language model and tokenizer, on the CPU in eval mode; trained first if absent."""
    def build(target: Path) -> None:
        model, tokenizer, _ = train_shapes_lm(LMRecipe(), progress=False)
        export(model.cpu(), tokenizer, target, LMRecipe())
    folder = build_if_needed(folder, CHECKPOINT, asdict(LMRecipe()), build, command="python -m minimodal.lm_recipe",
                             train_if_missing=train_if_missing)
    return load_lm_checkpoint(folder).eval(), LMTokenizer.load(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's shapes language model and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--steps", type=int, default=LMRecipe.steps)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    recipe = LMRecipe(steps=args.steps)
    start = time.perf_counter()
    model, tokenizer, history = train_shapes_lm(recipe, device=args.device)
    print(f"trained {recipe.steps} steps in {time.perf_counter() - start:.0f} s; "
          f"final loss {history.loss[-1]:.3f}; vocabulary {tokenizer.vocab_size}")
    print(f"exported to {export(model.cpu(), tokenizer, args.out, recipe)}")


if __name__ == "__main__":
    main()
