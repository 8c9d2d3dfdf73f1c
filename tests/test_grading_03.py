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
FORWARD, UNPROJECTED = ("vit_forward gives VisionTransformer's image embedding",
                        "vit_forward without a projection: the normalized class token")

# vit_forward written out with the conv; each mistake below changes one piece
FORWARD_CODE = '''
import torch

def vit_forward(vit, pixels):
    patches = vit.patch_embed(pixels).flatten(2).transpose(1, 2)
    cls = vit.class_embedding.expand(len(patches), 1, -1)
    tokens = torch.cat({order}, dim=1){positions}
    tokens = vit.transformer({ln_pre}(tokens))
    pooled = {ln_post}(tokens{pool})
    return {project}
'''
RIGHT_FORWARD = dict(order="[cls, patches]", positions=" + vit.positional_embedding", ln_pre="vit.ln_pre",
                     ln_post="vit.ln_post", pool="[:, 0]", project="pooled if vit.proj is None else vit.proj(pooled)")


def forward_code(**mistake) -> str:
    return FORWARD_CODE.format(**{**RIGHT_FORWARD, **mistake})


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
    "class token behind the patches": (forward_code(order="[patches, cls]"), {FORWARD, UNPROJECTED}, "in front"),
    "positional embedding skipped": (forward_code(positions=""), {FORWARD, UNPROJECTED}, "positional embedding"),
    "mean of the patches pooled": (
        forward_code(pool="[:, 1:].mean(dim=1)"), {FORWARD, UNPROJECTED}, "not the mean"),
    "ln_pre forgotten": (forward_code(ln_pre=""), {FORWARD, UNPROJECTED}, "ln_pre"),
    "ln_post forgotten": (forward_code(ln_post=""), {FORWARD, UNPROJECTED}, "ln_post"),
    "always projects": (forward_code(project="vit.proj(pooled)"), {UNPROJECTED}, "vit.proj is None"),
    "calls the tower": ('''
def vit_forward(vit, pixels):
    return vit(pixels)
''', {FORWARD, UNPROJECTED}, "minimodal's own implementation"),
    "uses the tower's embed": ('''
def vit_forward(vit, pixels):
    pooled = vit.ln_post(vit.transformer(vit.embed(pixels))[:, 0])
    return pooled if vit.proj is None else vit.proj(pooled)
''', {FORWARD, UNPROJECTED}, "VisionTransformer.embed"),
}

RIGHT = '''
import torch
import torch.nn.functional as F

def patchify(pixels, patch_size):
    return F.unfold(pixels, kernel_size=patch_size, stride=patch_size).transpose(1, 2)

def vit_forward(vit, pixels):
    patches = patchify(pixels, vit.config.patch_size) @ vit.patch_embed.weight.reshape(vit.config.width, -1).T
    first = vit.class_embedding + vit.positional_embedding[:1]
    tokens = torch.cat([first.expand(len(patches), 1, -1), patches + vit.positional_embedding[1:]], dim=1)
    pooled = vit.ln_post(vit.transformer(vit.ln_pre(tokens))[:, 0])
    return pooled if vit.proj is None else pooled @ vit.proj.weight.T
'''


def test_minimodal_passes_every_check():
    for seed in range(3):
        assert failed_checks(vit_03.CHECKS, "patchify", patchify, seed, as_learner=False) == {}
        assert failed_checks(vit_03.CHECKS, "vit_forward", lambda vit, pixels: vit(pixels), seed,
                             as_learner=False) == {}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks_and_names_the_mistake(mistake):
    assert_fails_exactly(vit_03.CHECKS, *WRONG[mistake])


def test_solution_scores_full_marks():
    assert_full_marks(SOLUTION, 10)


def test_fresh_exercise_scores_zero(tmp_path):
    assert_fresh_exercise_scores_zero(SOLUTION, tmp_path, 10)


@pytest.mark.parametrize("function", ["patchify", "vit_forward"])
def test_a_right_answer_written_differently_passes(function):
    """F.unfold cuts the same patches in the same layout; a learner may know it. Its vit_forward
    calls the learner's patchify and the tower's blocks, which the grader allows."""
    assert failed_checks(vit_03.CHECKS, function, define(RIGHT, function)) == {}


def test_wrong_versions_lose_exactly_their_points_in_the_grader(learner_notebook):
    notebook = learner_notebook("03_vit", WRONG["reshapes without permuting"][0],
                                WRONG["always projects"][0])
    wrong = grade(notebook, seed=0)
    assert [r.check for r in wrong.results if not r.earned] == [ORDER, UNPROJECTED], wrong.table()
    assert wrong.score == 6, wrong.table()
