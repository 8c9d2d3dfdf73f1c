"""What the grading tests share: wrong versions run through a suite's checks, and the usual cases.

A wrong version is learner code that defines one function the way a classic mistake would.
Running the suite's checks on it directly takes milliseconds, so every wrong version is
tried against every check of its function; the grader itself (a notebook run in a worker
process, seconds each) is exercised a few times per suite, with several wrong versions
batched in one notebook.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from conftest import REPO
from minimodal.grading import grade
from minimodal.grading.checks import as_graded
from minimodal.grading.exercises import exercise_text


def define(source: str, name: str):
    """The function ``name`` that ``source`` defines, as the learner's notebook would."""
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]


def failed_checks(checks, function: str, fn, seed: int = 0, as_learner: bool = True) -> dict[str, str]:
    """{check name: message} for the checks of ``function`` that ``fn`` fails.

    ``as_learner``: ``fn`` is called as the learner's would be, refused if it reaches minimodal's
    own code; False for minimodal's own functions, which must pass the checks themselves.
    """
    failed = {}
    for check in checks:
        if check.function == function:
            try:
                check.run(as_graded(check, fn) if as_learner else fn, seed)
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


class SuiteCases:
    """The tests a graded suite owes: subclass as ``class TestSomething(SuiteCases)`` and fill in

    suite   the suite module (its NOTEBOOK and CHECKS);
    right   learner code defining every graded function correctly, written unlike minimodal's;
    wrong   {mistake: (learner code, the checks it must fail and only those, a phrase its message says)};
    graded  mistakes of different functions handed in together to the real grader;
    once    checks that train a model: the right functions pass them for one seed, not three.
    """

    suite: ModuleType
    right: str
    wrong: dict[str, tuple[str, set[str], str]]
    graded: tuple[str, ...]
    once: frozenset[str] = frozenset()

    def pytest_generate_tests(self, metafunc):
        if "mistake" in metafunc.fixturenames:
            metafunc.parametrize("mistake", sorted(self.wrong))

    @property
    def solution(self) -> Path:
        return REPO / "solutions" / f"{self.suite.NOTEBOOK}.ipynb"

    @property
    def total(self) -> int:
        return sum(check.points for check in self.suite.CHECKS)

    def test_the_right_functions_pass_every_check(self):
        for check in self.suite.CHECKS:
            fn = define(self.right, check.function)
            for seed in range(1 if check.name in self.once else 3):
                check.run(as_graded(check, fn), seed)

    def test_each_mistake_fails_exactly_its_checks(self, mistake):
        assert_fails_exactly(self.suite.CHECKS, *self.wrong[mistake])

    def test_solution_scores_full_marks(self):
        assert_full_marks(self.solution, self.total)

    def test_fresh_exercise_scores_zero_without_crashing(self, tmp_path):
        assert_fresh_exercise_scores_zero(self.solution, tmp_path, self.total)

    def test_the_grader_takes_exactly_the_points_of_the_mistakes(self, learner_notebook):
        sources = [self.wrong[mistake][0] for mistake in self.graded]
        expected = set().union(*(self.wrong[mistake][1] for mistake in self.graded))
        report = grade(learner_notebook(self.suite.NOTEBOOK, *sources), seed=0)
        lost = {r.check for r in report.results if not r.earned}
        assert lost == expected, report.table()
        assert report.score == self.total - sum(c.points for c in self.suite.CHECKS if c.name in lost)
