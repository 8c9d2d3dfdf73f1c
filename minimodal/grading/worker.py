"""The learner's process: runs the notebook, then calls the learner's functions on the grader's inputs.

A learner's code may loop forever, crash, print a flood, call sys.exit or tamper with
anything in its own process. So it runs here, never in the grader, and nothing decided here
counts: this process only executes the notebook's code cells one by one (reporting each
cell's error, if any), then answers the grader's requests, "call your function f on these
inputs", with the outputs. The grader compares them with minimodal's own answers in its own
process. A call that reaches minimodal's implementation of the function being graded is
refused here, and its answer never leaves.

Usage: python -m minimodal.grading.worker NOTEBOOK REQUESTS_FD REPLIES_FD [--cell-timeout S] [--skip N ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import numbers
import os
import pickle

from minimodal.grading.cells import TimeLimit, code_cells, describe, time_limit
from minimodal.grading.channel import pack_reply, receive, send
from minimodal.grading.checks import GRADING, own_code_refused

os.environ.setdefault("MPLBACKEND", "Agg")  # figures are drawn off screen, plt.show() is a no-op
os.environ[GRADING] = "1"            # self_check cells stay quiet: the grader runs every check itself


def run_cell(source: str, number: int, namespace: dict, timeout: float) -> str | None:
    """Execute one cell in the notebook's namespace; what went wrong, or None."""
    try:
        code = compile(source, f"<cell {number}>", "exec")
        with time_limit(timeout), _silenced():
            exec(code, namespace)
    except SyntaxError as err:
        return f"cell {number}: SyntaxError: {err.msg} (line {err.lineno})"
    except SystemExit as err:
        return f"cell {number}: called sys.exit({err.code!r}); the grader went on"
    except BaseException as err:
        return f"cell {number}: {describe(err)}"
    return None


def answer(request: dict, namespace: dict) -> dict:
    """Call the learner's function (or the grader's small program around it) on the request's inputs."""
    name = request["function"]
    fn = namespace.get(name)
    if not callable(fn):
        return {"missing": name}
    program = request["program"] or _call
    try:
        with time_limit(request["timeout"]), _silenced(), own_code_refused(name, *request["references"]):
            value = program(fn, *request["args"], **request["kwargs"])
    except TimeLimit:
        return {"timeout": True}
    except BaseException as err:
        return {"raised": type(err).__name__, "message": describe(err)}
    return {"value": plain(value)}


def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


@contextlib.contextmanager
def _silenced():
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def plain(value):
    """The value with its containers made the plain kinds the grader reads back (a Counter as a dict...)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return {plain(v) for v in value}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        return tuple(plain(v) for v in value)
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, int, float, complex)):
        return value.item() if hasattr(value, "item") else float(value)  # numpy scalars
    return value


def serve(notebook: str, requests: int, replies: int, cell_timeout: float, skip: set[int]) -> None:
    """Run the cells, then answer requests until the grader ends this process.

    The notebook runs in this process and may replace anything here, this function included;
    all that can change is the answers, and the grader judges those in its own process.
    """
    namespace: dict = {"__name__": "__main__"}
    for number, source in enumerate(code_cells(notebook), start=1):
        if number not in skip:
            send(replies, pack_reply({"cell": number, "error": run_cell(source, number, namespace, cell_timeout)}))
    send(replies, pack_reply({"ready": True}))
    while True:
        request = pickle.loads(receive(requests))
        reply = answer(request, namespace)
        try:
            data = pack_reply(reply)
        except Exception:
            data = pack_reply({"unreadable": type(reply.get("value")).__name__})
        send(replies, data)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("requests", type=int)
    parser.add_argument("replies", type=int)
    parser.add_argument("--cell-timeout", type=float, default=60.0)
    parser.add_argument("--skip", type=int, nargs="*", default=[])
    args = parser.parse_args(argv)
    serve(args.notebook, args.requests, args.replies, args.cell_timeout, set(args.skip))


if __name__ == "__main__":
    main()
