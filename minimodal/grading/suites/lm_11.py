"""Graded checks for exercises/11_language_model.ipynb: RMSNorm, RoPE, SwiGLU, top-p, one cached step.

Each check compares the learner's function with minimodal's own on random inputs from the
seed; when they differ, it computes the classic wrong versions (a centred RMSNorm, RoPE on
neighbouring pairs, a decoding step at the wrong position...) and names the one the answer
reproduces. The decoding step is judged against the model run on the whole sequence at
once: that is what a cached step must reproduce.

Longer than 300 lines because the notebook grades five unrelated functions, each with the
mistakes it names; one section per function, and a suite is one module per notebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minimodal.check import randomized
from minimodal.generate import top_p_filter
from minimodal.grading.checks import Check, expect_equal, expect_like, expect_tensor, in_learner
from minimodal.kv_cache import KVCache, LayerCache
from minimodal.lm import LanguageModel, LMConfig, decoder_mask, positions_of
from minimodal.mlp import SwiGLU
from minimodal.norm import RMSNorm
from minimodal.rope import apply_rope, rope_angles, rotate_half

NOTEBOOK = "11_language_model"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _expect_dtype(got: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    if got.dtype != dtype:
        raise AssertionError(f"{what} returned {str(got.dtype)[6:]}, expected {str(dtype)[6:]}: compute in "
                             f"float32, then cast the result back to x's dtype")


# RMSNorm -----------------------------------------------------------------------------------

def _reference_rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    norm = RMSNorm(x.shape[-1], eps).to(x.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)


def _rms_mistakes(x: torch.Tensor, weight: torch.Tensor, eps: float) -> list[tuple[str, torch.Tensor]]:
    x, w = x.double(), weight.double()
    centred = x - x.mean(-1, keepdim=True)
    return [("RMSNorm does not centre: divide x itself by its root mean square, no mean subtracted "
             "(that is LayerNorm)", centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w),
            ("eps goes inside the square root: √(mean(x²) + eps)",
             x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w),
            ("take the mean of x² over the last axis, not the sum",
             x / (x.pow(2).sum(-1, keepdim=True) + eps).sqrt() * w),
            ("multiply by the gain, weight, at the end", x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt())]


def _check_rms_values(fn, seed: int) -> None:
    g = _gen(seed)
    for shape, eps in [((4, 8), 1e-6), ((2, 5, 16), 1e-5), ((2, 3, 4, 32), 0.5), ((3, 64), 1e-6)]:
        x = torch.randn(*shape, generator=g) + torch.randn(shape[-1], generator=g)  # vectors off centre
        weight = 1 + 0.5 * torch.randn(shape[-1], generator=g)
        expect_like(fn(x.clone(), weight.clone(), eps), _reference_rms(x, weight, eps),
                     _rms_mistakes(x, weight, eps), f"rms_norm of {shape} with eps={eps:g}")


def _check_rms_half(fn, seed: int) -> None:
    """float16 values past 256 overflow x² unless the arithmetic is done in float32."""
    g = _gen(seed)
    for dtype, scale, tol in [(torch.float16, 1000.0, 1e-2), (torch.bfloat16, 1.0, 5e-2)]:
        x = (scale * torch.randn(3, 5, 32, generator=g)).to(dtype)
        weight = (1 + 0.5 * torch.randn(32, generator=g)).to(dtype)
        what = f"rms_norm of {str(dtype)[6:]} input of magnitude about {scale:g}"
        got = expect_tensor(fn(x.clone(), weight.clone(), 1e-6), shape=x.shape, what=what)
        _expect_dtype(got, dtype, what)
        low = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight  # all in the low precision
        expect_like(got, _reference_rms(x, weight, 1e-6), [
            (f"x² overflows {str(dtype)[6:]} (its largest value is 65504): compute in float32, then cast back",
             low)], what, tol)


# RoPE --------------------------------------------------------------------------------------

def _rope_mistakes(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    half = x.shape[-1] // 2
    pair_cos, pair_sin = (t[..., :half].repeat_interleave(2, dim=-1) for t in (cos, sin))
    turned = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)  # neighbours (2i, 2i + 1) turned
    neighbours = ("this turns neighbouring features (2i, 2i + 1) together; here feature i is paired with "
                  "feature i + d/2 (the rotate-half form): split the last axis into two halves")
    return [(neighbours, x * cos + turned * sin), (neighbours, x * pair_cos + turned * pair_sin),
            ("the turn goes the wrong way: the quarter turn of (x₁, x₂) is (−x₂, x₁)",
             x * cos - rotate_half(x) * sin),
            ("x goes with cos and the turned copy with sin, not the other way round",
             x * sin + rotate_half(x) * cos)]


def _positions(seed: int) -> list[tuple[str, torch.Tensor]]:
    """(description, positions (B, T)): plain, left-padded, a single decoding step, far out."""
    mask = (torch.arange(7) >= 7 - torch.tensor([7, 3, 5])[:, None]).long()  # left padding
    start = torch.randint(20, 60, (2, 1), generator=_gen(seed))
    return [("positions 0..5", torch.arange(6).expand(2, 6)),
            ("left-padded positions (padding at 0)", (mask.cumsum(-1) - 1).clamp(min=0)),
            (f"one new token per row, at positions {start.flatten().tolist()}", start),
            ("positions 1000..1003", torch.arange(1000, 1004)[None])]


def _check_rope_values(fn, seed: int) -> None:
    g = _gen(seed)
    for (where, positions), (heads, width, theta) in zip(
            _positions(seed), [(2, 8, 10000.0), (3, 16, 10000.0), (4, 64, 500.0), (1, 2, 10000.0)]):
        cos, sin = rope_angles(positions, width, theta)
        x = torch.randn(positions.shape[0], heads, positions.shape[1], width, generator=g)
        expect_like(fn(x.clone(), cos, sin), apply_rope(x, cos, sin), _rope_mistakes(x, cos, sin),
                     f"apply_rotary at {where}, head width {width}")


def _check_rope_dtype(fn, seed: int) -> None:
    cos, sin = rope_angles(torch.arange(3, 8).expand(2, 5), 16)
    x = torch.randn(2, 4, 5, 16, generator=_gen(seed)).to(torch.bfloat16)
    what = "apply_rotary of bfloat16 queries with float32 angles"
    got = expect_tensor(fn(x.clone(), cos, sin), shape=x.shape, what=what)
    _expect_dtype(got, x.dtype, what)
    expect_like(got, apply_rope(x, cos, sin), _rope_mistakes(x.float(), cos, sin), what, 5e-2)


# SwiGLU ------------------------------------------------------------------------------------

def _check_swiglu(fn, seed: int) -> None:
    g = _gen(seed)
    for shape, hidden in [((5, 8), 12), ((2, 3, 16), 40), ((2, 2, 3, 6), 10)]:
        width, x = shape[-1], torch.randn(*shape, generator=g)
        gate, up = (torch.randn(hidden, width, generator=g) / width ** 0.5 for _ in range(2))
        down = torch.randn(width, hidden, generator=g) / hidden ** 0.5
        block = SwiGLU(width, hidden)
        with torch.no_grad():
            for layer, weight in [(block.gate_proj, gate), (block.up_proj, up), (block.down_proj, down)]:
                layer.weight.copy_(weight)
            expected = block(x)
        a, b = x @ gate.T, x @ up.T
        mistakes = [("SiLU goes on the gate projection (gate_weight) and multiplies the up projection, not "
                     "the other way round", (F.silu(b) * a) @ down.T),
                    ("SiLU is z·σ(z), not σ(z)", (torch.sigmoid(a) * b) @ down.T),
                    ("SiLU acts on the gate alone, before the product", F.silu(a * b) @ down.T),
                    ("the gate multiplies the up projection, silu(x W_gᵀ) ⊙ (x W_uᵀ), it is not added",
                     (F.silu(a) + b) @ down.T)]
        try:
            got = fn(x.clone(), gate, up, down)
        except NotImplementedError:  # a RuntimeError too, but the worker words it for the learner
            raise
        except RuntimeError as error:
            raise AssertionError(f"swiglu raised RuntimeError: {error}. An nn.Linear weight is laid out "
                                 f"(out, in): x times its transpose") from None
        expect_like(got, expected, mistakes, f"swiglu of {shape} with hidden width {hidden}")


# top-p -------------------------------------------------------------------------------------

def _expect_nucleus(fn, logits: torch.Tensor, p: float, what: str) -> None:
    """The learner's filter keeps as many tokens as minimodal's, the most likely; ties may go either way."""
    given = logits.clone()
    got = expect_tensor(fn(given, p), shape=logits.shape, what=what)
    if not torch.equal(given, logits):
        raise AssertionError(f"{what}: top_p_filter changed the logits it was given; return a new tensor")
    changed = got != logits
    if (got[changed] != float("-inf")).any():
        raise AssertionError(f"{what}: leave the kept tokens' logits as they are, and set the others to -inf")
    kept, want = ~changed, torch.isfinite(top_p_filter(logits, p))
    for row, (mine, theirs) in enumerate(zip(kept.sum(-1).tolist(), want.sum(-1).tolist())):
        if mine != theirs:
            hint = (": the token whose probability carries the total past p belongs to the nucleus; keep a "
                    "token while the probability ranked above it is still below p" if mine == theirs - 1 else
                    ": the nucleus always holds at least the most likely token" if mine == 0 else "")
            raise AssertionError(f"{what}: row {row} keeps {mine} tokens, expected {theirs}{hint}")
    if (logits.masked_fill(~kept, float("inf")).amin(-1) < logits.masked_fill(kept, float("-inf")).amax(-1)).any():
        raise AssertionError(f"{what}: a token was kept while a more likely one was dropped; the nucleus is "
                             f"the most likely tokens (decide in sorted order, then map back to vocabulary order)")


def _check_top_p(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, vocab, scale in [(4, 50, 1.0), (3, 20, 4.0), (2, 100, 0.3)]:
        logits = scale * torch.randn(batch, vocab, generator=g)
        for p in (0.3, 0.5, 0.8, 0.95):
            _expect_nucleus(fn, logits, p, f"top_p_filter with p={p} on {batch}×{vocab} logits")


def _check_top_p_extremes(fn, seed: int) -> None:
    logits = 2 * torch.randn(3, 30, generator=_gen(seed))
    got = expect_tensor(fn(logits.clone(), 1.0), shape=logits.shape, what="top_p_filter with p=1")
    if not torch.isfinite(got).all():
        raise AssertionError(f"top_p_filter with p=1 dropped {int((~torch.isfinite(got)).sum())} of "
                             f"{got.numel()} tokens: p=1 keeps every token")
    _expect_nucleus(fn, logits, 1e-6, "top_p_filter with p=1e-6 (only the most likely token)")


def _check_top_p_ties(fn, seed: int) -> None:
    _expect_nucleus(fn, torch.zeros(2, 5), 0.5, "top_p_filter with p=0.5 on 5 equally likely tokens")
    tied = torch.randint(0, 4, (4, 12), generator=_gen(seed)).float()  # the nucleus ends inside a tie
    for p in (0.4, 0.7):
        _expect_nucleus(fn, tied, p, f"top_p_filter with p={p} on logits with ties (keep as many as the "
                                     f"nucleus needs, whichever of the tied tokens)")


# One cached decoding step ------------------------------------------------------------------

def _model(seed: int, **shape) -> LanguageModel:
    """A small LM with every weight drawn at random, so a wrong position changes the logits a lot."""
    return randomized(LanguageModel(LMConfig(**{"vocab_size": 23, "width": 32, "layers": 2, "heads": 4,
                                                 "kv_heads": 2, "mlp_width": 48, **shape})), seed)


def _prefilled(seed: int, lengths: list[int], **shape):
    """A model, left-padded prompts (ids and mask) and the cache their prefill filled, and a generator."""
    g, model = _gen(seed), _model(seed, **shape)
    mask = torch.tensor([[0] * (max(lengths) - n) + [1] * n for n in lengths])
    ids = torch.randint(1, model.config.vocab_size, mask.shape, generator=g) * mask
    cache = model.new_cache()
    model(ids, attention_mask=mask, cache=cache)
    return model, ids, mask, cache, g


def _grow(mask: torch.Tensor) -> torch.Tensor:
    return torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)


def _step(model, token, mask, cache, position=None, keys=True, use_cache=True) -> torch.Tensor:
    """A cached step written out, with one part swappable: what a wrong answer did, to name it."""
    cache = cache[torch.arange(len(token))]  # a copy: the mistakes do not touch the real cache
    position = _grow(mask).sum(-1, keepdim=True) - 1 if position is None else position
    rope = rope_angles(position, model.config.head_width, model.config.rope_theta)
    x = model.token_embedding(token[:, None])
    for block, layer in zip(model.transformer.blocks, cache.layers):
        x = block(x, _grow(mask).bool()[:, None, None, :] if keys and use_cache else None, rope=rope,
                  cache=layer if use_cache else None)
    return model.lm_head(model.norm(x))[:, -1]


def _step_mistakes(model, token, mask, cache) -> list[tuple[str, torch.Tensor]]:
    real_before = mask.sum(-1, keepdim=True)
    return [("the new token sits at the position of the token before it: its position is the number of real "
             "tokens before it, so count the grown mask, not the old one",
             _step(model, token, mask, cache, position=real_before - 1)),
            ("positions count real tokens only: with left padding the new token's position is its row's count "
             "of ones in the grown mask, minus one, not the number of cached columns",
             _step(model, token, mask, cache, position=torch.full_like(real_before, mask.shape[1]))),
            ("the new token must not attend to padding: mask the keys with the grown attention mask",
             _step(model, token, mask, cache, keys=False)),
            ("each block needs its own layer's cache (cache.layers[i]): without it the new token sees only "
             "itself", _step(model, token, mask, cache, use_cache=False))]


def _step_and_cache(fn, model, token, mask, cache) -> tuple:
    """In the learner's process: its step's result (or the error it raised) and the cache as the step left it."""
    try:
        return fn(model, token, mask, cache), None, cache
    except (RuntimeError, ValueError, IndexError) as error:
        return None, f"{type(error).__name__}: {error}", cache


def _call_step(fn, model, token, mask, cache, what: str):
    """The learner's (logits, grown mask) and the cache after its step, the logits' shape checked;
    errors said in the step's terms."""
    result, error, cache = in_learner(fn, _step_and_cache, model, token.clone(), mask.clone(), cache,
                                      safe_types=(KVCache, LayerCache))
    if error:
        unused = (" The cache did not grow: each block should get its own layer's cache, which it extends"
                  if len(cache) == mask.shape[1] else "")
        raise AssertionError(f"{what}: decode_step raised {error}. The key mask must "
                             f"cover the cached columns and the new one, (B, past + 1).{unused}")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise AssertionError(f"{what}: decode_step should return the pair (logits, grown mask), "
                             f"got {type(result).__name__}")
    logits = expect_tensor(result[0], what=f"{what}: the logits")
    if logits.shape != (len(token), model.config.vocab_size):
        raise AssertionError(f"{what}: the logits have shape {tuple(logits.shape)}, expected "
                             f"{(len(token), model.config.vocab_size)}: one row of next-token logits per "
                             f"sequence, the new (last) position's")
    return logits, result[1], cache


