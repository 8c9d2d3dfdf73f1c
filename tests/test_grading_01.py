"""The graded checks of exercises/01_tokenizer.ipynb can fail: classic mistakes lose their points."""

from pathlib import Path

import pytest

from minimodal.bpe import apply_merges, merge_pair, pair_counts
from minimodal.grading.suites import tokenizer_01
from minimodal.tokenizer import clean_text, pre_split

REPO = Path(__file__).resolve().parents[1]
CHECKS = {check.function: check for check in tokenizer_01.CHECKS}

IMPORTS = "import html\nimport ftfy\nimport regex\n"

# One realistic wrong version per graded function, as a learner might write it.
WRONG = {
    "pair_counts": {
        "skips overlaps": '''
def pair_counts(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts
''',
        "misses the last pair": '''
def pair_counts(ids):
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts
''',
    },
    "merge_pair": {
        "merges overlapping matches twice": '''
def merge_pair(ids, pair, new_id):
    merged = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
        elif i > 0 and (ids[i - 1], ids[i]) == pair:
            continue
        else:
            merged.append(ids[i])
    return merged
''',
        "drops the last id": '''
def merge_pair(ids, pair, new_id):
    merged, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged
''',
    },
    "apply_merges": {
        "merges the most frequent pair, as in training": '''
from collections import Counter
def apply_merges(ids, merges):
    ids = list(ids)
    while True:
        counts = Counter(p for p in zip(ids, ids[1:]) if p in merges)
        if not counts:
            return ids
        pair = counts.most_common(1)[0][0]
        ids = [*ids]
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(merges[pair]); i += 2
            else:
                out.append(ids[i]); i += 1
        ids = out
''',
        "merges the leftmost mergeable pair": '''
def apply_merges(ids, merges):
    ids = list(ids)
    while True:
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) in merges:
                ids[i:i + 2] = [merges[ids[i], ids[i + 1]]]
                break
        else:
            return ids
''',
    },
    "clean_text": {
        "unescapes HTML once": IMPORTS + '''
def clean_text(text):
    text = html.unescape(ftfy.fix_text(text))
    return " ".join(text.split()).lower()
''',
        "forgets ftfy": IMPORTS + '''
def clean_text(text):
    text = html.unescape(html.unescape(text))
    return " ".join(text.split()).lower()
''',
        "keeps capitals": IMPORTS + '''
def clean_text(text):
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split())
''',
    },
    "pre_split": {
        "keeps numbers whole": IMPORTS + '''
def pre_split(text):
    return regex.findall(r"""'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]+|[^\\s\\p{L}\\p{N}]+""", text)
''',
        "splits on spaces only": IMPORTS + '''
def pre_split(text):
    return text.split()
''',
        "knows only ASCII letters": IMPORTS + '''
def pre_split(text):
    return regex.findall(r"""'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\\sa-z0-9]+""", text)
''',
    },
}

REFERENCES = {"pair_counts": pair_counts, "merge_pair": merge_pair, "apply_merges": apply_merges,
              "clean_text": clean_text, "pre_split": pre_split}


def define(source: str, name: str):
    namespace = {}
    exec(source, namespace)
    return namespace[name]


# ---------------------------------------------------------------- the checks on their own


@pytest.mark.parametrize("function", sorted(REFERENCES))
def test_reference_passes_its_check(function):
    for seed in range(3):
        CHECKS[function].run(REFERENCES[function], seed)


@pytest.mark.parametrize("function,mistake", [(f, m) for f, mistakes in WRONG.items() for m in mistakes])
def test_check_fails_a_wrong_version(function, mistake):
    wrong = define(WRONG[function][mistake], function)
    with pytest.raises(AssertionError, match=r"returned|changed its input"):
        CHECKS[function].run(wrong, 0)


def test_merge_pair_must_not_change_its_input():
    def merge_in_place(ids, pair, new_id):
        ids[:] = merge_pair(ids, pair, new_id)
        return ids
    with pytest.raises(AssertionError, match="changed its input list"):
        CHECKS["merge_pair"].run(merge_in_place, 0)


# ---------------------------------------------------------------- through the grader


def test_solution_scores_full_marks():
    from minimodal.grading import grade
    report = grade(REPO / "solutions" / "01_tokenizer.ipynb", seed=0)
    assert report.score == report.total == sum(check.points for check in tokenizer_01.CHECKS), \
        [(r.function, r.message) for r in report.results if r.earned < r.points]


def test_fresh_exercise_scores_zero(tmp_path):
    # graded as generated from the solution; a separate test keeps exercises/ in sync with it
    from minimodal.grading import grade
    from minimodal.grading.exercises import exercise_text
    exercise = tmp_path / "01_tokenizer.ipynb"
    exercise.write_text(exercise_text(REPO / "solutions" / "01_tokenizer.ipynb"))
    report = grade(exercise, seed=0)
    assert report.score == 0 and report.total == sum(check.points for check in tokenizer_01.CHECKS)


@pytest.mark.parametrize("function", sorted(WRONG))
def test_wrong_version_loses_its_points_in_the_grader(learner_notebook, function):
    from minimodal.grading import grade
    mistake = next(iter(WRONG[function]))
    notebook = learner_notebook("01_tokenizer", WRONG[function][mistake])
    result = next(r for r in grade(notebook, seed=0).results if r.function == function)
    assert result.earned == 0, f"{function} that {mistake} kept its points"
    assert "returned" in result.message or "changed" in result.message
