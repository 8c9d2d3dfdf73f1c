"""Graded checks for exercises/09_captioning.ipynb: BLEU from its parts, and beam search.

BLEU's checks compare with ``minimodal.bleu`` (itself equal to sacrebleu and nltk) on
small cases that name the classic mistakes, then on random corpora. Beam search is run on
small random language models (``minimodal.decoding.RandomDecoder``) and compared with
``minimodal.decoding.beam_search``, whose answers equal an exhaustive search over every
caption; each check isolates one part of the algorithm.
"""

from __future__ import annotations

import copy
import math
import random

import torch

from minimodal.bleu import brevity_penalty, clipped_matches, closest_length, corpus_bleu, ngram_counts
from minimodal.decoding import RandomDecoder, beam_search, greedy_decode
from minimodal.grading.checks import Check

NOTEBOOK = "09_captioning"
RANDOM_CASES = 20
WORDS = ("a", "red", "blue", "circle", "square", "and", "two")
BOS, EOS, VOCAB = 0, 1, 5   # the random decoders' <bos>, <eos> and vocabulary size


# --- calling the learner's function ------------------------------------------------------

def _call(fn, *args):
    """fn(*args) on copies, so a function that changes its inputs cannot spoil the next case."""
    return fn(*copy.deepcopy(args))


def _describe(fn, args) -> str:
    return f"{fn.__name__}({', '.join(repr(a) for a in args)})"


def _expect_value(fn, args: tuple, expected, hint: str = "", tolerance: float | None = None) -> None:
    actual = _call(fn, *args)
    if tolerance is None:
        same = actual == expected
    else:
        same = _as_float(actual) is not None and math.isclose(_as_float(actual), expected, rel_tol=0,
                                                              abs_tol=tolerance)
    if not same:
        raise AssertionError(f"{_describe(fn, args)} returned {actual!r}, expected {expected!r}"
                             + (f". {hint}" if hint else ""))


def _as_float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _sentence(rng: random.Random, shortest: int = 1, longest: int = 9) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(shortest, longest))]


def _corpus(rng: random.Random, size: int = 8) -> tuple[list, list]:
    hypotheses = [_sentence(rng) for _ in range(size)]
    references = [[h[rng.randint(0, 2):] + _sentence(rng, 0, 3) for _ in range(rng.randint(1, 3))]
                  for h in hypotheses]
    return hypotheses, references


# --- BLEU ---------------------------------------------------------------------------------

def _check_ngram_counts(fn, seed: int) -> None:
    def expect(tokens, n, hint=""):
        actual = _call(fn, tokens, n)
        if not hasattr(actual, "items") or dict(actual) != dict(ngram_counts(tokens, n)):
            raise AssertionError(f"{_describe(fn, (tokens, n))} returned {actual!r}, expected "
                                 f"{dict(ngram_counts(tokens, n))!r}" + (f". {hint}" if hint else ""))
    expect(["a", "a", "a"], 2, "Runs overlap: ('a', 'a') starts at position 0 and at position 1")
    expect(["red", "circle"], 2, "Is the last n-gram counted? Keys are tuples of n words")
    expect(["a", "red"], 3, "A sentence shorter than n has no n-grams")
    expect(["a", "red", "a"], 1, "With n = 1 the keys are 1-tuples such as ('a',)")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        expect(_sentence(rng, 0), rng.randint(1, 4))


def _check_clipped_matches(fn, seed: int) -> None:
    _expect_value(fn, ("the the the the".split(), ["the cat".split(), "the the dog".split()], 1), (2, 4),
                  "Clip each n-gram's count at the most it occurs in any one reference: 'the' is in "
                  "a reference at most twice, so at most 2 of the 4 'the's match")
    _expect_value(fn, ("a a a".split(), [["a", "b"], ["a", "c"]], 1), (1, 3),
                  "Take the largest count over the references, not their sum")
    _expect_value(fn, (["a", "red"], [["a", "red", "circle"]], 3), (0, 0),
                  "A hypothesis shorter than n has no n-grams: (0, 0)")
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        hypotheses, references = _corpus(rng, size=1)
        n = rng.randint(1, 4)
        _expect_value(fn, (hypotheses[0], references[0], n), clipped_matches(hypotheses[0], references[0], n))


