"""The last lines of a text file, read from its end: task logs can be large, and the
engine only ever shows their tail (task logs, an executor's start-up output)."""
from __future__ import annotations

import os
from pathlib import Path

LOG_CHUNK = 64 * 1024  # bytes read at a time from the end of a file


class TaskLogError(RuntimeError):
    """A task's log could not be read where it is kept; the message names the task, the
    agent and the path (a Mesos agent's sandbox, for instance)."""


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file (all of it when it is shorter), read from the end."""
    if lines <= 0:
        return ""
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        position = file.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(LOG_CHUNK, position)
            position -= step
            file.seek(position)
            data = file.read(step) + data
    return last_lines(data, lines)


def last_lines(data: bytes, lines: int) -> str:
    """The last `lines` lines of text already read (a log fetched over HTTP, say)."""
    if lines <= 0:
        return ""
    return "".join(data.decode("utf-8", errors="replace").splitlines(keepends=True)[-lines:])
