"""Learner code as the grader handles it: a notebook's code cells, a time limit, an error told plainly.

Shared by the learner's process (``worker``), which runs the cells, and the grader, which
counts them and words the errors the learner's process reports.
"""

from __future__ import annotations

import contextlib
import json
import signal
import traceback


class TimeLimit(BaseException):
    """Learner code ran past its time limit.

    Raised by the alarm in the learner's process: a BaseException, so that a learner's
    `except Exception` cannot swallow it. A bare `except:` can; then the grader, which waits
    with its own clock, ends that process and raises this on its side.
    """


def _on_alarm(signum, frame):
    raise TimeLimit()


@contextlib.contextmanager
def time_limit(seconds: float):
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def code_cells(notebook_path: str) -> list[str]:
    """Source of each code cell, with IPython-only lines (%magic, !shell) dropped."""
    with open(notebook_path, encoding="utf-8") as f:
        notebook = json.load(f)
    cells = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        cells.append("\n".join(lines))
    return cells


def describe(err: BaseException) -> str:
    """'ValueError: bad shape (cell 3, line 4)': the error and the learner's line it came from."""
    if getattr(err, "learner_message", None):  # an error the learner's process described already
        return err.learner_message
    if isinstance(err, TimeLimit):
        return "ran past its time limit (an infinite loop, or far too slow)"
    if isinstance(err, NotImplementedError):
        return "not implemented yet (raises NotImplementedError)"
    where = ""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<cell")]
    if frames:
        where = f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})"
    if isinstance(err, AssertionError):
        return (str(err) or "assertion failed") + where
    return f"{type(err).__name__}: {err}{where}"