def _check_brevity_penalty(fn, seed: int) -> None:
    _expect_value(fn, (10, 8), 1.0, "Longer than the references is not penalized: 1.0", tolerance=1e-12)
    _expect_value(fn, (8, 8), 1.0, tolerance=1e-12)
    _expect_value(fn, (5, 10), math.exp(-1), "Shorter: exp(1 - r / c)", tolerance=1e-12)
    _expect_value(fn, (0, 3), 0.0, "Nothing said at all: the penalty is 0", tolerance=1e-12)
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        c, r = rng.randint(1, 60), rng.randint(1, 60)
        _expect_value(fn, (c, r), brevity_penalty(c, r), tolerance=1e-12)


def _check_corpus_bleu(fn, seed: int) -> None:
    short = ([["a", "red", "circle", "and", "two"]], [[["a", "red", "circle", "and", "two", "blue", "squares"]]])
    _expect_value(fn, (*short, 4), corpus_bleu(*short, 4), "Every n-gram matches, but the hypothesis is "
                  "short: multiply by the brevity penalty", tolerance=1e-9)
    two = ([["a", "red", "circle"], ["two", "blue", "squares", "and", "a", "circle"]],
           [[["a", "red", "circle"]], [["two", "red", "squares", "and", "a", "blue", "circle"]]])
    _expect_value(fn, (*two, 2), corpus_bleu(*two, 2), "Sum the matches and counts over the whole corpus "
                  "before dividing: corpus BLEU is not the mean of sentence BLEUs", tolerance=1e-9)
    closest = ([["a", "red", "circle", "a"]], [[["a", "red"], ["a", "red", "circle", "a", "blue", "square"]]])
    _expect_value(fn, (*closest, 1), corpus_bleu(*closest, 1), "The reference length is that of the "
                  "reference closest in length to the hypothesis (the shorter one on a tie)", tolerance=1e-9)
    _expect_value(fn, ([["a", "b"]], [[["b", "a"]]], 2), 0.0, "When some p_n is 0, BLEU is 0", tolerance=1e-12)
    rng = random.Random(seed)
    for _ in range(RANDOM_CASES):
        hypotheses, references = _corpus(rng)
        max_n = rng.randint(1, 4)
        _expect_value(fn, (hypotheses, references, max_n), corpus_bleu(hypotheses, references, max_n),
                      tolerance=1e-9)


# --- beam search ---------------------------------------------------------------------------

def _memory(seed: int) -> torch.Tensor:
    return 2 * torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(seed))


def _expect_caption(fn, decoder, seed: int, hint: str = "", **settings) -> None:
    """The learner's beam search on a random decoder, against minimodal's."""
    settings = {"bos": BOS, "eos": EOS, **settings}
    expected = beam_search(decoder, _memory(seed), **settings)
    actual = fn(decoder, _memory(seed), **settings)
    if isinstance(actual, torch.Tensor):
        actual = actual.tolist()
    if actual is None or list(actual) != expected:
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        raise AssertionError(f"beam_search(decoder {seed}, {shown}) returned {actual!r}, expected "
                             f"{expected!r}" + (f". {hint}" if hint else ""))


