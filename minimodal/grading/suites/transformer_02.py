"""Graded checks for exercises/02_transformer.ipynb: attention with masks, the head split, the whole layer.

Attention is checked in two ways that catch different mistakes: its values without a mask
against minimodal's written-out attention, and, with masks, the weights themselves. Feeding
the identity matrix as the values makes the output *be* the weight table, so a check can
see whether masked keys got exactly zero and whether each row still sums to one.

The learner's forward of a whole ``MultiHeadAttention`` is compared with the module's own,
on layers whose every weight is drawn from the check's seed.
"""

from __future__ import annotations

import math

import torch

from minimodal.check import randomized
from minimodal.grading.checks import Check, expect_like, expect_tensor
from minimodal.transformer import MultiHeadAttention, attention, attention_weights, causal_mask, padding_mask

NOTEBOOK = "02_transformer"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _name_the_mistake(actual: torch.Tensor, variants: dict[str, torch.Tensor]) -> str:
    """The hint of the first classic mistake the learner's answer reproduces, or ''."""
    for hint, wrong in variants.items():
        if actual.shape == wrong.shape and torch.allclose(actual.float(), wrong, atol=1e-5, equal_nan=True):
            return hint
    return ""


def _check_attention_values(fn, seed: int) -> None:
    g = _gen(seed)
    for shape_q, keys, d in [((5, 4), 7, 4), ((2, 3, 6), 6, 16), ((2, 4, 9), 5, 64)]:
        q = torch.randn(*shape_q, d, generator=g)
        k = torch.randn(*shape_q[:-1], keys, d, generator=g)
        v = torch.randn(*shape_q[:-1], keys, d, generator=g)
        scores = q @ k.transpose(-2, -1)
        mistakes = [
            ("Divide the scores by √d, the square root of the head width, not by d", (scores / d).softmax(-1) @ v),
            ("The scores need dividing by √d before the softmax", scores.softmax(-1) @ v),
            ("Take the softmax over the keys (the last dimension), not over the queries",
             (scores / math.sqrt(d)).softmax(-2) @ v),
        ]
        expect_like(fn(q, k, v), attention(q, k, v, fused=False), mistakes,
                    f"attention with q {tuple(q.shape)}, k and v {tuple(k.shape)}")


def _masks(seed: int) -> list[tuple[str, torch.Tensor]]:
    """(description, boolean mask) pairs: causal, padding, both, and a random one."""
    g = _gen(seed)
    lengths = torch.tensor([6, 4, 1])
    real = (torch.arange(6) < lengths[:, None]).long()  # (3, 6) 1 for real tokens
    scattered = torch.rand(3, 1, 6, 6, generator=g) > 0.5
    scattered[..., 0] = True  # every query may see at least one key
    return [("the causal mask", causal_mask(6)),
            ("a padding mask (B, 1, 1, N)", padding_mask(real)),
            ("causal and padding masks together", causal_mask(6) & padding_mask(real)),
            ("a random mask", scattered)]


def _mask_mistakes(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weight tables that classic masking mistakes produce, keyed by the hint for each."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return {
        "the mask is read the wrong way round: rows are queries, columns keys, and the causal mask "
        "lets query i see keys 0..i, the lower triangle":
            scores.masked_fill(~mask.transpose(-2, -1), float("-inf")).softmax(-1),
        "masked scores must be -inf, not 0: exp(0) = 1 still gives them weight":
            scores.masked_fill(~mask, 0.0).softmax(-1),
        "apply the mask to the scores before the softmax, not to its output":
            scores.softmax(-1).masked_fill(~mask, 0.0),
    }


def _check_attention_masks(fn, seed: int) -> None:
    g = _gen(seed)
    q, k = torch.randn(3, 2, 6, 8, generator=g), torch.randn(3, 2, 6, 8, generator=g)
    identity = torch.eye(6).expand(3, 2, 6, 6)  # values = one-hot rows: the output is the weights
    for description, mask in _masks(seed):
        mask = mask.expand(3, 2, 6, 6)
        weights = expect_tensor(fn(q, k, identity, mask), shape=(3, 2, 6, 6),
                                what=f"attention with {description}")
        if not torch.isfinite(weights).all():
            raise AssertionError(f"attention with {description} gave inf or nan although every query "
                                 f"may see at least one key: True in the mask means 'may look', so fill "
                                 f"the scores where the mask is False")
        leak = weights.masked_fill(mask, 0).abs().max().item()
        sums = weights.sum(-1)
        if leak > 1e-6 or (sums - 1).abs().max() > 1e-5:
            hint = _name_the_mistake(weights, _mask_mistakes(q, k, mask))
            raise AssertionError(f"with {description}, masked keys got weight up to {leak:.3g} and a "
                                 f"query's weights sum to {sums.min().item():.3f}..{sums.max().item():.3f} "
                                 f"(expected 0 and 1)" + (f": {hint}" if hint else ""))


