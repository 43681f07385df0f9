"""Every deployed task of one engine by its id, and a way to wait for tasks to change.

Executor reports name a task, not its environment, so the manager looks the task up
here; deployment asks what every live task holds on its agent, so a new placement
does not count resources twice. Waiters (a deployment waiting for its tasks to run,
a hook trigger waiting for the run's exit code) wake whenever a task changes.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

from engine.environment.environment import DeployedTask, Environment
from engine.scheduler.offers import Placement, ResourceUse


class TaskIndex:
    """The tasks of every environment by task id, and the signal that one changed."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Environment, DeployedTask]] = {}
        self._changed = asyncio.Event()

    def get(self, task_id: str) -> tuple[Environment, DeployedTask] | None:
        return self._entries.get(task_id)

    def add(self, env: Environment, task: DeployedTask) -> None:
        self._entries[task.task_id] = (env, task)

    def on_agent(self, agent: str) -> list[tuple[Environment, DeployedTask]]:
        return [(env, task) for env, task in self._entries.values() if task.agent == agent]

    def drop(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._entries.pop(task_id, None)

    def in_use(self, placed: Iterable[Placement] = ()) -> dict[str, list[ResourceUse]]:
        """What every live task holds on its agent, and what `placed` (not launched yet) will."""
        uses: dict[str, list[ResourceUse]] = {}
        for _, task in self._entries.values():
            if not task.gone:
                uses.setdefault(task.agent, []).append(task.placement.use())
        for placement in placed:
            uses.setdefault(placement.agent_id, []).append(placement.use())
        return uses

    def signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True
