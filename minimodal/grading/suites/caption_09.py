"""Graded checks for exercises/09_captioning.ipynb: BLEU from its parts, beam search, the teacher-forcing
loss, and greedy decoding with a KV cache.

BLEU's checks compare with ``minimodal.bleu`` (itself equal to sacrebleu and nltk) on
small cases that name the classic mistakes, then on random corpora. Beam search is run on
small random language models (``minimodal.decoding.RandomDecoder``) and compared with
``minimodal.decoding.beam_search``, whose answers equal an exhaustive search over every
caption; each check isolates one part of the algorithm. The loss is compared with
``minimodal.caption.caption_loss`` on random logits and padded captions; greedy decoding
with the cache with ``minimodal.decoding.greedy_decode`` on Transformer caption decoders
whose weights are drawn from the seed, token for token, and the cache it grew is measured.

Longer than 300 lines because the notebook grades two algorithms of evaluation and two of
training and generation, each with the mistakes it names; a suite is one module per notebook.
"""

from __future__ import annotations

import copy
import itertools
import math
import random

import torch
import torch.nn.functional as F

from minimodal.bleu import brevity_penalty, clipped_matches, closest_length, corpus_bleu, ngram_counts
from minimodal.caption import caption_loss
from minimodal.decoder import TransformerDecoder, TransformerDecoderConfig
from minimodal.decoding import RandomDecoder, beam_search, greedy_decode
from minimodal.grading.checks import Check, expect_like, in_learner
from minimodal.kv_cache import LayerCache

NOTEBOOK = "09_captioning"
RANDOM_CASES = 20
WORDS = ("a", "red", "blue", "circle", "square", "and", "two")
BOS, EOS, VOCAB = 0, 1, 5   # the random decoders' <bos>, <eos> and vocabulary size


# --- calling the learner's function ------------------------------------------------------

def _call(fn, *args):
    """fn(*args) on copies, so a function that changes its inputs cannot spoil the next case."""
    return fn(*copy.deepcopy(args))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
    return 2 * torch.randn(1, 3, 8, generator=_gen(seed))


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


# --- the teacher-forcing loss --------------------------------------------------------------

def _loss_inputs(g: torch.Generator, lengths: list[int], vocab: int, pad: int):
    """Random next-word logits (B, T, V) and captions (B, T), row b real for lengths[b] tokens, then pad."""
    words = torch.randint(0, vocab - 1, (len(lengths), max(lengths)), generator=g)
    words += words >= pad                                                   # every id but pad
    real = torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]      # (B, T)
    return 2 * torch.randn(*words.shape, vocab, generator=g), torch.where(real, words, pad)


def _reference_loss(logits: torch.Tensor, ids: torch.Tensor, pad: int) -> torch.Tensor:
    """minimodal's caption_loss, the logits standing in for the captioner that would give them."""
    return caption_loss(lambda _, inputs: logits[:, :inputs.shape[1]], (None, ids), pad)


def _loss_mistakes(logits: torch.Tensor, ids: torch.Tensor, pad: int) -> list[tuple[str, torch.Tensor]]:
    def mean(scores, targets, **options):
        return F.cross_entropy(scores.flatten(0, 1), targets.flatten(), **options)
    per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], ignore_index=pad,
                                reduction="none")                          # (B, T-1), 0 at padding
    real = (ids[:, 1:] != pad).sum(dim=1)                                   # (B,)
    return [("the logits at position t predict the next token, ids[:, t + 1]: score logits[:, :-1] against "
             "ids[:, 1:], not each token against itself", mean(logits, ids, ignore_index=pad)),
            ("the shift goes the other way: the logits at position t predict ids[:, t + 1], the token after",
             mean(logits[:, 1:], ids[:, :-1], ignore_index=pad)),
            ("the padding counts in the mean: leave out every target that is the pad id",
             mean(logits[:, :-1], ids[:, 1:])),
            ("this is a mean per caption, then over captions: average over the real target tokens of the "
             "whole batch, so a long caption weighs more", (per_token.sum(dim=1) / real).mean()),
            ("divide the sum by the number of real target tokens, not the number of captions",
             per_token.sum() / len(ids)),
            (f"the pad id is {pad} here: ignore the pad id the function is given, not 0",
             mean(logits[:, :-1], ids[:, 1:], ignore_index=0))]


def _expect_loss(fn, g: torch.Generator, lengths: list[int], vocab: int, pad: int) -> None:
    logits, ids = _loss_inputs(g, lengths, vocab, pad)
    expect_like(fn(logits.clone(), ids.clone(), pad), _reference_loss(logits, ids, pad),
                lambda: _loss_mistakes(logits, ids, pad), f"caption_loss of {len(ids)} captions of lengths "
                f"{lengths}, pad id {pad}, {vocab} words", 1e-5)


