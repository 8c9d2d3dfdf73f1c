"""What a graded check is, and the small assertions checks are written with.

A suite (one module in ``minimodal/grading/suites/`` per exercise notebook) lists
``Check`` objects. Each check takes the function the learner wrote, calls it on
randomized inputs, and compares against minimodal's own implementation. A check
fails by raising AssertionError with a message a learner can act on.

When grading, the check runs in the grader's process and ``fn`` is a stand-in that sends
the inputs to the learner's process and brings back the outputs as data (tensors lose their
autograd graph on the way). What must happen next to the learner's code, a backward pass,
a cache carried from step to step, is a small *program* that ``in_learner`` runs there.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from dataclasses import dataclass
from typing import Callable

import torch

GRADING = "MINIMODAL_GRADING"  # set in the learner's process while the grader runs its notebook


@dataclass(frozen=True)
class Check:
    """One graded property of one learner function.

    run(fn, seed) calls the learner's ``fn`` and raises AssertionError on a wrong answer; it may
    return a note on a right one (what was measured). ``seed`` makes its random inputs reproducible. ``timeout``: the seconds the learner's
    code may take over all its calls in this check. ``references``: minimodal's functions
    that make up the answer; a call of ``fn`` that reaches any of them is refused.
    """

    name: str
    function: str
    points: int
    run: Callable[[Callable, int], None]
    timeout: float = 10.0
    references: tuple[Callable, ...] = ()


def as_graded(check: Check, fn: Callable) -> Callable:
    """``fn`` called as the learner's process calls it for ``check``: refused if it reaches minimodal's own code.

    For running checks in one process: the tests of the suites, and a learner's self-check.
    """
    def call(*args, **kwargs):
        with own_code_refused(check.function, *check.references):
            return fn(*args, **kwargs)
    call.__name__ = check.function
    return call


def in_learner(fn, program: Callable, *args, safe_types: tuple = ()):
    """``program(fn, *args)`` where ``fn`` lives: in the learner's process when grading.

    ``program`` must be a module-level function of a suite (it travels by name) and return
    data: tensors, numbers, strings, containers, and instances of ``safe_types``.
    """
    run_program = getattr(fn, "run_program", None)
    if run_program is None:
        return program(fn, *args)
    return run_program(program, *args, safe_types=safe_types)


def expect_tensor(value, *, shape: tuple | None = None, what: str = "the result") -> torch.Tensor:
    """Insist on a tensor (of a given shape) so later comparisons give clear messages."""
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def expect_close(actual, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5,
                 what: str = "the result") -> None:
    """Compare with the reference and report the worst element when they differ."""
    actual = expect_tensor(actual, shape=tuple(expected.shape), what=what)
    actual, expected = actual.detach().double(), expected.detach().double()
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{what} contains inf or nan where the reference is finite")
    diff = (actual - expected).abs()
    if (diff > atol + rtol * expected.abs()).any():
        i = int(diff.argmax())
        raise AssertionError(
            f"{what} differs from the reference: max abs diff {diff.max().item():.3g} "
            f"(got {actual.flatten()[i].item():.6g}, expected {expected.flatten()[i].item():.6g})")


def expect_equal(actual, expected, *, what: str = "the result") -> None:
    """Exact equality, for ids, counts and lists."""
    if actual != expected:
        raise AssertionError(f"{what} is {actual!r}, expected {expected!r}")


def expect_like(actual, expected: torch.Tensor, mistakes, what: str, tol: float = 1e-5) -> None:
    """expect_close; when it fails, name the first of the classic mistakes the answer reproduces.

    ``mistakes``: (hint, what that mistake computes on the same inputs) pairs, or a function
    that makes them, called only when the answer is wrong.
    """
    try:
        expect_close(actual, expected, what=what, atol=tol, rtol=tol)
    except AssertionError as error:
        hint = ""
        if isinstance(actual, torch.Tensor):
            got, near = actual.detach().double(), max(1e-3, tol)
            hint = next((h for h, wrong in (mistakes() if callable(mistakes) else mistakes) if got.shape
                         == wrong.shape and torch.allclose(got, wrong.double(), atol=near, rtol=near)), "")
        raise AssertionError(f"{error}. {hint}" if hint else str(error)) from None


@contextlib.contextmanager
def own_code_refused(function: str, *references: Callable):
    """Inside, the learner's ``function`` runs; if anything it calls reaches minimodal's own
    implementation (``references``: the functions that make up the answer), an AssertionError
    is raised once it is done, however the call was made (imported, copied, wrapped).
    """
    codes, reached = {inspect.unwrap(ref).__code__ for ref in references}, []  # the code under decorators
    previous = sys.getprofile()

    def watch(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            reached.append(frame.f_code.co_qualname)

    sys.setprofile(watch)
    try:
        yield
    finally:
        sys.setprofile(previous)
        if reached:
            raise AssertionError(f"{function} calls minimodal's own implementation ({reached[0]}): write it "
                                 f"yourself; the grader compares your version with minimodal's")
