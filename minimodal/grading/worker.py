"""The grader's worker: runs a learner's notebook and its checks, inside its own process.

A learner's code may loop forever, crash, print a flood or call sys.exit. So it never
runs in the grader's own process: this worker executes the notebook's code cells one
by one (a cell that raises is recorded and skipped), then runs each check under an
alarm, and appends one JSON line per result to a file. If the worker dies, the results
already written survive and the grader marks the rest as failed.

Usage: python -m minimodal.grading.worker NOTEBOOK SUITE RESULTS [--seed N] [--cell-timeout S]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import traceback

os.environ.setdefault("MPLBACKEND", "Agg")  # figures are drawn off screen, plt.show() is a no-op


class TimeLimit(BaseException):
    """Raised by the alarm; a BaseException so a learner's `except Exception` cannot swallow it."""


def _on_alarm(signum, frame):
    raise TimeLimit()


@contextlib.contextmanager
def time_limit(seconds: float):
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
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
    """'ValueError: bad shape (line 4)': the error and the learner's line it came from."""
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


def run_notebook(cells: list[str], cell_timeout: float) -> tuple[dict, list[str]]:
    """Execute the cells in one namespace; return it and the errors of cells that failed."""
    namespace: dict = {"__name__": "__main__"}
    errors = []
    for number, source in enumerate(cells, start=1):
        sink = io.StringIO()
        try:
            code = compile(source, f"<cell {number}>", "exec")
            with time_limit(cell_timeout), contextlib.redirect_stdout(sink), \
                    contextlib.redirect_stderr(sink):
                exec(code, namespace)
        except SyntaxError as err:
            errors.append(f"cell {number}: SyntaxError: {err.msg} (line {err.lineno})")
        except SystemExit as err:
            errors.append(f"cell {number}: called sys.exit({err.code!r}); the grader went on")
        except (Exception, TimeLimit) as err:
            errors.append(f"cell {number}: {describe(err)}")
    return namespace, errors


def run_check(check, namespace: dict, seed: int) -> tuple[bool, str]:
    fn = namespace.get(check.function)
    if not callable(fn):
        return False, f"`{check.function}` is not defined in the notebook (did its cell run?)"
    sink = io.StringIO()
    try:
        with time_limit(check.timeout), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            check.run(fn, seed)
    except TimeLimit:
        return False, f"ran past its {check.timeout:g} s time limit (an infinite loop, or far too slow)"
    except Exception as err:
        return False, describe(err)
    return True, "passed"


def main(argv=None) -> None:
    from minimodal.grading.suites import find_suite

    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("suite")
    parser.add_argument("results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    suite = find_suite(args.suite)
    with open(args.results, "a", encoding="utf-8") as out:
        def emit(record: dict) -> None:
            out.write(json.dumps(record) + "\n")
            out.flush()

        namespace, errors = run_notebook(code_cells(args.notebook), args.cell_timeout)
        emit({"cell_errors": errors})
        for index, check in enumerate(suite.CHECKS):
            passed, message = run_check(check, namespace, args.seed + index)
            emit({"index": index, "passed": passed, "message": message})


if __name__ == "__main__":
    main()
