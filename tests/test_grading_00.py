"""The grader on the warm-up: right work passes, wrong or broken work fails, clearly and in time."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from minimodal.grading import grade

SOLUTION = REPO / "solutions" / "00_warmup.ipynb"
EXERCISE = REPO / "exercises" / "00_warmup.ipynb"

RIGHT = '''
import torch

def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)

def cosine_similarity_matrix(a, b):
    return (a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T

def top_k(scores, k):
    return scores.argsort(dim=-1, descending=True)[:, :k]
'''


def messages(report) -> dict[str, str]:
    return {r.check: r.message for r in report.results if not r.earned}


def test_solutions_score_full_marks():
    report = grade(SOLUTION)
    assert report.score == report.total == 10, report.table()
    assert report.cell_errors == []


def test_fresh_exercise_scores_zero_without_crashing():
    report = grade(EXERCISE)
    assert report.score == 0
    assert all("NotImplementedError" in r.message for r in report.results), report.table()


def test_a_right_answer_written_differently_passes(learner_notebook):
    report = grade(learner_notebook("00_warmup", RIGHT))
    assert report.score == report.total, report.table()


def test_softmax_without_max_shift_loses_the_stability_points(learner_notebook):
    naive = RIGHT + '''
def softmax(x, dim=-1):
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
'''
    report = grade(learner_notebook("00_warmup", naive))
    failed = messages(report)
    assert list(failed) == ["softmax is stable for large logits"], report.table()
    assert "subtract each row's max" in failed["softmax is stable for large logits"]


def test_cosine_without_normalizing_fails(learner_notebook):
    unnormalized = RIGHT + "\ndef cosine_similarity_matrix(a, b):\n    return a @ b.T\n"
    report = grade(learner_notebook("00_warmup", unnormalized))
    assert list(messages(report)) == ["cosine similarity matrix"], report.table()


def test_top_k_in_ascending_order_fails(learner_notebook):
    worst_first = RIGHT + "\ndef top_k(scores, k):\n    return scores.argsort(dim=-1)[:, -k:]\n"
    report = grade(learner_notebook("00_warmup", worst_first))
    assert "top_k indices" in messages(report)["top-k retrieval, best first"], report.table()


def test_wrong_shape_is_reported_as_a_shape(learner_notebook):
    unsliced = RIGHT + "\ndef top_k(scores, k):\n    return scores.argsort(dim=-1, descending=True)\n"
    report = grade(learner_notebook("00_warmup", unsliced))
    message = messages(report)["top-k retrieval, best first"]
    assert "has shape (5, 12), expected (5, 1)" in message, message


def test_infinite_loop_fails_its_checks_within_the_time_limit(learner_notebook):
    looping = RIGHT + "\ndef softmax(x, dim=-1):\n    while True:\n        pass\n"
    report = grade(learner_notebook("00_warmup", looping))
    failed = messages(report)
    assert set(failed) == {"softmax equals torch.softmax", "softmax is stable for large logits"}
    assert all("time limit" in m for m in failed.values()), report.table()


def test_an_endless_cell_is_stopped_and_the_rest_still_graded(learner_notebook):
    path = learner_notebook("00_warmup", RIGHT, "while True:\n    pass")
    report = grade(path, cell_timeout=3)
    assert report.score == report.total
    assert report.cell_errors == ["cell 2: ran past its time limit (an infinite loop, or far too slow)"]


def test_an_exception_is_reported_with_its_type_and_line(learner_notebook):
    raising = RIGHT + "\ndef cosine_similarity_matrix(a, b):\n    raise ValueError('no idea yet')\n"
    report = grade(learner_notebook("00_warmup", raising))
    message = messages(report)["cosine similarity matrix"]
    assert message.startswith("ValueError: no idea yet (cell 1, line"), message


def test_a_syntax_error_fails_the_functions_of_that_cell(learner_notebook):
    broken = "def softmax(x, dim=-1)\n    return x\n"
    path = learner_notebook("00_warmup", RIGHT.replace("def softmax", "def unused_softmax"), broken)
    report = grade(path)
    assert report.cell_errors[0].startswith("cell 2: SyntaxError"), report.cell_errors
    assert messages(report)["softmax equals torch.softmax"] == \
        "`softmax` is not defined in the notebook (did its cell run?)"
    assert report.score == 6  # cosine and top-k still count


def test_sys_exit_in_a_cell_does_not_stop_grading(learner_notebook):
    report = grade(learner_notebook("00_warmup", RIGHT, "import sys\nsys.exit(1)"))
    assert report.score == report.total
    assert "sys.exit(1)" in report.cell_errors[0]


def test_a_cell_that_ends_the_process_is_left_out_and_the_rest_still_graded(learner_notebook):
    report = grade(learner_notebook("00_warmup", RIGHT, "import os\nos._exit(3)"))
    assert report.score == report.total, report.table()
    assert report.cell_errors == ["cell 2: ended the notebook's process (exit 3: no message); "
                                  "the grader went on without it"]


def test_a_function_that_ends_the_process_fails_its_checks_only(learner_notebook):
    dying = RIGHT + "\nimport os\n\ndef top_k(scores, k):\n    os._exit(4)\n"
    report = grade(learner_notebook("00_warmup", dying))
    assert messages(report) == {"top-k retrieval, best first": "`top_k` ended the notebook's process "
                                                               "(exit 4: no message)"}


def test_a_bare_except_cannot_swallow_the_time_limit(learner_notebook):
    swallowing = RIGHT + """
