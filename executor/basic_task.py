"""Tasks that run a plain command with no OCC: `basic` (while RUNNING) and the base of hooks.

A basic task has no process at launch; it says TASK_RUNNING after 200 ms.
START runs the command, STOP kills its group with SIGKILL, every other
transition only reports its destination. When the command ends, the core
gets BASIC_TASK_TERMINATED with the exit code and the full output (§2.6).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from executor.command import TaskCommand
from executor.launcher import MIB, LaunchError, TaskProcess, launch
from executor.reports import (DeviceEvent, MesosTaskState, ReportFn, TaskIdentity,
                              TransitionResponse)
from executor.task import Task
from occlib.states import EXPECTED_STATE, DeviceEventType, OccEvent, OccState

log = logging.getLogger("executor")

RUNNING_DELAY = 0.2  # AliECS sends TASK_RUNNING this long after launch
OUTPUT_LIMIT = MIB  # per stream, in BASIC_TASK_TERMINATED


@dataclass
class CommandRun:
    """One run of the command and why it ended."""

    process: TaskProcess
    timeout: float | None
    killed: bool = False  # by STOP or kill, not by itself
    timed_out: bool = False
    supervisor: asyncio.Task[DeviceEvent] | None = None


class CommandTask(Task):
    """What basic and hook tasks share: TASK_RUNNING on a timer, running and supervising the command."""

    def __init__(self, identity: TaskIdentity, command: TaskCommand, report: ReportFn, *,
                 log_path: Path | None = None, running_delay: float = RUNNING_DELAY) -> None:
        super().__init__(identity, command, report, log_path=log_path)
        self.running_delay = running_delay
        self.run: CommandRun | None = None  # the latest run
        self._lock = asyncio.Lock()
        self._running_timer: asyncio.TimerHandle | None = None
        self._killing: asyncio.Task[None] | None = None

    async def launch(self) -> bool:
        """No process yet: only TASK_RUNNING, after `running_delay` s."""
        if self._running_timer is not None:
            raise RuntimeError(f"task {self.task_id} launched twice")
        self._running_timer = asyncio.get_running_loop().call_later(
            self.running_delay, self._status, MesosTaskState.TASK_RUNNING, "")
        return True

    async def _start_run(self, timeout: float | None,
                         extra_env: Mapping[str, str] | None = None) -> CommandRun:
        """Run the command, supervised; raises LaunchError if it cannot start."""
        process = await launch(self.command, log_path=self.log_path, extra_env=extra_env,
                               capture=True, capture_limit=OUTPUT_LIMIT)
        run = CommandRun(process, timeout)
        run.supervisor = asyncio.ensure_future(self._supervise(run))
        self.run = run
        return run

    async def _supervise(self, run: CommandRun) -> DeviceEvent:
        """Wait for the run (killing its group past the timeout); report BASIC_TASK_TERMINATED."""
        try:
            code = await asyncio.wait_for(asyncio.shield(run.process.wait()), run.timeout)
        except TimeoutError:
            log.warning("task %s: command ran over its %g s timeout; killing it", self.task_id,
                        run.timeout)
            run.timed_out = True
            code = await run.process.kill()
        if run.killed:
            final = MesosTaskState.TASK_KILLED
        elif code == 0 and not run.timed_out:
            final = MesosTaskState.TASK_FINISHED
        else:
            final = MesosTaskState.TASK_FAILED
        event = DeviceEvent(
            self.identity, DeviceEventType.BASIC_TASK_TERMINATED, exit_code=code,
            stdout=run.process.stdout or "", stderr=run.process.stderr or "",
            voluntary_termination=not (run.killed or run.timed_out), final_mesos_state=final)
        log.info("task %s: command %s ended with %d (%s)", self.task_id, run.process.pid, code,
                 final.name)
        self._report(event)
        return event

    async def _stop_run(self, run: CommandRun) -> DeviceEvent:
        """SIGKILL the run's group unless it already ended; returns its termination event."""
        assert run.supervisor is not None
        if run.process.returncode is None and not run.supervisor.done():
            run.killed = True
        await run.process.kill()
        return await asyncio.shield(run.supervisor)

    async def kill(self) -> None:
        """Kill a running command, then TASK_FINISHED (as AliECS does for basic and hook tasks)."""
        if self._killing is None:
            self._killing = asyncio.ensure_future(self._kill())
        await asyncio.shield(self._killing)

    async def _kill(self) -> None:
        if self._running_timer is not None:
            self._running_timer.cancel()
        if self.run is not None:
            await self._stop_run(self.run)
        self.state = OccState.DONE
        self._status(MesosTaskState.TASK_FINISHED, f"task {self.task_id} killed")

    def _refused(self, event: OccEvent | str) -> str:
        if self._parse_event(event) is None:
            return f"task {self.task_id}: unknown event {str(event)!r}"
        if self._killing is not None:
            return f"task {self.task_id} was killed; cannot {event}"
        return ""


class BasicTask(CommandTask):
    """`basic` control mode: the command runs from START until it ends or STOP kills it.

    `command.timeout` (0 = none) kills it when exceeded.
    """

    async def transition(self, src: OccState | str, event: OccEvent | str,
                         arguments: Mapping[str, str] | None = None, timeout: float | None = None,
                         *, command_id: str = "", environment_id: str = "") -> TransitionResponse:
        refused = self._refused(event)
        if refused:
            return self._respond(self.state, refused, str(event), command_id, environment_id)
        occ_event = OccEvent(event)
        destination = EXPECTED_STATE[occ_event]
        async with self._lock:
            if occ_event is OccEvent.START:
                if self.run is not None and self.run.process.returncode is None:
                    return self._respond(self.state, f"task {self.task_id}: its command is already "
                                         f"running (pid {self.run.process.pid})", occ_event.value,
                                         command_id, environment_id)
                try:
                    await self._start_run(self.command.timeout)
                except LaunchError as error:
                    return self._respond(self.state, str(error), occ_event.value, command_id,
                                         environment_id)
            elif occ_event is OccEvent.STOP and self.run is not None:
                await self._stop_run(self.run)
            self.state = destination
            return self._respond(destination, "", occ_event.value, command_id, environment_id)
