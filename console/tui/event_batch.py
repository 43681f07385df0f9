"""Engine events of one environment, gathered between two screen updates.

A 2000-task environment can send hundreds of task changes a second; the
environment view applies them in batches (EventFeed: at most one every 100 ms),
each affected node once, the last change of a task winning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine import EnvironmentEvent, EventKind


@dataclass
class Batch:
    """What changed since the last update: tasks (id → (state, status)) and whether the
    environment itself (state, run, last result) changed."""

    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)
    environment: bool = False

    def __bool__(self) -> bool:
        return self.environment or bool(self.tasks)


class EventBatch:
    """Collects the events of `environment_id`; `take()` hands over what came and starts anew."""

    def __init__(self, environment_id: str) -> None:
        self.environment_id = environment_id
        self._batch = Batch()
        self.events = 0  # events of this environment taken in, for the status line and tests

    def add(self, event: EnvironmentEvent) -> None:
        if event.environment_id != self.environment_id:
            return
        self.events += 1
        if event.kind is EventKind.TASK and event.task_id:
            self._batch.tasks[event.task_id] = (event.state, event.status)
        else:  # an environment change or a call: the states, run and result table may change
            self._batch.environment = True

    def add_environment_change(self) -> None:
        """Something the screen did (a transition) changed the environment: re-read it."""
        self._batch.environment = True

    def take(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch

    def __bool__(self) -> bool:
        return bool(self._batch)
