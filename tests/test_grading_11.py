"""The graded checks of exercises/11_language_model.ipynb can fail: classic mistakes lose their points."""

import pytest
import torch

from grading_cases import SuiteCases, failed_checks
from minimodal.generate import top_p_filter
from minimodal.grading.suites import lm_11
from minimodal.mlp import SwiGLU
from minimodal.norm import RMSNorm
from minimodal.rope import apply_rope

RMS, RMS_HALF = "rms_norm: x / √(mean(x²) + eps) · weight", "rms_norm of float16 and bfloat16: float32 inside, x's dtype out"
ROPE, ROPE_DTYPE = "apply_rotary turns pairs (i, i + d/2) at any positions", "apply_rotary keeps bfloat16 queries in bfloat16"
SWIGLU = "swiglu: down(silu(gate x) ⊙ up x)"
TOP_P, EXTREMES, TIES = ("top_p_filter keeps the nucleus, the crossing token included",
                         "top_p_filter at p = 1 and at a tiny p", "top_p_filter with tied logits")
STEP, PADDED, BOOKKEEPING = ("decode_step gives the whole sequence's next-token logits",
                             "decode_step with left-padded prompts, several steps",
                             "decode_step grows the mask and the cache by one")

IMPORTS = "import torch\nimport torch.nn.functional as F\nfrom minimodal.rope import rope_angles\n"
RIGHT = IMPORTS + '''
def rms_norm(x, weight, eps=1e-6):
    x32 = x.to(torch.float32)
    rms = (x32 * x32).mean(dim=-1, keepdim=True).add(eps).sqrt()
    return (x32 / rms).to(x.dtype) * weight

def apply_rotary(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2, c, s = x[..., :half], x[..., half:], cos[..., :half], sin[..., :half]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)

def swiglu(x, gate_weight, up_weight, down_weight):
    gate = F.linear(x, gate_weight)
    return F.linear(gate * torch.sigmoid(gate) * F.linear(x, up_weight), down_weight)

def top_p_filter(logits, p):
    out, probs = logits.clone(), logits.softmax(dim=-1)
    for row in range(len(logits)):
        total = 0.0
        for j in sorted(range(logits.shape[1]), key=lambda j: -logits[row, j].item()):
            if total >= p:
                out[row, j] = float("-inf")
            total += probs[row, j].item()
    return out

def decode_step(model, token, attention_mask, cache):
    batch = len(token)
    grown = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=-1)
    cos, sin = rope_angles(attention_mask.sum(-1).view(batch, 1), model.config.width // model.config.heads,
                           model.config.rope_theta)
    h = model.token_embedding(token.view(batch, 1))
    for i, block in enumerate(model.transformer.blocks):
        h = block(h, (grown == 1)[:, None, None, :], rope=(cos, sin), cache=cache.layers[i])
    return model.lm_head(model.norm(h))[:, 0], grown
'''

RMS_CODE = IMPORTS + '''
def rms_norm(x, weight, eps=1e-6):
    {body}
'''
ROPE_CODE = IMPORTS + '''
def apply_rotary(x, cos, sin):
    {body}
'''
SWIGLU_CODE = IMPORTS + '''
def swiglu(x, gate_weight, up_weight, down_weight):
    {body}
'''
TOP_P_CODE = IMPORTS + '''
def top_p_filter(logits, p):
    ranked, order = logits.sort(dim=-1, descending=True)
    probs = ranked.softmax(dim=-1)
    {body}
'''
STEP_CODE = IMPORTS + '''
def decode_step(model, token, attention_mask, cache):
    grown = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
    position = {position}
    rope = rope_angles(position, model.config.head_width, model.config.rope_theta)
    may_see = {may_see}
    x = model.token_embedding(token[:, None])
    for block, layer in zip(model.transformer.blocks, cache.layers):
        x = block(x, may_see, rope=rope, cache={layer})
    return model.lm_head(model.norm(x)){last}, {returned}
'''


def step(position="grown.sum(dim=-1, keepdim=True) - 1", may_see="grown.bool()[:, None, None, :]",
         layer="layer", last="[:, -1]", returned="grown"):
    """A decode_step that is right but for the one part named."""
    return STEP_CODE.format(position=position, may_see=may_see, layer=layer, last=last, returned=returned)


