"""One row of the environments view, kept up to date from events between two reads.

Task events change only the task counts and hosts; everything else comes from
the engine's EnvironmentInfo when the environment itself changed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from engine import EnvironmentEvent, EnvironmentInfo

ACTIVE = "ACTIVE"
HOSTS_SHOWN = 3


@dataclass
class EnvironmentRow:
    id: str
    workflow: str
    state: str
    run_number: int
    created: datetime
    user: str
    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (status, host)
    transition: str = ""  # the transition under way, as this console saw it start
    since: float = 0.0  # time.monotonic() when it started

    @classmethod
    def of(cls, info: EnvironmentInfo) -> EnvironmentRow:
        return cls(info.id, info.workflow, info.state, info.current_run_number, info.created,
                   info.created_by, {t.task_id: (t.status, t.host) for t in info.tasks})

    def refresh(self, info: EnvironmentInfo) -> None:
        """Take the engine's view; the transition under way stays until its result comes."""
        self.workflow, self.state = info.workflow, info.state
        self.run_number, self.user = info.current_run_number, info.created_by
        self.tasks = {t.task_id: (t.status, t.host) for t in info.tasks}

    def task_changed(self, event: EnvironmentEvent) -> bool:
        """Apply a TASK event; False when the task is not known here (re-read the environment)."""
        known = self.tasks.get(event.task_id)
        if known is None:
            return False
        self.tasks[event.task_id] = (event.status or known[0], known[1])
        return True

    def begin(self, transition: str) -> None:
        self.transition, self.since = transition, time.monotonic()

    def end(self) -> None:
        self.transition, self.since = "", 0.0

    # -- cells --------------------------------------------------------------------------

    @property
    def task_cell(self) -> str:
        active = sum(1 for status, _ in self.tasks.values() if status == ACTIVE)
        return f"{active}/{len(self.tasks)}"

    @property
    def host_cell(self) -> str:
        hosts = sorted({host for _, host in self.tasks.values() if host})
        shown = ", ".join(hosts[:HOSTS_SHOWN])
        return shown + (f" +{len(hosts) - HOSTS_SHOWN}" if len(hosts) > HOSTS_SHOWN else "")

    @property
    def run_cell(self) -> str:
        return str(self.run_number) if self.run_number else ""

    def transition_cell(self, now: float | None = None) -> str:
        if not self.transition:
            return ""
        elapsed = (time.monotonic() if now is None else now) - self.since
        return f"{self.transition} {elapsed:.0f}s"

    @property
    def created_cell(self) -> str:
        return self.created.astimezone().strftime("%Y-%m-%d %H:%M:%S")
