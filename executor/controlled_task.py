"""Tasks driven over OCC: OCClib processes (direct) and FairMQ devices (fairmq).

The life of one, as the AliECS executor lives it (§2.3): start the process,
dial its control port, poll GetState until STANDBY, follow its EventStream,
then report TASK_RUNNING and the pid. Transitions go through the transitioner
of its control mode. A kill walks it to DONE over OCC before any signal.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from executor.command import CommandError, TaskCommand
from executor.dialer import Backoff, DialTimeout, dial
from executor.launcher import LaunchError, TaskProcess, describe_returncode, launch
from executor.occ_client import OccCallError, OccClient
from executor.plumbing import DEFAULT_FMQ_PLUGIN, control_plumbing
from executor.reports import (DeviceEvent, MesosTaskState, PidAnnouncement, ReportFn,
                              TaskIdentity, TransitionResponse)
from executor.task import Task
from executor.transitioner import Transitioner, transitioner_for
from occlib.owner import TOKEN_ENV, new_token
from occlib.states import DeviceEventType, OccEvent, OccState

log = logging.getLogger("executor")

CONTROL_HOST = "127.0.0.1"  # the executor starts its tasks on its own machine: loopback only
TAIL_LINES = 20  # output lines kept to explain a crash

# The way down to DONE from each stable state when a task is killed.
_KILL_PATH: dict[OccState, OccEvent] = {
    OccState.RUNNING: OccEvent.STOP,
    OccState.CONFIGURED: OccEvent.RESET,
    OccState.STANDBY: OccEvent.EXIT,
    OccState.ERROR: OccEvent.EXIT,
}


@dataclass(frozen=True)
class ControlTimings:
    """Every wait of a controlled task, in seconds; the defaults are AliECS's."""

    dial_timeout: float = 45.0
    backoff: Backoff = field(default_factory=Backoff)
    startup_timeout: float = 30.0  # GetState polling until STANDBY
    poll_interval: float = 0.5
    get_state_timeout: float = 5.0
    kill_step_timeout: float = 5.0  # per transition on the way to DONE
    term_grace: float = 2.0  # SIGTERM → SIGINT
    int_grace: float = 3.0  # SIGINT → SIGKILL


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class ControlledTask(Task):
    """A process that serves OCC (direct) or is a FairMQ device with the OCC plugin (fairmq)."""

    def __init__(self, identity: TaskIdentity, command: TaskCommand, report: ReportFn, *,
                 log_path: Path | None = None, timings: ControlTimings = ControlTimings(),
                 hostname: str | None = None, plugin_search_path: str | None = None,
                 fmq_plugin: str = DEFAULT_FMQ_PLUGIN) -> None:
        super().__init__(identity, command, report, log_path=log_path)
        self.timings = timings
        self.hostname = hostname
        self.plugin_search_path = plugin_search_path
        self.fmq_plugin = fmq_plugin
        self.process: TaskProcess | None = None
        self.pid: int | None = None  # as the process reported it through GetState
        self._client: OccClient | None = None
        self._transitioner: Transitioner | None = None
        self._lock = asyncio.Lock()  # one transition at a time
        self._startup: asyncio.Task[bool] | None = None
        self._events: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._killing: asyncio.Task[None] | None = None
        self._up = False  # came up to STANDBY
        # Only this executor may drive the task: the token goes to the task's environment
        # (never its command line, events or logs) and with every OCC call we make.
        self._token = new_token()

    @property
    def address(self) -> str:
        return f"{CONTROL_HOST}:{self.command.control_port}"

    @property
    def running(self) -> bool:
        """Up and answering OCC: launched, not exited, not being killed."""
        return (self._up and self._killing is None and self.process is not None
                and self.process.returncode is None)

    async def launch(self) -> bool:
        """Start the process and bring it to STANDBY; False (and TASK_FAILED) if it does not come up."""
        if self._startup is not None:
            raise RuntimeError(f"task {self.task_id} launched twice")
        self._startup = asyncio.ensure_future(self._start())
        try:
            return await self._startup
        except asyncio.CancelledError:
            if self._killing is not None and not _cancelling():
                return False  # kill() stopped the start-up and reports for it
            raise

    async def _start(self) -> bool:
        try:
            command = control_plumbing(self.command, self.task_id, hostname=self.hostname,
                                       plugin_search_path=self.plugin_search_path,
                                       fmq_plugin=self.fmq_plugin)
            self.process = await launch(command, log_path=self.log_path, tail_lines=TAIL_LINES,
                                        extra_env=self._owner_env())
        except (CommandError, LaunchError) as error:
            self._status(MesosTaskState.TASK_FAILED, f"task {self.task_id} could not start: {error}")
            return False
        self._status(MesosTaskState.TASK_STARTING)
        failure = await self._come_up(command)
        if failure is not None:
            log.warning("task %s: %s", self.task_id, failure)
            await self._close_control()
            await self.process.terminate(self.timings.term_grace, self.timings.int_grace)
            self._status(MesosTaskState.TASK_FAILED, failure)
            return False
        self._events = asyncio.ensure_future(self._follow_events())
        await asyncio.sleep(0)  # the follower opens EventStream before we say RUNNING
        self._watcher = asyncio.ensure_future(self._watch_exit())
        self._up = True
        self._status(MesosTaskState.TASK_RUNNING)
        self._report(PidAnnouncement(self.identity, self.pid or self.process.pid))
        return True

    async def _come_up(self, command: TaskCommand) -> str | None:
        """Dial, then poll GetState until STANDBY; the failure message, or None."""
        assert self.process is not None
        exited = asyncio.ensure_future(self.process.wait())
        dialing = asyncio.ensure_future(dial(
            CONTROL_HOST, command.control_port, json=command.uses_occlite_json,
            timeout=self.timings.dial_timeout, backoff=self.timings.backoff, token=self._token))
        try:
            await asyncio.wait({dialing, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not dialing.done():
                return self._crashed("before its control port answered")
            try:
                self._client = dialing.result()
            except DialTimeout as error:
                if self.process.returncode is not None:
                    await exited
                    return self._crashed("before its control port answered")
                return f"task {self.task_id} likely took too long to start: {error}"
            self._transitioner = transitioner_for(command.control_mode, self._client)
            return await self._poll_standby(exited)
        finally:
            for pending in (dialing, exited):
                if not pending.done():
                    pending.cancel()
            results = await asyncio.gather(dialing, exited, return_exceptions=True)
            if self._client is None and isinstance(results[0], OccClient):
                await results[0].close()  # dial won the race against our cancel

    async def _poll_standby(self, exited: asyncio.Future[int]) -> str | None:
        assert self._transitioner is not None and self.process is not None
        deadline = time.monotonic() + self.timings.startup_timeout
        last = "no GetState answer yet"
        while True:
            if exited.done():
                return self._crashed("before reaching STANDBY")
            try:
                state, pid = await asyncio.wait_for(self._transitioner.current_state(),
                                                    self.timings.get_state_timeout)
            except (OccCallError, TimeoutError) as error:
                last = str(error) or "GetState timed out"
            else:
                stranger = self._stranger(pid)
                if stranger:
                    return stranger
                self.pid = pid or self.process.pid
                if state is OccState.STANDBY:
                    self.state = state
                    return None
                if state in (OccState.DONE, OccState.ERROR):
                    self.state = state
                    return f"task {self.task_id} reached {state.value} during start-up instead of STANDBY"
                last = f"state {state.value}"
            left = deadline - time.monotonic()
            if left <= 0:
                return (f"task {self.task_id} likely took too long to start: not in STANDBY "
                        f"after {self.timings.startup_timeout:g} s ({last})")
            await asyncio.wait({exited}, timeout=min(self.timings.poll_interval, left))

    def _owner_env(self) -> dict[str, str]:
        """What the task's environment gets beyond its command's: its token, and the loopback
        address an OCClib process listens on (we dial nothing else). A process that is not
        OCClib (a real FairMQ device) ignores both; its protection is its loopback port."""
        return {TOKEN_ENV: self._token, "OCC_CONTROL_HOST": CONTROL_HOST}

    def _stranger(self, pid: int) -> str:
        """Why the process answering on the control port is not ours, or "".

        The port was free when it was chosen, but another process may have
        bound it first; driving that process would be driving someone else's.
        Ours is the launched process or one of its group (a `sh -c` child).
        """
        assert self.process is not None
        if not pid or pid == self.process.pid:
            return ""
        try:
            if os.getpgid(pid) == self.process.pgid:
                return ""
        except ProcessLookupError:
            pass
        return (f"task {self.task_id}: control port {self.command.control_port} is answered by "
                f"pid {pid}, which is not this task's process ({self.process.pid}); another "
                f"process holds the port")

    def _crashed(self, when: str) -> str:
        assert self.process is not None
        message = (f"task {self.task_id} likely crashed on startup: its process "
                   f"{describe_returncode(self.process.returncode)} {when}")
        lines = self.process.tail()
        if lines:
            message += "; last output lines:\n" + "\n".join(lines)
        elif self.log_path is not None:
            message += f"; no output (log {self.log_path})"
        return message

    async def _follow_events(self) -> None:
        """Forward EventStream events until NULL_DEVICE_EVENT, EOF or an error ends it."""
        assert self._client is not None
        try:
            async for event in self._client.event_stream():
                if event is DeviceEventType.NULL_DEVICE_EVENT:
                    break
                log.info("task %s: device event %s", self.task_id, event.name)
                self._report(DeviceEvent(self.identity, event))
        except OccCallError as error:
            log.info("task %s: event stream ended: %s", self.task_id, error)

    async def _watch_exit(self) -> None:
        """The process ended by itself: FINISHED on exit 0, else FAILED (unless we are killing it)."""
        assert self.process is not None
        code = await self.process.wait()
        if self._killing is not None:
            return
        await self._close_control()
        if self._killing is not None:
            return
        self._report_exit(code)
        # Whatever the leader left in its group goes too.
        await self.process.terminate(self.timings.term_grace, self.timings.int_grace)

    def _report_exit(self, code: int) -> None:
        assert self.process is not None
        self.state = OccState.DONE if code == 0 else OccState.ERROR
        if code == 0:
            self._status(MesosTaskState.TASK_FINISHED, f"task {self.task_id}: its process exited with code 0")
            return
        lines = self.process.tail()
        detail = ("; last output lines:\n" + "\n".join(lines)) if lines else ""
        self._status(MesosTaskState.TASK_FAILED,
                     f"task {self.task_id}: its process {describe_returncode(code)}{detail}")

    async def transition(self, src: OccState | str, event: OccEvent | str,
                         arguments: Mapping[str, str] | None = None, timeout: float | None = None,
                         *, command_id: str = "", environment_id: str = "") -> TransitionResponse:
        occ_event = self._parse_event(event)
        if occ_event is None:
            return self._respond(self.state, f"task {self.task_id}: unknown event {str(event)!r}",
                                 str(event), command_id, environment_id)
        async with self._lock:
            if not self.running:
                return self._respond(self.state, f"task {self.task_id} is not running; "
                                     f"cannot {occ_event.value}", occ_event.value, command_id,
                                     environment_id)
            assert self._transitioner is not None
            outcome = await self._transitioner.transition(OccState.parse(str(src)), occ_event,
                                                          arguments, timeout)
            if outcome.state is not OccState.UNDEFINED:
                self.state = outcome.state
            error = "" if outcome.ok else (outcome.error or f"{occ_event.value} failed")
            return self._respond(outcome.state, error, occ_event.value, command_id, environment_id)

    async def kill(self) -> None:
        """Walk to DONE over OCC, report FINISHED (DONE reached) or KILLED, then signal the group.

        Safe to call again or concurrently; every call returns once nothing is left.
        """
        if self._killing is None:
            self._killing = asyncio.ensure_future(self._kill())
        await asyncio.shield(self._killing)

    async def _kill(self) -> None:
        walked = False
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()  # still coming up: no OCC walk, straight to signals
            await asyncio.gather(self._startup, return_exceptions=True)
        elif (self._transitioner is not None and self.process is not None
              and self.process.returncode is None):
            walked = await self._walk_to_done()
        process = self.process
        if process is None:
            self._status(MesosTaskState.TASK_KILLED, f"task {self.task_id} killed before its process started")
            return
        if walked:
            self._status(MesosTaskState.TASK_FINISHED, f"task {self.task_id} reached DONE")
            with contextlib.suppress(TimeoutError):  # it exits by itself after DONE; signals only if it lingers
                await asyncio.wait_for(asyncio.shield(process.wait()), self.timings.term_grace)
        elif process.returncode is not None and self._up:
            self._report_exit(process.returncode)  # it ended by itself just before the kill
        else:
            self._status(MesosTaskState.TASK_KILLED, f"task {self.task_id} killed")
        await process.terminate(self.timings.term_grace, self.timings.int_grace)
        await self._close_control()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    async def _walk_to_done(self) -> bool:
        """RUNNING→STOP, CONFIGURED→RESET, STANDBY/ERROR→EXIT until DONE; whether DONE was reached."""
        assert self._transitioner is not None
        step = self.timings.kill_step_timeout
        try:
            await asyncio.wait_for(self._lock.acquire(), step)
        except TimeoutError:
            log.warning("task %s: a transition is still running; killing without walking to DONE",
                        self.task_id)
            return False
        try:
            try:
                state, _ = await asyncio.wait_for(self._transitioner.current_state(),
                                                  self.timings.get_state_timeout)
            except (OccCallError, TimeoutError) as error:
                log.warning("task %s: no state before kill (%s); signalling it", self.task_id,
                            error or "GetState timed out")
                return False
            for _ in range(len(_KILL_PATH) + 1):
                if state is OccState.DONE:
                    break
                event = _KILL_PATH.get(state)
                if event is None:
                    log.warning("task %s: in %s, no way to DONE; signalling it", self.task_id,
                                state.value)
                    return False
                try:
                    outcome = await asyncio.wait_for(
                        self._transitioner.transition(state, event, None, step), step)
                except TimeoutError:
                    log.warning("task %s: %s from %s took over %g s; signalling it",
                                self.task_id, event.value, state.value, step)
                    return False
                if outcome.state is not OccState.UNDEFINED:
                    self.state = outcome.state
                if not outcome.ok:
                    log.warning("task %s: %s on the way to DONE failed: %s", self.task_id,
                                event.value, outcome.error)
                    return outcome.state is OccState.DONE
                state = outcome.state
            return state is OccState.DONE
        finally:
            self._lock.release()

    async def _close_control(self) -> None:
        """Stop following events and close the OCC channel."""
        events, self._events = self._events, None
        if events is not None:
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.close()
