"""BLEU: how many of a caption's n-grams a reference also uses, with a penalty for being short.

BLEU (Papineni et al., 2002) scores a whole corpus of generated sentences against
reference sentences, from two ingredients:

* **clipped n-gram precision** p_n: of all n-grams the model wrote, the fraction that
  appear in a reference, each counted at most as often as the most generous reference
  has it (so "the the the the" earns no more than the references' "the"s);
* a **brevity penalty** BP = exp(1 - r / c) when the total hypothesis length c is below
  the reference length r, else 1: precision alone would reward saying very little.

BLEU-N = BP * exp(mean of log p_1 .. log p_N). Counts are summed over the corpus
before dividing (corpus BLEU, not an average of sentence scores), each hypothesis
taking the reference whose length is closest to its own (the shorter on a tie). There
is no smoothing: if some p_n is zero, BLEU-N is zero. This is what nltk's corpus_bleu
computes with its default method and sacrebleu with smooth_method="none".
"""

from __future__ import annotations

import math
from collections import Counter


def ngram_counts(tokens: list[str], n: int) -> Counter:
    """How often each run of n consecutive tokens occurs: ngram_counts(['a','b','a','b'], 2) has ('a','b') twice."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def clipped_matches(hypothesis: list[str], references: list[list[str]], n: int) -> tuple[int, int]:
    """(n-grams of the hypothesis found in the references, clipped; all n-grams of the hypothesis)."""
    counts = ngram_counts(hypothesis, n)
    most = Counter()
    for reference in references:
        most |= ngram_counts(reference, n)  # | keeps the larger count of each n-gram
    matched = sum(min(count, most[gram]) for gram, count in counts.items())
    return matched, sum(counts.values())


def closest_length(hypothesis_length: int, references: list[list[str]]) -> int:
    """The reference length nearest the hypothesis length; the shorter one on a tie."""
    return min((len(r) for r in references), key=lambda length: (abs(length - hypothesis_length), length))


def brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    """1 when the hypotheses are at least as long as the references, else exp(1 - r / c)."""
    if hypothesis_length >= reference_length:
        return 1.0
    if hypothesis_length == 0:
        return 0.0
    return math.exp(1 - reference_length / hypothesis_length)


def corpus_bleu(hypotheses: list[list[str]], references: list[list[list[str]]], max_n: int = 4) -> float:
    """BLEU-max_n of tokenized hypotheses, each with its list of tokenized references; in [0, 1]."""
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} lists of references; "
                         "each hypothesis needs its own list of references")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    if any(isinstance(h, str) for h in hypotheses) or any(isinstance(r, str) for refs in references for r in refs):
        raise TypeError("hypotheses and references must be lists of words, not strings (a string "
                        "would be scored letter by letter): split each sentence into words first")
    matched, total = [0] * max_n, [0] * max_n
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        for n in range(1, max_n + 1):
            m, t = clipped_matches(hypothesis, refs, n)
            matched[n - 1] += m
            total[n - 1] += t
        hypothesis_length += len(hypothesis)
        reference_length += closest_length(len(hypothesis), refs)
    if min(matched) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matched, total)) / max_n
    return brevity_penalty(hypothesis_length, reference_length) * math.exp(log_precision)


def bleu_scores(hypotheses: list[list[str]], references: list[list[list[str]]]) -> dict[str, float]:
    """BLEU-1 to BLEU-4, the four numbers captioning papers report."""
    return {f"BLEU-{n}": corpus_bleu(hypotheses, references, n) for n in range(1, 5)}
