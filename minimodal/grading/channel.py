"""The pipe between the grader and the learner's process: length-prefixed messages, read with a deadline.

The two directions are not trusted alike. The grader's requests are pickles: the learner's
process may run anything anyway. The learner's replies are read with ``torch.load(...,
weights_only=True)``, which rebuilds tensors, numbers, strings and containers (and the few
classes a check names) but never runs code: a forged reply can only be a wrong answer.
"""

from __future__ import annotations

import io
import os
import select
import struct
import time

import torch

HEADER = struct.Struct("<Q")  # the length of the message that follows, in bytes
MAX_MESSAGE = 1 << 30


class ChannelClosed(Exception):
    """The other side closed the pipe (its process ended) before a whole message arrived."""


class Timeout(Exception):
    """No whole message arrived before the deadline."""


def send(fd: int, payload: bytes) -> None:
    data = memoryview(HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def receive(fd: int, deadline: float | None = None) -> bytes:
    """One whole message; waits until ``deadline`` (a time.monotonic() value), or for ever if None."""
    (length,) = HEADER.unpack(_read_exactly(fd, HEADER.size, deadline))
    if length > MAX_MESSAGE:
        raise ChannelClosed(f"a message of {length} bytes announced; the limit is {MAX_MESSAGE}")
    return _read_exactly(fd, length, deadline)


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, missing = [], size
    while missing:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise Timeout()
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise Timeout()
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise ChannelClosed("the other side closed the pipe")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def pack_reply(reply) -> bytes:
    buffer = io.BytesIO()
    torch.save(reply, buffer)
    return buffer.getvalue()


def unpack_reply(data: bytes, safe_types: tuple = ()) -> object:
    """A reply as data; ``safe_types`` are the extra classes it may hold (e.g. a KV cache a check sent)."""
    with torch.serialization.safe_globals(list(safe_types)):
        return torch.load(io.BytesIO(data), weights_only=True)
