"""Grade a learner's notebook: run it in a worker process, collect one result per check.

The grader itself never executes learner code, so nothing the learner writes (a hang,
a crash, a sys.exit) can take it down: at worst the worker dies and every check it did
not reach is reported as failed, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minimodal.grading.suites import find_suite

CELL_TIMEOUT = 60.0
STARTUP_ALLOWANCE = 60.0  # importing torch and friends in the worker, on a slow machine


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
    with tempfile.TemporaryDirectory() as scratch:
        results_file = Path(scratch) / "results.jsonl"
        results_file.touch()
        budget = STARTUP_ALLOWANCE + cell_timeout * _count_code_cells(path) + sum(c.timeout for c in checks)
        exit_note = _run_worker(path, results_file, seed, cell_timeout, budget)
        records = [json.loads(line) for line in results_file.read_text().splitlines() if line]
    cell_errors = next((r["cell_errors"] for r in records if "cell_errors" in r), [])
    outcome = {r["index"]: r for r in records if "index" in r}
    results = []
    for index, check in enumerate(checks):
        record = outcome.get(index, {"passed": False, "message": exit_note})
        results.append(Result(check=check.name, function=check.function, points=check.points,
                              earned=check.points if record["passed"] else 0,
                              message=record["message"]))
    return Report(notebook=str(path), results=results, cell_errors=cell_errors)


def _count_code_cells(path: Path) -> int:
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return sum(1 for c in cells if c.get("cell_type") == "code")


def _run_worker(path: Path, results_file: Path, seed: int, cell_timeout: float, budget: float) -> str:
    """Run the worker; return what to say for checks it never reached."""
    command = [sys.executable, "-m", "minimodal.grading.worker", str(path.resolve()), path.stem,
               str(results_file), "--seed", str(seed), "--cell-timeout", str(cell_timeout)]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run(command, cwd=path.resolve().parent, env=env, timeout=budget,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return f"not reached: the notebook ran past the grader's {budget:.0f} s budget"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"not reached: the notebook ended the grader's process (exit {done.returncode}: {last})"
    return "not reached"
