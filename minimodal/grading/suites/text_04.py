"""Graded checks for exercises/04_text_encoder.ipynb: the causal mask, end-of-text pooling, the text tower.

Pooling is checked twice, on its own and inside the tower's forward. First on ids like
CLIP's tokenizer makes them, where the end-of-text id is the largest in the vocabulary and
padding is 0: reading the last position fails there. Then where neither shortcut holds: the
end-of-text id is smaller than other ids, and the padding repeats it (as transformers'
tokenizer does), so an argmax over the ids or the last end-of-text in the row both land on
the wrong position. The tower's forward is compared with ``TextTransformer``'s, every weight
of the tower drawn from the check's seed.
"""

from __future__ import annotations

import torch

from minimodal.check import randomized
from minimodal.grading.checks import Check, expect_close, expect_equal, expect_like, expect_tensor
from minimodal.text import TextConfig, TextTransformer, eot_positions, pool_at_eot
from minimodal.transformer import causal_mask

NOTEBOOK = "04_text_encoder"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_causal_mask(fn, seed: int) -> None:
    for n in (1, 2, 5, 9):
        got = expect_tensor(fn(n), shape=(n, n), what=f"causal_mask({n})")
        if got.dtype != torch.bool:
            raise AssertionError(f"causal_mask({n}) has dtype {got.dtype}; return a boolean tensor "
                                 f"(True where a query may look)")
        expected = causal_mask(n)
        if n > 1 and torch.equal(got, expected.T):
            raise AssertionError(f"causal_mask({n}) is the upper triangle: rows are queries, columns "
                                 f"keys, and query i may look at keys 0..i, on and below the diagonal")
        if torch.equal(got, expected.tril(-1)):
            raise AssertionError(f"causal_mask({n}) hides the diagonal: a token may look at itself "
                                 f"(and the first token has nothing else to look at)")
        expect_equal(got.tolist(), expected.tolist(), what=f"causal_mask({n})")


def _captions(g: torch.Generator, batch: int, length: int, eot: int, low: int, high: int,
              pad: int) -> torch.Tensor:
    """(batch, length) ids drawn from [low, high), each row ending in eot at a random place, then pad."""
    ids = torch.randint(low, high, (batch, length), generator=g)
    ends = torch.randint(1, length - 1, (batch,), generator=g)
    ends[0] = length - 1  # one caption that fills the whole context
    for row, end in enumerate(ends.tolist()):
        ids[row, end] = eot
        ids[row, end + 1:] = pad
    return ids


def _expect_pooled(fn, x: torch.Tensor, ids: torch.Tensor, eot: int, situation: str) -> None:
    got = expect_tensor(fn(x, ids, eot), shape=(x.shape[0], x.shape[2]), what=f"pool_at_eot {situation}")
    positions = eot_positions(ids, eot)
    for row in range(len(x)):
        if not torch.allclose(got[row], x[row, positions[row]]):
            read = [j for j in range(x.shape[1]) if torch.allclose(got[row], x[row, j])]
            where = f"position {read[0]}" if read else "no single position"
            raise AssertionError(f"pool_at_eot {situation}: row {row} has its first end-of-text token at "
                                 f"position {int(positions[row])}, but your answer is the features at {where}")
    expect_close(got, pool_at_eot(x, ids, eot), what=f"pool_at_eot {situation}")