def _check_split_heads(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, length, width, heads in [(2, 5, 8, 2), (1, 7, 12, 3), (3, 4, 16, 4)]:
        x = torch.randn(batch, length, width, generator=g)
        mistakes = [("view(B, H, N, D/H) mixes positions into heads: view as (B, N, H, D/H), then swap N and H",
                     x.reshape(batch, heads, length, width // heads))]
        expect_like(fn(x, heads), MultiHeadAttention(width, heads).split_heads(x), mistakes,
                    f"split_heads of {tuple(x.shape)} into {heads} heads")


def _check_merge_heads(fn, seed: int) -> None:
    g = _gen(seed)
    for shape in [(2, 2, 5, 4), (1, 3, 7, 4), (3, 4, 4, 4)]:
        x = torch.randn(*shape, generator=g)
        batch, heads, length, head_width = shape
        mistakes = [("swap the head and position dimensions back before reshaping to (B, N, D)",
                     x.reshape(batch, length, heads * head_width))]
        expect_like(fn(x), MultiHeadAttention.merge_heads(x), mistakes, f"merge_heads of {shape}")


def _mha_mistakes(mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None):
    """(hint, output) of the classic slips in writing the layer's forward, on the same inputs."""
    batch, length, width = x.shape
    projected = [proj(x) for proj in (mha.q_proj, mha.k_proj, mha.v_proj)]  # 3 x (B, N, D)
    q, k, v = map(mha.split_heads, projected)                               # 3 x (B, H, N, Dh)
    heads = attention(q, k, v, mask, fused=False)                           # (B, H, N, Dh)
    bare = [t.reshape(batch, mha.heads, length, -1) for t in projected]     # positions mixed into heads
    split_hint = ("split each projection into heads as split_heads does, (B, N, H, Dh) then N and H swapped: "
                  "a bare reshape to (B, H, N, Dh) mixes positions into heads")
    return [
        ("the heads' merged output still goes through out_proj", mha.merge_heads(heads)),
        ("scale the scores by 1/√(D/H), the width of one head, not 1/√D",
         mha.out_proj(mha.merge_heads(attention(q / math.sqrt(mha.heads), k, v, mask, fused=False)))),
        ("pass the mask on to attention", mha.out_proj(mha.merge_heads(attention(q, k, v, fused=False)))),
        (split_hint, mha.out_proj(attention(*bare, mask, fused=False).reshape(batch, length, width))),
        (split_hint, mha.out_proj(mha.merge_heads(attention(*bare, mask, fused=False)))),
        ("merge the heads as merge_heads does: swap H and N back before reshaping to (B, N, D)",
         mha.out_proj(heads.reshape(batch, length, width))),
    ]


def _expect_layer(fn, mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None, what: str) -> None:
    got = fn(mha, x) if mask is None else fn(mha, x, mask)
    with torch.no_grad():
        expect_like(got, mha(x, mask=mask), lambda: _mha_mistakes(mha, x, mask), what)


def _check_layer(fn, seed: int) -> None:
    g = _gen(seed)
    for width, heads in [(8, 2), (12, 3), (16, 4), (6, 1)]:
        mha = randomized(MultiHeadAttention(width, heads, fused=False), g)
        x = torch.randn(2, 5, width, generator=g)
        _expect_layer(fn, mha, x, None, f"mha_forward of a layer of width {width} with {heads} heads")


def _check_layer_masked(fn, seed: int) -> None:
    g = _gen(seed)
    mha = randomized(MultiHeadAttention(12, 3, fused=False), g)
    x = torch.randn(3, 6, 12, generator=g)
    for description, mask in _masks(seed):
        _expect_layer(fn, mha, x, mask, f"mha_forward with {description}")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "attention": (attention, MultiHeadAttention.forward),
    "split_heads": (MultiHeadAttention.split_heads,),
    "merge_heads": (MultiHeadAttention.merge_heads,),
    # the module's four linear layers are the learner's to call; its own methods are the answer
    "mha_forward": (MultiHeadAttention.forward, MultiHeadAttention.keys_values, MultiHeadAttention.split_heads,
                    MultiHeadAttention.merge_heads, MultiHeadAttention.attention_map, attention,
                    attention_weights),
}


CHECKS = [
    Check("softmax(q·kᵀ/√d)·v without a mask", "attention", 2, _check_attention_values, timeout=5,
          references=OWN["attention"]),
    Check("masked keys get zero weight, rows still sum to one", "attention", 3,
          _check_attention_masks, timeout=5, references=OWN["attention"]),
    Check("split (B, N, D) into (B, H, N, D/H)", "split_heads", 2, _check_split_heads,
          timeout=5, references=OWN["split_heads"]),
    Check("merge (B, H, N, D/H) back into (B, N, D)", "merge_heads", 2, _check_merge_heads,
          timeout=5, references=OWN["merge_heads"]),
    Check("mha_forward equals MultiHeadAttention's forward", "mha_forward", 3, _check_layer,
          timeout=10, references=OWN["mha_forward"]),
    Check("mha_forward passes causal, padding and random masks on", "mha_forward", 2, _check_layer_masked,
          timeout=10, references=OWN["mha_forward"]),
]
