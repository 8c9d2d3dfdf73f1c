"""Greedy decoding and beam search, checked against searches written the slow, obvious way.

On a tiny vocabulary every caption up to a few words can be listed and scored one by one
with the decoder itself: a beam wide enough to hold them all must return the best of them,
for any length normalization; with width 1 it must return what greedy returns.
"""

import functools
import itertools

import pytest
import torch

from minimodal.decoding import RandomDecoder, beam_search, greedy_decode

BOS, EOS = 0, 1
VOCAB = 5   # <bos>, <eos> and three words: 4 ** 4 = 256 captions of 4 words
WIDTH = 8


def memory(seed: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, WIDTH, generator=torch.Generator().manual_seed(1000 + seed))


def sequence_log_prob(decoder, mem: torch.Tensor, tokens: list[int]) -> float:
    """log P(tokens | image), feeding <bos> and then the tokens one at a time."""
    state, previous, total = decoder.start(mem), BOS, 0.0
    for token in tokens:
        logits, state = decoder.step(torch.tensor([previous]), state)
        total += logits.double().log_softmax(dim=-1)[0, token].item()
        previous = token
    return total


@functools.lru_cache(maxsize=None)
def every_caption(seed: int, max_length: int) -> list[tuple[list[int], float, int]]:
    """(caption, log-probability, length) of every caption of the seed's RandomDecoder: n < max_length
    words then <eos> (length n + 1), or max_length words with no <eos> (cut by the length limit)."""
    decoder, mem = RandomDecoder(VOCAB, WIDTH, sharpness=1.0, seed=seed), memory(seed)
    words = [w for w in range(VOCAB) if w != EOS]
    scored = []
    for n in range(max_length + 1):
        for caption in itertools.product(words, repeat=n):
            tokens = list(caption) + [EOS] * (n < max_length)
            scored.append((list(caption), sequence_log_prob(decoder, mem, tokens), len(tokens)))
    return scored


def brute_force(seed: int, max_length: int, alpha: float) -> list[int]:
    """The caption with the best log-probability / length ** alpha, found by scoring them all."""
    return max(every_caption(seed, max_length), key=lambda item: item[1] / item[2] ** alpha)[0]


def greedy_by_hand(decoder, mem: torch.Tensor, max_length: int) -> list[int]:
    """Argmax of the full sequence's next-word distribution, recomputed from scratch each step."""
    tokens = []
    while len(tokens) < max_length:
        state, previous = decoder.start(mem), BOS
        for token in tokens:
            _, state = decoder.step(torch.tensor([previous]), state)
            previous = token
        logits, _ = decoder.step(torch.tensor([previous]), state)
        word = int(logits.argmax())
        if word == EOS:
            break
        tokens.append(word)
    return tokens


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("max_length", [1, 2, 4])
def test_a_beam_that_holds_every_caption_finds_the_best(alpha, max_length):
    for seed in range(4):
        decoder, mem = RandomDecoder(VOCAB, WIDTH, sharpness=1.0, seed=seed), memory(seed)
        found = beam_search(decoder, mem, bos=BOS, eos=EOS, beam_width=1000, max_length=max_length, alpha=alpha)
        assert found == brute_force(seed, max_length, alpha), f"seed {seed}"


def test_length_normalization_changes_which_caption_wins():
    """Else the test above could not tell a normalizing search from one that is not."""
    changed = 0
    for seed in range(8):
        decoder, mem = RandomDecoder(VOCAB, WIDTH, sharpness=1.0, seed=seed), memory(seed)
        raw, normalized = (beam_search(decoder, mem, bos=BOS, eos=EOS, beam_width=1000, max_length=4, alpha=a)
                           for a in (0.0, 1.0))
        changed += raw != normalized
        assert len(raw) <= len(normalized), "dividing by the length can only favour longer captions"
    assert changed >= 2


