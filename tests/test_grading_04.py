"""The graded checks of exercises/04_text_encoder.ipynb can fail: classic mistakes lose their points."""

import pytest

from conftest import REPO
from grading_cases import (assert_fails_exactly, assert_fresh_exercise_scores_zero, assert_full_marks,
                           define, failed_checks)
from minimodal.grading import grade
from minimodal.grading.suites import text_04
from minimodal.text import pool_at_eot
from minimodal.transformer import causal_mask

SOLUTION = REPO / "solutions" / "04_text_encoder.ipynb"
CAUSAL = "causal mask: True on and below the diagonal"
LIKE_CLIP, BY_ID = "pools at the end-of-text token of CLIP-style ids", "finds the first end-of-text by its id"

IMPORTS = "import torch\n"
# name: (learner code, the checks it must fail, a phrase its message must contain)
WRONG = {
    "causal mask the wrong way round": (IMPORTS + '''
def causal_mask(n):
    return torch.ones(n, n, dtype=torch.bool).triu()
''', {CAUSAL}, "upper triangle"),
    "causal mask hides the diagonal": (IMPORTS + '''
def causal_mask(n):
    return torch.ones(n, n, dtype=torch.bool).tril(-1)
''', {CAUSAL}, "hides the diagonal"),
    "causal mask of 0/1 floats": (IMPORTS + '''
def causal_mask(n):
    return torch.ones(n, n).tril()
''', {CAUSAL}, "boolean"),
    "pools at the last position": (IMPORTS + '''
def pool_at_eot(x, ids, eot_token_id):
    return x[:, -1]
''', {LIKE_CLIP, BY_ID}, "at position"),
    "argmax of the ids": (IMPORTS + '''
def pool_at_eot(x, ids, eot_token_id):
    return x[torch.arange(len(x)), ids.argmax(dim=1)]
''', {BY_ID}, "find it by its id"),
    "argmax of the features": (IMPORTS + '''
def pool_at_eot(x, ids, eot_token_id):
    return x.gather(1, x.argmax(dim=1, keepdim=True)).squeeze(1)
''', {LIKE_CLIP, BY_ID}, "but your answer is"),
    "the last end-of-text": (IMPORTS + '''
def pool_at_eot(x, ids, eot_token_id):
    n = ids.shape[1]
    last = n - 1 - (ids == eot_token_id).int().flip(1).argmax(dim=1)
    return x[torch.arange(len(x)), last]
''', {BY_ID}, "take the first one"),
}

RIGHT = IMPORTS + '''
def causal_mask(n):
    i = torch.arange(n)
    return i[:, None] >= i[None, :]

def pool_at_eot(x, ids, eot_token_id):
    rows = []
    for features, row in zip(x, ids.tolist()):
        rows.append(features[row.index(eot_token_id)])
    return torch.stack(rows)
'''


def test_minimodal_passes_every_check():
    for seed in range(3):
        assert failed_checks(text_04.CHECKS, "causal_mask", causal_mask, seed, as_learner=False) == {}
        assert failed_checks(text_04.CHECKS, "pool_at_eot", pool_at_eot, seed, as_learner=False) == {}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks_and_names_the_mistake(mistake):
    assert_fails_exactly(text_04.CHECKS, *WRONG[mistake])


def test_solution_scores_full_marks():
    assert_full_marks(SOLUTION, 6)


def test_fresh_exercise_scores_zero(tmp_path):
    assert_fresh_exercise_scores_zero(SOLUTION, tmp_path, 6)


@pytest.mark.parametrize("function", ["causal_mask", "pool_at_eot"])
def test_a_right_answer_written_differently_passes(function):
    assert failed_checks(text_04.CHECKS, function, define(RIGHT, function)) == {}


def test_wrong_versions_lose_exactly_their_points_in_the_grader(learner_notebook):
    """Two mistakes in one notebook: each costs its own checks, the rest keep their points."""
    notebook = learner_notebook("04_text_encoder", RIGHT, WRONG["causal mask the wrong way round"][0],
                                WRONG["argmax of the ids"][0])
    report = grade(notebook, seed=0)
    assert {r.check for r in report.results if not r.earned} == {CAUSAL, BY_ID}, report.table()
    assert report.score == 2, report.table()
