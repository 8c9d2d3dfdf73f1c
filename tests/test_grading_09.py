"""The graded checks of exercises/09_captioning.ipynb can fail: classic mistakes lose their points.

Each wrong version is the solution with one function rewritten as a learner might get it
wrong. corpus_bleu calls the learner's own helpers, so a wrong helper also costs
corpus_bleu's points; the expected failures below say so.
"""

from pathlib import Path

import nbformat
import pytest

from minimodal.grading.suites import caption_09

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "solutions" / "09_captioning.ipynb"
POINTS = {check.name: check.points for check in caption_09.CHECKS}

NGRAMS, CLIPPED, BP, BLEU = ("n-gram counts", "clipped n-gram matches", "brevity penalty",
                             "corpus BLEU equals the reference")
GREEDY, EXHAUSTIVE, NORMALIZED, NARROW, LIMIT = (
    "beam width 1 is greedy decoding", "a beam that holds every caption finds the best one",
    "length normalization", "narrow beams equal the reference", "the length limit")

# A wrong version of one function, and the checks it must fail (all others pass).
WRONG = {
    "n-gram counts stop one short": ('''
def ngram_counts(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n))
''', {NGRAMS, CLIPPED, BLEU}),
    "n-grams as joined strings": ('''
def ngram_counts(tokens, n):
    return Counter(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
''', {NGRAMS}),
    "counts not clipped": ('''
def clipped_matches(hypothesis, references, n):
    counts = ngram_counts(hypothesis, n)
    seen = set().union(*(ngram_counts(r, n) for r in references))
    return sum(c for gram, c in counts.items() if gram in seen), sum(counts.values())
''', {CLIPPED, BLEU}),
    "clipped at the sum over references": ('''
def clipped_matches(hypothesis, references, n):
    counts, total = ngram_counts(hypothesis, n), Counter()
    for reference in references:
        total += ngram_counts(reference, n)
    return sum(min(c, total[g]) for g, c in counts.items()), sum(counts.values())
''', {CLIPPED, BLEU}),
    "brevity penalty upside down": ('''
def brevity_penalty(hypothesis_length, reference_length):
    if hypothesis_length >= reference_length:
        return 1.0
    return math.exp(1 - hypothesis_length / reference_length)
''', {BP, BLEU}),
    "no brevity penalty": ('''
def corpus_bleu(hypotheses, references, max_n=4):
    matched, total = [0] * max_n, [0] * max_n
    for hypothesis, refs in zip(hypotheses, references):
        for n in range(1, max_n + 1):
            m, t = clipped_matches(hypothesis, refs, n)
            matched[n - 1] += m
            total[n - 1] += t
    if min(matched) == 0:
        return 0.0
    return math.exp(sum(math.log(m / t) for m, t in zip(matched, total)) / max_n)
''', {BLEU}),
    "mean of sentence BLEUs": ('''
_corpus_bleu = corpus_bleu
def corpus_bleu(hypotheses, references, max_n=4):
    scores = [_corpus_bleu([h], [r], max_n) for h, r in zip(hypotheses, references)]
    return sum(scores) / len(scores)
''', {BLEU}),
    "shortest reference instead of closest": ('''
def corpus_bleu(hypotheses, references, max_n=4):
    matched, total, c, r = [0] * max_n, [0] * max_n, 0, 0
    for hypothesis, refs in zip(hypotheses, references):
        for n in range(1, max_n + 1):
            m, t = clipped_matches(hypothesis, refs, n)
            matched[n - 1] += m
            total[n - 1] += t
        c += len(hypothesis)
        r += min(len(ref) for ref in refs)
    if min(matched) == 0:
        return 0.0
    return brevity_penalty(c, r) * math.exp(sum(math.log(m / t) for m, t in zip(matched, total)) / max_n)
''', {BLEU}),
    "beams not length-normalized": ('''
_beam_search = beam_search
def beam_search(decoder, memory, *, bos, eos, beam_width, max_length, alpha=1.0):
    return _beam_search(decoder, memory, bos=bos, eos=eos, beam_width=beam_width, max_length=max_length, alpha=0.0)
''', {NORMALIZED}),
    "length without <eos>": ('''
@torch.no_grad()
def beam_search(decoder, memory, *, bos, eos, beam_width, max_length, alpha=1.0):
    state, prefixes, scores, tokens, finished = decoder.start(memory), [[]], torch.zeros(1), torch.tensor([bos]), []
    for _ in range(max_length):
        logits, state = decoder.step(tokens, state)
        candidates = scores[:, None] + logits.log_softmax(dim=-1)
        best, flat = candidates.flatten().topk(min(beam_width - len(finished), candidates.numel()))
        keep = []
        for score, index in zip(best.tolist(), flat.tolist()):
            beam, word = divmod(index, candidates.shape[1])
            if word == eos:
                finished.append((score / max(len(prefixes[beam]), 1) ** alpha, prefixes[beam]))
            else:
                keep.append((beam, word, score))
        if not keep:
            break
        state = select(state, torch.tensor([b for b, _, _ in keep]))
        prefixes = [prefixes[b] + [w] for b, w, _ in keep]
        scores, tokens = torch.tensor([s for _, _, s in keep]), torch.tensor([w for _, w, _ in keep])
    else:
        finished += [(s / len(p) ** alpha, p) for s, p in zip(scores.tolist(), prefixes)]
    return max(finished, key=lambda item: item[0])[1]
''', {NORMALIZED}),
    "finished beams kept expanding": ('''
@torch.no_grad()
def beam_search(decoder, memory, *, bos, eos, beam_width, max_length, alpha=1.0):
    state, beams, tokens = decoder.start(memory), [([], 0.0)], torch.tensor([bos])
    for _ in range(max_length):
        logits, state = decoder.step(tokens, state)
        logp = logits.log_softmax(dim=-1)
        pairs = sorted(((s + logp[b, w].item(), b, w) for b, (_, s) in enumerate(beams)
                        for w in range(logp.shape[1])), reverse=True)[:beam_width]
        state = select(state, torch.tensor([b for _, b, _ in pairs]))
        beams = [(beams[b][0] + [w], s) for s, b, w in pairs]
        tokens = torch.tensor([w for _, _, w in pairs])
    def cut(words):
        return words[:words.index(eos)] if eos in words else words
    def normalized(beam):
        words, score = beam
        return score / (len(cut(words)) + (eos in words)) ** alpha
    return cut(max(beams, key=normalized)[0])
''', {EXHAUSTIVE, NORMALIZED, NARROW}),
    "one step too many": ('''
_beam_search = beam_search
def beam_search(decoder, memory, *, bos, eos, beam_width, max_length, alpha=1.0):
    return _beam_search(decoder, memory, bos=bos, eos=eos, beam_width=beam_width, max_length=max_length + 1,
                        alpha=alpha)
''', {GREEDY, EXHAUSTIVE, NORMALIZED, NARROW, LIMIT}),
}