@torch.no_grad()
def _decode_and_compare(fn, seed: int, lengths: list[int], steps: int, what: str, **shape) -> None:
    """Prefill the prompts, then ``steps`` learner steps; each must give the whole sequence's logits."""
    model, ids, mask, cache, g = _prefilled(seed, lengths, **shape)
    for step in range(1, steps + 1):
        token = torch.randint(1, model.config.vocab_size, (len(ids),), generator=g)
        ids, grown = torch.cat([ids, token[:, None]], dim=1), _grow(mask)
        expected = model(ids, attention_mask=grown)[:, -1]
        before = cache[torch.arange(len(ids))]  # the learner's step extends the cache; mistakes start here
        logits, _, cache = _call_step(fn, model, token, mask, cache, f"{what}, step {step}")
        expect_like(logits, expected, lambda: _step_mistakes(model, token, mask, before),
                     f"{what}: step {step}'s output", 1e-4)
        mask = grown


def _check_step_unpadded(fn, seed: int) -> None:
    _decode_and_compare(fn, seed, [5, 5], 1, "one step after two 5-token prompts")
    _decode_and_compare(fn, seed + 1, [4], 1, "one step after a 4-token prompt, untied head, 4 key/value "
                        "heads", kv_heads=4, tie_embeddings=False)


