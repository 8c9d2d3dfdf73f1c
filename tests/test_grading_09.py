"""The graded checks of exercises/09_captioning.ipynb can fail: classic mistakes lose their points.

Each wrong version is the solution with one function rewritten as a learner might get it
wrong. corpus_bleu calls the learner's own helpers, so a wrong helper also costs
corpus_bleu's points; the expected failures below say so. A wrong version is run through
the checks of the function it rewrites and of the functions that call it.
"""

from pathlib import Path

import nbformat
import pytest

from minimodal.grading.checks import as_graded
from minimodal.grading.suites import caption_09

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "solutions" / "09_captioning.ipynb"
POINTS = {check.name: check.points for check in caption_09.CHECKS}

NGRAMS, CLIPPED, BP, BLEU = ("n-gram counts", "clipped n-gram matches", "brevity penalty",
                             "corpus BLEU equals the reference")
GREEDY, EXHAUSTIVE, NORMALIZED, NARROW, LIMIT = (
    "beam width 1 is greedy decoding", "a beam that holds every caption finds the best one",
    "length normalization", "narrow beams equal the reference", "the length limit")
NEXT, PADDING, GRADIENT = ("teacher-forcing loss: each position predicts the next token",
                           "teacher-forcing loss: padding ignored, the mean over real tokens",
                           "the loss's gradient reaches the logits")
CAPTIONS, CACHE = ("greedy decoding with the cache: greedy_decode's captions, token for token",
                   "the cache grows by one position per word fed")
CALLERS = {"ngram_counts": {"clipped_matches", "corpus_bleu"}, "clipped_matches": {"corpus_bleu"},
           "brevity_penalty": {"corpus_bleu"}}  # in the solution, the functions that call each helper

GREEDY_CODE = '''
@torch.no_grad()
def greedy_with_cache(decoder, memory, *, bos, eos, max_length):
    state = decoder.start(memory)
    words, patches = state["words"], state["patches"]
    fed = torch.full((len(memory), 1), bos)
    for _ in range(max_length):
        x = {embed}
        for block, cache, image in zip(decoder.blocks, words.layers, patches.layers):
            x = block.step(x, cache, image)
        fed = torch.cat([fed, decoder.head(decoder.ln_final(x[:, -1:])).argmax(dim=-1)], dim=1)
        if {stop}:
            break
    rows = fed[:, 1:].tolist()
    return [{caption} for row in rows]
'''


def greedy(embed="decoder.embed(fed[:, -1:], start=len(words))", stop="(fed == eos).any(dim=1).all()",
           caption="row[:row.index(eos)] if eos in row else row"):
    """A greedy_with_cache that is right but for the one part named."""
    return GREEDY_CODE.format(embed=embed, stop=stop, caption=caption)


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
    "loss without the shift": ('''
def caption_loss(logits, ids, pad):
    return F.cross_entropy(logits.flatten(0, 1), ids.flatten(), ignore_index=pad)
''', {NEXT, PADDING}),
    "loss shifted the wrong way": ('''
def caption_loss(logits, ids, pad):
    return F.cross_entropy(logits[:, 1:].flatten(0, 1), ids[:, :-1].flatten(), ignore_index=pad)
''', {NEXT, PADDING}),
    "padding counted in the loss": ('''
def caption_loss(logits, ids, pad):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
''', {PADDING}),
    "loss averaged per caption": ('''
def caption_loss(logits, ids, pad):
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], ignore_index=pad, reduction="none")
    return (losses.sum(dim=1) / (ids[:, 1:] != pad).sum(dim=1)).mean()
''', {PADDING}),
    "loss ignores 0 whatever the pad id": ('''
def caption_loss(logits, ids, pad):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), ignore_index=0)
''', {NEXT, PADDING}),
    "loss detached": ('''
def caption_loss(logits, ids, pad):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), ignore_index=pad).detach()
''', {GRADIENT}),
    "the whole prefix fed with the cache": (greedy(embed="decoder.embed(fed)"), {CAPTIONS, CACHE}),
    "every word at position 0": (greedy(embed="decoder.embed(fed[:, -1:])"), {CAPTIONS}),
    "captions go on past eos": (greedy(stop="False", caption="row"), {CAPTIONS}),
    "captions start with bos": (greedy(caption="[bos] + (row[:row.index(eos)] if eos in row else row)"), {CAPTIONS}),
    "captions end with eos": (greedy(caption="row[:row.index(eos) + 1] if eos in row else row"), {CAPTIONS}),
    "no cache, the whole prefix every step": ('''
@torch.no_grad()
def greedy_with_cache(decoder, memory, *, bos, eos, max_length):
    fed = torch.full((len(memory), 1), bos)
    for _ in range(max_length):
        fed = torch.cat([fed, decoder(fed, memory)[:, -1:].argmax(dim=-1)], dim=1)
        if (fed == eos).any(dim=1).all():
            break
    return [row[:row.index(eos)] if eos in row else row for row in fed[:, 1:].tolist()]
''', {CACHE}),
    "greedy_with_cache steps through decoder.step": ('''
@torch.no_grad()
def greedy_with_cache(decoder, memory, *, bos, eos, max_length):
    state, fed = decoder.start(memory), torch.full((len(memory), 1), bos)
    for _ in range(max_length):
        logits, state = decoder.step(fed[:, -1], state)
        fed = torch.cat([fed, logits.argmax(dim=-1, keepdim=True)], dim=1)
        if (fed == eos).any(dim=1).all():
            break
    return [row[:row.index(eos)] if eos in row else row for row in fed[:, 1:].tolist()]
''', {CAPTIONS, CACHE}),
}

