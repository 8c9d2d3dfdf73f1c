"""The grader's side of the learner's process: start it, and call the functions its notebook defined.

The grader never runs learner code. It starts ``minimodal.grading.worker`` on the notebook,
waits for each cell with its own clock (a cell that never ends, even one whose bare
``except:`` swallows the worker's alarm, or that ends the process, is left out of a
restarted run), then hands each check a ``LearnerFunction``: calling it sends the inputs to
the learner's process and returns the outputs, read as data. The check compares them with
minimodal's own answers here, where the learner's code cannot reach.
"""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minimodal.grading.channel import ChannelClosed, Timeout, receive, send, unpack_reply
from minimodal.grading.cells import TimeLimit, code_cells

STARTUP_ALLOWANCE = 60.0  # importing torch and friends in a fresh process, on a slow machine
GRACE = 2.0  # how long past a time limit the grader waits before it ends the learner's process


class LearnerDied(Exception):
    """The learner's process ended while it was running the learner's code."""


class Learner:
    """The notebook, executed in a process of its own, restarted when a call kills or hangs it."""

    def __init__(self, notebook: Path, cell_timeout: float):
        self.notebook, self.cell_timeout = Path(notebook).resolve(), cell_timeout
        self.cells = len(code_cells(str(self.notebook)))
        self.skipped: set[int] = set()  # cells that hung or ended the process: a restart leaves them out
        self.errors: dict[int, str] = {}  # cell number -> what went wrong, from the first run of each cell
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    @property
    def cell_errors(self) -> list[str]:
        return [self.errors[n] for n in sorted(self.errors)]

    def start(self) -> None:
        """Run the notebook's cells, restarting past any cell that hangs or ends the process."""
        while self.process is None:
            self._spawn()
            deadline, cell = time.monotonic() + STARTUP_ALLOWANCE + self.cell_timeout + GRACE, 0
            while True:
                try:
                    message = _message(receive(self.replies, deadline))
                except Timeout:
                    self._lost(cell + 1, "ran past its time limit (an infinite loop, or far too slow)")
                    break
                except ChannelClosed:
                    self._lost(cell + 1, f"ended the notebook's process ({self._exit()}); the grader "
                                         "went on without it")
                    break
                if message.get("ready") is True:
                    return
                if isinstance(message.get("cell"), int):  # anything else was not sent by the worker: ignored
                    cell = message["cell"]
                    if message.get("error"):
                        self.errors.setdefault(cell, str(message["error"]))
                    deadline = time.monotonic() + self.cell_timeout + GRACE

    def _lost(self, after: int, what: str) -> None:
        """The cell after ``after - 1`` (counting skipped ones) hung or killed the process: skip it."""
        self.stop()
        number = min(n for n in range(after, self.cells + 2) if n not in self.skipped)
        if number > self.cells:
            raise LearnerDied(f"the notebook's process could not be started: it {what}")
        self.skipped.add(number)
        self.errors.setdefault(number, f"cell {number}: {what}")

    def _spawn(self) -> None:
        requests_r, self.requests = os.pipe()
        self.replies, replies_w = os.pipe()
        command = [sys.executable, "-m", "minimodal.grading.worker", str(self.notebook), str(requests_r),
                   str(replies_w), "--cell-timeout", str(self.cell_timeout),
                   "--skip", *map(str, sorted(self.skipped))]
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        self.log.seek(0)
        self.log.truncate()
        self.process = subprocess.Popen(command, cwd=self.notebook.parent, env=env,
                                        pass_fds=(requests_r, replies_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        os.close(requests_r)
        os.close(replies_w)

    def _exit(self) -> str:
        """'exit 3: the last line the process wrote to stderr', once it has ended."""
        try:
            code = self.process.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        self.log.seek(0)
        last = (self.log.read().decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        return f"exit {code}: {last}"

    def close(self) -> None:
        self.stop()
        self.log.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            os.close(self.requests)
            os.close(self.replies)
            self.process = None

    def call(self, function: str, program, args: tuple, kwargs: dict, timeout: float,
             references: tuple = (), safe_types: tuple = ()):
        """``program(f, *args, **kwargs)`` in the learner's process, f being its ``function``; the result."""
        self.start()
        request = {"function": function, "program": program, "args": args, "kwargs": kwargs,
                   "timeout": timeout, "references": references}
        try:
            send(self.requests, pickle.dumps(request))
            data = receive(self.replies, time.monotonic() + timeout + GRACE)
        except Timeout:
            self.stop()
            raise TimeLimit() from None
        except (ChannelClosed, BrokenPipeError):
            why = self._exit()
            self.stop()
            raise LearnerDied(f"`{function}` ended the notebook's process ({why})") from None
        try:
            reply = unpack_reply(data, safe_types)
        except Exception as err:
            raise AssertionError(f"`{function}` returned something the grader cannot read ({err}); "
                                 "return tensors, numbers, strings, lists, tuples or dicts") from None
        return _outcome(function, reply)


def _message(data: bytes) -> dict:
    """A message from the worker as a dict; {} for bytes the notebook forged into something else."""
    try:
        message = unpack_reply(data)
    except Exception:
        return {}
    return message if isinstance(message, dict) else {}


def _outcome(function: str, reply):
    if not isinstance(reply, dict):
        reply = {}
    if "value" in reply:
        return reply["value"]
    if "timeout" in reply:
        raise TimeLimit()
    if "missing" in reply:
        raise AssertionError(f"`{function}` is not defined in the notebook (did its cell run?)")
    if "unreadable" in reply:
        raise AssertionError(f"`{function}` returned a {reply['unreadable']}, which the grader cannot read; "
                             "return tensors, numbers, strings, lists, tuples or dicts")
    if "raised" in reply:
        raise _as_raised(str(reply["raised"]), str(reply.get("message")))
    raise AssertionError(f"the notebook's process answered the call of `{function}` with something that is "
                         "not an answer (did the notebook write to the grader's pipe?)")


def _as_raised(type_name: str, message: str) -> Exception:
    """The learner's exception, rebuilt as the builtin type it was (a check may expect a ValueError)."""
    kind = getattr(builtins, type_name, None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        kind = Exception
    try:
        error = kind(message)
    except TypeError:
        error = Exception(message)
    error.learner_message = message
    return error


class LearnerFunction:
    """The learner's ``function``, as a check calls it; all its calls within one check share a time limit."""

    def __init__(self, learner: Learner, function: str, timeout: float, references: tuple = ()):
        self.learner, self.function, self.references = learner, function, references
        self.__name__ = function
        self.time_left = timeout

    def __call__(self, *args, **kwargs):
        return self.run_program(None, *args, **kwargs)

    def run_program(self, program, *args, safe_types: tuple = (), **kwargs):
        if self.time_left <= 0:
            raise TimeLimit()
        start = time.monotonic()
        try:
            return self.learner.call(self.function, program, args, kwargs, self.time_left, self.references,
                                     safe_types)
        finally:
            self.time_left -= time.monotonic() - start
