"""The course's BLIP: ITC and ITM with hard negatives, trained from scratch on shapes captions (lesson 10).

    python -m minimodal.blip_recipe          # -> build/checkpoints/shapes-blip/

BLIP's sampler can only draw a hard negative that is in the batch. In a batch of random
scenes the caption most like "a red circle left of a blue square" usually differs from it
in a colour or a shape, so the matching head would learn to check colours and shapes and
never who is where. Real BLIP has millions of captions per epoch and some near twins in
every batch; our batches are made to hold them. Half of each batch is random scenes, and
each comes with a *twin*: another training scene drawn with the same colours and the same
kinds of shape, so the two captions differ by which colour is which, who is where, or how
many. The sampler still has to find them; the batch only makes sure they are there.

Captions are drawn from every phrasing of the world (``shapes_text.phrasings``): the
reading-order caption of lesson 06, "there are ...", and the relation stated from the
other side ("a blue square right of a red circle"). No caption in a batch is true of
another image of the batch, so pair i is the only match of image i, as ITC and the hard
negatives assume.

Images are resized to 48 pixels, one 16-pixel patch per grid cell, as for the course's
ViLT (``minimodal.vilt_recipe``). Captions are read as ``<bos> words <eos>``, where BERT
reads ``[CLS] words [SEP]``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from minimodal.blip import Blip, BlipConfig, BlipTextConfig, blip_vision_config
from minimodal.blip_loss import itc_itm_loss
from minimodal.convert import build_if_needed, publish, read_weights, write_checkpoint
from minimodal.convert_blip import blip_config, load_blip_state_dict, to_blip_state_dict
from minimodal.data.shapes_text import Parsed, is_true, parse_caption, phrasings
from minimodal.device import autocast, pick_device, seed_everything
from minimodal.pretrained import shapes_world
from minimodal.train import History, TrainConfig, read_history, train, write_history
from minimodal.vilt_recipe import resized_pixels, start_image_positions
from minimodal.vocab import CaptionVocab

CHECKPOINT = Path(__file__).resolve().parents[1] / "build" / "checkpoints" / "shapes-blip"


@dataclass(frozen=True)
class BlipRecipe:
    """Everything that decides the trained weights, besides the code."""

    seed: int = 0
    pool_size: int = 4096      # training scenes of 1-4 shapes, rendered once
    image_size: int = 48
    patch_size: int = 16
    width: int = 64            # both towers
    layers: int = 3            # in each tower
    heads: int = 4
    image_position_std: float = 2.0   # as the ViLT recipe's (vilt_recipe.start_image_positions)
    embed_dim: int = 64        # ITC's shared space
    max_length: int = 24       # text positions
    temperature: float = 0.07
    steps: int = 1500
    batch_size: int = 64       # 32 random scenes and their 32 twins
    lr: float = 2e-3
    warmup_steps: int = 75
    weight_decay: float = 0.01


def shapes_blip_config(recipe: BlipRecipe, vocab_size: int) -> BlipConfig:
    vision = blip_vision_config(image_size=recipe.image_size, patch_size=recipe.patch_size, width=recipe.width,
                                layers=recipe.layers, heads=recipe.heads)
    text = BlipTextConfig(vocab_size=vocab_size, max_length=recipe.max_length, width=recipe.width,
                          layers=recipe.layers, heads=recipe.heads)
    return BlipConfig(vision=vision, text=text, embed_dim=recipe.embed_dim)


def twin_key(scene) -> tuple[frozenset, frozenset]:
    """Scenes with the same key use the same colours and the same kinds of shape."""
    return frozenset(s.color for s in scene), frozenset(s.shape for s in scene)


@dataclass
class CaptionPool:
    """Training scenes, their pixels, every phrasing of each, and each scene's twins."""

    scenes: list[tuple]
    pixels: torch.Tensor                 # (N, 3, S, S) normalized
    options: list[list[str]]             # the phrasings of scene i
    twins: list[list[int]]               # other scenes with scene i's key
    vocab: CaptionVocab


def caption_pool(recipe: BlipRecipe, vocab: CaptionVocab | None = None) -> CaptionPool:
    batch = shapes_world(seed=recipe.seed).sample("train", recipe.pool_size)
    options = [phrasings(scene) for scene in batch.scenes]
    vocab = vocab or CaptionVocab.build([text for texts in options for text in texts])
    by_key: dict[tuple, list[int]] = {}
    for i, scene in enumerate(batch.scenes):
        by_key.setdefault(twin_key(scene), []).append(i)
    twins = [[j for j in by_key[twin_key(scene)] if j != i] for i, scene in enumerate(batch.scenes)]
    return CaptionPool(batch.scenes, resized_pixels(batch.images, recipe.image_size), options, twins, vocab)


def _fits(scene, parsed: Parsed, chosen: list[tuple]) -> bool:
    """Whether a (scene, caption) pair can join the batch: neither caption true of the other's image."""
    return all(not is_true(parsed, other_scene) and not is_true(other_parsed, scene)
               for other_scene, other_parsed in chosen)


