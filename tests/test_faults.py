"""The fault matrix (issue 7), fast cases: a task process, an executor, the engine killed at
each phase of each transition, the executor channel cut, the store's disk full.

Every case ends with a defined outcome and a message that names what happened; the
environment is still listed (or cleanly gone), no run number is given twice and no
process is left behind (the conftest fixture). Real executors on two local agents, real
occlib dummies, real sqlite. The long, random version is bench/chaos.py.

The workflow has a `steady` dummy on a1 and a critical `victim` on a2. A transition is
held at its task phase by freezing the victim (SIGSTOP): the executor's command to it
waits, the steady task has already moved; then the fault strikes. A creation is held at
DEPLOY by a victim that sleeps before serving, at CONFIGURE or at destroy by a hook task
that waits for a file.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine import (Engine, EnvironmentEvent, EnvironmentInfo, Subscription, TransitionFailed,
                    WorkingDirectory)
from engine.scheduler.local_agent import LocalAgentError, find_running
from engine.store import Store
from engine.store.database import StoreError
from tests.conftest import ROOT, make_template_repo
from tests.test_environment_e2e import settings, until_idle

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


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/faults.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY,
        "tasks/hold.yaml": HOLD}, corpus=False)
    try:
        yield Setup(workdir, repo)
    finally:
        await Engine(workdir).shutdown_agents()
    assert find_running(workdir.root) == {}


@pytest.fixture
async def engine(setup: Setup) -> AsyncIterator[tuple[Engine, str]]:
    """An engine on `setup`'s working directory and the reference of `faults`."""
    engine = Engine(setup.workdir)
    try:
        added = await engine.add_repo(str(setup.repo), "master")
        yield engine, f"{added.repo}/workflows/faults@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()


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


# ------------------------------------------------------------------ a task process dies


@pytest.mark.parametrize("phase", list(PHASES))
async def test_a_task_crashing_in_a_transition_sends_the_environment_to_error(
        engine: tuple[Engine, str], phase: str) -> None:
    engine_, reference = engine
    if phase == "CONFIGURE":  # at creation: nothing is left deployed
        with pytest.raises(TransitionFailed) as failed:
            await engine_.create_environment(reference, {"crash_on": "CONFIGURE"})
        assert "faults.victim" in str(failed.value) and "on a2" in str(failed.value)
        assert await engine_.list_environments() == []
        return
    info = await engine_.create_environment(reference, {"crash_on": PHASES[phase][1]})
    for event in PHASES[phase][0]:
        await engine_.control_environment(info.id, event)
    _, victim = task(info, "victim")
    with pytest.raises(TransitionFailed) as failed:
        await engine_.control_environment(info.id, phase)
    message = str(failed.value)
    assert "the environment is ERROR" in message
    assert "faults.victim" in message and "on a2" in message and "faults.steady" not in message
    assert info.id in message and ".log)" in message  # its log, where the crash is told
    now = await until_idle(engine_, info.id)
    assert now.state == "ERROR"
    for _ in range(100):  # its executor's report of the exit may follow the failed call
        now = await engine_.get_environment(info.id)
        if next(t for t in now.tasks if t.role_path == "faults.victim").status == "INACTIVE":
            break
        await asyncio.sleep(0.05)
    assert next(t for t in now.tasks if t.role_path == "faults.victim").status == "INACTIVE"
    assert gone(victim)
    log = Path(next(t.log_path for t in now.tasks if t.role_path == "faults.victim"))
    assert f"crashing in {PHASES[phase][1]} as asked" in log.read_text()
    await destroy_and_run_again(engine_, reference, info.id, RUN_TAKEN[phase])


# ------------------------------------------------------------------ an executor dies


