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
TOWER_CLIP, TOWER_BY_ID = ("text_forward gives TextTransformer's embedding of CLIP-style ids",
                           "text_forward pools at the first end-of-text, found by its id")

IMPORTS = "import torch\n"
# text_forward written out in one function; each mistake below changes one piece
TOWER_CODE = IMPORTS + '''
def text_forward(model, ids):
    n = ids.shape[1]
    x = model.token_embedding(ids) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, {mask}))
    is_eot = (ids == model.config.eot_token_id).int()
    return model.proj(x[torch.arange(len(x)), {ends}])
'''
RIGHT_TOWER = dict(mask="torch.ones(n, n, dtype=torch.bool).tril()", ends="is_eot.argmax(dim=1)")


def tower_code(**mistake) -> str:
    return TOWER_CODE.format(**{**RIGHT_TOWER, **mistake})

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
    "tower pools at the last end-of-text": (
        tower_code(ends="n - 1 - is_eot.flip(1).argmax(dim=1)"), {TOWER_BY_ID}, "first end-of-text"),
    "tower pools at the argmax of the ids": (
        tower_code(ends="ids.argmax(dim=-1)"), {TOWER_BY_ID}, "only in CLIP's vocabulary"),
    "tower pools at the last position": (tower_code(ends="n - 1"), {TOWER_CLIP, TOWER_BY_ID}, "not the last one"),
    "tower without the causal mask": (tower_code(mask="None"), {TOWER_CLIP, TOWER_BY_ID}, "causal mask"),
    "tower calls the model": (IMPORTS + '''
def text_forward(model, ids):
    return model(ids)
''', {TOWER_CLIP, TOWER_BY_ID}, "minimodal's own implementation"),
    "tower pools with minimodal's pool_at_eot": (IMPORTS + '''
from minimodal.text import pool_at_eot

def text_forward(model, ids):
    n = ids.shape[1]
    x = model.transformer(model.token_embedding(ids) + model.positional_embedding[:n],
                          torch.ones(n, n, dtype=torch.bool).tril())
    return model.proj(pool_at_eot(model.ln_final(x), ids, model.config.eot_token_id))
''', {TOWER_CLIP, TOWER_BY_ID}, "pool_at_eot"),
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

def text_forward(text_model, ids):
    n = ids.shape[1]
    x = text_model.token_embedding.weight[ids] + text_model.positional_embedding[:n]
    for block in text_model.transformer.blocks:
        x = block(x, causal_mask(n))
    pooled = pool_at_eot(x, ids, text_model.config.eot_token_id)
    return text_model.proj(text_model.ln_final(pooled))
'''


def test_minimodal_passes_every_check():
    for seed in range(3):
        assert failed_checks(text_04.CHECKS, "causal_mask", causal_mask, seed, as_learner=False) == {}
        assert failed_checks(text_04.CHECKS, "pool_at_eot", pool_at_eot, seed, as_learner=False) == {}
        assert failed_checks(text_04.CHECKS, "text_forward", lambda model, ids: model(ids), seed,
                             as_learner=False) == {}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks_and_names_the_mistake(mistake):
    assert_fails_exactly(text_04.CHECKS, *WRONG[mistake])


def test_solution_scores_full_marks():
    assert_full_marks(SOLUTION, 11)


def test_fresh_exercise_scores_zero(tmp_path):
    assert_fresh_exercise_scores_zero(SOLUTION, tmp_path, 11)


@pytest.mark.parametrize("function", ["causal_mask", "pool_at_eot", "text_forward"])
def test_a_right_answer_written_differently_passes(function):
    """text_forward among them calls the learner's own causal_mask and pool_at_eot, and the tower's
    blocks one by one, which the grader allows."""
    assert failed_checks(text_04.CHECKS, function, define(RIGHT, function)) == {}


def test_wrong_versions_lose_exactly_their_points_in_the_grader(learner_notebook):
    """Three mistakes in one notebook: each costs its own checks, the rest keep their points."""
    notebook = learner_notebook("04_text_encoder", RIGHT, WRONG["causal mask the wrong way round"][0],
                                WRONG["argmax of the ids"][0], WRONG["tower pools at the last end-of-text"][0])
    report = grade(notebook, seed=0)
    assert {r.check for r in report.results if not r.earned} == {CAUSAL, BY_ID, TOWER_BY_ID}, report.table()
    assert report.score == 4, report.table()