def draw_batch(pool: CaptionPool, rng: np.random.Generator, batch_size: int) -> tuple[list[int], list[str]]:
    """batch_size // 2 random scenes each followed by a twin (a random scene when it has none
    that fits), one random phrasing each, no caption true of another image of the batch."""
    chosen: list[tuple] = []
    rows, texts = [], []

    def try_add(index: int) -> bool:
        text = pool.options[index][int(rng.integers(len(pool.options[index])))]
        parsed = parse_caption(text)
        if not _fits(pool.scenes[index], parsed, chosen):
            return False
        chosen.append((pool.scenes[index], parsed))
        rows.append(index)
        texts.append(text)
        return True

    while len(rows) < batch_size:
        if not try_add(int(rng.integers(len(pool.scenes)))):
            continue
        twins = pool.twins[rows[-1]]
        for j in rng.permutation(len(twins))[:8] if twins else ():
            if try_add(twins[int(j)]):
                break
        else:
            while not try_add(int(rng.integers(len(pool.scenes)))):
                pass
    return rows[:batch_size], texts[:batch_size]


def encode_captions(vocab: CaptionVocab, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) and their 0/1 mask, each caption read as <bos> words <eos>."""
    ids, lengths = vocab.encode_batch(texts)
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    return ids.to(device), mask.to(device)


def train_shapes_blip(recipe: BlipRecipe = BlipRecipe(), device: torch.device | str | None = None,
                      progress: bool = True) -> tuple[Blip, CaptionVocab, History]:
    device = torch.device(device) if device is not None else pick_device()
    pool = caption_pool(recipe)
    pixels = pool.pixels.to(device)
    seed_everything(recipe.seed)
    model = Blip(shapes_blip_config(recipe, len(pool.vocab)))
    start_image_positions(model.vision.positional_embedding, recipe.image_position_std)
    model = model.to(device)
    draws = torch.Generator(device=device).manual_seed(recipe.seed)

    def batch_at(step: int):
        rows, texts = draw_batch(pool, np.random.default_rng([recipe.seed, step]), recipe.batch_size)
        return pixels[torch.tensor(rows, device=device)], *encode_captions(pool.vocab, texts, device)

    def loss_fn(model: Blip, batch) -> torch.Tensor:
        return itc_itm_loss(model, *batch, temperature=recipe.temperature, generator=draws)["loss"]

    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                         weight_decay=recipe.weight_decay, progress=progress)
    history = train(model, loss_fn, batch_at, config, device=device)
    return model.eval(), pool.vocab, history


@torch.no_grad()
def match_probability(model: Blip, vocab: CaptionVocab, pixels: torch.Tensor, texts: list[str],
                      batch_size: int = 512) -> torch.Tensor:
    """ITM's P(match) of pixels[i] with texts[i], (B,): the head's softmax, on the CPU."""
    if len(pixels) != len(texts):
        raise ValueError(f"match_probability scores pairs: got {len(pixels)} images and {len(texts)} captions")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = encode_captions(vocab, texts[start:start + batch_size], device)
        with autocast(device):
            image = model.image_features(pixels[start:start + batch_size].to(device))
            out.append(model.itm_logits(ids, mask, image).float().softmax(dim=-1)[:, 1])
    return torch.cat(out).cpu()


def export(model: Blip, vocab: CaptionVocab, folder: str | Path = CHECKPOINT,
           recipe: BlipRecipe = BlipRecipe(), history: History | None = None) -> Path:
    """A BlipForImageTextRetrieval state dict, the caption words, recipe.json and the loss curve."""
    def write(staging: Path) -> None:
        write_checkpoint(staging, blip_config(model.config), to_blip_state_dict(model))
        (staging / "vocab.json").write_text(json.dumps(vocab.words))
        if history is not None:
            write_history(staging, history)
    return publish(folder, write, asdict(recipe))


def load_history(folder: str | Path = CHECKPOINT) -> dict[str, list]:
    return read_history(folder)


def load_shapes_blip(folder: str | Path = CHECKPOINT, train_if_missing: bool = True) -> tuple[Blip, CaptionVocab]:
    """The course's BLIP on the CPU in eval mode, with its caption words; trained first if absent."""
    def build(target: Path) -> None:
        model, vocab, history = train_shapes_blip(BlipRecipe(), progress=False)
        export(model.cpu(), vocab, target, BlipRecipe(), history)
    folder = Path(build_if_needed(folder, CHECKPOINT, asdict(BlipRecipe()), build,
                                  command="python -m minimodal.blip_recipe", train_if_missing=train_if_missing))
    recipe = BlipRecipe(**json.loads((folder / "recipe.json").read_text()))
    vocab = CaptionVocab(json.loads((folder / "vocab.json").read_text()))
    model = load_blip_state_dict(Blip(shapes_blip_config(recipe, len(vocab))), read_weights(folder))
    return model.eval().requires_grad_(False), vocab


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the course's shapes BLIP and export it.")
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="checkpoint folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, vocab, history = train_shapes_blip(device=args.device)
    print(f"trained in {time.perf_counter() - start:.0f} s; final loss {history.loss[-1]:.3f}")
    print(f"exported to {export(model.cpu(), vocab, args.out, BlipRecipe(), history)}")


if __name__ == "__main__":
    main()