@pytest.mark.parametrize("phase", list(PHASES))
async def test_an_executor_killed_in_a_transition_fails_its_tasks_and_errors_the_environment(
        engine: tuple[Engine, str], setup: Setup, phase: str) -> None:
    engine_, reference = engine
    info = await prepare(engine_, reference, phase)
    steady_id, _ = task(info, "steady")
    _, victim = task(info, "victim")
    steady_log = setup.workdir.logs / info.id / f"{steady_id}.log"
    seen = steady_log.read_text().count(f"]: {PHASES[phase][1]} ")
    os.kill(victim, signal.SIGSTOP)  # holds the transition at the task phase
    try:
        transition = asyncio.create_task(engine_.control_environment(info.id, phase))
        await log_shows(steady_log, f"]: {PHASES[phase][1]} ", seen + 1)
        executor = find_running(setup.workdir.root)["a2"].pid
        os.kill(executor, signal.SIGKILL)
        with pytest.raises(TransitionFailed) as failed:
            await transition
    finally:
        resume(victim)  # if it still exists: it dies with its executor
    message = str(failed.value)
    assert "the environment is ERROR" in message
    assert "agent a2" in message and "faults.victim" in message
    assert "UNAVAILABLE" in message  # the executor's channel broke
    now = await until_idle(engine_, info.id)
    assert now.state == "ERROR"
    for _ in range(100):  # the agent's loss is noticed when its event stream breaks
        now = await engine_.get_environment(info.id)
        if [t.status for t in now.tasks if t.role_path == "faults.victim"] == ["INACTIVE"]:
            break
        await asyncio.sleep(0.05)
    assert [t.status for t in now.tasks if t.role_path == "faults.victim"] == ["INACTIVE"]
    for _ in range(100):
        if gone(victim) and gone(executor):
            break
        await asyncio.sleep(0.05)
    assert gone(victim) and gone(executor)  # the task died with its executor
    await destroy_and_run_again(engine_, reference, info.id, RUN_TAKEN[phase])  # a2 anew


@pytest.mark.parametrize("phase", ["START", "STOP"])
async def test_a_task_dying_after_its_answer_within_a_transition_errors_the_environment(
        engine: tuple[Engine, str], setup: Setup, phase: str) -> None:
    """The steady task answers the transition, then dies while the transition still waits
    on the frozen victim: the transition itself succeeds (every task answered), and once it
    is over the critical task's death sends the environment to ERROR, naming the task
    (it was left RUNNING/CONFIGURED with a dead critical task before)."""
    engine_, reference = engine
    info = await prepare(engine_, reference, phase)
    steady_id, steady = task(info, "steady")
    _, victim = task(info, "victim")
    steady_log = setup.workdir.logs / info.id / f"{steady_id}.log"
    seen = steady_log.read_text().count(f"]: {PHASES[phase][1]} ")
    events = await engine_.subscribe()
    os.kill(victim, signal.SIGSTOP)
    try:
        transition = asyncio.create_task(engine_.control_environment(info.id, phase))
        await log_shows(steady_log, f"]: {PHASES[phase][1]} ", seen + 1)
        os.kill(steady, signal.SIGKILL)
        while True:  # its death is reported while the transition still runs
            event = await events.get(timeout=10)
            if event is not None and event.task_id == steady_id and event.state == "ERROR":
                break
    finally:
        resume(victim)
    events.close()
    result = await transition
    assert result.ok and result.state == PHASES[phase][2]
    for _ in range(100):  # GO_ERROR follows in the background, after the grace
        if (now := await engine_.get_environment(info.id)).state == "ERROR":
            break
        await asyncio.sleep(0.05)
    now = await until_idle(engine_, info.id)
    assert now.state == "ERROR"
    [row] = [r for r in now.last_result if r.task_id == steady_id]
    assert "critical task 'faults.steady' on host 'a1' transitioned to ERROR" in row.reason
    await destroy_and_run_again(engine_, reference, info.id, RUN_TAKEN[phase])


# ------------------------------------------------------------------ the channel is cut


async def test_an_executor_paused_within_the_deadline_delays_the_transition_only(
        engine: tuple[Engine, str], setup: Setup) -> None:
    """SIGSTOP then SIGCONT of the executor, shorter than the heartbeat timeout (15 s): the
    command's deadline (its timeout + a margin) is the bound, and within it the transition
    completes as if nothing happened. A channel cut past the heartbeat: test_heartbeat.py."""
    engine_, reference = engine
    info = await engine_.create_environment(reference)
    executor = find_running(setup.workdir.root)["a2"].pid
    os.kill(executor, signal.SIGSTOP)
    try:
        transition = asyncio.create_task(engine_.control_environment(info.id, "START"))
        await asyncio.sleep(2)
        assert not transition.done()
        busy = await engine_.get_environment(info.id)
        assert busy.current_transition == "START_ACTIVITY"
    finally:
        os.kill(executor, signal.SIGCONT)
    started = await transition
    assert started.ok and started.state == "RUNNING" and started.run_number == 1
    now = await engine_.get_environment(info.id)
    assert_consistent(now)
    assert (await engine_.destroy_environment(info.id)).state == "DONE"


