"""executor.controlled_task: real OCClib dummies and FairMQ emulators, over real gRPC."""
from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from executor.command import TaskCommand
from executor.controlled_task import ControlledTask, ControlTimings
from executor.controlmode import ControlMode
from executor.dialer import Backoff
from executor.plumbing import control_plumbing
from executor.reports import (DeviceEvent, MesosTaskState, PidAnnouncement, Report, StatusUpdate,
                              TaskIdentity, TransitionResponse)
from occlib.states import DeviceEventType, OccState
from tests.conftest import free_port

FAST = ControlTimings(dial_timeout=15.0, startup_timeout=15.0, poll_interval=0.05,
                      backoff=Backoff(base=0.05), kill_step_timeout=5.0, term_grace=0.5,
                      int_grace=0.5)

CYCLE = [("STANDBY", "CONFIGURE", "CONFIGURED"), ("CONFIGURED", "START", "RUNNING"),
         ("RUNNING", "STOP", "CONFIGURED"), ("CONFIGURED", "RESET", "STANDBY"),
         ("STANDBY", "EXIT", "DONE")]


class Harness:
    """Makes tasks, keeps what they report, kills them all at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.tasks: list[ControlledTask] = []
        self.reports: dict[str, list[Report]] = {}

    def task(self, *args: str, module: str = "occlib.examples.dummy", mode: str = "direct",
             command: TaskCommand | None = None, timings: ControlTimings = FAST) -> ControlledTask:
        task_id = f"task{len(self.tasks)}"
        if command is None:
            command = TaskCommand(sys.executable, arguments=("-u", "-m", module, *args),
                                  control_port=free_port(), control_mode=ControlMode.parse(mode))
        self.reports[task_id] = []
        task = ControlledTask(TaskIdentity(task_id, environment_id="env1", detector="TST"), command,
                              self.reports[task_id].append, log_path=self.tmp_path / f"{task_id}.log",
                              timings=timings, hostname="testhost",
                              plugin_search_path="/opt/occ/lib/")
        self.tasks.append(task)
        return task

    def statuses(self, task: ControlledTask) -> list[StatusUpdate]:
        return [r for r in self.reports[task.task_id] if isinstance(r, StatusUpdate)]

    def events(self, task: ControlledTask) -> list[DeviceEventType]:
        return [r.type for r in self.reports[task.task_id] if isinstance(r, DeviceEvent)]

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)

    async def terminal(self, task: ControlledTask) -> StatusUpdate:
        await self.until(lambda: task.finished)
        return next(s for s in self.statuses(task) if s.state.terminal)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    for task in h.tasks:
        await task.kill()


async def drive_cycle(task: ControlledTask) -> None:
    for src, event, dst in CYCLE:
        response = await task.transition(src, event, {"runNumber": "7"})
        assert response.ok, response.error
        assert response.state == dst and task.state.value == dst


@pytest.mark.parametrize("module,mode,extra", [
    ("occlib.examples.dummy", "direct", ()),
    ("occlib.examples.fairmq", "fairmq", ("--id", "x", "-P", "OCClite")),
])
async def test_full_cycle_then_exit_finishes(harness: Harness, module: str, mode: str,
                                             extra: tuple[str, ...]) -> None:
    task = harness.task(*extra, module=module, mode=mode)
    assert await task.launch()
    assert [s.state for s in harness.statuses(task)] == [MesosTaskState.TASK_STARTING,
                                                         MesosTaskState.TASK_RUNNING]
    pids = [r.pid for r in harness.reports[task.task_id] if isinstance(r, PidAnnouncement)]
    assert task.process is not None and pids == [task.process.pid]

    await drive_cycle(task)

    final = await harness.terminal(task)  # the process exits 0 after DONE
    assert final.state is MesosTaskState.TASK_FINISHED
    assert task.process.returncode == 0
    responses = [r for r in harness.reports[task.task_id] if isinstance(r, TransitionResponse)]
    assert [r.state for r in responses] == [dst for _, _, dst in CYCLE]
    assert responses[0].to_message() == {
        "_messageType": "MesosCommandResponse", "name": "MesosCommand_Transition", "id": "",
        "environmentId": "env1", "error": "", "taskId": task.task_id, "state": "CONFIGURED"}


async def test_fairmq_task_gets_the_core_options(harness: Harness) -> None:
    task = harness.task("--id", "x", "-P", "OCClite", module="occlib.examples.fairmq", mode="fairmq")
    assert await task.launch()
    await task.kill()
    log = task.log_path.read_text()
    assert "device x (pid" in log  # --id kept, not added twice
    assert "plugin search path /opt/occ/lib/" in log


async def test_failing_transition_reports_error_and_state(harness: Harness) -> None:
    task = harness.task("--fail-on", "START")
    assert await task.launch()
    assert (await task.transition("STANDBY", "CONFIGURE")).ok
    response = await task.transition("CONFIGURED", "START")
    assert not response.ok
    assert "transition unsuccessful" in response.error
    assert response.state == "ERROR" and task.state is OccState.ERROR

    await task.kill()  # from ERROR: EXIT reaches DONE
    assert (await harness.terminal(task)).state is MesosTaskState.TASK_FINISHED


@pytest.mark.parametrize("switch,event", [
    ("--eos-after", DeviceEventType.END_OF_STREAM),
    ("--internal-error-after", DeviceEventType.TASK_INTERNAL_ERROR),
])
async def test_device_events_are_forwarded(harness: Harness, switch: str,
                                           event: DeviceEventType) -> None:
    task = harness.task(switch, "3")
    assert await task.launch()
    assert (await task.transition("STANDBY", "CONFIGURE")).ok
    assert (await task.transition("CONFIGURED", "START")).ok
    await harness.until(lambda: event in harness.events(task))
    report = next(r for r in harness.reports[task.task_id] if isinstance(r, DeviceEvent))
    assert report.to_message()["type"] == int(event)
    assert report.to_message()["origin"]["taskId"] == {"value": task.task_id}
    assert report.to_message()["labels"] == {"environmentId": "env1", "detector": "TST"}


async def test_crash_at_start_is_told_apart(harness: Harness) -> None:
    task = harness.task("--crash-at-start")
    assert not await task.launch()
    final = await harness.terminal(task)
    assert final.state is MesosTaskState.TASK_FAILED
    assert "likely crashed on startup" in final.message
    assert "exited with code 3" in final.message
    assert "crashing at start as asked" in final.message  # the last lines of its output


async def test_slow_start_is_told_apart_and_stopped(harness: Harness) -> None:
    timings = ControlTimings(dial_timeout=0.5, backoff=Backoff(base=0.05), term_grace=0.5,
                             int_grace=0.5)
    task = harness.task("--startup-delay", "30", timings=timings)
    assert not await task.launch()
    final = await harness.terminal(task)
    assert final.state is MesosTaskState.TASK_FAILED
    assert "likely took too long to start" in final.message
    assert task.process is not None and task.process.returncode is not None
    assert await task.process.members() == []


async def test_a_stranger_on_the_control_port_is_not_driven(harness: Harness, spawn) -> None:
    stranger = spawn("occlib.examples.dummy")  # someone else's process, already on the port
    # our task never opens its port (it only sleeps), so whatever answers there is not it
    command = TaskCommand("sleep", arguments=("30",), control_port=stranger.port,
                          control_mode=ControlMode.DIRECT)
    task = harness.task(command=command)
    assert not await task.launch()
    final = await harness.terminal(task)
    assert final.state is MesosTaskState.TASK_FAILED
    assert (f"control port {stranger.port} is answered by pid {stranger.proc.pid}, which is "
            "not this task's process") in final.message
    assert task.process is not None and await task.process.members() == []
    assert stranger.proc.poll() is None  # the stranger was left alone


async def test_kill_from_running_walks_to_done(harness: Harness) -> None:
    task = harness.task()
    assert await task.launch()
    assert (await task.transition("STANDBY", "CONFIGURE")).ok
    assert (await task.transition("CONFIGURED", "START")).ok

    await task.kill()

    assert (await harness.terminal(task)).state is MesosTaskState.TASK_FINISHED
    assert task.state is OccState.DONE
    assert task.process is not None and task.process.returncode == 0  # it left by itself
    log = task.log_path.read_text()
    assert log.index(": STOP") < log.index(": RESET") < log.index(": EXIT")
    assert (await task.transition("DONE", "CONFIGURE")).error.endswith("is not running; cannot CONFIGURE")


async def test_kill_of_a_process_that_never_serves_occ_ends_with_the_ladder(
        harness: Harness) -> None:
    command = TaskCommand("trap '' TERM INT; sleep 100", shell=True, control_port=free_port())
    task = harness.task(command=command)
    launching = asyncio.ensure_future(task.launch())
    await harness.until(lambda: task.process is not None)
    # The shell has set its traps once it runs sleep.
    await harness.until(lambda: len(psutil.Process(task.process.pid).children()) >= 1)

    await task.kill()

    assert await launching is False
    assert (await harness.terminal(task)).state is MesosTaskState.TASK_KILLED
    assert task.process.returncode == -9
    assert await task.process.members() == []


async def test_process_exiting_on_its_own_fails_the_task(harness: Harness) -> None:
    task = harness.task("--crash-on", "START")
    assert await task.launch()
    assert (await task.transition("STANDBY", "CONFIGURE")).ok
    response = await task.transition("CONFIGURED", "START")
    assert not response.ok and "occplugin returned" in response.error
    final = await harness.terminal(task)
    assert final.state is MesosTaskState.TASK_FAILED
    assert "exited with code 3" in final.message


async def test_transitions_run_one_at_a_time(harness: Harness) -> None:
    task = harness.task()
    assert await task.launch()
    configure, start = await asyncio.gather(task.transition("STANDBY", "CONFIGURE"),
                                            task.transition("CONFIGURED", "START"))
    assert configure.ok and start.ok and task.state is OccState.RUNNING


async def test_unknown_event_is_refused(harness: Harness) -> None:
    task = harness.task()
    assert await task.launch()
    response = await task.transition("STANDBY", "PAUSE")
    assert not response.ok and "unknown event 'PAUSE'" in response.error
    assert task.state is OccState.STANDBY


def test_plumbing_for_direct_tasks() -> None:
    command = TaskCommand("proc", arguments=("--x",), env=("O2_SYSTEM=TST",), control_port=31000)
    plumbed = control_plumbing(command, "t1", hostname="flp001")
    assert plumbed.arguments == ("--x",)
    assert plumbed.environment == {"O2_SYSTEM": "TST", "OCC_CONTROL_PORT": "31000",
                                   "O2_ROLE": "flp001"}
    assert not plumbed.uses_occlite_json


def test_plumbing_for_fairmq_tasks() -> None:
    command = TaskCommand("o2-dev", arguments=("--id", "mine"), control_port=31000,
                          control_mode=ControlMode.FAIRMQ)
    plumbed = control_plumbing(command, "t1", hostname="flp001", plugin_search_path="/opt/occ/lib/")
    assert plumbed.arguments == ("--id", "mine", "--control-port", "31000", "-S", "/opt/occ/lib/",
                                 "-P", "OCClite", "--color", "false")
    assert plumbed.environment["O2_SYSTEM"] == "FLP"
    # shell=false: separate "-P", "OCClite" items. AliECS would pick protobuf here; we do not.
    assert plumbed.uses_occlite_json
    shell = control_plumbing(TaskCommand("o2-dev --id a", shell=True, control_port=31000,
                                         control_mode=ControlMode.FAIRMQ), "t1", hostname="h")
    assert shell.argv()[-1].endswith("-P OCClite --color false")
    assert "--id t1" not in shell.argv()[-1]
    assert shell.uses_occlite_json
