"""Does a score tell a caption from its near twin? Probes for image-text matching (lesson 10).

Each probe image comes with its true caption (lesson 06's reading-order caption) and
wrong ones that change one thing:

- **colour swap**: the two shapes trade colours, "a blue circle left of a red square";
- **relation swap**: the two shapes trade places, "a red square left of a blue circle";
- **count change**: the first shape's count goes from one to two or back, "two blue circles ...".

Every wrong caption is a sentence of the world, false of its image (checked with
``shapes_text.is_true``), and made only of words the course CLIP read in training: its
captions hold at most two shapes, so "one" and "two" are the only counts, and they list
shapes in reading order, so "below" never occurs; swapping places keeps the relation's
word and changes who comes first.

A probe is won when the true caption is ranked above the wrong one: chance is 50%.
For re-ranking, each image gets a list of candidates, its true caption, its wrong ones and
other images' captions; CLIP ranks them all and ITM re-orders CLIP's top k, as BLIP ranks
with ITC and re-ranks with ITM.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from minimodal.blip_recipe import encode_captions, match_probability
from minimodal.data.shapes import _groups, _noun_phrase, caption
from minimodal.data.shapes_text import is_true, parse_caption
from minimodal.data.transforms import normalize
from minimodal.vilt_recipe import resized_pixels

PROBES = ("colour swap", "relation swap", "count change")


def colour_swap(scene) -> str | None:
    """Two shapes of different colours and kinds trade colours; None for other scenes."""
    if len(scene) != 2 or scene[0].color == scene[1].color or scene[0].shape == scene[1].shape:
        return None
    a, b = scene
    return caption((replace(a, color=b.color), replace(b, color=a.color)))


def relation_swap(scene) -> str | None:
    """Two different shapes trade places (the caption keeps its relation word); None otherwise."""
    if len(scene) != 2 or (scene[0].color, scene[0].shape) == (scene[1].color, scene[1].shape):
        return None
    a, b = scene
    return caption((replace(a, color=b.color, shape=b.shape), replace(b, color=a.color, shape=a.shape)))


def count_change(scene) -> str:
    """The first group's count: one becomes two, two becomes one."""
    (color, shape), members = next(iter(_groups(scene).items()))
    count = len(members)
    if count > 2:
        raise ValueError(f"count_change uses only 'a' and 'two'; the scene has {count} {color} {shape}s")
    changed = 2 if count == 1 else 1
    return caption(scene).replace(_noun_phrase(color, shape, count), _noun_phrase(color, shape, changed), 1)


WRONG = {"colour swap": colour_swap, "relation swap": relation_swap, "count change": count_change}


@dataclass
class ProbeSet:
    scenes: list[tuple]
    images: torch.Tensor                     # (P, 3, 64, 64) in [0, 1]
    true: list[str]                          # (P,) each scene's reading-order caption
    wrong: dict[str, list[str | None]]       # probe -> (P,) the wrong caption, None where it does not apply


def probe_set(world, n: int = 300, split: str = "test") -> ProbeSet:
    """The first n scenes of ``split`` (use a world of 1-2 shapes) with their probes, each checked false."""
    scenes = [world.scene(split, i) for i in range(n)]
    wrong = {name: [make(scene) for scene in scenes] for name, make in WRONG.items()}
    for name, texts in wrong.items():
        for scene, text in zip(scenes, texts):
            if text is not None and ((parsed := parse_caption(text)) is None or is_true(parsed, scene)):
                raise AssertionError(f"{name} made {text!r}, which is not a false sentence of {scene}")
    return ProbeSet(scenes, world.render(scenes), [caption(s) for s in scenes], wrong)


@dataclass
class Candidates:
    texts: list[list[str]]            # per image: its true caption first, then the rest
    slot: list[dict[str, int]]        # per image: where each of its wrong captions stands


def candidates(probes: ProbeSet, distractors: int, seed: int = 0) -> Candidates:
    """Per image: its true caption, its wrong ones, then other images' captions false of it."""
    rng = np.random.default_rng(seed)
    lists, slots = [], []
    for i, scene in enumerate(probes.scenes):
        texts, slot = [probes.true[i]], {}
        for name, wrong in probes.wrong.items():
            if wrong[i] is not None:
                slot[name] = len(texts)
                texts.append(wrong[i])
        wanted = len(texts) + distractors
        for j in rng.permutation(len(probes.scenes)):
            if len(texts) == wanted:
                break
            other = probes.true[j]
            if other not in texts and not is_true(parse_caption(other), scene):
                texts.append(other)
        lists.append(texts)
        slots.append(slot)
    return Candidates(lists, slots)


def candidate_scores(score_pairs, images: torch.Tensor, pool: Candidates) -> list[torch.Tensor]:
    """Each image's candidates scored by score_pairs: a list of (C_i,) score vectors."""
    lists = pool.texts
    flat_images = torch.cat([images[i].expand(len(texts), -1, -1, -1) for i, texts in enumerate(lists)])
    scores = score_pairs(flat_images, [t for texts in lists for t in texts])
    return list(torch.split(scores, [len(texts) for texts in lists]))


def ranked(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each image's candidates, best first (ties keep the candidates' order, true caption first)."""
    return [score.argsort(descending=True, stable=True) for score in scores]


def reranked(first: list[torch.Tensor], second: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Orders (best first) where the top k by ``first`` are re-ordered by ``second``."""
    orders = []
    for a, b in zip(first, second):
        order = a.argsort(descending=True, stable=True)
        top = order[:k][b[order[:k]].argsort(descending=True, stable=True)]
        orders.append(torch.cat([top, order[k:]]))
    return orders


def order_table(orders: list[torch.Tensor], pool: Candidates) -> dict[str, float]:
    """From each image's order of its candidates: R@1, and per probe the share of images
    whose true caption comes before that wrong one."""
    table = {"R@1": sum(int(order[0] == 0) for order in orders) / len(orders)}
    for name in WRONG:
        won = [(order == 0).nonzero().item() < (order == slot[name]).nonzero().item()
               for order, slot in zip(orders, pool.slot) if name in slot]
        table[name] = sum(won) / len(won)
    return table


def clip_pair_scores(clip, tokenize, batch_size: int = 512):
    """score_pairs for the course CLIP: cosine similarity of image i and text i."""
    device = next(clip.parameters()).device

    @torch.no_grad()
    def score(images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            image = F.normalize(clip.encode_image(normalize(images[start:start + batch_size]).to(device)).float(), dim=-1)
            text = F.normalize(clip.encode_text(tokenize(texts[start:start + batch_size]).to(device)).float(), dim=-1)
            out.append((image * text).sum(dim=-1).cpu())
        return torch.cat(out)
    return score


def itm_pair_scores(blip, vocab, image_size: int):
    """score_pairs for the course BLIP's matching head: P(match) of image i with text i."""
    def score(images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        return match_probability(blip, vocab, resized_pixels(images, image_size), texts)
    return score


def itc_pair_scores(blip, vocab, image_size: int):
    """score_pairs for the course BLIP's contrastive embeddings: cosine of image i and text i."""
    @torch.no_grad()
    def score(images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        device = next(blip.parameters()).device
        image = blip.image_embedding(blip.image_features(resized_pixels(images, image_size).to(device)))
        text = blip.text_embedding(*encode_captions(vocab, texts, device))
        return (image * text).sum(dim=-1).float().cpu()
    return score
