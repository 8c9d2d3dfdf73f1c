"""Assert-close helpers that print one stable line.

Lessons and tests end with a validation: "is my piece equal to the real thing?". These
helpers answer with a single line that reads the same on every machine (so notebooks
under nbval can store it), and, when the answer is no, say by how much, where, and
which layer of a stack went wrong first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

PASS, FAIL = "✓", "✗"


class CheckFailed(AssertionError):
    """A validation that did not hold; the message starts with ✗ and says why."""


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    return torch.as_tensor(np.asarray(x))


def _difference(actual, expected, atol: float, rtol: float) -> str | None:
    """None when close, else a sentence: the max difference and where it is."""
    a, e = _as_tensor(actual), _as_tensor(expected)
    if a.shape != e.shape:
        return f"shape {tuple(a.shape)} is not the expected {tuple(e.shape)}"
    a, e = a.double(), e.double()
    if not torch.isfinite(a).all():
        bad = tuple(torch.nonzero(~torch.isfinite(a))[0].tolist())
        return f"non-finite value {a[bad].item()} at index {bad}"
    diff = (a - e).abs()
    excess = diff - (atol + rtol * e.abs())
    if a.numel() == 0 or excess.max() <= 0:
        return None
    where = tuple(int(i) for i in np.unravel_index(int(excess.argmax()), tuple(a.shape)))
    return (f"max abs diff {diff.max().item():.3g}; worst at index {where}: "
            f"{a[where].item():.6g} vs {e[where].item():.6g}")


def _tolerance(atol: float, rtol: float) -> str:
    return f"atol {atol:g}" + (f", rtol {rtol:g}" if rtol else "")


def claim(ok: bool, message: str, detail: str = "") -> None:
    """Print '✓ message' when ok, else raise CheckFailed('✗ message: detail')."""
    if not ok:
        raise CheckFailed(f"{FAIL} {message}" + (f": {detail}" if detail else ""))
    print(f"{PASS} {message}")


def assert_close(actual, expected, *, what: str, against: str,
                 atol: float = 1e-5, rtol: float = 0.0) -> None:
    """Check two tensors agree elementwise: |a - e| <= atol + rtol * |e|.

    >>> assert_close(mine, theirs, what="image embeddings", against="transformers CLIPVisionModel")
    ✓ image embeddings match transformers CLIPVisionModel (atol 1e-05)
    """
    problem = _difference(actual, expected, atol, rtol)
    tol = _tolerance(atol, rtol)
    claim(problem is None, f"{what} match {against} ({tol})" if problem is None
          else f"{what} differ from {against} ({tol})", problem or "")


def assert_close_layers(actual: Sequence, expected: Sequence, *, what: str, against: str,
                        atol: float = 1e-3, rtol: float = 1e-4,
                        names: Sequence[str] | None = None) -> None:
    """Check a stack of hidden states layer by layer and name the first that diverges.

    Errors compound through a deep stack, so the first layer that is off is where to look.
    """
    if len(actual) != len(expected):
        raise CheckFailed(f"{FAIL} {what}: {len(actual)} layers, but {against} has {len(expected)}")
    names = list(names) if names is not None else [f"layer {i}" for i in range(len(actual))]
    for name, a, e in zip(names, actual, expected):
        problem = _difference(a, e, atol, rtol)
        if problem is not None:
            raise CheckFailed(f"{FAIL} {what} differ from {against} ({_tolerance(atol, rtol)}): "
                              f"first diverging layer is {name}: {problem}")
    print(f"{PASS} {what} match {against} at all {len(actual)} layers ({_tolerance(atol, rtol)})")


def assert_equal(actual, expected, *, what: str, against: str) -> None:
    """Check exact equality (token ids, predictions) and show the first mismatch."""
    a, e = _as_tensor(actual), _as_tensor(expected)
    if a.shape != e.shape:
        raise CheckFailed(f"{FAIL} {what} differ from {against}: shape {tuple(a.shape)} "
                          f"is not the expected {tuple(e.shape)}")
    mismatch = torch.nonzero(a != e)
    detail = ""
    if len(mismatch):
        where = tuple(mismatch[0].tolist())
        detail = (f"{len(mismatch)} of {a.numel()} differ; first at index {where}: "
                  f"{a[where].item()} vs {e[where].item()}")
    claim(not detail, f"{what} equal {against} exactly" if not detail
          else f"{what} differ from {against}", detail)


@torch.no_grad()
def randomized(model: torch.nn.Module, seed: int | torch.Generator = 0) -> torch.nn.Module:
    """``model`` in eval mode with every parameter drawn at random, for a parity check.

    A fresh model starts with biases at zero, norm gains at one and some embeddings at
    zero: a swapped or forgotten tensor would then change nothing, and a comparison would
    pass without proving anything. Vectors ~ N(1, 0.5^2), matrices ~ N(0, 0.2^2).
    ``seed`` may be a generator, so that a grading check's draws go on from it.
    """
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    for p in model.parameters():
        values = torch.randn(p.shape, generator=generator)
        p.copy_(values * 0.5 + 1.0 if p.dim() == 1 else values * 0.2)
    return model.eval()