def _check_step_padded(fn, seed: int) -> None:
    _decode_and_compare(fn, seed, [6, 2, 4], 3, "steps after left-padded prompts of 6, 2 and 4 tokens")


@torch.no_grad()
def _check_step_bookkeeping(fn, seed: int) -> None:
    model, ids, mask, cache, g = _prefilled(seed, [3, 5])
    token = torch.randint(1, model.config.vocab_size, (2,), generator=g)
    _, grown, cache = _call_step(fn, model, token, mask, cache, "one step after prompts of 3 and 5 tokens")
    expected = _grow(mask)
    what = "the returned mask (the old one and a column of ones: the new token is real)"
    expect_equal(expect_tensor(grown, shape=expected.shape, what=what).long().tolist(), expected.tolist(), what=what)
    if len(cache) != expected.shape[1]:
        raise AssertionError(f"after one step the cache holds {len(cache)} positions, expected {expected.shape[1]}: "
                             f"pass each block its layer's cache so the new token's keys and values are appended")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "rms_norm": (RMSNorm.forward,),
    "apply_rotary": (apply_rope, rotate_half),
    "swiglu": (SwiGLU.forward,),
    "top_p_filter": (top_p_filter,),
    "decode_step": (LanguageModel.forward, LanguageModel.hidden, positions_of, decoder_mask),
}


