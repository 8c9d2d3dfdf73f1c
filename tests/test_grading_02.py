"""The graded checks of exercises/02_transformer.ipynb can fail: classic mistakes lose their points."""

import pytest

from conftest import REPO
from grading_cases import (assert_fails_exactly, assert_fresh_exercise_scores_zero, assert_full_marks,
                           define, failed_checks)
from minimodal.grading import grade
from minimodal.grading.suites import transformer_02
from minimodal.transformer import MultiHeadAttention, attention

SOLUTION = REPO / "solutions" / "02_transformer.ipynb"
VALUES, MASKS = "softmax(q·kᵀ/√d)·v without a mask", "masked keys get zero weight, rows still sum to one"
SPLIT, MERGE = "split (B, N, D) into (B, H, N, D/H)", "merge (B, H, N, D/H) back into (B, N, D)"
LAYER, LAYER_MASKED = ("mha_forward equals MultiHeadAttention's forward",
                       "mha_forward passes causal, padding and random masks on")

RIGHT = '''
import math
import torch

def attention(q, k, v, mask=None):
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    return torch.softmax(scores, dim=-1) @ v

def split_heads(x, heads):
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).permute(0, 2, 1, 3)

def merge_heads(x):
    b, h, n, dh = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, n, h * dh)

def mha_forward(mha, x, mask=None):
    heads = [split_heads(layer(x), mha.heads) for layer in (mha.q_proj, mha.k_proj, mha.v_proj)]
    return mha.out_proj(merge_heads(attention(*heads, mask=mask)))
'''

ATTENTION = '''
import math
import torch

def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / {scale}
    {masking}
'''
MASK_BEFORE = '''if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v'''

# mha_forward written out in one function; each mistake below changes one piece
LAYER_CODE = '''
import math
import torch

def mha_forward(mha, x, mask=None):
    b, n, d = x.shape
    h = mha.heads
    q, k, v = ({split} for proj in (mha.q_proj, mha.k_proj, mha.v_proj))
    scores = q @ k.transpose(-2, -1) / math.sqrt({scale})
    if {masked}:
        scores = scores.masked_fill(~mask, float("-inf"))
    return {project}(scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d))
'''
RIGHT_LAYER = dict(split="proj(x).view(b, n, h, d // h).transpose(1, 2)", scale="d // h",
                   masked="mask is not None", project="mha.out_proj(")


def layer_code(**mistake) -> str:
    return LAYER_CODE.format(**{**RIGHT_LAYER, **mistake})


# name: (learner code, the checks it must fail, a phrase its message must contain)
WRONG = {
    "scales by d instead of sqrt(d)": (
        ATTENTION.format(scale="q.shape[-1]", masking=MASK_BEFORE), {VALUES}, "not by d"),
    "forgets to scale": (
        ATTENTION.format(scale="1", masking=MASK_BEFORE), {VALUES}, "dividing by √d"),
    "softmax over the queries": (
        ATTENTION.format(scale="math.sqrt(q.shape[-1])", masking='''if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-2) @ v'''), {VALUES, MASKS}, "over the keys"),
    "masks after the softmax": (
        ATTENTION.format(scale="math.sqrt(q.shape[-1])", masking='''weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v'''), {MASKS}, "before the softmax"),
    "causal mask the wrong way round (upper triangle)": (
        ATTENTION.format(scale="math.sqrt(q.shape[-1])", masking='''if mask is not None:
        scores = scores.masked_fill(~mask.transpose(-2, -1), float("-inf"))
    return scores.softmax(dim=-1) @ v'''), {MASKS}, "the lower triangle"),
    "True taken to mean blocked": (
        ATTENTION.format(scale="math.sqrt(q.shape[-1])", masking='''if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return scores.softmax(dim=-1) @ v'''), {MASKS}, "'may look'"),
    "masked scores set to 0 instead of -inf": (
        ATTENTION.format(scale="math.sqrt(q.shape[-1])", masking='''if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    return scores.softmax(dim=-1) @ v'''), {MASKS}, "must be -inf, not 0"),
    "splits heads with a bare view": ('''
def split_heads(x, heads):
    b, n, d = x.shape
    return x.view(b, heads, n, d // heads)
''', {SPLIT}, "mixes positions"),
    "merges heads without moving them back": ('''
def merge_heads(x):
    b, h, n, dh = x.shape
    return x.reshape(b, n, h * dh)
''', {MERGE}, "swap the head and position"),
    "layer without the output projection": (layer_code(project="("), {LAYER, LAYER_MASKED}, "out_proj"),
    "layer splitting heads with a bare reshape": (
        layer_code(split="proj(x).reshape(b, h, n, d // h)"), {LAYER, LAYER_MASKED}, "mixes positions"),
    "layer scaling by the model width": (layer_code(scale="d"), {LAYER, LAYER_MASKED}, "not 1/√D"),
    "layer dropping the mask": (layer_code(masked="False"), {LAYER_MASKED}, "pass the mask on"),
    "layer calling the module": ('''
def mha_forward(mha, x, mask=None):
    return mha(x, mask=mask)
''', {LAYER, LAYER_MASKED}, "minimodal's own implementation"),
    "layer calling the module's split_heads": ('''
from torch.nn.functional import scaled_dot_product_attention as attention

def mha_forward(mha, x, mask=None):
    heads = [mha.split_heads(layer(x)) for layer in (mha.q_proj, mha.k_proj, mha.v_proj)]
    return mha.out_proj(mha.merge_heads(attention(*heads, mask)))
''', {LAYER, LAYER_MASKED}, "minimodal's own implementation"),
}



def test_minimodal_passes_every_check():
    references = {"attention": lambda q, k, v, mask=None: attention(q, k, v, mask, fused=False),
                  "split_heads": lambda x, heads: MultiHeadAttention(x.shape[-1], heads).split_heads(x),
                  "merge_heads": MultiHeadAttention.merge_heads,
                  "mha_forward": lambda mha, x, mask=None: mha(x, mask=mask)}
    for seed in range(3):
        for function, fn in references.items():
            assert failed_checks(transformer_02.CHECKS, function, fn, seed, as_learner=False) == {}


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_a_wrong_version_fails_exactly_its_checks_and_names_the_mistake(mistake):
    assert_fails_exactly(transformer_02.CHECKS, *WRONG[mistake])


def test_solution_scores_full_marks():
    assert_full_marks(SOLUTION, 14)


def test_fresh_exercise_scores_zero(tmp_path):
    assert_fresh_exercise_scores_zero(SOLUTION, tmp_path, 14)


@pytest.mark.parametrize("function", ["attention", "split_heads", "merge_heads", "mha_forward"])
def test_a_right_answer_written_differently_passes(function):
    """mha_forward among them calls the learner's own attention and heads, which the grader allows."""
    assert failed_checks(transformer_02.CHECKS, function, define(RIGHT, function)) == {}


def test_wrong_versions_lose_exactly_their_points_in_the_grader(learner_notebook):
    """Three mistakes in one notebook: each costs its own checks, the rest keep their points."""
    notebook = learner_notebook("02_transformer", RIGHT, WRONG["masks after the softmax"][0],
                                WRONG["merges heads without moving them back"][0],
                                WRONG["layer dropping the mask"][0])
    report = grade(notebook, seed=0)
    assert {r.check for r in report.results if not r.earned} == {MASKS, MERGE, LAYER_MASKED}, report.table()
    assert report.score == 7, report.table()
