"""Warm-up: softmax, cosine similarities and top-k retrieval, the grader's first exercise."""

import torch

from minimodal.grading.checks import Check, expect_close, expect_equal, expect_tensor
from minimodal.similarity import cosine_similarity_matrix, top_k

NOTEBOOK = "00_warmup"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def softmax_matches(fn, seed):
    g = _gen(seed)
    for shape, dim in [((5,), -1), ((4, 7), -1), ((3, 6, 2), 1), ((2, 3, 4), 0)]:
        x = torch.randn(shape, generator=g) * 3
        expect_close(fn(x, dim=dim), torch.softmax(x, dim=dim), what=f"softmax over dim {dim} of shape {shape}")


def softmax_is_stable(fn, seed):
    x = torch.randn(4, 10, generator=_gen(seed)) * 5 + 1000.0  # exp(1000) overflows float32
    out = expect_tensor(fn(x, dim=-1), shape=(4, 10), what="softmax of large logits")
    if not torch.isfinite(out).all():
        raise AssertionError("softmax of logits near 1000 gave inf or nan: subtract each row's max first")
    expect_close(out, torch.softmax(x, dim=-1), what="softmax of large logits")


def cosine_matches(fn, seed):
    g = _gen(seed)
    a, b = torch.randn(6, 16, generator=g), torch.randn(9, 16, generator=g)
    scale = torch.rand(6, 1, generator=g) * 100 + 0.01  # lengths must not matter
    expect_close(fn(a * scale, b), cosine_similarity_matrix(a, b), what="cosine similarity matrix")


def top_k_matches(fn, seed):
    g = _gen(seed)
    scores = torch.randn(5, 12, generator=g)
    for k in (1, 3, 12):
        got = expect_tensor(fn(scores, k), shape=(5, k), what=f"top_k(scores, k={k})")
        expect_equal(got.tolist(), top_k(scores, k).tolist(), what=f"top_k indices for k={k}")


OWN = {  # minimodal's functions that make up each answer: a learner's function must not call them
    "softmax": (),
    "cosine_similarity_matrix": (cosine_similarity_matrix,),
    "top_k": (top_k,),
}


CHECKS = [  # each check is quick: 5 s is generous even on a slow machine
    Check("softmax equals torch.softmax", "softmax", 2, softmax_matches,
          timeout=5, references=OWN["softmax"]),
    Check("softmax is stable for large logits", "softmax", 2, softmax_is_stable,
          timeout=5, references=OWN["softmax"]),
    Check("cosine similarity matrix", "cosine_similarity_matrix", 3, cosine_matches,
          timeout=5, references=OWN["cosine_similarity_matrix"]),
    Check("top-k retrieval, best first", "top_k", 3, top_k_matches, timeout=5, references=OWN["top_k"]),
]
