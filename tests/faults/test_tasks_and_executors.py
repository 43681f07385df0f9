"""The fault matrix (issue 7), fast cases, part one: a task process or an executor killed
at each phase of each transition, in a creation and in a destroy; the executor channel
paused; the store's disk full. The engine killed: test_engine_killed.py; the channel cut
past the heartbeat: test_heartbeat.py; the long, random version: bench/chaos.py.

Every case ends with a defined outcome and a message that names what happened; the
environment is still listed (or cleanly gone), no run number is given twice and no
process is left behind (the conftest fixture). Real executors on two local agents, real
occlib dummies, real sqlite. The set-up and the helpers: conftest.py and common.py.
"""
from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine, TransitionFailed, WorkingDirectory
from engine.scheduler.local_agent import LocalAgentError, find_running
from engine.store import Store
from engine.store.database import StoreError
from tests.faults.common import (PHASES, RUN_TAKEN, Setup, task, gone, resume,
                                 assert_consistent, prepare, recover_and_run,
                                 destroy_and_run_again, log_shows, executor_children, dummies,
                                 until, under_agent)
from tests.test_environment_e2e import until_idle


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



# ------------------------------------------------------- a task or an executor dies in a creation or a destroy




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