async def test_an_executor_paused_past_the_deadline_fails_the_transition_naming_it(
        engine: tuple[Engine, str], setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same past the command's deadline (shortened here from 90 + 10 s to 1 + 1 s):
    the transition fails with DEADLINE_EXCEEDED naming the agent; the environment is
    ERROR; once the executor is back, the environment recovers and runs again."""
    import engine.environment.fanout as fanout
    import engine.scheduler.local_agent as local_agent
    monkeypatch.setattr(fanout, "TRANSITION_TIMEOUT", 1.0)
    monkeypatch.setattr(local_agent, "COMMAND_MARGIN", 1.0)
    engine_, reference = engine
    info = await engine_.create_environment(reference)
    executor = find_running(setup.workdir.root)["a2"].pid
    os.kill(executor, signal.SIGSTOP)
    try:
        with pytest.raises(TransitionFailed) as failed:
            await engine_.control_environment(info.id, "START")
    finally:
        os.kill(executor, signal.SIGCONT)
    message = str(failed.value)
    assert "agent a2" in message and "DEADLINE_EXCEEDED" in message
    assert "faults.victim" in message and "the environment is ERROR" in message
    now = await until_idle(engine_, info.id)
    assert now.state == "ERROR"
    assert find_running(setup.workdir.root)["a2"].pid == executor  # the same executor
    monkeypatch.undo()
    await recover_and_run(engine_, info.id, 1)


# ------------------------------------------------------------------ the disk is full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The working directory on a 16 MB filesystem of its own (a tmpfs: it needs root;
    without it the case is skipped), unmounted after the executors have stopped."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(home)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "--lazy", str(home)], check=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the filesystem says ENOSPC; its path."""
    ballast = disk / "ballast"
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(bytes(1 << 16))
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return ballast


def stored(workdir: WorkingDirectory, environment_id: str) -> tuple[str, int]:
    with Store.open(workdir) as store:
        return store.environments.load(environment_id).state, store.run_numbers.peek()


@pytest.mark.parametrize("phase", ["START", "STOP"])
async def test_a_full_disk_fails_the_transition_naming_the_store(
        small_disk: Path, setup: Setup, engine: tuple[Engine, str], phase: str) -> None:
    """START: the run number cannot be committed, so nothing happens at all (the tasks stay
    CONFIGURED, no number is used). STOP: the tasks stopped before the commit failed; the
    engine follows its tasks (CONFIGURED) and the store catches up at its next commit.
    Either way the error names the store's file and the full disk."""
    engine_, reference = engine
    info = await prepare(engine_, reference, phase)
    before = stored(setup.workdir, info.id)
    ballast = fill(small_disk)
    try:
        with pytest.raises(StoreError) as failed:
            await engine_.control_environment(info.id, phase)
    finally:
        ballast.unlink()
    message = str(failed.value)
    assert "database or disk is full" in message and str(setup.workdir.store) in message
    assert stored(setup.workdir, info.id) == before  # nothing of it was saved
    now = await until_idle(engine_, info.id)
    assert now.state == "CONFIGURED"
    assert_consistent(now)
    if phase == "START":
        assert "the tasks" not in message  # they never moved
        started = await engine_.control_environment(info.id, "START")  # there is room again
    else:  # the error says the tasks stopped; the next transition first records that
        assert (f"STOP_ACTIVITY: the tasks stopped (environment {info.id} is CONFIGURED) but "
                "the store could not record it: ") in message
        assert message.endswith("it will be recorded at the next commit")
        _, victim = task(now, "victim")
        os.kill(victim, signal.SIGSTOP)  # holds the START at its task phase
        try:
            starting = asyncio.create_task(engine_.control_environment(info.id, "START"))
            deadline = asyncio.get_running_loop().time() + 30
            while stored(setup.workdir, info.id)[0] != "CONFIGURED":
                assert asyncio.get_running_loop().time() < deadline, "never recorded"
                await asyncio.sleep(0.05)
        finally:
            resume(victim)
        started = await starting
    assert started.ok and started.run_number == before[1] + 1  # none was used meanwhile
    assert stored(setup.workdir, info.id) == ("RUNNING", started.run_number)
    assert (await engine_.destroy_environment(info.id)).state == "DONE"


async def test_a_full_disk_refuses_a_creation_before_anything_is_launched(
        small_disk: Path, setup: Setup, engine: tuple[Engine, str]) -> None:
    """A creation is stored (marked as under way) before anything is launched: on a full
    disk it is refused naming the store, nothing is deployed and nothing is kept."""
    engine_, reference = engine
    first = await engine_.create_environment(reference)  # the executors run from here on
    assert (await engine_.destroy_environment(first.id)).state == "DONE"
    ballast = fill(small_disk)
    try:
        with pytest.raises(StoreError) as failed:
            await engine_.create_environment(reference)
    finally:
        ballast.unlink()
    message = str(failed.value)
    assert "database or disk is full" in message and str(setup.workdir.store) in message
    assert await engine_.list_environments() == []
    assert dummies(executor_children(setup.workdir)) == set()  # nothing was launched
    info = await engine_.create_environment(reference)  # there is room again
    started = await engine_.control_environment(info.id, "START")
    assert started.ok and started.run_number == 1
    assert (await engine_.destroy_environment(info.id)).state == "DONE"


# ------------------------------------------------------------------ the engine dies

HOST = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from engine import Engine, WorkingDirectory

    async def main():
        engine = Engine(WorkingDirectory(Path(sys.argv[1])))
        added = await engine.add_repo(sys.argv[2], "master")
        info = await engine.create_environment(f"{added.repo}/workflows/faults@master")
        for event in filter(None, sys.argv[3].split(",")):
            await engine.control_environment(info.id, event)
        info = await engine.get_environment(info.id)
        print(json.dumps({"id": info.id,
                          "tasks": {t.role_path: [t.task_id, t.pid] for t in info.tasks}}),
              flush=True)
        sys.stdin.readline()
        await engine.control_environment(info.id, sys.argv[4])  # held: killed during it

    asyncio.run(main())
""")
HOST_TIMEOUT = 60.0


@pytest.mark.parametrize("phase", list(PHASES))
async def test_an_engine_killed_in_a_transition_is_recovered_in_error(
        setup: Setup, phase: str) -> None:
    """The engine's process is SIGKILLed while the transition waits on a task: the next
    engine finds the stored state and the tasks' disagree, says the transition was cut
    short and goes to ERROR; the run number taken is never given again."""
    prior, occ_event, _ = PHASES[phase]
    host = subprocess.Popen([sys.executable, "-c", HOST, str(setup.workdir.root),
                             str(setup.repo), ",".join(prior), phase], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HOST_TIMEOUT, host.kill)
    watchdog.start()
    victim = 0
    try:
        assert host.stdout is not None and host.stdin is not None
        line = await asyncio.to_thread(host.stdout.readline)
        assert line, f"the host exited with {host.wait(timeout=10)}"
        made = json.loads(line)
        steady_id, _ = made["tasks"]["faults.steady"]
        victim = made["tasks"]["faults.victim"][1]
        steady_log = setup.workdir.logs / made["id"] / f"{steady_id}.log"
        seen = steady_log.read_text().count(f"]: {occ_event} ")
        os.kill(victim, signal.SIGSTOP)
        host.stdin.write("go\n")
        host.stdin.flush()
        await log_shows(steady_log, f"]: {occ_event} ", seen + 1)
        host.kill()
        assert host.wait(timeout=10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if victim:
            resume(victim)
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
        for stream in (host.stdin, host.stdout):
            if stream is not None:
                stream.close()
    async with Engine(setup.workdir) as engine:
        try:
            [info] = await engine.list_environments()  # not lost
            assert info.id == made["id"]
            reasons = [row.reason for row in info.last_result if "cut short" in row.reason]
            assert reasons, info.last_result
            assert "when its engine stopped but the task is" in reasons[0]
            for _ in range(100):  # GO_ERROR runs in the background, after the recovery
                if (info := await engine.get_environment(made["id"])).state == "ERROR":
                    break
                await asyncio.sleep(0.1)
            info = await until_idle(engine, made["id"])
            assert info.state == "ERROR"
            assert {t.pid for t in info.tasks} == {pid for _, pid in made["tasks"].values()}
            await recover_and_run(engine, made["id"], RUN_TAKEN[phase])
        finally:
            await engine.shutdown_agents()


async def test_a_call_cut_by_the_close_of_its_channel_fails_instead_of_cancelling(
        engine: tuple[Engine, str], setup: Setup) -> None:
    """The pool closes the client of an executor it found gone while a transition's batch
    still waits on it: that batch fails (a row per task naming the agent), it does not
    cancel the whole transition (which left the environment busy-less but unanswered)."""
    engine_, reference = engine
    info = await engine_.create_environment(reference)
    victim_id, _ = task(info, "victim")
    assert engine_._manager is not None
    client = engine_._manager.agents.client("a2")
    executor = find_running(setup.workdir.root)["a2"].pid
    os.kill(executor, signal.SIGSTOP)  # the call waits
    try:
        call = asyncio.create_task(client.command_batch([{
            "name": "MesosCommand_Transition", "id": "x", "environmentId": info.id,
            "timeout": 5 * 10**9, "arguments": {}, "event": "START", "source": "CONFIGURED",
            "destination": "RUNNING", "labels": {}, "targetList": [{
                "AgentId": {"value": "a2"}, "ExecutorId": {"value": "a2"},
                "TaskId": {"value": victim_id}}]}]))
        await asyncio.sleep(0.5)
        await client.close()
        [outcome] = await call
    finally:
        os.kill(executor, signal.SIGCONT)
    assert isinstance(outcome, LocalAgentError)
    assert "agent a2" in str(outcome) and "the channel closed during the call" in str(outcome)
    await engine_.shutdown_agents()
    await engine_.destroy_environment(info.id, force=True)


async def test_a_transition_ending_after_its_engine_died_is_learnt_by_the_next(
        setup: Setup, tmp_path: Path) -> None:
    """START is under way when the engine is SIGKILLed; the critical victim, frozen, has not
    answered. The steady task is not critical here, so the next engine finds nothing
    critical at odds and keeps the environment CONFIGURED. The victim then finishes START:
    its executor ran the transition to its end though its caller died, and tells the answer
    on its event stream; the new engine learns it, sees the task RUNNING in a CONFIGURED
    environment and goes to ERROR. Run 1 is never given again."""
    repo = make_template_repo(tmp_path / "lenient", {
        "workflows/faults.yaml": WORKFLOW.replace("      load: dummy\n",
                                                  "      load: dummy\n      critical: false\n", 1),
        "tasks/dummy.yaml": DUMMY, "tasks/hold.yaml": HOLD}, corpus=False)
    host = subprocess.Popen([sys.executable, "-c", HOST, str(setup.workdir.root), str(repo),
                             "", "START"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HOST_TIMEOUT, host.kill)
    watchdog.start()
    victim = 0
    try:
        made = await first_line(host)
        steady_id, _ = made["tasks"]["faults.steady"]
        victim_id, victim = made["tasks"]["faults.victim"]
        steady_log = setup.workdir.logs / made["id"] / f"{steady_id}.log"
        seen = steady_log.read_text().count("]: START ")
        os.kill(victim, signal.SIGSTOP)
        assert host.stdin is not None
        host.stdin.write("go\n")
        host.stdin.flush()
        await log_shows(steady_log, "]: START ", seen + 1)  # the commands went out
        host.kill()
        assert host.wait(timeout=10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
        for stream in (host.stdin, host.stdout):
            if stream is not None:
                stream.close()
    async with Engine(setup.workdir) as engine:
        try:
            info = await until_idle(engine, made["id"])
            assert info.state == "CONFIGURED"  # nothing critical at odds, yet
            events = await engine.subscribe()
            resume(victim)
            for _ in range(300):
                if (info := await engine.get_environment(made["id"])).state == "ERROR":
                    break
                await asyncio.sleep(0.1)
            info = await until_idle(engine, made["id"])
            assert info.state == "ERROR"  # and GO_ERROR stopped the runaway victim
            assert next(t for t in info.tasks if t.task_id == victim_id).state == "CONFIGURED"
            told = [e.message for e in drained(events) if e.task_id == victim_id]
            assert any("ended afterwards, the task in RUNNING" in m for m in told), told
            [row] = [r for r in info.last_result if r.task_id == victim_id]
            assert "the environment was CONFIGURED when its engine stopped but the task is " \
                   "RUNNING" in row.reason
            events.close()
            await recover_and_run(engine, made["id"], 1)
        finally:
            resume(victim)
            await engine.shutdown_agents()


def drained(events: Subscription) -> list[EnvironmentEvent]:
    """The events queued so far."""
    queued = []
    while not events.queue.empty():
        if (event := events.queue.get_nowait()) is not None:
            queued.append(event)
    return queued


# ------------------------------------------------------------------ the engine dies mid-creation

# Releases an environment (destroy with keep_tasks: its tasks run on, unlocked) and prints
# their pids, then creates `argv[3]` with the variables `argv[4]`, held until killed; or,
# with `destroy` / `destroy-force` as `argv[5]`, creates it, prints its tasks and destroys it
# at the word, held until killed.
HOST_CUT = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from engine import Engine, WorkingDirectory

    async def main():
        home, repo, environment_id, variables, action = sys.argv[1:6]
        engine = Engine(WorkingDirectory(Path(home)))
        added = await engine.add_repo(repo, "master")
        reference = f"{added.repo}/workflows/faults@master"
        create = lambda: engine.create_environment(reference, json.loads(variables),
                                                   user="alice", environment_id=environment_id)
        if action == "create":
            released = await engine.create_environment(reference, user="bob")
            await engine.destroy_environment(released.id, keep_tasks=True)
            print(json.dumps([t.pid for t in released.tasks]), flush=True)
            await create()  # held: killed during it
            return
        info = await create()
        print(json.dumps({t.role_path: t.pid for t in info.tasks if t.pid}), flush=True)
        sys.stdin.readline()
        await engine.destroy_environment(environment_id, force=action == "destroy-force")

    asyncio.run(main())
""")


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


