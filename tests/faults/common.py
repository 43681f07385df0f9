"""What the fault tests share: a working directory with agents a1 and a2 and the `faults`
workflow (the fixtures that make them are in conftest.py), and the helpers that hold,
strike and check.

The workflow has a `steady` dummy on a1 and a critical `victim` on a2. A transition is
held at its task phase by freezing the victim (SIGSTOP): the executor's command to it
waits, the steady task has already moved; then the fault strikes. A creation is held at
DEPLOY by a victim that sleeps before serving, at CONFIGURE or at destroy by a hook task
that waits for a file.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from engine import Engine, EnvironmentEvent, EnvironmentInfo, Subscription, WorkingDirectory
from engine.scheduler.local_agent import find_running

# The occlib dummy with its crash switch and its start-up delay as variables; `immune` roles
# never crash nor wait.
DUMMY = f"""\
name: dummy
control:
  mode: direct
defaults:
  crash_on: ""
  startup_delay: ""
  immune: "false"
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: "exec {sys.executable} -m occlib.examples.dummy"
  arguments:
    - "--o2-role {{{{ task_parent_role }}}}"
    - "{{{{ crash_on == '' || immune == 'true' ? '' : '--crash-on ' + crash_on }}}}"
    - "{{{{ startup_delay == '' || immune == 'true' ? '' : '--startup-delay ' + startup_delay }}}}"
"""

# A hook task that holds its trigger until `hold_file` exists (`<hold_file>.began` says it
# has begun): a transition held at a hook, not at a task.
HOLD = """\
name: hold
control:
  mode: basic
defaults:
  hold_file: ""
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: >-
    touch {{ hold_file }}.began; while [ ! -e {{ hold_file }} ]; do sleep 0.05; done
"""

WORKFLOW = """\
name: faults
defaults:
  hold_at: ""
roles:
  - name: steady
    constraints:
      - attribute: machine_id
        value: a1
    defaults:
      immune: "true"
    task:
      load: dummy
  - name: victim
    constraints:
      - attribute: machine_id
        value: a2
    task:
      load: dummy
  - name: hold-configure
    enabled: "{{ hold_at == 'CONFIGURE' }}"
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: hold
      trigger: before_CONFIGURE
      timeout: 60s
  - name: hold-destroy
    enabled: "{{ hold_at == 'DESTROY' }}"
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: hold
      trigger: DESTROY
      timeout: 60s
"""

# Per transition under test: the transitions that bring a new environment to its source
# state, the occlib event the tasks see, and the state a completed transition leaves.
PHASES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "CONFIGURE": (("RESET",), "CONFIGURE", "CONFIGURED"),
    "START": ((), "START", "RUNNING"),
    "STOP": (("START",), "STOP", "CONFIGURED"),
    "RESET": ((), "RESET", "DEPLOYED"),
}
# The task states an environment's state allows (ERROR: whatever the tasks were left in).
# The run numbers a fresh working directory has given by the end of the transition (a
# START that failed still took its number).
RUN_TAKEN = {"CONFIGURE": 0, "START": 1, "STOP": 1, "RESET": 0}
CONSISTENT = {"CONFIGURED": {"CONFIGURED"}, "RUNNING": {"RUNNING"}, "DEPLOYED": {"STANDBY"}}


@dataclass
class Setup:
    """A working directory with agents a1 and a2 and the `faults` workflow."""

    workdir: WorkingDirectory
    repo: Path
    reference: str = ""


def task(info: EnvironmentInfo, role: str) -> tuple[str, int]:
    """(task id, pid) of the role's task."""
    found = next(t for t in info.tasks if t.role_path == f"faults.{role}")
    assert found.pid is not None
    return found.task_id, found.pid


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def resume(pid: int) -> None:
    """SIGCONT a frozen process, if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def assert_consistent(info: EnvironmentInfo) -> None:
    """The tasks' states agree with the environment's (an ERROR one may hold anything)."""
    if info.state in CONSISTENT:
        assert {t.state for t in info.tasks} <= CONSISTENT[info.state], info.tasks


async def prepare(engine: Engine, reference: str, phase: str) -> EnvironmentInfo:
    info = await engine.create_environment(reference)
    for event in PHASES[phase][0]:
        await engine.control_environment(info.id, event)
    return await engine.get_environment(info.id)


async def recover_and_run(engine: Engine, environment_id: str, last_run: int) -> None:
    """From ERROR back to a run: the run number is past every one given before."""
    await engine.control_environment(environment_id, "RECOVER")
    await engine.control_environment(environment_id, "CONFIGURE")
    started = await engine.control_environment(environment_id, "START")
    assert started.ok and started.run_number > last_run
    destroyed = await engine.destroy_environment(environment_id)
    assert destroyed.state == "DONE"
    assert await engine.list_environments() == []


async def destroy_and_run_again(engine: Engine, reference: str, environment_id: str,
                                last_run: int) -> None:
    """The broken environment is destroyed cleanly; a new one's run number is past every
    one given before (its tasks are gone: RECOVER cannot bring them back)."""
    assert (await engine.destroy_environment(environment_id)).state == "DONE"
    info = await engine.create_environment(reference)
    started = await engine.control_environment(info.id, "START")
    assert started.ok and started.run_number == last_run + 1
    assert (await engine.destroy_environment(info.id)).state == "DONE"
    assert await engine.list_environments() == []


async def log_shows(log: Path, text: str, count: int, timeout: float = 30) -> None:
    """Until `text` occurs `count` times in the task's log."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not log.exists() or log.read_text().count(text) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{log} never showed {text!r}"
        await asyncio.sleep(0.05)


def drained(events: Subscription) -> list[EnvironmentEvent]:
    """The events queued so far."""
    queued = []
    while not events.queue.empty():
        if (event := events.queue.get_nowait()) is not None:
            queued.append(event)
    return queued


def executor_children(workdir: WorkingDirectory) -> set[int]:
    """Every process the working directory's executors run (tasks and what they started)."""
    pids: set[int] = set()
    for running in find_running(workdir.root).values():
        with contextlib.suppress(psutil.NoSuchProcess):
            pids |= {p.pid for p in psutil.Process(running.pid).children(recursive=True)}
    return pids


def dummies(pids: set[int]) -> set[int]:
    """The occlib dummies among `pids`."""
    found = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if "occlib.examples.dummy" in " ".join(psutil.Process(pid).cmdline()):
                found.add(pid)
    return found



async def first_line(host: subprocess.Popen[str]) -> Any:
    assert host.stdout is not None
    line = await asyncio.to_thread(host.stdout.readline)
    assert line, f"the host exited with {host.wait(timeout=10)}"
    return json.loads(line)


async def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"never {what}"
        await asyncio.sleep(0.05)


def under_agent(workdir: WorkingDirectory, agent: str) -> set[int]:
    """The occlib dummies the agent's executor runs."""
    executor = psutil.Process(find_running(workdir.root)[agent].pid)
    return dummies({p.pid for p in executor.children(recursive=True)})