def _check_loss_unpadded(fn, seed: int) -> None:
    g = _gen(seed)
    for lengths, vocab, pad in [([5, 5], 7, 0), ([8, 8, 8], 11, 4), ([2], 5, 0)]:
        _expect_loss(fn, g, lengths, vocab, pad)


def _check_loss_padded(fn, seed: int) -> None:
    g = _gen(seed)
    for T, vocab, pad in [(6, 7, 0), (9, 11, 3), (5, 6, 5)]:
        lengths = [2, T] + torch.randint(2, T + 1, (3,), generator=g).tolist()
        _expect_loss(fn, g, lengths, vocab, pad)


def _loss_gradient(fn, logits: torch.Tensor, ids: torch.Tensor, pad: int):
    """In the learner's process: the gradient its loss sends back to the logits, or None if none can."""
    logits = logits.clone().requires_grad_(True)
    loss = fn(logits, ids, pad)
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        return None
    loss.sum().backward()
    return logits.grad


def _check_loss_gradient(fn, seed: int) -> None:
    """Training needs the loss's gradient; whether its value is right is the other checks' business."""
    logits, ids = _loss_inputs(_gen(seed), [4, 6, 3], 7, 0)
    grad = in_learner(fn, _loss_gradient, logits, ids, 0)
    if grad is None or not (torch.isfinite(grad).all() and grad.abs().sum() > 0):
        raise AssertionError("no gradient reached the logits through caption_loss: keep the computation in "
                             "torch (no .item(), .detach(), .data or torch.no_grad()) so training can use it")


# --- greedy decoding with the KV cache ------------------------------------------------------

CAPTION_VOCAB = 20


def _caption_decoder(seed: int) -> TransformerDecoder:
    """A small Transformer caption decoder with every weight drawn from the seed, large enough that a word at
    the wrong position, or keys cached twice, change the words greedy decoding picks."""
    g = _gen(seed)
    decoder = TransformerDecoder(TransformerDecoderConfig(vocab_size=CAPTION_VOCAB, width=16, layers=2, heads=2,
                                                          max_length=12)).eval()
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if "embedding" in name:
                p.normal_(0, 3.0, generator=g)
            elif p.dim() == 1:  # LayerNorm gains about 1, biases about 0
                p.normal_(1.0 if "ln_" in name and name.endswith("weight") else 0.0, 0.5, generator=g)
            else:
                p.normal_(0, 2 / p.shape[1] ** 0.5, generator=g)
    return decoder


def _greedy_case(seed: int, batch: int, max_length: int, ends: bool):
    """(decoder, memory, bos, eos): if ``ends``, eos is a word some caption says for the first time at step 3
    or later, so that caption ends after two words or more; else a word no caption says before max_length.
    Decoders whose captions only repeat their first two words are passed over."""
    bos = 0
    for offset in itertools.count():
        decoder = _caption_decoder(seed * 100 + offset)
        memory = torch.randn(batch, 4, 16, generator=_gen(seed * 100 + offset))
        said = greedy_decode(decoder, memory, bos=bos, eos=-1, max_length=max_length)   # no caption ends
        if not ends:
            return decoder, memory, bos, min(set(range(1, CAPTION_VOCAB)) - {w for row in said for w in row})
        late = [w for row in said for k, w in enumerate(row) if k >= 2 and w != bos and w not in row[:k]]
        if late:
            return decoder, memory, bos, late[0]