def _check_beam_width_one(fn, seed: int) -> None:
    for case in range(RANDOM_CASES // 2):
        decoder = RandomDecoder(VOCAB, sharpness=2.0, seed=seed * 100 + case)
        greedy = greedy_decode(decoder, _memory(case), bos=BOS, eos=EOS, max_length=6)[0]
        actual = fn(decoder, _memory(case), bos=BOS, eos=EOS, beam_width=1, max_length=6, alpha=1.0)
        if actual is None or list(actual) != greedy:
            raise AssertionError(f"with beam_width=1 beam search should be greedy decoding, which gives "
                                 f"{greedy}; got {actual!r}")


def _check_exhaustive(fn, seed: int) -> None:
    hint = ("A beam of width 200 holds every caption of up to 3 words, so the answer is the most "
            "likely caption of all: does a caption that produced <eos> stay finished, unchanged?")
    for case in range(RANDOM_CASES):
        decoder = RandomDecoder(VOCAB, sharpness=1.0, seed=seed * 100 + case)
        _expect_caption(fn, decoder, case, hint, beam_width=200, max_length=3, alpha=0.0)


def _check_length_normalization(fn, seed: int) -> None:
    hint = ("Rank the finished captions by (sum of log-probabilities) / length ** alpha, the length "
            "counting the <eos> token")
    for case in range(RANDOM_CASES):
        decoder = RandomDecoder(VOCAB, sharpness=1.0, seed=seed * 100 + case)
        for alpha in (1.0, 0.6):
            _expect_caption(fn, decoder, case, hint, beam_width=200, max_length=3, alpha=alpha)
            _expect_caption(fn, decoder, case, hint, beam_width=3, max_length=6, alpha=alpha)


def _check_narrow_beams(fn, seed: int) -> None:
    hint = ("Keep the beam_width best (prefix, word) pairs by total log-probability; a pair whose word "
            "is <eos> is finished: set it aside, do not extend it, and keep one beam fewer")
    for case in range(RANDOM_CASES):
        decoder = RandomDecoder(VOCAB, sharpness=1.5, seed=seed * 100 + case)
        _expect_caption(fn, decoder, case, hint, beam_width=2 + case % 3, max_length=6, alpha=0.0)


class _NeverEnds(RandomDecoder):
    """A random decoder that never says <eos>: only the length limit stops it."""

    def step(self, tokens, state):
        logits, state = super().step(tokens, state)
        return logits.index_fill(1, torch.tensor([EOS]), float("-inf")), state


def _check_max_length(fn, seed: int) -> None:
    hint = "Stop after max_length words; the live beams are then finished as they are, without <eos>"
    for max_length in (1, 2, 5):
        for alpha in (0.0, 1.0):
            _expect_caption(fn, _NeverEnds(VOCAB, seed=seed), seed, hint, beam_width=3, max_length=max_length,
                            alpha=alpha)


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "ngram_counts": (ngram_counts,),
    "clipped_matches": (clipped_matches, ngram_counts),
    "brevity_penalty": (brevity_penalty,),
    "corpus_bleu": (corpus_bleu, clipped_matches, brevity_penalty, closest_length),
    "beam_search": (beam_search, greedy_decode),
}


CHECKS = [
    Check("n-gram counts", "ngram_counts", 2, _check_ngram_counts, timeout=5, references=OWN["ngram_counts"]),
    Check("clipped n-gram matches", "clipped_matches", 3, _check_clipped_matches,
          timeout=5, references=OWN["clipped_matches"]),
    Check("brevity penalty", "brevity_penalty", 2, _check_brevity_penalty,
          timeout=5, references=OWN["brevity_penalty"]),
    Check("corpus BLEU equals the reference", "corpus_bleu", 3, _check_corpus_bleu,
          timeout=10, references=OWN["corpus_bleu"]),
    Check("beam width 1 is greedy decoding", "beam_search", 2, _check_beam_width_one,
          timeout=20, references=OWN["beam_search"]),
    Check("a beam that holds every caption finds the best one", "beam_search", 2, _check_exhaustive,
          timeout=30, references=OWN["beam_search"]),
    Check("length normalization", "beam_search", 2, _check_length_normalization,
          timeout=30, references=OWN["beam_search"]),
    Check("narrow beams equal the reference", "beam_search", 2, _check_narrow_beams,
          timeout=20, references=OWN["beam_search"]),
    Check("the length limit", "beam_search", 2, _check_max_length, timeout=20, references=OWN["beam_search"]),
]
