"""exercises/ is generated from solutions/: they must stay in sync, and hold no answers."""

import json

import pytest

from conftest import REPO
from minimodal.grading.exercises import BEGIN, END, exercise_text, solution_notebooks, strip_solutions
from minimodal.grading.suites import find_suite

SOLUTIONS = solution_notebooks(REPO)


def test_there_are_solutions():
    assert SOLUTIONS, "solutions/ holds no NN_topic.ipynb"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_is_generated_from_its_solution(solution):
    exercise = REPO / "exercises" / solution.name
    assert exercise.is_file(), f"{exercise.name} is missing: run `make exercises`"
    assert exercise.read_text() == exercise_text(solution), \
        f"exercises/{exercise.name} is out of date with its solution: run `make exercises`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_holds_no_answers_and_no_outputs(solution):
    cells = json.loads((REPO / "exercises" / solution.name).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c["outputs"] for c in code)
    assert not any(BEGIN in "".join(c["source"]) or END in "".join(c["source"]) for c in code)
    assert any("raise NotImplementedError" in "".join(c["source"]) for c in code)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_every_solution_has_a_graded_suite(solution):
    assert find_suite(solution.stem).CHECKS


def test_region_becomes_a_raise_with_the_hint_at_the_region_indent():
    source = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n"
              "    # HINT: double it\n    return 2 * x\n    ### END SOLUTION\n\nprint(f(1))")
    assert strip_solutions(source) == ("def f(x):\n    \"\"\"Doc.\"\"\"\n"
                                       "    raise NotImplementedError('double it')\n\nprint(f(1))")
