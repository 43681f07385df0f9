"""The engine's client for one Mesos agent: the surface of LocalAgentClient.

It holds no connection of its own: launches, commands and kills go through the
pool's framework (an ACCEPT, framework messages, a KILL) and their answers come
back as the pool's callbacks. Errors are LocalAgentError, with the gRPC status
code the environment manager reads (NOT_FOUND: the task is gone already).
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from engine.scheduler.local_agent import AgentTaskList, LocalAgentError
from executor.command import TaskCommand

if TYPE_CHECKING:
    from engine.scheduler.mesos.pool import MesosAgentPool


def agent_error(agent: str, call: str, why: str, code: grpc.StatusCode) -> LocalAgentError:
    """A failed call to a Mesos agent, named as the manager reports it."""
    return LocalAgentError(f"agent {agent} (Mesos): {call} failed: {code.name}: {why}", code)


class MesosAgentClient:
    """One agent, by its machine_id, as the manager talks to it."""

    def __init__(self, name: str, pool: MesosAgentPool) -> None:
        self.name = name
        self._pool = pool

    async def close(self) -> None:
        """Nothing to release: the framework is the pool's."""

    async def launch(self, task_id: str, command: TaskCommand | Mapping[str, Any] | str, *,
                     environment_id: str = "", detector: str = "",
                     log_path: Path | str | None = None, timeout: float = 10.0) -> None:
        """Accept the agent's held offers with this task (and the others launched on it in
        the same loop turn: one ACCEPT per agent); TASK_RUNNING or a failure follows as a
        status update."""
        await self._pool.launch(self.name, task_id, command, environment_id=environment_id,
                                detector=detector, log_path=str(log_path or ""),
                                timeout=timeout)

    async def command(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send a MesosCommand body (§7.4) as a framework message; its MesosCommandResponse."""
        return await self._pool.command(self.name, body)

    async def command_batch(self, bodies: Sequence[Mapping[str, Any]]
                            ) -> list[dict[str, Any] | LocalAgentError]:
        """Every body as its own framework message, in parallel; per body its response or
        the LocalAgentError `command` raised. Never raises LocalAgentError itself."""
        async def one(body: Mapping[str, Any]) -> dict[str, Any] | LocalAgentError:
            try:
                return await self.command(body)
            except LocalAgentError as error:
                return error

        return list(await asyncio.gather(*(one(body) for body in bodies)))

    async def kill(self, task_id: str, timeout: float = 60.0) -> None:
        """KILL the task; returns once Mesos reports it ended."""
        await self._pool.kill(self.name, task_id, timeout)

    async def list_tasks(self, timeout: float = 10.0) -> AgentTaskList:
        """The agent's tasks of this framework, as its executor lists them."""
        return await self._pool.list_tasks(self.name)
