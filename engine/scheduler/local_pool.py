"""The local agents of a working directory, as one engine uses them.

Started lazily, at the first deployment: each AgentSpec's executor is adopted
if it already runs (a previous engine started it) or started otherwise. Their
events are followed from the moment of connection and handed to one callback.
Closing the pool leaves the executors running on purpose, so the next engine
re-adopts them and their tasks; `shutdown` is the explicit stop (tests,
`nutshell core` on request).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.logtail import tail
from engine.scheduler.agents import AgentSpec, load_agents
from engine.scheduler.local_agent import (
    AgentTaskList,
    LocalAgentClient,
    LocalAgentError,
    LocalAgentProcess,
    find_running,
)
from engine.scheduler.offers import Offer, ResourceUse
from engine.workdir import WorkingDirectory
from executor.agent_server import process_start

log = logging.getLogger("engine.scheduler")

EventHandler = Callable[[str, dict[str, Any]], None]  # (agent name, event body)
LostHandler = Callable[[str, str], None]  # (agent name, why): its executor is gone
RESUME_DELAY = 0.2  # seconds before following a live executor's events again after a break
STOP_TIMEOUT = 20.0  # seconds for an executor to take its tasks down after SIGTERM


_TCP_LISTEN = "0A"


def listening_ports(tables: Iterable[str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> set[int]:
    """TCP ports something on this machine listens on (read from /proc: cheap, no probing)."""
    ports: set[int] = set()
    for table in tables:
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


class LocalAgentPool:
    def __init__(self, workdir: WorkingDirectory, on_event: EventHandler,
                 on_lost: LostHandler | None = None) -> None:
        self.workdir = workdir
        self._on_event = on_event
        self._on_lost = on_lost
        self.specs: tuple[AgentSpec, ...] = ()
        self.clients: dict[str, LocalAgentClient] = {}
        # What each executor ran when this pool connected: re-adoption starts from it.
        self.listings: dict[str, AgentTaskList] = {}
        self._processes: dict[str, LocalAgentProcess] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    @property
    def started(self) -> bool:
        return bool(self.clients)

    async def start(self) -> None:
        """Connect to every declared agent's executor, starting those not running; idempotent
        (an agent lost since is connected again, its executor started anew).

        Each executor's tasks are listed once (`listings`) and its events followed from
        that listing on, so nothing it reports later is missed.
        """
        async with self._lock:
            specs = self.specs or tuple(
                await asyncio.to_thread(load_agents, self.workdir.settings_file))
            missing = [spec for spec in specs if spec.name not in self.clients]
            if not missing:
                return
            processes = {spec.name: LocalAgentProcess(self.workdir.root, spec, self.workdir.logs)
                         for spec in missing}
            results = await asyncio.gather(*(p.connect() for p in processes.values()),
                                           return_exceptions=True)
            clients = {name: r for name, r in zip(processes, results)
                       if isinstance(r, LocalAgentClient)}
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                for client in clients.values():
                    await client.close()
                raise failures[0]
            try:
                listings = await asyncio.gather(*(c.list_tasks() for c in clients.values()))
            except BaseException:
                for client in clients.values():
                    await client.close()
                raise
            self.specs = tuple(specs)
            self._processes.update(processes)
            self.clients.update(clients)
            self.listings.update(zip(clients, listings))
            # Readers start only now, with no await after: an event newer than a listing is
            # never handed over before the caller has read `listings`.
            for name, client in clients.items():
                listing = self.listings[name]
                self._readers.append(asyncio.create_task(
                    self._follow(name, client, listing.last_seq, listing.instance),
                    name=f"events of agent {name}"))

    async def _follow(self, name: str, client: LocalAgentClient, after: int,
                      instance: str) -> None:
        """Hand over the executor's events until the pool closes. A break in the stream
        with the executor still alive is resumed from the last event seen; an executor
        that died is forgotten and reported lost (its tasks died with it, §1.2)."""
        def gone() -> bool:  # no executor of this agent runs (its info file says who does)
            return name not in find_running(self.workdir.root)

        while True:
            why = "its event stream ended"
            try:
                async for seq, body in client.events(after, instance, gone):
                    after = seq
                    try:
                        self._on_event(name, body)
                    except Exception:  # one bad event must not stop the agent's stream
                        log.exception("agent %s: handling event %s failed", name, body)
            except LocalAgentError as error:
                why = str(error)
            if self.clients.get(name) is not client:
                return  # closed, or replaced
            if not gone():
                log.warning("agent %s: %s; following again", name, why)
                await asyncio.sleep(RESUME_DELAY)
                continue
            await self._lose(name, client, f"the executor of agent {name} is gone ({why})")
            return

    async def _lose(self, name: str, client: LocalAgentClient, why: str) -> None:
        log.error("agent %s lost: %s", name, why)
        self.clients.pop(name, None)
        self.listings.pop(name, None)
        await client.close()
        if self._on_lost is not None:
            self._on_lost(name, why)

    def client(self, agent: str) -> LocalAgentClient:
        try:
            return self.clients[agent]
        except KeyError:
            raise LocalAgentError(f"agent {agent} is not connected (agents: "
                                  f"{', '.join(self.clients) or 'none'})") from None

    def offers(self, in_use: Mapping[str, Iterable[ResourceUse]]) -> list[Offer]:
        """Each connected agent's offer, what `in_use` holds on it subtracted.

        The agents share this machine with everything else on it: a port some
        other process listens on is not offered, so a task is never handed a
        control or data port it cannot bind.
        """
        taken = ResourceUse(0.0, 0.0, frozenset(listening_ports()))
        return [spec.offer([*in_use.get(spec.name, ()), taken], executor_ids=(spec.name,))
                for spec in self.specs if spec.name in self.clients]

    async def executors_running(self) -> bool:
        """Whether an executor of the working directory runs (a previous engine's, say)."""
        return bool(await asyncio.to_thread(find_running, self.workdir.root))

    async def task_log(self, agent: str, task_id: str, log_path: str, lines: int) -> str:
        """The last `lines` lines of the task's output: the local executor writes it to
        `log_path` on this machine ("" before it wrote any)."""
        if not log_path:
            return ""
        with contextlib.suppress(FileNotFoundError):
            return await asyncio.to_thread(tail, Path(log_path), lines)
        return ""

    async def close(self) -> None:
        """Stop following and disconnect; the executors keep running."""
        async with self._lock:
            readers, self._readers = self._readers, []
            clients, self.clients = self.clients, {}
            self.listings = {}
            for reader in readers:
                reader.cancel()
            for client in clients.values():
                await client.close()
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def shutdown(self) -> list[str]:
        """Stop every executor of the working directory (they take their tasks down first)
        and wait until each is gone; returns the names of those stopped."""
        await self.close()
        running = find_running(self.workdir.root)
        for agent in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent.pid, signal.SIGTERM)
        for name, agent in running.items():
            started = self._processes.get(name)
            if started is not None and started.process is not None \
                    and started.process.pid == agent.pid:
                await asyncio.to_thread(started.process.wait, STOP_TIMEOUT)  # ours: reap it
            else:
                await _gone(agent.pid, STOP_TIMEOUT)
        self._processes = {}
        return sorted(running)


async def _gone(pid: int, timeout: float) -> None:
    """Until `pid` has exited (its parent reaps it); SIGKILL once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while process_start(pid) is not None:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        await asyncio.sleep(0.05)