@contextlib.contextmanager
def hosting(setup: Setup, environment_id: str, variables: dict[str, str], action: str
            ) -> Iterator[subprocess.Popen[str]]:
    """The HOST_CUT engine process; killed (SIGKILL) on the way out if it still runs."""
    host = subprocess.Popen([sys.executable, "-c", HOST_CUT, str(setup.workdir.root),
                             str(setup.repo), environment_id, json.dumps(variables), action],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HOST_TIMEOUT, host.kill)
    watchdog.start()
    try:
        yield host
    finally:
        watchdog.cancel()
        if host.poll() is None:
            host.kill()
        host.wait(timeout=10)
        for stream in (host.stdin, host.stdout):
            if stream is not None:
                stream.close()


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


@pytest.mark.parametrize("phase", ["DEPLOY", "CONFIGURE"])
async def test_an_engine_killed_in_a_creation_has_its_tasks_killed_by_the_next(
        setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture, phase: str) -> None:
    """The engine is SIGKILLed while it creates an environment: at DEPLOY (the victim is
    launched but sleeps before serving: the store has no task of it yet) or at CONFIGURE
    (held by a before_CONFIGURE hook task). The user never got the environment, so the next
    engine does not rebuild it: it kills every task launched for it, forgets it and says
    so; the tasks an earlier destroy released (keep_tasks) run on until a cleanup."""
    environment_id = f"cut{phase.lower()}"
    hold = tmp_path / "hold"
    variables = ({"startup_delay": "30"} if phase == "DEPLOY"
                 else {"hold_at": "CONFIGURE", "hold_file": str(hold)})
    with hosting(setup, environment_id, variables, "create") as host:
        released = set(await first_line(host))
        if phase == "DEPLOY":  # both dummies of the creation launched, one still asleep
            await until(lambda: len(dummies(executor_children(setup.workdir)) - released) == 2,
                        "launched the creation's tasks")
        else:
            await until(Path(f"{hold}.began").exists, "began the before_CONFIGURE hook")
        launched = executor_children(setup.workdir) - released
        host.kill()
        assert host.wait(timeout=10) == -signal.SIGKILL
    caplog.set_level("WARNING", logger="engine.environment")
    async with Engine(setup.workdir) as engine:
        try:
            events = await engine.subscribe()  # first: what the recovery reports
            assert await engine.list_environments() == []
            assert all(gone(pid) for pid in launched), launched
            assert not any(gone(pid) for pid in released)
            assert engine._manager is not None and engine._manager.recovery is not None
            [undone] = engine._manager.recovery.creations
            killed = 2 if phase == "DEPLOY" else 3  # with the hook task
            assert undone.message == (
                f"creation of environment {environment_id} (workflow "
                f"{undone.workflow}, by alice) was cut short when its engine stopped: "
                f"{killed} task(s) killed")
            assert undone.workflow == f"{setup.repo}/workflows/faults@master"
            assert undone.message in caplog.text
            told = []
            while (event := await events.get(timeout=5)) is not None:
                if event.environment_id == environment_id:
                    told.append((event.state, event.message))
                    break
            events.close()
            assert told == [("DONE", undone.message)]
            with Store.open(setup.workdir) as store:
                assert store.environments.find(environment_id) is None
                assert store.tasks.by_environment(environment_id) == []
            unlocked = await engine.list_tasks()
            assert {t.pid for t in unlocked} == released and not any(t.locked for t in unlocked)
            info = await engine.create_environment(undone.workflow)  # the same reference
            started = await engine.control_environment(info.id, "START")
            assert started.ok and started.run_number == 1
            assert (await engine.destroy_environment(info.id)).state == "DONE"
            killed_tasks, running = await engine.cleanup_tasks()
            assert {t.pid for t in killed_tasks} == released and running == []
            assert all(gone(pid) for pid in released)
        finally:
            await engine.shutdown_agents()



