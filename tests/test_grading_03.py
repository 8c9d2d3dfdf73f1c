"""The graded checks of exercises/03_vit.ipynb can fail: classic mistakes lose their points."""

import pytest

from conftest import REPO
from grading_cases import (assert_fails_exactly, assert_fresh_exercise_scores_zero, assert_full_marks,
                           define, failed_checks)
from minimodal.grading import grade
from minimodal.grading.suites import vit_03
from minimodal.vit import patchify

SOLUTION = REPO / "solutions" / "03_vit.ipynb"
ORDER, LAYOUT = "patches in reading order, row by row", "each patch flattened channel, row, column"

# name: (learner code, the checks it must fail, a phrase its message must contain)
WRONG = {
    "reshapes without permuting": ('''
def patchify(pixels, patch_size):
    b, c, h, w = pixels.shape
    return pixels.reshape(b, (h // patch_size) * (w // patch_size), c * patch_size * patch_size)
''', {ORDER}, "row by row"),
    "reads the grid column by column": ('''
def patchify(pixels, patch_size):
    b, c, h, w = pixels.shape
    grid = pixels.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return grid.permute(0, 4, 2, 1, 3, 5).reshape(b, -1, c * patch_size * patch_size)
''', {ORDER}, "left to right"),
    "flattens each patch channels last": ('''
def patchify(pixels, patch_size):
    b, c, h, w = pixels.shape
    grid = pixels.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(b, -1, c * patch_size * patch_size)
''', {LAYOUT}, "channels last"),
    "unfolds with the patch dimensions swapped": ('''
def patchify(pixels, patch_size):
    b, c, h, w = pixels.shape
    grid = pixels.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return grid.permute(0, 2, 4, 1, 5, 3).reshape(b, -1, c * patch_size * patch_size)
''', {LAYOUT}, "differs from the reference"),
}

RIGHT = '''
import torch.nn.functional as F

def patchify(pixels, patch_size):
    return F.unfold(pixels, kernel_size=patch_size, stride=patch_size).transpose(1, 2)
'''


def test_minimodal_passes_every_check():
    for seed in range(3):
        assert failed_checks(vit_03.CHECKS, "patchify", patchify, seed, as_learner=False) == {}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks_and_names_the_mistake(mistake):
    assert_fails_exactly(vit_03.CHECKS, *WRONG[mistake])


def test_solution_scores_full_marks():
    assert_full_marks(SOLUTION, 5)


def test_fresh_exercise_scores_zero(tmp_path):
    assert_fresh_exercise_scores_zero(SOLUTION, tmp_path, 5)


def test_a_right_answer_written_differently_passes():
    """F.unfold cuts the same patches in the same layout; a learner may know it."""
    assert failed_checks(vit_03.CHECKS, "patchify", define(RIGHT, "patchify")) == {}


def test_a_wrong_version_loses_exactly_its_points_in_the_grader(learner_notebook):
    wrong = grade(learner_notebook("03_vit", WRONG["reshapes without permuting"][0]), seed=0)
    assert [r.check for r in wrong.results if not r.earned] == [ORDER], wrong.table()
    assert wrong.score == 2, wrong.table()