def _as_captions(value):
    """The learner's captions as lists of ints, whatever sequences held them; the value itself otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        return [[int(word) for word in caption] for caption in value]
    except (TypeError, ValueError):
        return value


def _cut(rows: list[list[int]], eos: int, keep_eos: bool = False) -> list[list[int]]:
    return [row[:row.index(eos) + keep_eos] if eos in row else row for row in rows]


@torch.no_grad()
def _written_out(decoder: TransformerDecoder, memory, bos: int, max_length: int, feed: str) -> list[list[int]]:
    """Every word greedy decoding says in max_length steps through the blocks' cached steps, fed as ``feed``
    says: "prefix" (all the words so far again, their keys cached twice) or "position 0" (each word there)."""
    state = decoder.start(memory)
    words = torch.full((len(memory), 1), bos)                                  # (B, t)
    for _ in range(max_length):
        x = decoder.embed(words) if feed == "prefix" else decoder.embed(words[:, -1:])
        for block, cache, patches in zip(decoder.blocks, state["words"].layers, state["patches"].layers):
            x = block.step(x, cache, patches)
        words = torch.cat([words, decoder.head(decoder.ln_final(x[:, -1:])).argmax(dim=-1)], dim=1)
    return words[:, 1:].tolist()


def _caption_mistakes(decoder, memory, bos: int, eos: int, max_length: int) -> list[tuple[str, list]]:
    said = greedy_decode(decoder, memory, bos=bos, eos=-1, max_length=max_length)
    want = _cut(said, eos)
    return [("leave bos out: it is fed, not said", [[bos] + caption for caption in want]),
            ("leave eos out: a caption is the words before eos", _cut(said, eos, keep_eos=True)),
            ("a caption ends at its first eos: the words after it are not part of it", said),
            ("feed each step only the new word: the cache already holds the words before it, so feeding them "
             "again caches their keys twice", _cut(_written_out(decoder, memory, bos, max_length, "prefix"), eos)),
            ("the new word sits at position len(cache), the number of words cached, not at position 0",
             _cut(_written_out(decoder, memory, bos, max_length, "position 0"), eos))]


def _expect_greedy(fn, case: tuple, max_length: int) -> None:
    decoder, memory, bos, eos = case
    expected = greedy_decode(decoder, memory, bos=bos, eos=eos, max_length=max_length)
    got = _as_captions(fn(decoder, memory.clone(), bos=bos, eos=eos, max_length=max_length))
    if got != expected:
        hint = next((h for h, wrong in _caption_mistakes(decoder, memory, bos, eos, max_length) if got == wrong), "")
        raise AssertionError(f"greedy_with_cache(bos={bos}, eos={eos}, max_length={max_length}) on {len(memory)} "
                             f"images returned {got!r}, expected {expected!r}" + (f". {hint}" if hint else ""))


def _check_greedy(fn, seed: int) -> None:
    for case, (batch, max_length, ends) in enumerate([(8, 6, True), (4, 5, False)]):
        _expect_greedy(fn, _greedy_case(seed * 10 + case, batch, max_length, ends), max_length)


def _noting(cache: LayerCache) -> list[int]:
    """The cache's extend made to note how many positions each call adds; the list of those counts."""
    added, extend = [], cache.extend

    def noted(keys, values):
        added.append(keys.shape[2])
        return extend(keys, values)
    cache.extend = noted
    return added


def _decode_noting(fn, decoder: TransformerDecoder, memory, bos: int, eos: int, max_length: int):
    """In the learner's process: for every state decoder.start made, the positions each call added to each
    layer's cache of words."""
    started = []

    def start(patches):
        state = TransformerDecoder.start(decoder, patches)
        started.append([_noting(cache) for cache in state["words"].layers])
        return state
    decoder.start = start
    fn(decoder, memory, bos=bos, eos=eos, max_length=max_length)
    return started


def _check_cache_growth(fn, seed: int) -> None:
    """Every step adds the new word's keys and values to each layer's cache, and nothing else."""
    decoder, memory, bos, eos = _greedy_case(seed, 2, 6, ends=True)     # one caption lasts three steps or more
    started = in_learner(fn, _decode_noting, decoder, memory, bos, eos, 6)
    what = "decoding 2 images for up to 6 words"
    if not started:
        raise AssertionError(f"{what}: decoder.start(memory) was never called; start from its state, whose "
                             f"'words' cache each step extends")
    for layers in started:
        most = max((n for added in layers for n in added), default=0)   # the most one call added
        if most == 0:
            raise AssertionError(f"{what}: the words' cache from decoder.start stayed empty; give each block's "
                                 f"step its own layer's cache, state['words'].layers[i], which the step extends")
        if most > 1:
            raise AssertionError(f"{what}: a step added {most} positions to a layer's cache. Feed each step only "
                                 f"the new word: the cache already holds the words before it, so feeding them "
                                 f"again caches their keys twice")
        if len({len(added) for added in layers}) > 1:
            raise AssertionError(f"{what}: the layers' caches grew by {[len(a) for a in layers]} positions; "
                                 f"each block's step takes its own layer's cache, state['words'].layers[i]")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "ngram_counts": (ngram_counts,),
    "clipped_matches": (clipped_matches, ngram_counts),
    "brevity_penalty": (brevity_penalty,),
    "corpus_bleu": (corpus_bleu, clipped_matches, brevity_penalty, closest_length),
    "beam_search": (beam_search, greedy_decode),
    "caption_loss": (caption_loss,),
    "greedy_with_cache": (greedy_decode, beam_search, TransformerDecoder.step),
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
    Check("teacher-forcing loss: each position predicts the next token", "caption_loss", 2, _check_loss_unpadded,
          timeout=5, references=OWN["caption_loss"]),
    Check("teacher-forcing loss: padding ignored, the mean over real tokens", "caption_loss", 3,
          _check_loss_padded, timeout=5, references=OWN["caption_loss"]),
    Check("the loss's gradient reaches the logits", "caption_loss", 1, _check_loss_gradient, timeout=5,
          references=OWN["caption_loss"]),
    Check("greedy decoding with the cache: greedy_decode's captions, token for token", "greedy_with_cache", 3,
          _check_greedy, timeout=30, references=OWN["greedy_with_cache"]),
    Check("the cache grows by one position per word fed", "greedy_with_cache", 2, _check_cache_growth,
          timeout=20, references=OWN["greedy_with_cache"]),
]
