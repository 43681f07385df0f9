"""executor.basic_task and executor.hook_task: plain commands, real processes."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from executor.basic_task import BasicTask, CommandTask
from executor.command import CommandError, TaskCommand
from executor.controlled_task import ControlledTask
from executor.hook_task import HookTask
from executor.launcher import TRUNCATED
from executor.reports import (DeviceEvent, HookResult, MesosTaskState, Report, StatusUpdate,
                              TaskIdentity)
from executor.tasks import make_task
from occlib.states import DeviceEventType, OccState


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.tasks: list[CommandTask] = []
        self.reports: list[Report] = []

    def basic(self, value: str, **fields: object) -> BasicTask:
        task = BasicTask(TaskIdentity(f"basic{len(self.tasks)}", environment_id="env1"),
                         TaskCommand(value, shell=True, control_mode="basic", **fields),  # type: ignore[arg-type]
                         self.reports.append, log_path=self.tmp_path / "basic.log")
        self.tasks.append(task)
        return task

    def hook(self, value: str, **fields: object) -> HookTask:
        task = HookTask(TaskIdentity(f"hook{len(self.tasks)}", environment_id="env1"),
                        TaskCommand(value, shell=True, control_mode="hook", **fields),  # type: ignore[arg-type]
                        self.reports.append)
        self.tasks.append(task)
        return task

    def terminated(self) -> list[DeviceEvent]:
        return [r for r in self.reports
                if isinstance(r, DeviceEvent) and r.type is DeviceEventType.BASIC_TASK_TERMINATED]

    def statuses(self) -> list[MesosTaskState]:
        return [r.state for r in self.reports if isinstance(r, StatusUpdate)]

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.01)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    for task in h.tasks:
        await task.kill()


async def configured(task: BasicTask) -> None:
    assert await task.launch()
    assert (await task.transition("STANDBY", "CONFIGURE")).state == "CONFIGURED"


async def test_basic_task_says_running_later_and_starts_nothing(harness: Harness) -> None:
    task = harness.basic("true")
    assert await task.launch()
    assert harness.statuses() == []
    await harness.until(lambda: harness.statuses() == [MesosTaskState.TASK_RUNNING])
    assert task.run is None


async def test_start_runs_the_command_to_its_end(harness: Harness) -> None:
    task = harness.basic("echo out; echo err >&2")
    await configured(task)
    response = await task.transition("CONFIGURED", "START")
    assert response.ok and response.state == "RUNNING"
    await harness.until(lambda: bool(harness.terminated()))
    event = harness.terminated()[0]
    assert (event.exit_code, event.stdout, event.stderr) == (0, "out\n", "err\n")
    assert event.voluntary_termination and event.final_mesos_state is MesosTaskState.TASK_FINISHED
    body = event.to_message()
    assert body["_messageType"] == "DeviceEvent" and body["type"] == 2
    assert {k: body[k] for k in ("exitCode", "stdout", "stderr", "voluntaryTermination",
                                 "finalMesosState")} == {
        "exitCode": 0, "stdout": "out\n", "stderr": "err\n", "voluntaryTermination": True,
        "finalMesosState": 2}
    assert (harness.tmp_path / "basic.log").exists()


async def test_failing_command_is_a_failed_termination(harness: Harness) -> None:
    task = harness.basic("exit 2")
    await configured(task)
    await task.transition("CONFIGURED", "START")
    await harness.until(lambda: bool(harness.terminated()))
    event = harness.terminated()[0]
    assert event.exit_code == 2 and event.voluntary_termination
    assert event.final_mesos_state is MesosTaskState.TASK_FAILED


async def test_stop_kills_the_group(harness: Harness) -> None:
    task = harness.basic("sleep 100 & sleep 100")
    await configured(task)
    await task.transition("CONFIGURED", "START")
    assert task.run is not None
    await harness.until(lambda: len(psutil.Process(task.run.process.pid).children()) >= 1)

    response = await task.transition("RUNNING", "STOP")

    assert response.ok and response.state == "CONFIGURED"
    event = harness.terminated()[0]
    assert event.exit_code == -9 and not event.voluntary_termination
    assert event.final_mesos_state is MesosTaskState.TASK_KILLED
    assert await task.run.process.members() == []


async def test_timeout_kills_the_command(harness: Harness) -> None:
    task = harness.basic("sleep 100", timeout_ns=300_000_000)
    await configured(task)
    await task.transition("CONFIGURED", "START")
    await harness.until(lambda: bool(harness.terminated()))
    event = harness.terminated()[0]
    assert event.exit_code == -9 and not event.voluntary_termination
    assert event.final_mesos_state is MesosTaskState.TASK_FAILED


async def test_output_is_capped_at_one_mebibyte(harness: Harness) -> None:
    task = harness.basic("head -c 1100000 /dev/zero | tr '\\0' x")
    await configured(task)
    await task.transition("CONFIGURED", "START")
    await harness.until(lambda: bool(harness.terminated()))
    stdout = harness.terminated()[0].stdout
    assert stdout == "x" * (1 << 20) + "\n" + TRUNCATED


async def test_other_transitions_report_their_destination(harness: Harness) -> None:
    task = harness.basic("true")
    assert await task.launch()
    for src, event, dst in [("STANDBY", "CONFIGURE", "CONFIGURED"),
                            ("CONFIGURED", "RESET", "STANDBY"),
                            ("STANDBY", "GO_ERROR", "ERROR"), ("ERROR", "RECOVER", "STANDBY"),
                            ("STANDBY", "EXIT", "DONE")]:
        response = await task.transition(src, event)
        assert response.ok and response.state == dst
    assert task.run is None


async def test_start_of_a_missing_executable_is_an_error(harness: Harness) -> None:
    task = BasicTask(TaskIdentity("b"), TaskCommand("no-such-program-x", control_mode="basic"),
                     harness.reports.append)
    harness.tasks.append(task)
    await configured(task)
    response = await task.transition("CONFIGURED", "START")
    assert "'no-such-program-x'" in response.error and "not found" in response.error
    assert response.state == "CONFIGURED" and task.state is OccState.CONFIGURED


async def test_kill_ends_the_command_then_finishes(harness: Harness) -> None:
    task = harness.basic("sleep 100")
    await configured(task)
    await task.transition("CONFIGURED", "START")
    await task.kill()
    assert not harness.terminated()[0].voluntary_termination
    kinds = [type(r).__name__ for r in harness.reports]
    assert kinds.index("DeviceEvent") < len(kinds) - 1
    assert harness.statuses()[-1] is MesosTaskState.TASK_FINISHED
    assert await task.run.process.members() == []


async def test_hook_runs_on_trigger_with_its_arguments(harness: Harness) -> None:
    task = harness.hook('echo "run $runNumber"; echo warn >&2')
    assert await task.launch()
    result = await task.trigger({"runNumber": "42"}, command_id="c1")
    assert (result.exit_code, result.stdout, result.stderr, result.error) == (
        0, "run 42\n", "warn\n", "")
    assert result.to_message() == {
        "_messageType": "MesosCommandResponse", "name": "MesosCommand_TriggerHook", "id": "c1",
        "environmentId": "env1", "error": "", "taskId": task.task_id}
    assert any(isinstance(r, HookResult) for r in harness.reports)
    assert harness.terminated()[0].voluntary_termination


async def test_failing_hook_says_so(harness: Harness) -> None:
    task = harness.hook("exit 4")
    result = await task.trigger()
    assert result.exit_code == 4 and result.error.endswith("exited with code 4")


async def test_hook_timeout_kills_its_group(harness: Harness) -> None:
    task = harness.hook("sleep 100 & sleep 100", timeout_ns=300_000_000)
    result = await task.trigger()
    assert result.exit_code == -9
    assert "timed out after 0.3 s" in result.error
    assert task.run is not None and await task.run.process.members() == []


async def test_hook_defaults_and_no_op_transitions(harness: Harness) -> None:
    task = harness.hook("true")
    assert task.hook_timeout == 30.0
    response = await task.transition("CONFIGURED", "START")
    assert response.ok and response.state == "RUNNING" and task.run is None


async def test_hook_that_cannot_start(harness: Harness) -> None:
    task = HookTask(TaskIdentity("h"), TaskCommand("no-such-program-x", control_mode="hook"),
                    harness.reports.append)
    harness.tasks.append(task)
    result = await task.trigger()
    assert result.exit_code is None and "not found" in result.error


async def test_kill_during_a_hook_run(harness: Harness) -> None:
    task = harness.hook("sleep 100")
    running = asyncio.ensure_future(task.trigger())
    await harness.until(lambda: task.run is not None)
    await task.kill()
    result = await running
    assert "killed with its task" in result.error
    assert harness.statuses()[-1] is MesosTaskState.TASK_FINISHED


async def test_a_run_whose_caller_went_away_holds_the_hook_until_it_ends(
        harness: Harness, tmp_path: Path) -> None:
    """The engine that triggered a run died (its call was cancelled): the run goes on, the
    next trigger waits for it, and a kill finds it — no run is ever left behind."""
    flag = tmp_path / "second"
    task = harness.hook(f"test -e {flag} && exit 0; sleep 100 & wait")
    first = asyncio.ensure_future(task.trigger())
    await harness.until(lambda: task.run is not None)
    first_run = task.run
    first.cancel()  # as grpc cancels the servicer when the engine's call is gone
    await asyncio.sleep(0.1)
    assert first_run.process.returncode is None  # still running, still supervised
    flag.touch()
    second = asyncio.ensure_future(task.trigger())
    await asyncio.sleep(0.3)
    assert not second.done() and task.run is first_run  # waits for the first run
    await task.kill()
    assert "killed with its task" in (await second).error or (await second).exit_code is None
    assert await first_run.process.members() == []  # the whole group of the first run is gone


def test_make_task_picks_by_control_mode() -> None:
    def make(mode: str) -> object:
        command = TaskCommand("x", control_mode=mode, control_port=31000)
        return make_task(TaskIdentity("t"), command, lambda report: None)
    assert type(make("basic")) is BasicTask
    assert type(make("hook")) is HookTask
    assert type(make("direct")) is ControlledTask
    assert type(make("FairMQ")) is ControlledTask
    with pytest.raises(CommandError, match="kubectl_direct is not run by this executor"):
        make("kubectl_direct")