# ------------------------------------------------------------------ the engine dies mid-destroy


@pytest.mark.parametrize("held", ["hooks", "kills"])
async def test_an_engine_killed_in_a_destroy_leaves_an_environment_a_destroy_completes(
        setup: Setup, tmp_path: Path, held: str) -> None:
    """The engine is SIGKILLed while it destroys an environment: at its teardown hooks (a
    DESTROY hook task waits; every task is alive) or while it kills the tasks (a forced
    destroy: the steady task is gone, the frozen victim's kill waits on it). The next
    engine lists the environment, the tasks found dead as rows of its last result and the
    live ones re-adopted; a destroy then completes and leaves no process."""
    environment_id = f"cut{held}"
    hold = tmp_path / "hold"
    variables = {"hold_at": "DESTROY", "hold_file": str(hold)} if held == "hooks" else {}
    victim = 0
    with hosting(setup, environment_id, variables, "destroy" if held == "hooks"
                 else "destroy-force") as host:
        try:
            pids: dict[str, int] = await first_line(host)
            victim, steady = pids["faults.victim"], pids["faults.steady"]
            assert host.stdin is not None
            if held == "kills":
                os.kill(victim, signal.SIGSTOP)  # its walk to DONE waits
            host.stdin.write("go\n")
            host.stdin.flush()
            if held == "hooks":
                await until(Path(f"{hold}.began").exists, "began the DESTROY hook")
            else:
                await until(lambda: gone(steady), "killed the steady task")
            launched = executor_children(setup.workdir) | {steady, victim}
            host.kill()
            assert host.wait(timeout=10) == -signal.SIGKILL
        finally:
            if victim:
                resume(victim)
    hold.touch()  # a DESTROY hook run again goes through
    async with Engine(setup.workdir) as engine:
        try:
            [info] = await engine.list_environments()  # not lost
            assert info.id == environment_id
            found_dead = {row.role_path for row in info.last_result if row.failed}
            if held == "hooks":  # the RESET before the hooks was recorded; all alive
                assert info.state == "DEPLOYED" and found_dead == set()
                assert {t.pid for t in info.tasks if t.role_path in pids} == {steady, victim}
            else:
                assert "faults.steady" in found_dead
                [row] = [r for r in info.last_result if r.role_path == "faults.steady"]
                assert "no engine ran" in row.reason  # the victim: alive or not, as it went
            await until_idle(engine, environment_id)  # a GO_ERROR the recovery started
            assert (await engine.destroy_environment(environment_id)).state == "DONE"
            assert await engine.list_environments() == []
            assert await engine.list_tasks() == []
            assert all(gone(pid) for pid in launched), launched
        finally:
            await engine.shutdown_agents()


