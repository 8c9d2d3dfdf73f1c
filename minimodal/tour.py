"""Run every lesson headless, in course order, and say what each one validated.

`make tour` is the first thing a learner runs: it proves the whole course works on
their machine. Each lesson is executed in a fresh kernel; its executed copy and an HTML
page go to build/; its ✓ and ✗ lines are counted, since every lesson ends by checking
its piece against a reference.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from tqdm import tqdm

PASS, FAIL = "✓", "✗"


@dataclass
class LessonRun:
    name: str
    seconds: float
    passed: int
    failed: int
    error: str = ""


def lesson_paths(root: Path, only: list[str] | None = None) -> list[Path]:
    lessons = sorted(p for p in (root / "lessons").glob("*.ipynb") if re.match(r"\d\d_", p.name))
    if only:
        lessons = [p for p in lessons if any(p.name.startswith(o) for o in only)]
    return lessons


def count_verdicts(notebook) -> tuple[int, int]:
    """How many ✓ and ✗ lines the notebook's outputs hold; an error that is not a ✗ counts as one."""
    passed = failed = 0
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.output_type == "stream" else ""
            if out.output_type == "error":
                text = out.get("evalue", "")
                failed += not text.startswith(FAIL)
            for line in text.splitlines():
                passed += line.startswith(PASS)
                failed += line.startswith(FAIL)
    return passed, failed


def run_lesson(path: Path, build: Path, timeout: int = 1800) -> LessonRun:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, error = time.perf_counter(), ""
    try:
        client.execute()
    except CellExecutionError as err:
        error = str(err).strip().splitlines()[-1][:200]
    seconds = time.perf_counter() - start
    nbformat.write(notebook, build / path.name)
    html, _ = HTMLExporter().from_notebook_node(notebook)
    (build / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
    passed, failed = count_verdicts(notebook)
    if error and not failed:  # the kernel died or timed out before writing an error output
        failed = 1
    return LessonRun(path.stem, seconds, passed, failed, error)


def tour(root: Path, only: list[str] | None = None) -> int:
    lessons = lesson_paths(root, only)
    if not lessons:
        print(f"no lessons found under {root / 'lessons'}" + (f" matching {only}" if only else ""))
        return 1
    build = root / "build" / "lessons"
    build.mkdir(parents=True, exist_ok=True)
    runs = []
    with tqdm(lessons, unit="lesson", desc="tour") as bar:
        for path in bar:
            bar.set_postfix_str(path.stem)
            runs.append(run_lesson(path, build))
    print(summary(runs))
    print(f"\nExecuted notebooks and HTML pages: {build}")
    return 0 if all(r.failed == 0 for r in runs) else 1


def summary(runs: list[LessonRun]) -> str:
    width = max(len(r.name) for r in runs + [LessonRun("lesson", 0, 0, 0)])
    lines = [f"{'lesson':<{width}}  {'seconds':>8}  {'passed':>6}  {'failed':>6}"]
    for r in runs:
        lines.append(f"{r.name:<{width}}  {r.seconds:>8.1f}  {r.passed:>6}  {r.failed:>6}"
                     + (f"  {r.error}" if r.error else ""))
    total_passed, total_failed = sum(r.passed for r in runs), sum(r.failed for r in runs)
    lines.append(f"{'total':<{width}}  {sum(r.seconds for r in runs):>8.1f}  "
                 f"{total_passed:>6}  {total_failed:>6}")
    return "\n".join(lines)