import time

def softmax(x, dim=-1):
    while True:
        try:
            time.sleep(0.01)
        except:
            pass
"""
    report = grade(learner_notebook("00_warmup", swallowing))
    failed = messages(report)
    assert set(failed) == {"softmax equals torch.softmax", "softmax is stable for large logits"}, report.table()
    assert all("time limit" in m for m in failed.values()), report.table()


def test_minimodal_own_code_scores_nothing_however_it_is_reached(learner_notebook):
    borrowed = RIGHT + """
import minimodal.similarity
from minimodal.similarity import cosine_similarity_matrix

def top_k(scores, k):
    return minimodal.similarity.top_k(scores.clone(), k)
"""
    report = grade(learner_notebook("00_warmup", borrowed))
    failed = messages(report)
    assert set(failed) == {"cosine similarity matrix", "top-k retrieval, best first"}, report.table()
    assert "calls minimodal's own implementation (cosine_similarity_matrix)" in failed["cosine similarity matrix"]
    assert "calls minimodal's own implementation (top_k)" in failed["top-k retrieval, best first"]


FORGER = """
import json, os, sys, __main__
import minimodal.grading.grader as grader
from minimodal.grading.channel import pack_reply, send

passed = lambda *args, **kwargs: (True, "passed")
__main__.run_check = grader.run_check = passed
__main__.answer = lambda request, namespace: {"value": "forged"}
for index in range(4):
    record = json.dumps({"index": index, "passed": True, "message": "passed"}) + "\\n"
    for path in sys.argv[1:]:
        try:
            with open(path, "a") as f:
                f.write(record)
        except OSError:
            pass
for fd in sys.argv[2:4]:
    try:
        send(int(fd), pack_reply({"value": "forged"}))
        send(int(fd), pack_reply({"ready": True}))
    except (OSError, ValueError):
        pass
"""


def test_patching_the_grader_or_forging_its_records_scores_nothing(learner_notebook):
    wrong = "def softmax(x, dim=-1):\n    return x\n\ndef cosine_similarity_matrix(a, b):\n    return a @ b.T\n" \
            "\ndef top_k(scores, k):\n    return scores[:, :k]\n"
    report = grade(learner_notebook("00_warmup", wrong, FORGER))
    assert report.score == 0, report.table()


def test_cli_prints_json_and_exits_zero_only_on_full_marks():
    ok = subprocess.run([sys.executable, "-m", "minimodal", "grade", str(SOLUTION), "--json"],
                        capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert (data["score"], data["total"]) == (10, 10)
    failing = subprocess.run([sys.executable, "-m", "minimodal", "grade", str(EXERCISE)],
                             capture_output=True, text=True, cwd=REPO)
    assert failing.returncode == 1
    assert "Score: 0/10" in failing.stdout


def test_cli_names_an_ungraded_notebook(tmp_path):
    stray = tmp_path / "99_nothing.ipynb"
    stray.write_text("{}")
    done = subprocess.run([sys.executable, "-m", "minimodal", "grade", str(stray)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert "no graded suite for notebook '99_nothing'" in done.stderr


@pytest.mark.parametrize("bad", ["### BEGIN SOLUTION\nx = 1\n", "x = 1\n### END SOLUTION\n"])
def test_unbalanced_markers_are_an_error(bad):
    from minimodal.grading.exercises import strip_solutions
    with pytest.raises(ValueError, match="SOLUTION"):
        strip_solutions(bad)


def test_self_check_prints_each_verdict_and_refuses_minimodal_own_code(capsys):
    from minimodal.grading import self_check
    from minimodal.similarity import top_k

    namespace: dict = {}
    exec(RIGHT.replace("(x - x.amax(dim=dim, keepdim=True)).exp()", "x.exp()"), namespace)  # no max shift
    self_check(0, namespace["softmax"])
    self_check(0, top_k)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "✓ softmax equals torch.softmax"
    assert printed[1].startswith("✗ softmax is stable for large logits: softmax of logits near 1000 gave inf")
    assert printed[2] == "softmax: 2/4 points"
    assert printed[3].startswith("✗ top-k retrieval, best first: top_k calls minimodal's own implementation (top_k)")
    assert printed[4] == "top_k: 0/3 points"
    with pytest.raises(ValueError, match="exercise 00 grades no function named 'mean'; it grades "
                                         "cosine_similarity_matrix, softmax, top_k"):
        self_check(0, torch.mean)


def test_self_check_does_nothing_while_the_grader_runs_the_notebook(capsys, monkeypatch):
    from minimodal.grading import self_check
    from minimodal.grading.checks import GRADING

    calls = []
    monkeypatch.setenv(GRADING, "1")
    self_check(0, lambda x, dim=-1: calls.append(x))
    assert calls == []
    assert "skipped: the grader is running this notebook" in capsys.readouterr().out


def test_a_check_may_report_what_it_measured():
    from minimodal.grading.checks import Check
    from minimodal.grading.grader import run_check

    measured = Check("reaches the target", "f", 1, lambda fn, seed: f"reached {fn(seed):.0%}")
    assert run_check(measured, lambda seed: 0.5, 0) == (True, "reached 50%")
    plain = Check("is right", "f", 1, lambda fn, seed: None)
    assert run_check(plain, lambda seed: 0.5, 0) == (True, "passed")
