"""What the grading tests of lessons 02-04 share: wrong versions, run through a suite's checks.

A wrong version is learner code that defines one function the way a classic mistake would.
Running the suite's checks on it directly takes milliseconds, so every wrong version is
tried against every check of its function; the grader itself (a notebook run in a worker
process, seconds each) is exercised a few times per suite, with several wrong versions
batched in one notebook.
"""

from __future__ import annotations

from pathlib import Path

from minimodal.grading import grade
from minimodal.grading.exercises import exercise_text


def define(source: str, name: str):
    """The function ``name`` that ``source`` defines, as the learner's notebook would."""
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]


def failed_checks(checks, function: str, fn, seed: int = 0) -> dict[str, str]:
    """{check name: message} for the checks of ``function`` that ``fn`` fails."""
    failed = {}
    for check in checks:
        if check.function == function:
            try:
                check.run(fn, seed)
            except AssertionError as error:
                failed[check.name] = str(error)
    return failed


def assert_fails_exactly(checks, source: str, expected: set[str], phrase: str) -> None:
    """The function ``source`` defines fails exactly the ``expected`` checks, and a message says ``phrase``."""
    function = next(check.function for check in checks if f"def {check.function}(" in source)
    failed = failed_checks(checks, function, define(source, function))
    assert set(failed) == expected, failed
    assert any(phrase in message for message in failed.values()), failed


def assert_full_marks(solution: Path, total: int) -> None:
    report = grade(solution, seed=0)
    assert report.score == report.total == total, report.table()


def assert_fresh_exercise_scores_zero(solution: Path, folder: Path, total: int) -> None:
    """The exercise made from ``solution``, never filled in, earns nothing and says why."""
    exercise = folder / solution.name
    exercise.write_text(exercise_text(solution))
    report = grade(exercise, seed=0)
    assert report.score == 0 and report.total == total, report.table()
    assert all("NotImplementedError" in r.message for r in report.results), report.table()