def _check_pool_like_clip(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, length, width in [(4, 12, 8), (6, 20, 3)]:
        ids = _captions(g, batch, length, eot=999, low=1, high=999, pad=0)
        x = torch.randn(batch, length, width, generator=g)
        _expect_pooled(fn, x, ids, 999, "on CLIP-style ids (end-of-text 999 is the largest id, pad 0)")


def _check_pool_by_id(fn, seed: int) -> None:
    g = _gen(seed)
    for batch, length, width in [(4, 12, 8), (5, 16, 3)]:
        ids = _captions(g, batch, length, eot=2, low=3, high=500, pad=2)
        x = torch.randn(batch, length, width, generator=g)
        _expect_pooled(fn, x, ids, 2, "when end-of-text is id 2, below the other ids, and also pads "
                                      "the row: find it by its id, and take the first one")


def _tower(g: torch.Generator, eot: int) -> TextTransformer:
    config = TextConfig(vocab_size=64, context_length=16, width=8, layers=2, heads=2, embed_dim=6,
                        eot_token_id=eot)
    return randomized(TextTransformer(config), g)


def _variant(model: TextTransformer, ids: torch.Tensor, ends: torch.Tensor, *, causal: bool = True,
             positions: bool = True, norm: bool = True) -> torch.Tensor:
    """The forward written out, read at positions ``ends`` (B,), with one piece changed: a classic mistake."""
    length = ids.shape[1]
    x = model.token_embedding(ids)                                            # (B, N, D)
    x = x + model.positional_embedding[:length] if positions else x
    x = model.transformer(x, causal_mask(length) if causal else None)        # (B, N, D)
    x = model.ln_final(x) if norm else x
    return model.proj(x[torch.arange(len(ids)), ends])                        # (B, E)


def _text_mistakes(model: TextTransformer, ids: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    is_eot = (ids == model.config.eot_token_id).int()                        # (B, N)
    first, last = is_eot.argmax(dim=1), ids.shape[1] - 1 - is_eot.flip(1).argmax(dim=1)
    return [("take each row's first end-of-text token: the padding after it may repeat its id",
             _variant(model, ids, last)),
            ("the largest id is end-of-text only in CLIP's vocabulary: find the positions whose id equals "
             "eot_token_id", _variant(model, ids, ids.argmax(dim=1))),
            ("read the end-of-text position, not the last one: padding comes after it",
             _variant(model, ids, torch.full_like(first, ids.shape[1] - 1))),
            ("give the blocks the causal mask: without it every token also sees the ones after it",
             _variant(model, ids, first, causal=False)),
            ("add the positional embedding of the first N positions to the token embeddings",
             _variant(model, ids, first, positions=False)),
            ("normalize with ln_final before the projection", _variant(model, ids, first, norm=False))]


def _expect_text(fn, g: torch.Generator, eot: int, low: int, high: int, pad: int, situation: str) -> None:
    model = _tower(g, eot)
    for batch, length in [(4, 12), (3, 16)]:
        ids = _captions(g, batch, length, eot, low, high, pad)
        got = fn(model, ids)
        with torch.no_grad():
            expect_like(got, model(ids), lambda: _text_mistakes(model, ids),
                        f"text_forward of {batch} captions of {length} tokens {situation}", tol=1e-4)


def _check_text_like_clip(fn, seed: int) -> None:
    _expect_text(fn, _gen(seed), eot=63, low=1, high=63, pad=0,
                 situation="on CLIP-style ids (end-of-text 63 is the largest id, pad 0)")


def _check_text_by_id(fn, seed: int) -> None:
    _expect_text(fn, _gen(seed), eot=2, low=3, high=64, pad=2,
                 situation="where end-of-text is id 2, below the other ids, and also pads the row")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "causal_mask": (causal_mask,),
    "pool_at_eot": (pool_at_eot, eot_positions),
    # the tower's embeddings, blocks, ln_final and proj are the learner's to call; its own methods are the answer
    "text_forward": (TextTransformer.forward, TextTransformer.embed, TextTransformer.hidden_states, pool_at_eot,
                     eot_positions, causal_mask),
}


CHECKS = [
    Check("causal mask: True on and below the diagonal", "causal_mask", 2, _check_causal_mask,
          timeout=5, references=OWN["causal_mask"]),
    Check("pools at the end-of-text token of CLIP-style ids", "pool_at_eot", 2, _check_pool_like_clip,
          timeout=5, references=OWN["pool_at_eot"]),
    Check("finds the first end-of-text by its id", "pool_at_eot", 2, _check_pool_by_id,
          timeout=5, references=OWN["pool_at_eot"]),
    Check("text_forward gives TextTransformer's embedding of CLIP-style ids", "text_forward", 2,
          _check_text_like_clip, timeout=10, references=OWN["text_forward"]),
    Check("text_forward pools at the first end-of-text, found by its id", "text_forward", 3,
          _check_text_by_id, timeout=10, references=OWN["text_forward"]),
]
