"""Make the learner's exercise notebooks from the solution notebooks.

Solutions are the source of truth: the code a learner must write sits between nbgrader's
markers. Each marked region becomes `raise NotImplementedError(<hint>)`, where the hint
is the region's first line if it reads `# HINT: ...`. Outputs are cleared, so the
exercise shows nothing the learner has not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "# HINT:"
DEFAULT_HINT = "write this part, then run the cell below to try it"


def strip_solutions(source: str) -> str:
    """Replace every marked region of a cell's source by a NotImplementedError with its hint."""
    out, region = [], None
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if region is not None:
                raise ValueError(f"nested '{BEGIN}' in:\n{source}")
            region = {"indent": line[: len(line) - len(line.lstrip())], "hint": None, "first": True}
            continue
        if stripped == END:
            if region is None:
                raise ValueError(f"'{END}' without '{BEGIN}' in:\n{source}")
            hint = region["hint"] or DEFAULT_HINT
            out.append(f"{region['indent']}raise NotImplementedError({hint!r})")
            region = None
            continue
        if region is None:
            out.append(line)
        else:
            if region["first"] and stripped.startswith(HINT):
                region["hint"] = stripped[len(HINT):].strip()
            region["first"] = False
    if region is not None:
        raise ValueError(f"'{BEGIN}' without '{END}' in:\n{source}")
    return "\n".join(out)


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    exercise = nbformat.v4.new_notebook(metadata=solution.metadata)
    for cell in solution.cells:
        if cell.cell_type == "code":
            exercise.cells.append(nbformat.v4.new_code_cell(strip_solutions(cell.source)))
        elif cell.cell_type == "markdown":
            exercise.cells.append(nbformat.v4.new_markdown_cell(cell.source))
        else:
            exercise.cells.append(nbformat.v4.new_raw_cell(cell.source))
    for number, cell in enumerate(exercise.cells):
        cell.id = f"cell-{number}"  # stable ids, so regenerating changes nothing
    return exercise


def exercise_text(solution_path: Path) -> str:
    """The exercise notebook for a solution notebook, as the text to write to disk."""
    solution = nbformat.read(solution_path, as_version=4)
    if not any(BEGIN in c.source for c in solution.cells if c.cell_type == "code"):
        raise ValueError(f"{solution_path} has no '{BEGIN}' region: nothing for a learner to write")
    return nbformat.writes(make_exercise(solution)) + "\n"


def solution_notebooks(root: Path) -> list[Path]:
    return sorted(p for p in (root / "solutions").glob("*.ipynb") if re.match(r"\d\d_", p.name))


def generate_exercises(root: Path) -> list[Path]:
    """Write exercises/NN_topic.ipynb for every solutions/NN_topic.ipynb; return what was written."""
    (root / "exercises").mkdir(exist_ok=True)
    written = []
    for solution in solution_notebooks(root):
        target = root / "exercises" / solution.name
        target.write_text(exercise_text(solution), encoding="utf-8")
        written.append(target)
    return written
