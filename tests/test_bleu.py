"""BLEU from scratch equals nltk's corpus_bleu and sacrebleu on the same corpora.

The two references differ in one corner: nltk counts a hypothesis with no n-grams of some
order (shorter than n words) as one n-gram, sacrebleu as none. We follow sacrebleu, so
nltk is compared on corpora where every hypothesis has at least four words.
"""

import random

import pytest
from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu
from sacrebleu.metrics import BLEU

from minimodal.bleu import bleu_scores, brevity_penalty, clipped_matches, corpus_bleu, ngram_counts
from minimodal.vocab import caption_words
from minimodal.data.shapes import ShapesConfig, ShapesWorld

WORDS = "a an red blue circle square two and , above".split()


def random_corpus(seed: int, size: int = 30, refs: int = 2, min_words: int = 1, max_words: int = 12):
    """Hypotheses and references over a few words, so that n-grams often match."""
    rng = random.Random(seed)
    def sentence():
        return [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
    hypotheses = [sentence() for _ in range(size)]
    # references share a part of their hypothesis, so precisions are far from 0 and 1
    references = [[h[rng.randint(0, 2):] + sentence() if rng.random() < 0.7 else sentence() for _ in range(refs)]
                  for h in hypotheses]
    return hypotheses, references


def sacrebleu_score(hypotheses, references, max_n: int) -> float:
    bleu = BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n)
    streams = [[" ".join(refs[i]) for refs in references] for i in range(len(references[0]))]
    return bleu.corpus_score([" ".join(h) for h in hypotheses], streams).score / 100


def nltk_score(hypotheses, references, max_n: int) -> float:
    return nltk_corpus_bleu(references, hypotheses, weights=(1 / max_n,) * max_n)


def test_ngrams_count_overlapping_runs():
    assert ngram_counts(["a", "b", "a", "b"], 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert ngram_counts(["a"], 2) == {}


def test_clipping_caps_each_ngram_at_its_most_generous_reference():
    hypothesis = "the the the the".split()
    assert clipped_matches(hypothesis, ["the cat".split(), "the the dog".split()], 1) == (2, 4)


def test_brevity_penalty():
    assert brevity_penalty(10, 8) == 1.0
    assert brevity_penalty(5, 10) == pytest.approx(0.36787944117144233)  # exp(1 - 10 / 5)
    assert brevity_penalty(0, 3) == 0.0


@pytest.mark.parametrize("max_n", [1, 2, 3, 4])
@pytest.mark.parametrize("refs", [1, 3])
def test_corpus_bleu_equals_sacrebleu(max_n, refs):
    for seed in range(5):
        hypotheses, references = random_corpus(seed, refs=refs)
        expected = sacrebleu_score(hypotheses, references, max_n)
        assert corpus_bleu(hypotheses, references, max_n) == pytest.approx(expected, abs=1e-12)
        assert 0 < expected < 1


@pytest.mark.parametrize("max_n", [1, 2, 3, 4])
def test_corpus_bleu_equals_nltk(max_n):
    for seed in range(5):
        hypotheses, references = random_corpus(seed, refs=1 + seed % 3, min_words=4)
        expected = nltk_score(hypotheses, references, max_n)
        assert corpus_bleu(hypotheses, references, max_n) == pytest.approx(expected, abs=1e-12)


def test_short_hypotheses_pay_the_brevity_penalty_in_both_references():
    hypotheses, references = random_corpus(7, min_words=4, max_words=6)
    references = [[r + ["and", "a", "red", "circle"] for r in refs] for refs in references]
    ours = corpus_bleu(hypotheses, references)
    assert ours == pytest.approx(sacrebleu_score(hypotheses, references, 4), abs=1e-12)
    assert ours == pytest.approx(nltk_score(hypotheses, references, 4), abs=1e-12)
    hyp_length = sum(map(len, hypotheses))
    ref_length = sum(min(map(len, refs), key=lambda r: (abs(r - len(h)), r)) for h, refs in zip(hypotheses, references))
    assert hyp_length < ref_length


def test_bleu_on_shapes_world_captions():
    world = ShapesWorld(ShapesConfig(seed=3))
    captions = [caption_words(c) for c in world.sample("train", 60).captions]
    rng = random.Random(0)
    hypotheses = [c[:rng.randint(1, len(c))] if rng.random() < 0.5 else captions[rng.randrange(60)]
                  for c in captions]
    references = [[c] for c in captions]
    scores = bleu_scores(hypotheses, references)
    for n in range(1, 5):
        assert scores[f"BLEU-{n}"] == pytest.approx(sacrebleu_score(hypotheses, references, n), abs=1e-12)
    assert bleu_scores(captions, references) == {f"BLEU-{n}": 1.0 for n in range(1, 5)}


def test_no_matching_ngram_of_some_order_gives_zero():
    hypotheses, references = [["a", "b", "c", "d"]], [[["d", "c", "b", "a"]]]
    assert corpus_bleu(hypotheses, references, 2) == 0.0 == sacrebleu_score(hypotheses, references, 2)
    assert corpus_bleu(hypotheses, references, 1) == 1.0


@pytest.mark.parametrize("args, message", [
    (([["a"]], [[["a"]], [["b"]]]), "1 hypotheses but 2 lists of references"),
    (([["a"]], [[]]), "at least one reference"),
    (([["a"]], [[["a"]]], 0), "max_n must be at least 1"),
])
def test_bad_input_is_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        corpus_bleu(*args)


def test_strings_instead_of_word_lists_are_rejected():
    with pytest.raises(TypeError, match="lists of words"):
        corpus_bleu(["a red circle"], [["a red circle"]])
