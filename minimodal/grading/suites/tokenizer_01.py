"""Graded checks for exercises/01_tokenizer.ipynb: the pieces of a byte-level BPE and CLIP's text front end.

Each check first tries a few small cases that catch the classic mistakes (and says which
mistake it looks like), then random inputs drawn from ``seed``, always against minimodal's
own implementation.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping

from minimodal.bpe import BPE, apply_merges, merge_pair, pair_counts
from minimodal.grading.checks import Check, in_learner
from minimodal.tokenizer import clean_text, pre_split

NOTEBOOK = "01_tokenizer"
RANDOM_CASES = 25


def _expect_same(fn, args: tuple, expected, hint: str = "") -> None:
    """Call the learner's fn on a copy of args and compare with the expected value."""
    call = f"{fn.__name__}({', '.join(repr(a) for a in args)})"
    actual = fn(*copy.deepcopy(args))
    if isinstance(expected, dict) and isinstance(actual, Mapping):
        actual = dict(actual)  # a Counter is a fine answer
    if isinstance(expected, list) and isinstance(actual, tuple):
        actual = list(actual)
    if actual != expected:
        raise AssertionError(f"{call} returned {actual!r}, expected {expected!r}"
                             + (f". {hint}" if hint else ""))


def _random_ids(rng: random.Random, alphabet: int = 4, max_length: int = 16) -> list[int]:
    # few distinct values, so pairs repeat and overlap
    return [rng.randrange(alphabet) for _ in range(rng.randint(0, max_length))]


def _check_pair_counts(fn, seed: int) -> None:
    _expect_same(fn, ([],), {}, "An empty list has no pairs")
    _expect_same(fn, ([5],), {}, "A single id has no pairs")
    _expect_same(fn, ([1, 1, 1],), {(1, 1): 2}, "Overlapping pairs count separately: [1, 1, 1] "
                 "holds (1, 1) at positions 0 and 1")
    _expect_same(fn, ([1, 2, 3],), {(1, 2): 1, (2, 3): 1}, "Is the last pair counted?")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        ids = _random_ids(rng)
        _expect_same(fn, (ids,), dict(pair_counts(ids)))


def _input_after_merge(fn, ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """In the learner's process: the input list as the learner's merge_pair left it."""
    fn(ids, pair, new_id)
    return ids


def _check_merge_pair(fn, seed: int) -> None:
    _expect_same(fn, ([7, 7, 7], (7, 7), 256), [256, 7],
                 "Scan left to right and skip both ids of a match: the overlap goes to the left")
    _expect_same(fn, ([1, 2, 3, 1, 2], (1, 2), 99), [99, 3, 99], "Every occurrence is replaced, "
                 "including one at the very end")
    _expect_same(fn, ([2, 1], (1, 2), 99), [2, 1], "Order matters: (1, 2) is not (2, 1)")
    _expect_same(fn, ([], (1, 2), 99), [])
    ids = in_learner(fn, _input_after_merge, [1, 2, 1, 2], (1, 2), 99)
    if ids != [1, 2, 1, 2]:
        raise AssertionError(f"merge_pair changed its input list to {ids}; return a new list instead")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        ids, pair = _random_ids(rng), (rng.randrange(4), rng.randrange(4))
        _expect_same(fn, (ids, pair, 256), merge_pair(ids, pair, 256))


def _random_text(rng: random.Random, letters: str = "abcd ", length: int = 60) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(0, length)))


def _check_apply_merges(fn, seed: int) -> None:
    a, b, c = b"abc"
    _expect_same(fn, ([a, b, c], {(b, c): 256, (a, b): 257}), [a, 256],
                 "Merge the pair learned first (smallest new id) even when another pair comes first "
                 "in the text")
    _expect_same(fn, ([a, b, a, b], {(a, b): 256, (256, 256): 257}), [257],
                 "Keep merging: new ids can pair up again")
    _expect_same(fn, ([], {(a, b): 256}), [])
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        merges = BPE.train(_random_text(rng, length=300), vocab_size=256 + rng.randint(5, 30)).merges
        ids = list(_random_text(rng).encode("utf-8"))
        _expect_same(fn, (ids, merges), apply_merges(ids, merges))


TEXT_PIECES = ["a", "Photo", "OF", "dogs", "it's", "WE'LL", "don't", "1999", "3.14", "!!", "?", "...",
               "café", "naïve", "Ångström", "猫", "🐶", "&amp;", "&amp;amp;", "&lt;b&gt;", "&#39;",
               "&quot;", "<i>", "cafÃ©", "donâ€™t", "“quoted”", "ﬁne", "Ｗｉｄｅ"]
GAPS = [" ", " ", " ", "  ", "\t", "\n", " \n\t ", "\u3000", "\u00a0", ""]


def _random_raw_text(rng: random.Random) -> str:
    pieces = [rng.choice(TEXT_PIECES) for _ in range(rng.randint(0, 8))]
    return rng.choice(GAPS) + "".join(piece + rng.choice(GAPS) for piece in pieces)


def _check_clean_text(fn, seed: int) -> None:
    _expect_same(fn, ("  A\tPhoto \n\n OF  a CAT ",), "a photo of a cat",
                 "Fold every run of whitespace into one space, strip the ends, lowercase")
    _expect_same(fn, ("<b>R&amp;amp;D</b>",), "<b>r&d</b>",
                 "CLIP undoes HTML escaping twice: &amp;amp; -> &amp; -> & (ftfy leaves text with '<' alone)")
    _expect_same(fn, ("cafÃ© donâ€™t",), "café don't", "Repair broken unicode with ftfy.fix_text first")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        text = _random_raw_text(rng)
        _expect_same(fn, (text,), clean_text(text))


def _check_pre_split(fn, seed: int) -> None:
    _expect_same(fn, ("1999",), ["1", "9", "9", "9"], "CLIP splits numbers into single digits: [\\p{N}]")
    _expect_same(fn, ("it's",), ["it", "'s"], "Contractions 's 't 're 've 'm 'll 'd are words of their own")
    _expect_same(fn, ("hi!! ok",), ["hi", "!!", "ok"], "A run of symbols is one word; spaces are dropped")
    _expect_same(fn, ("naïve 猫🐶",), ["naïve", "猫", "🐶"], "Letters are \\p{L}, any script, not just a-z")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        text = clean_text(_random_raw_text(rng))
        _expect_same(fn, (text,), pre_split(text))


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "pair_counts": (pair_counts,),
    "merge_pair": (merge_pair,),
    "apply_merges": (apply_merges, BPE.encode),
    "clean_text": (clean_text,),
    "pre_split": (pre_split,),
}


CHECKS = [
    Check("counts every adjacent pair, overlaps included", "pair_counts", 2, _check_pair_counts,
          references=OWN["pair_counts"]),
    Check("replaces every occurrence, leftmost first", "merge_pair", 2, _check_merge_pair,
          references=OWN["merge_pair"]),
    Check("replays merges in the order they were learned", "apply_merges", 3, _check_apply_merges,
          references=OWN["apply_merges"]),
    Check("cleans text as CLIP does", "clean_text", 2, _check_clean_text, references=OWN["clean_text"]),
    Check("splits cleaned text as CLIP's regex does", "pre_split", 2, _check_pre_split,
          references=OWN["pre_split"]),
]