ALL_TOP_P, ALL_STEP = {TOP_P, EXTREMES, TIES}, {STEP, PADDED, BOOKKEEPING}

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "RMSNorm subtracts the mean": (RMS_CODE.format(body='''x32 = x.float()
    x32 = x32 - x32.mean(dim=-1, keepdim=True)
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)).to(x.dtype)'''),
        {RMS, RMS_HALF}, "does not centre"),
    "RMSNorm with eps outside the root": (RMS_CODE.format(body='''x32 = x.float()
    return weight * (x32 / (x32.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps)).to(x.dtype)'''),
        {RMS}, "inside the square root"),
    "RMSNorm in half precision": (RMS_CODE.format(
        body="return weight * x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)"),
        {RMS_HALF}, "overflows float16"),
    "RMSNorm returns float32": (RMS_CODE.format(body='''x = x.float()
    return weight * x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)'''),
        {RMS_HALF}, "cast the result back"),
    "RoPE on neighbouring pairs": (ROPE_CODE.format(body='''turned = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)
    return (x * cos + turned * sin).to(x.dtype)'''), {ROPE, ROPE_DTYPE}, "neighbouring features"),
    "RoPE on neighbouring pairs, one angle per pair": (ROPE_CODE.format(body='''half = x.shape[-1] // 2
    c, s = cos[..., :half].repeat_interleave(2, dim=-1), sin[..., :half].repeat_interleave(2, dim=-1)
    turned = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)
    return (x * c + turned * s).to(x.dtype)'''), {ROPE, ROPE_DTYPE}, "neighbouring features"),
    "RoPE turned the wrong way": (ROPE_CODE.format(body='''first, second = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([second, -first], dim=-1) * sin).to(x.dtype)'''), {ROPE, ROPE_DTYPE}, "wrong way"),
    "RoPE returns float32": (ROPE_CODE.format(body='''first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin'''), {ROPE_DTYPE}, "x's dtype"),
    "SwiGLU with gate and up swapped": (SWIGLU_CODE.format(
        body="return (x @ gate_weight.T * F.silu(x @ up_weight.T)) @ down_weight.T"), {SWIGLU}, "SiLU goes on the gate"),
    "SwiGLU with a sigmoid gate": (SWIGLU_CODE.format(
        body="return (torch.sigmoid(x @ gate_weight.T) * (x @ up_weight.T)) @ down_weight.T"), {SWIGLU}, "not σ(z)"),
    "SwiGLU without the transposes": (SWIGLU_CODE.format(
        body="return (F.silu(x @ gate_weight) * (x @ up_weight)) @ down_weight"), {SWIGLU}, "(out, in)"),
    "top-p drops the crossing token": (TOP_P_CODE.format(body='''drop = probs.cumsum(dim=-1) > p
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))'''), ALL_TOP_P, "carries the total past p"),
    "top-p decides in sorted order but masks in vocabulary order": (TOP_P_CODE.format(body='''drop = probs.cumsum(dim=-1) - probs >= p
    return logits.masked_fill(drop, float("-inf"))'''), ALL_TOP_P, "a more likely one was dropped"),
    "top-p fills the logits in place": (TOP_P_CODE.format(body='''drop = probs.cumsum(dim=-1) - probs >= p
    return logits.masked_fill_(drop.scatter(-1, order, drop), float("-inf"))'''), ALL_TOP_P, "return a new tensor"),
    "decode step does not advance the position": (step(position="attention_mask.sum(dim=-1, keepdim=True) - 1"),
                                                  {STEP, PADDED}, "the position of the token before it"),
    "decode step counts padding in the position": (step(position="torch.full_like(token[:, None], len(cache))"),
                                                   {PADDED}, "count real tokens only"),
    "decode step attends to the padding": (step(may_see="None"), {PADDED}, "must not attend to padding"),
    "decode step without the cache": (step(may_see="None", layer="None"), ALL_STEP, "sees only itself"),
    "decode step without the cache, with the mask": (step(layer="None"), ALL_STEP, "cache did not grow"),
    "decode step with the mask not grown": (step(may_see="attention_mask.bool()[:, None, None, :]",
                                                 returned="attention_mask"), ALL_STEP, "decode_step raised"),
    "decode step returns the old mask": (step(returned="attention_mask"), {BOOKKEEPING}, "the returned mask"),
    "decode step returns every position's logits": (step(last=""), ALL_STEP, "one row of next-token logits"),
}


class TestLanguageModelSuite(SuiteCases):
    suite = lm_11
    right = RIGHT
    wrong = WRONG
    graded = ("RMSNorm subtracts the mean", "RoPE on neighbouring pairs", "SwiGLU with gate and up swapped",
              "top-p drops the crossing token", "decode step does not advance the position")


def _rms_norm(x, weight, eps):
    norm = RMSNorm(x.shape[-1], eps).to(x.dtype)
    norm.weight.data.copy_(weight)
    return norm(x)


def _swiglu(x, gate_weight, up_weight, down_weight):
    block = SwiGLU(x.shape[-1], gate_weight.shape[0])
    for layer, weight in zip((block.gate_proj, block.up_proj, block.down_proj), (gate_weight, up_weight, down_weight)):
        layer.weight.data.copy_(weight)
    return block(x)


def _decode_step(model, token, attention_mask, cache):
    grown = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
    return model(token[:, None], attention_mask=grown, cache=cache)[:, -1], grown


REFERENCES = {"rms_norm": _rms_norm, "apply_rotary": apply_rope, "swiglu": _swiglu, "top_p_filter": top_p_filter,
              "decode_step": _decode_step}


@pytest.mark.parametrize("function", sorted(REFERENCES))
def test_minimodal_passes_every_check(function):
    for seed in range(3):
        assert failed_checks(lm_11.CHECKS, function, REFERENCES[function], seed, as_learner=False) == {}


def test_every_check_belongs_to_a_graded_function():
    assert {check.function for check in lm_11.CHECKS} == set(REFERENCES)
