"""Commands sent to executors as framework messages, waiting for their answers.

A transition sends one command id to many tasks (fanout.py), so an answer is matched
by (id, taskId); an executor that refused a command before it knew the task answers
with taskId "", which resolves the one command waiting with that id if there is
exactly one. Commands waiting on an agent that is lost, or on a framework that
stops, fail at once instead of running into their timeout.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

Answer = dict[str, Any]
Key = tuple[str, str]  # (command id, task id)


class PendingResponses:
    """Futures of the commands under way, by (id, task id), with the agent each went to."""

    def __init__(self) -> None:
        self._waiting: dict[Key, tuple[str, asyncio.Future[Answer]]] = {}

    def expect(self, agent: str, command_id: str, task_id: str) -> asyncio.Future[Answer]:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[(command_id, task_id)] = (agent, future)
        return future

    def forget(self, command_id: str, task_id: str, future: asyncio.Future[Answer]) -> None:
        """Drop the wait (answered, timed out or failed), unless another took its key."""
        entry = self._waiting.get((command_id, task_id))
        if entry is not None and entry[1] is future:
            del self._waiting[(command_id, task_id)]

    def answer(self, body: Mapping[str, Any]) -> bool:
        """Resolve the command a MesosCommandResponse answers; False if none waits for it."""
        command_id, task_id = str(body.get("id", "")), str(body.get("taskId", ""))
        entry = self._waiting.pop((command_id, task_id), None)
        if entry is None and not task_id:
            keys = [key for key in self._waiting if key[0] == command_id]
            entry = self._waiting.pop(keys[0]) if len(keys) == 1 else None
        if entry is None or entry[1].done():
            return False
        entry[1].set_result(dict(body))
        return True

    def fail(self, error: Callable[[str], Exception], agent: str | None = None) -> None:
        """Fail the commands waiting on `agent` (all of them: None) with `error(agent)`."""
        for key, (target, future) in list(self._waiting.items()):
            if agent is None or target == agent:
                del self._waiting[key]
                if not future.done():
                    future.set_exception(error(target))
