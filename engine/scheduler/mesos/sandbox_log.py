"""A task's log on a Mesos cluster, read where it is: the sandbox of its executor, over the
agent's HTTP API (reference §7; issue 6 "sandbox logs reachable from the engine").

The executor writes each task's output to `<sandbox>/<task id>.log`. The sandbox is the
directory of the executor run that holds the task, which the agent's `/state` names (a
run that ended stays listed among `completed_executors` while its sandbox is kept); the
file itself comes from `/files/download`. Nothing here depends on the engine's machine
seeing the agent's disk. Blocking HTTP: call it from a worker thread.
"""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from engine.logtail import TaskLogError, last_lines
from engine.scheduler.mesos.master_agents import HTTP_TIMEOUT, MasterUnreachable, get_json

_TASK_LISTS = ("tasks", "queued_tasks", "completed_tasks")


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


def read_sandbox_log(agent: str, endpoint: str, framework_id: str, task_id: str,
                     lines: int) -> str:
    """The last `lines` lines of the task's sandbox log on `agent` (machine_id) at
    `endpoint` (host:port); TaskLogError naming the agent and the path when it fails."""
    where = f"Mesos agent {agent} ({endpoint})"
    try:
        state = get_json(f"http://{endpoint}/state", f"{where}:")
    except MasterUnreachable as error:
        raise TaskLogError(f"log of task {task_id}: {error}") from None
    directory = task_sandbox(state, framework_id, task_id)
    if not directory:
        raise TaskLogError(f"log of task {task_id}: {where} has no sandbox holding it "
                           f"(framework {framework_id or 'unknown'})")
    path = f"{directory}/{task_id}.log"
    url = f"http://{endpoint}/files/download?{urllib.parse.urlencode({'path': path})}"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as reply:
            data = reply.read()
    except urllib.error.HTTPError as error:
        raise TaskLogError(f"log of task {task_id}: {where} refused {path}: HTTP {error.code} "
                           f"{error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise TaskLogError(f"log of task {task_id}: {where}, {path}: {error}") from None
    return last_lines(data, lines)
