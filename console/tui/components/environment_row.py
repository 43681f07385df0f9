"""One row of the environments view, kept up to date from events between two reads.

Task events change only the task counts and hosts; everything else comes from
the engine's EnvironmentInfo when the environment itself changed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
    transition: str = ""  # the transition under way, whoever started it
    since: float = 0.0  # time.monotonic() when it started
    own: bool = False  # started by this console: shown until its result comes

    @classmethod
    def of(cls, info: EnvironmentInfo) -> EnvironmentRow:
        row = cls(info.id, info.workflow, info.state, info.current_run_number, info.created,
                  info.created_by, {t.task_id: (t.status, t.host) for t in info.tasks})
        row._take_transition(info)
        return row

    def refresh(self, info: EnvironmentInfo) -> None:
        """Take the engine's view; a transition this console started stays until its result
        comes, whatever a read made before the engine began it says."""
        self.workflow, self.state = info.workflow, info.state
        self.run_number, self.user = info.current_run_number, info.created_by
        self.tasks = {t.task_id: (t.status, t.host) for t in info.tasks}
        self._take_transition(info)

    def _take_transition(self, info: EnvironmentInfo) -> None:
        """The engine's transition under way (any client's), its wall-clock start made
        monotonic so the elapsed time ticks with the console's own."""
        if info.current_transition and info.transition_since is not None:
            age = (datetime.now(UTC) - info.transition_since).total_seconds()
            self.transition, self.since = info.current_transition, time.monotonic() - max(age, 0.0)
        elif not self.own:
            self.transition, self.since = "", 0.0

    def task_changed(self, event: EnvironmentEvent) -> bool:
        """Apply a TASK event; False when the task is not known here (re-read the environment)."""
        known = self.tasks.get(event.task_id)
        if known is None:
            return False
        self.tasks[event.task_id] = (event.status or known[0], known[1])
        return True

    def begin(self, transition: str) -> None:
        self.transition, self.since, self.own = transition, time.monotonic(), True

    def end(self) -> None:
        self.transition, self.since, self.own = "", 0.0, False

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