@pytest.mark.parametrize("sharpness", [0.5, 2.0, 6.0])
def test_beam_width_one_is_greedy(sharpness):
    for seed in range(6):
        decoder, mem = RandomDecoder(VOCAB, WIDTH, sharpness, seed=seed), memory(seed)
        greedy = greedy_by_hand(decoder, mem, max_length=8)
        assert greedy_decode(decoder, mem, bos=BOS, eos=EOS, max_length=8) == [greedy]
        for alpha in (0.0, 1.0):
            assert beam_search(decoder, mem, bos=BOS, eos=EOS, beam_width=1, max_length=8, alpha=alpha) == greedy


def test_greedy_decodes_a_batch_as_each_image_alone():
    decoder, mem = RandomDecoder(VOCAB, WIDTH, seed=4), 3 * memory(0, batch=12)
    batch = greedy_decode(decoder, mem, bos=BOS, eos=EOS, max_length=6)
    assert batch == [greedy_by_hand(decoder, mem[i:i + 1], max_length=6) for i in range(12)]
    assert len({len(c) for c in batch}) > 1, "captions of different lengths exercise the <eos> handling"


def test_a_wider_beam_never_finds_a_worse_caption_than_greedy_here():
    """Not a theorem for narrow beams, but it holds for a beam that holds every caption."""
    for seed in range(4):
        decoder, mem = RandomDecoder(VOCAB, WIDTH, sharpness=1.0, seed=seed), memory(seed)
        greedy = greedy_by_hand(decoder, mem, max_length=4)
        best = beam_search(decoder, mem, bos=BOS, eos=EOS, beam_width=1000, max_length=4, alpha=0.0)
        ended = [EOS] * (len(greedy) < 4)
        assert sequence_log_prob(decoder, mem, best + [EOS] * (len(best) < 4)) >= \
            sequence_log_prob(decoder, mem, greedy + ended) - 1e-9


class Scripted:
    """A decoder that always prefers one word, with the given log-probability for <eos>."""

    def __init__(self, word: int, eos_logit: float):
        self.logits = torch.full((VOCAB,), -5.0)
        self.logits[word], self.logits[EOS] = 0.0, eos_logit

    def start(self, memory):
        return {"steps": torch.zeros(len(memory))}

    def step(self, tokens, state):
        return self.logits.expand(len(tokens), -1), {"steps": state["steps"] + 1}


def test_an_immediate_end_of_text_gives_an_empty_caption():
    decoder = Scripted(word=2, eos_logit=10.0)
    assert greedy_decode(decoder, memory(0), bos=BOS, eos=EOS, max_length=5) == [[]]
    assert beam_search(decoder, memory(0), bos=BOS, eos=EOS, beam_width=3, max_length=5) == []


def test_a_caption_that_never_ends_is_cut_at_max_length():
    decoder = Scripted(word=3, eos_logit=float("-inf"))
    assert greedy_decode(decoder, memory(0), bos=BOS, eos=EOS, max_length=5) == [[3] * 5]
    assert beam_search(decoder, memory(0), bos=BOS, eos=EOS, beam_width=3, max_length=5) == [3] * 5


def test_a_beam_wider_than_the_vocabulary_is_fine():
    decoder, mem = RandomDecoder(VOCAB, WIDTH, sharpness=1.0, seed=1), memory(1)
    assert beam_search(decoder, mem, bos=BOS, eos=EOS, beam_width=50, max_length=3) == brute_force(1, 3, 1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_length": 0}, "max_length must be at least 1"),
    ({"beam_width": 0}, "beam_width must be at least 1"),
])
def test_bad_search_settings_are_rejected(kwargs, message):
    decoder = RandomDecoder(VOCAB, WIDTH)
    settings = {"bos": BOS, "eos": EOS, "beam_width": 2, "max_length": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        beam_search(decoder, memory(0), **settings)
    if "beam_width" not in kwargs:
        with pytest.raises(ValueError, match=message):
            greedy_decode(decoder, memory(0), bos=BOS, eos=EOS, max_length=kwargs["max_length"])


def test_beam_search_takes_one_image():
    with pytest.raises(ValueError, match=r"one image at a time; memory should be \(1, N, D\)"):
        beam_search(RandomDecoder(VOCAB, WIDTH), memory(0, batch=2), bos=BOS, eos=EOS, beam_width=2, max_length=3)
