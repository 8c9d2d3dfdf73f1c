"""The shapes world in words: a scene's facts, captions in several phrasings, and a parser.

A language model trained here must later read images it has never seen (lessons 12 and
13), through a prefix that stands for the image. It learns to read a prefix first from
text: each training document may begin with the scene's facts written out ("scene: red
circle top left, blue square bottom right.") and continue with a caption or a chat
about the scene that follows from those facts. Lesson 12 replaces the facts with image
features; a model that never learned to condition on a prefix would ignore them.

Captions come in several phrasings of one grammar, and ``parse_caption`` reads any of
them back into facts, so a sampled caption can be judged: is it a sentence of this
world at all, and is it true of the scene it was given?
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from minimodal.data.shapes import COLORS, NUMBER_WORDS, SHAPES, _a, _groups, _noun_phrase, caption, relation

ROWS, COLUMNS = ("top", "middle", "bottom"), ("left", "center", "right")
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def place(shape) -> str:
    """'top left', 'middle center', ...: the grid cell a shape sits in."""
    return f"{ROWS[shape.row]} {COLUMNS[shape.col]}"


def facts(scene) -> str:
    """'red circle top left, blue square bottom right': every shape in reading order."""
    return ", ".join(f"{s.color} {s.shape} {place(s)}" for s in sorted(scene, key=lambda s: (s.row, s.col)))


def _listed(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def phrasings(scene) -> list[str]:
    """Every way the grammar can caption this scene; the first is lesson 06's caption."""
    groups = _groups(scene)
    phrases = [_noun_phrase(color, shape, len(members)) for (color, shape), members in groups.items()]
    first = sum(len(m) for m in groups.values()) == 1 or len(groups[next(iter(groups))]) == 1
    options = [caption(scene), f"there {'is' if first else 'are'} {_listed(phrases)}"]
    if len(groups) == 2:
        (a, b) = groups.values()
        rel = relation(a, b)
        if rel is not None:
            options.append(f"{phrases[1]} {INVERSE[rel]} {phrases[0]}")
    return list(dict.fromkeys(options))


@dataclass(frozen=True)
class Parsed:
    """What a caption claims: how many of each (colour, shape), and a relation if it states one."""

    counts: tuple[tuple[str, str, int], ...]          # sorted (colour, shape, count)
    relation: tuple[str, str, str, str, str] | None    # (colour, shape, relation, colour, shape)


_NUMBERS = {word: n for n, word in enumerate(NUMBER_WORDS) if n >= 1}
_NP = re.compile(rf"(?:(a|an|{'|'.join(w for w in _NUMBERS if w != 'one')}) )"
                 rf"({'|'.join(COLORS)}) ({'|'.join(SHAPES)})(s?)")
_RELATION = re.compile(r"(.+?) (left of|right of|above|below) (.+)")


def _noun(text: str) -> tuple[str, str, int] | None:
    match = _NP.fullmatch(text)
    if match is None:
        return None
    article, color, shape, plural = match.groups()
    count = 1 if article in ("a", "an") else _NUMBERS[article]
    if (count > 1) != bool(plural) or (count == 1 and article != _a(color).split()[0]):
        return None
    return color, shape, count


def _noun_list(text: str) -> list[tuple[str, str, int]] | None:
    parts = text.split(" and ")
    if len(parts) != 2:
        return None if len(parts) > 2 else ([n] if (n := _noun(text)) else None)
    nouns = [_noun(p) for p in parts[0].split(", ") + [parts[1]]]
    return None if None in nouns else nouns


def parse_caption(text: str) -> Parsed | None:
    """The facts a caption states, or None when it is not a sentence of the shapes world."""
    text = text.strip()
    body = re.sub(r"^there (is|are) ", "", text)
    if body == text and (match := _RELATION.fullmatch(text)):
        left, right = _noun(match.group(1)), _noun(match.group(3))
        if left is None or right is None or left[:2] == right[:2]:
            return None
        return Parsed(tuple(sorted([left, right])), (*left[:2], match.group(2), *right[:2]))
    nouns = _noun_list(body)
    if nouns is None or len({n[:2] for n in nouns}) != len(nouns):
        return None
    return Parsed(tuple(sorted(nouns)), None)


def is_true(parsed: Parsed, scene) -> bool:
    """Whether the caption's facts are those of the scene: the same shapes and a relation that holds."""
    present = Counter((s.color, s.shape) for s in scene)
    if sorted((c, s, n) for (c, s), n in present.items()) != list(parsed.counts):
        return False
    if parsed.relation is None:
        return True
    color_a, shape_a, rel, color_b, shape_b = parsed.relation
    groups = _groups(scene)
    return relation(groups[(color_a, shape_a)], groups[(color_b, shape_b)]) == rel


def scene_document(scene, rng: np.random.Generator, with_facts: bool) -> str:
    """One training text: maybe the facts, then one phrasing of the caption."""
    options = phrasings(scene)
    text = options[int(rng.integers(len(options)))]
    return f"scene: {facts(scene)}. caption: {text}" if with_facts else f"caption: {text}"