# ------------------------------------------------------- a task or an executor dies in a creation or a destroy


def under_agent(workdir: WorkingDirectory, agent: str) -> set[int]:
    """The occlib dummies the agent's executor runs."""
    executor = psutil.Process(find_running(workdir.root)[agent].pid)
    return dummies({p.pid for p in executor.children(recursive=True)})


@pytest.mark.parametrize("fault", ["task", "executor"])
async def test_a_task_or_executor_dying_in_deploy_fails_the_creation_leaving_nothing(
        engine: tuple[Engine, str], setup: Setup, fault: str) -> None:
    """DEPLOY of a create: the victim is launched but sleeps before serving when its process
    (task) or a2's executor (executor) is SIGKILLed. The creation fails naming the victim
    and its host; nothing deployed is left, the environment is not kept, and the next
    creation works (on a new executor for a2)."""
    engine_, reference = engine
    creating = asyncio.create_task(engine_.create_environment(reference, {"startup_delay": "30"}))
    await until(lambda: bool(find_running(setup.workdir.root).get("a2"))
                and len(under_agent(setup.workdir, "a2")) == 1, "launched the victim")
    launched = executor_children(setup.workdir)
    [victim] = under_agent(setup.workdir, "a2")
    os.kill(victim if fault == "task" else find_running(setup.workdir.root)["a2"].pid,
            signal.SIGKILL)
    with pytest.raises(TransitionFailed) as failed:
        await creating
    message = str(failed.value)
    assert "faults.victim" in message and "on a2" in message, message
    assert await engine_.list_environments() == []
    await until(lambda: all(gone(pid) for pid in launched), "took every task down")
    info = await engine_.create_environment(reference)
    started = await engine_.control_environment(info.id, "START")
    assert started.ok and started.run_number == 1
    assert (await engine_.destroy_environment(info.id)).state == "DONE"


