"""`make tour`: runs lessons in order, writes build/, counts verdicts, fails when a check fails."""

import nbformat

from conftest import write_notebook
from minimodal.tour import count_verdicts, tour

PASSING = 'print("✓ first check")\nprint("✓ second check")'
FAILING = ('from minimodal.check import claim\nprint("✓ a check that holds")\n'
           'claim(False, "accuracy at least 95%", "got 12%")')


def test_counts_printed_and_raised_verdicts(tmp_path):
    path = write_notebook(tmp_path / "x.ipynb", [PASSING])
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="✓ one\nnot a verdict\n✓ two\n"),
        nbformat.v4.new_output("error", ename="CheckFailed", evalue="✗ three: off", traceback=[]),
        nbformat.v4.new_output("error", ename="NameError", evalue="name x is not defined", traceback=[]),
    ]
    assert count_verdicts(notebook) == (2, 2)


def test_tour_runs_lessons_in_order_and_fails_on_a_failed_check(tmp_path, capsys):
    (tmp_path / "lessons").mkdir()
    write_notebook(tmp_path / "lessons" / "00_good.ipynb", [PASSING])
    write_notebook(tmp_path / "lessons" / "01_bad.ipynb", [FAILING])
    assert tour(tmp_path) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["lesson", "seconds", "passed", "failed"]
    assert table[1].split()[0] == "00_good" and table[1].split()[2:] == ["2", "0"]
    assert table[2].split()[0] == "01_bad" and table[2].split()[2:4] == ["1", "1"]
    assert "accuracy at least 95%" in table[2]
    for name in ("00_good.ipynb", "00_good.html", "01_bad.ipynb", "01_bad.html"):
        assert (tmp_path / "build" / "lessons" / name).is_file()


def test_tour_passes_when_every_check_holds(tmp_path):
    (tmp_path / "lessons").mkdir()
    write_notebook(tmp_path / "lessons" / "00_good.ipynb", [PASSING])
    assert tour(tmp_path) == 0
    assert tour(tmp_path, only=["07"]) == 1  # nothing matches: say so and fail