# What the message of a failed check says about the mistake, where it can name it.
PHRASES = {
    "no brevity penalty": "multiply by the brevity penalty",
    "counts not clipped": "Clip each n-gram's count",
    "loss without the shift": "not each token against itself",
    "loss shifted the wrong way": "the shift goes the other way",
    "padding counted in the loss": "the padding counts in the mean",
    "loss averaged per caption": "a mean per caption",
    "loss ignores 0 whatever the pad id": "ignore the pad id the function is given",
    "loss detached": "no gradient reached the logits",
    "the whole prefix fed with the cache": "caches their keys twice",
    "every word at position 0": "not at position 0",
    "captions go on past eos": "a caption ends at its first eos",
    "captions start with bos": "leave bos out",
    "captions end with eos": "leave eos out",
    "no cache, the whole prefix every step": "decoder.start(memory) was never called",
    "greedy_with_cache steps through decoder.step": "minimodal's own implementation (TransformerDecoder.step)",
}


def solution_code() -> str:
    """The solution's imports and function definitions, as one learner's code."""
    cells = nbformat.read(SOLUTION, as_version=4).cells
    code = [c.source for c in cells if c.cell_type == "code"]
    return "\n\n".join([code[0]] + [c for c in code if "### BEGIN SOLUTION" in c])


def failed_checks(namespace: dict, seed: int = 0, functions: set[str] | None = None) -> dict[str, str]:
    """{check: message} for the checks of ``functions`` (all if None) that fail, each run as the grader calls
    the learner's function, with the seed the grader gives it (seed + its index)."""
    failed = {}
    for index, check in enumerate(caption_09.CHECKS):
        if functions is None or check.function in functions:
            try:
                check.run(as_graded(check, namespace[check.function]), seed + index)
            except AssertionError as error:
                failed[check.name] = str(error)
    return failed


def affected(source: str) -> set[str]:
    """The functions whose checks a wrong version can fail: the one it rewrites and those that call it."""
    defined = {check.function for check in caption_09.CHECKS if f"def {check.function}(" in source}
    return defined.union(*(CALLERS.get(function, set()) for function in defined))


def learner_namespace(*sources: str) -> dict:
    namespace = {}
    for source in sources:
        exec(source, namespace)
    return namespace


def test_the_solution_passes_every_check_on_several_seeds():
    namespace = learner_namespace(solution_code())
    for seed in range(3):
        assert failed_checks(namespace, seed) == {}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks(mistake):
    source, expected = WRONG[mistake]
    failed = failed_checks(learner_namespace(solution_code(), source), functions=affected(source))
    assert set(failed) == expected, failed
    if mistake in PHRASES:
        assert any(PHRASES[mistake] in message for message in failed.values()), failed


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


def test_wrong_versions_lose_their_points_in_the_grader(learner_notebook):
    """Wrong versions of four functions handed in together; greedy_with_cache's reaches minimodal's own step."""
    from minimodal.grading import grade
    mistakes = ("no brevity penalty", "finished beams kept expanding", "padding counted in the loss",
                "greedy_with_cache steps through decoder.step")
    report = grade(learner_notebook("09_captioning", solution_code(), *(WRONG[m][0] for m in mistakes)), seed=0)
    expected = set().union(*(WRONG[m][1] for m in mistakes))
    assert {r.check for r in report.results if not r.earned} == expected, report.table()
    assert report.score == report.total - sum(POINTS[name] for name in expected)
    refused = {r.check for r in report.results if "minimodal's own implementation" in r.message}
    assert refused == {CAPTIONS, CACHE}, report.table()
