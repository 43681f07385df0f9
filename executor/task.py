"""What every kind of task offers the executor: launch, transition, kill.

Subclasses differ in how a transition reaches the process (OCC calls, or
running a plain command); reporting and the once-only terminal status are here.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from executor.command import TaskCommand
from executor.reports import (MesosTaskState, Report, ReportFn, StatusUpdate, TaskIdentity,
                              TransitionResponse)
from occlib.states import OccEvent, OccState

log = logging.getLogger("executor")


class Task(ABC):
    """One task of this executor and the process (if any) behind it."""

    def __init__(self, identity: TaskIdentity, command: TaskCommand, report: ReportFn, *,
                 log_path: Path | None = None) -> None:
        self.identity = identity
        self.command = command
        self.log_path = log_path
        self.state = OccState.STANDBY
        self._report_fn = report
        self._terminal: MesosTaskState | None = None

    @property
    def task_id(self) -> str:
        return self.identity.task_id

    @property
    def finished(self) -> bool:
        """A terminal status (FINISHED, FAILED, KILLED) went out."""
        return self._terminal is not None

    @abstractmethod
    async def launch(self) -> bool:
        """Start the task; True once it runs (TASK_RUNNING sent or scheduled)."""

    @abstractmethod
    async def transition(self, src: OccState | str, event: OccEvent | str,
                         arguments: Mapping[str, str] | None = None, timeout: float | None = None,
                         *, command_id: str = "", environment_id: str = "") -> TransitionResponse:
        """Move the task from `src` with `event`; the response is also reported."""

    @abstractmethod
    async def kill(self) -> None:
        """Take the task down for good; returns when no process of it is left."""

    def _report(self, record: Report) -> None:
        """Hand one record to the callback; a failing callback must not break the task."""
        try:
            self._report_fn(record)
        except Exception:
            log.exception("task %s: report callback failed on %r", self.task_id, record)

    def _status(self, state: MesosTaskState, message: str = "") -> None:
        """Report a status; a terminal one only once, whoever gets there first."""
        if self._terminal is not None:
            log.debug("task %s: already %s, not reporting %s (%s)", self.task_id,
                      self._terminal.name, state.name, message)
            return
        if state.terminal:
            self._terminal = state
        log.info("task %s: %s%s", self.task_id, state.name, f": {message}" if message else "")
        self._report(StatusUpdate(self.identity, state, message))

    def _respond(self, state: OccState | str, error: str, event: str, command_id: str,
                 environment_id: str) -> TransitionResponse:
        response = TransitionResponse(self.identity, str(state), error, event, command_id,
                                      environment_id)
        self._report(response)
        return response

    @staticmethod
    def _parse_event(event: OccEvent | str) -> OccEvent | None:
        try:
            return OccEvent(event)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task_id!r}, {self.state.value})"