CHECKS = [  # each runs in milliseconds; the decoding checks build small models
    Check("rms_norm: x / √(mean(x²) + eps) · weight", "rms_norm", 2, _check_rms_values, timeout=5,
          references=OWN["rms_norm"]),
    Check("rms_norm of float16 and bfloat16: float32 inside, x's dtype out", "rms_norm", 1, _check_rms_half,
          timeout=5, references=OWN["rms_norm"]),
    Check("apply_rotary turns pairs (i, i + d/2) at any positions", "apply_rotary", 3, _check_rope_values,
          timeout=5, references=OWN["apply_rotary"]),
    Check("apply_rotary keeps bfloat16 queries in bfloat16", "apply_rotary", 1, _check_rope_dtype,
          timeout=5, references=OWN["apply_rotary"]),
    Check("swiglu: down(silu(gate x) ⊙ up x)", "swiglu", 3, _check_swiglu,
          timeout=5, references=OWN["swiglu"]),
    Check("top_p_filter keeps the nucleus, the crossing token included", "top_p_filter", 3, _check_top_p,
          timeout=5, references=OWN["top_p_filter"]),
    Check("top_p_filter at p = 1 and at a tiny p", "top_p_filter", 1, _check_top_p_extremes,
          timeout=5, references=OWN["top_p_filter"]),
    Check("top_p_filter with tied logits", "top_p_filter", 1, _check_top_p_ties,
          timeout=5, references=OWN["top_p_filter"]),
    Check("decode_step gives the whole sequence's next-token logits", "decode_step", 2, _check_step_unpadded,
          references=OWN["decode_step"]),
    Check("decode_step with left-padded prompts, several steps", "decode_step", 3, _check_step_padded,
          references=OWN["decode_step"]),
    Check("decode_step grows the mask and the cache by one", "decode_step", 1, _check_step_bookkeeping,
          references=OWN["decode_step"]),
]