def solution_code() -> str:
    """The solution's imports and function definitions, as one learner's code."""
    cells = nbformat.read(SOLUTION, as_version=4).cells
    code = [c.source for c in cells if c.cell_type == "code"]
    return "\n\n".join([code[0]] + [c for c in code if "### BEGIN SOLUTION" in c])


def failed_checks(namespace: dict, seed: int = 0) -> set[str]:
    """The checks that fail, each run with the seed the grader gives it (seed + its index)."""
    failed = set()
    for index, check in enumerate(caption_09.CHECKS):
        try:
            check.run(namespace[check.function], seed + index)
        except AssertionError:
            failed.add(check.name)
    return failed


def learner_namespace(*sources: str) -> dict:
    namespace = {}
    for source in sources:
        exec(source, namespace)
    return namespace


def test_the_solution_passes_every_check_on_several_seeds():
    namespace = learner_namespace(solution_code())
    for seed in range(3):
        assert failed_checks(namespace, seed) == set()


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks(mistake):
    source, expected = WRONG[mistake]
    assert failed_checks(learner_namespace(solution_code(), source)) == expected


def test_hints_name_the_mistake():
    namespace = learner_namespace(solution_code(), WRONG["no brevity penalty"][0])
    check = next(c for c in caption_09.CHECKS if c.name == BLEU)
    with pytest.raises(AssertionError, match="multiply by the brevity penalty"):
        check.run(namespace["corpus_bleu"], 0)
    namespace = learner_namespace(solution_code(), WRONG["counts not clipped"][0])
    check = next(c for c in caption_09.CHECKS if c.name == CLIPPED)
    with pytest.raises(AssertionError, match="Clip each n-gram's count"):
        check.run(namespace["clipped_matches"], 0)


# ---------------------------------------------------------------- through the grader


def test_solution_scores_full_marks():
    from minimodal.grading import grade
    report = grade(SOLUTION, seed=0)
    assert report.score == report.total == sum(POINTS.values()), report.table()
    assert report.cell_errors == []


def test_fresh_exercise_scores_zero(tmp_path):
    from minimodal.grading import grade
    from minimodal.grading.exercises import exercise_text
    exercise = tmp_path / "09_captioning.ipynb"
    exercise.write_text(exercise_text(SOLUTION))
    report = grade(exercise, seed=0)
    assert report.score == 0 and report.total == sum(POINTS.values()), report.table()
    assert all("NotImplementedError" in r.message for r in report.results), report.table()


@pytest.mark.parametrize("mistake", ["no brevity penalty", "finished beams kept expanding"])
def test_wrong_version_loses_its_points_in_the_grader(learner_notebook, mistake):
    from minimodal.grading import grade
    source, expected = WRONG[mistake]
    report = grade(learner_notebook("09_captioning", solution_code(), source), seed=0)
    assert {r.check for r in report.results if not r.earned} == expected, report.table()
    assert report.score == report.total - sum(POINTS[name] for name in expected)