@pytest.mark.parametrize("fault", ["task", "executor"])
async def test_a_task_or_executor_dying_in_a_destroy_still_destroys_leaving_nothing(
        engine: tuple[Engine, str], setup: Setup, tmp_path: Path, fault: str) -> None:
    """A destroy held at its DESTROY hook (a hook task on a1) when the victim's process
    (task) or a2's executor (executor) is SIGKILLed: the destroy completes, the environment
    is gone, no process is left, and the next creation works."""
    engine_, reference = engine
    hold = tmp_path / "hold"
    info = await engine_.create_environment(reference, {"hold_at": "DESTROY",
                                                        "hold_file": str(hold)})
    _, victim = task(info, "victim")
    launched = executor_children(setup.workdir)
    destroying = asyncio.create_task(engine_.destroy_environment(info.id))
    await until(Path(f"{hold}.began").exists, "began the DESTROY hook")
    os.kill(victim if fault == "task" else find_running(setup.workdir.root)["a2"].pid,
            signal.SIGKILL)
    hold.touch()
    destroyed = await destroying
    assert destroyed.state == "DONE"
    assert await engine_.list_environments() == []
    assert await engine_.list_tasks() == []
    await until(lambda: all(gone(pid) for pid in launched), "took every task down")
    info = await engine_.create_environment(reference)
    started = await engine_.control_environment(info.id, "START")
    assert started.ok and started.run_number == 1
    assert (await engine_.destroy_environment(info.id)).state == "DONE"
