"""A task's log on a Mesos cluster, read where it is: the sandbox of its executor, over the
agent's HTTP API (reference §7; issue 6 "sandbox logs reachable from the engine").

The executor writes each task's output to `<sandbox>/<task id>.log`. The sandbox is the
directory of the executor run that holds the task, which the agent's `/state` names (a
run that ended stays listed among `completed_executors` while its sandbox is kept). A
long-running task's log can be gigabytes and the operator asks for a few lines, so only
its tail is read, the way the Mesos web UI pages a file, through `/files/read`:

- `offset=-1` answers `{"data": "", "offset": <size of the file>}`;
- `offset=O&length=L` answers up to L bytes from byte O, at most 16 pages (64 KiB) a
  request, whatever L asks; an offset at or past the end answers no data;
- `data` is the file's bytes as they are: Mesos escapes only `"`, `\\` and the control
  characters (as `\\uXXXX`) and writes every other byte raw, so a reply holding
  non-UTF-8 bytes is not UTF-8 JSON. Read as Latin-1, each byte is one character, and
  the decoded string encodes back to the exact bytes.

Nothing here depends on the engine's machine seeing the agent's disk. Blocking HTTP: call
it from a worker thread.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from engine.logtail import LOG_CHUNK, TaskLogError, last_lines
from engine.scheduler.mesos.master_agents import HTTP_TIMEOUT, MasterUnreachable, get_json

_TASK_LISTS = ("tasks", "queued_tasks", "completed_tasks")
CHUNK_GROWTH = 4  # each step back from the end reads this many times more than the last


def _entries(document: Mapping[str, Any], *keys: str) -> Iterable[Mapping[str, Any]]:
    for key in keys:
        for entry in document.get(key) or ():
            if isinstance(entry, Mapping):
                yield entry


def task_sandbox(agent_state: Mapping[str, Any], framework_id: str, task_id: str) -> str:
    """The sandbox directory of the executor run holding `task_id` ("" when the agent's
    `/state` lists no such run): the newest run first, ended runs after live ones."""
    for framework in _entries(agent_state, "frameworks", "completed_frameworks"):
        if framework.get("id") != framework_id:
            continue
        for executor in _entries(framework, "executors", "completed_executors"):
            if any(task.get("id") == task_id for task in _entries(executor, *_TASK_LISTS)):
                return str(executor.get("directory", ""))
    return ""


class _SandboxFile:
    """One file of an agent's sandbox, read in byte ranges over `/files/read`; every error
    is a TaskLogError naming the task, the agent and the path."""

    def __init__(self, task_id: str, where: str, endpoint: str, path: str) -> None:
        self.task_id = task_id
        self.where = where
        self.endpoint = endpoint
        self.path = path

    def _read(self, offset: int, length: int | None = None) -> tuple[int, bytes]:
        """One `/files/read` request: the reply's offset and its data as bytes."""
        query = {"path": self.path, "offset": str(offset)}
        if length is not None:
            query["length"] = str(length)
        url = f"http://{self.endpoint}/files/read?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as reply:
                body = reply.read()
        except urllib.error.HTTPError as error:
            raise TaskLogError(f"log of task {self.task_id}: {self.where} refused {self.path}: "
                               f"HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise TaskLogError(f"log of task {self.task_id}: {self.where}, {self.path}: "
                               f"{error}") from None
        try:
            document = json.loads(body.decode("latin-1"))
            return int(document["offset"]), str(document["data"]).encode("latin-1")
        except (ValueError, TypeError, KeyError) as error:
            raise TaskLogError(f"log of task {self.task_id}: {self.where} answered "
                               f"/files/read of {self.path} with no file data ({error}): "
                               f"{body[:120]!r}") from None

    def size(self) -> int:
        return self._read(-1)[0]

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file, in as many requests as the agent's cap needs."""
        parts: list[bytes] = []
        position = start
        while position < end:
            _, data = self._read(position, end - position)
            if not data:
                raise TaskLogError(f"log of task {self.task_id}: {self.where}: {self.path} "
                                   f"ended at byte {position}, before the {end} it had "
                                   f"(truncated while being read)")
            parts.append(data[:end - position])
            position += len(parts[-1])
        return b"".join(parts)


def read_sandbox_log(agent: str, endpoint: str, framework_id: str, task_id: str,
                     lines: int) -> str:
    """The last `lines` lines of the task's sandbox log on `agent` (machine_id) at
    `endpoint` (host:port); TaskLogError naming the agent and the path when it fails.

    Reads back from the end in growing chunks until one holds more than `lines` line
    ends or reaches the start, so a huge log costs a few requests, not its size."""
    where = f"Mesos agent {agent} ({endpoint})"
    try:
        state = get_json(f"http://{endpoint}/state", f"{where}:")
    except MasterUnreachable as error:
        raise TaskLogError(f"log of task {task_id}: {error}") from None
    directory = task_sandbox(state, framework_id, task_id)
    if not directory:
        raise TaskLogError(f"log of task {task_id}: {where} has no sandbox holding it "
                           f"(framework {framework_id or 'unknown'})")
    log = _SandboxFile(task_id, where, endpoint, f"{directory}/{task_id}.log")
    end = log.size()
    if lines <= 0:
        return ""
    start, step, data = end, LOG_CHUNK, b""
    while start > 0 and data.count(b"\n") <= lines:
        begin = max(0, start - step)
        data = log.read(begin, start) + data
        start, step = begin, step * CHUNK_GROWTH
    if start > 0:  # the first line began before the bytes read: drop its cut-off end
        data = data[data.find(b"\n") + 1:]
    return last_lines(data, lines)
