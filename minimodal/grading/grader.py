"""Grade a learner's notebook: its code runs in a process of its own; every verdict is reached here.

The learner's process (``worker``) only executes the notebook and answers "what does your
function give on these inputs?". Each check runs in this process: it draws the inputs,
asks, and compares the answers with minimodal's own. So nothing the learner writes (a
hang, a crash, a sys.exit, a patched grader, a forged results file) can change a verdict:
at worst the learner's process is ended and restarted, and the check it was in fails with
the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minimodal.grading.cells import TimeLimit, describe, time_limit
from minimodal.grading.checks import GRADING, as_graded
from minimodal.grading.learner import Learner, LearnerDied, LearnerFunction
from minimodal.grading.suites import find_suite

CELL_TIMEOUT = 60.0


@dataclass
class Result:
    check: str
    function: str
    points: int
    earned: int
    message: str


@dataclass
class Report:
    notebook: str
    results: list[Result]
    cell_errors: list[str] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(r.earned for r in self.results)

    @property
    def total(self) -> int:
        return sum(r.points for r in self.results)

    def to_json(self) -> str:
        return json.dumps({"notebook": self.notebook, "score": self.score, "total": self.total,
                           "results": [asdict(r) for r in self.results],
                           "cell_errors": self.cell_errors}, indent=2)

    def table(self) -> str:
        """The points table a learner reads."""
        width = max(len(r.check) for r in self.results)
        lines = [f"Grading {self.notebook}", ""]
        for r in self.results:
            mark = "✓" if r.earned else "✗"
            points = f"{r.earned}/{r.points}"
            lines.append(f"{mark} {r.check:<{width}}  {points:>5}"
                         + ("" if r.earned else f"  {r.message}"))
        if self.cell_errors:
            lines += ["", "Cells that raised while the notebook ran:"]
            lines += [f"  {e}" for e in self.cell_errors]
        lines += ["", f"Score: {self.score}/{self.total}"]
        return "\n".join(lines)


def grade(notebook, seed: int = 0, cell_timeout: float = CELL_TIMEOUT) -> Report:
    """Run the notebook's checks (the suite is chosen by the notebook's file name)."""
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    checks = find_suite(path.stem).CHECKS
    learner = Learner(path, cell_timeout)
    try:
        learner.start()
        outcomes = [run_check(check, LearnerFunction(learner, check.function, check.timeout, check.references),
                              seed + index) for index, check in enumerate(checks)]
    except LearnerDied as err:
        outcomes = [(False, str(err))] * len(checks)
    finally:
        learner.close()
    results = [Result(check=check.name, function=check.function, points=check.points,
                      earned=check.points if passed else 0, message=message)
               for check, (passed, message) in zip(checks, outcomes)]
    return Report(notebook=str(path), results=results, cell_errors=learner.cell_errors)


def run_check(check, fn, seed: int) -> tuple[bool, str]:
    """(passed, why): the check's verdict on ``fn``, the learner's function or a stand-in for it."""
    try:
        note = check.run(fn, seed)
    except TimeLimit:
        return False, f"ran past its {check.timeout:g} s time limit (an infinite loop, or far too slow)"
    except LearnerDied as err:
        return False, str(err)
    except Exception as err:
        return False, describe(err)
    return True, note or "passed"


def self_check(exercise: int, fn) -> None:
    """Run the graded checks of ``fn`` on the spot and print each verdict: a learner's try before grading.

    The same checks, inputs, time limits and refusal of minimodal's own code as ``grade``;
    but they run in the notebook's process, so only ``grade`` gives the points. While the
    grader runs the notebook it does nothing: the grader runs every check itself.
    """
    if os.environ.get(GRADING):
        print(f"self_check({exercise}, {getattr(fn, '__name__', fn)!r}) skipped: the grader is running this notebook")
        return
    suite = find_suite(f"{exercise:02d}_")
    name = getattr(fn, "__name__", "")
    checks = [(seed, check) for seed, check in enumerate(suite.CHECKS) if check.function == name]
    if not checks:
        graded = ", ".join(sorted({check.function for check in suite.CHECKS}))
        raise ValueError(f"exercise {exercise:02d} grades no function named {name!r}; it grades {graded}")
    earned = 0
    for seed, check in checks:
        try:
            with time_limit(check.timeout):
                passed, message = run_check(check, as_graded(check, fn), seed)
        except TimeLimit:
            passed, message = False, f"ran past its {check.timeout:g} s time limit"
        earned += check.points if passed else 0
        print(f"✓ {check.name}" + ("" if message == "passed" else f": {message}") if passed
              else f"✗ {check.name}: {message}")
    print(f"{name}: {earned}/{sum(check.points for _, check in checks)} points")
