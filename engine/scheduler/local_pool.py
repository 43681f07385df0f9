"""The local agents of a working directory, as one engine uses them.

Started lazily, at the first deployment: each AgentSpec's executor is adopted
if it already runs (a previous engine started it) or started otherwise. Their
events are followed from the moment of connection and handed to one callback.
Closing the pool leaves the executors running on purpose, so the next engine
re-adopts them and their tasks; `shutdown` is the explicit stop (tests,
`nutshell core` on request). Each executor is also beaten (heartbeat.py): one silent
past the heartbeat timeout is unreachable until it answers again.
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

import grpc

from engine.logtail import tail
from engine.scheduler.agents import AgentSpec, parse_agents, read_settings
from engine.scheduler.heartbeat import Heartbeat, HeartbeatSettings, parse_heartbeat
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
from executor.reports import MesosTaskState

log = logging.getLogger("engine.scheduler")

EventHandler = Callable[[str, dict[str, Any], int], None]  # (agent name, event body, seq)
LostHandler = Callable[[str, str], None]  # (agent name, why): its executor is gone
RESUME_DELAY = 0.2  # seconds before following a live executor's events again after a break
STOP_TIMEOUT = 20.0  # seconds for an executor to take its tasks down after SIGTERM
ENDED = frozenset(state.name for state in MesosTaskState if state.terminal)


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
        self.heartbeat: HeartbeatSettings | None = None  # read from nutshell.yaml at start
        self._beats: dict[str, Heartbeat] = {}
        self._beating: dict[str, asyncio.Task[None]] = {}
        # Tasks destroyed while their agent was unreachable: killed when it answers again.
        self._owed: dict[str, set[str]] = {}

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
            specs = self.specs
            if not specs or self.heartbeat is None:
                specs, self.heartbeat = await asyncio.to_thread(local_settings,
                                                                self.workdir.settings_file)
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
                self._beat(name, client)

    def _gone(self, name: str) -> bool:
        """No executor of this agent runs (its info file says who does); blocking, cheap."""
        return name not in find_running(self.workdir.root)

    def _beat(self, name: str, client: LocalAgentClient) -> None:
        assert self.heartbeat is not None
        beat = self._beats[name] = Heartbeat(
            name, client, self.heartbeat, gone=lambda: self._gone(name),
            silent=lambda why: self._silent(name, why),
            back=lambda silence: self._back(name, client, silence))
        self._beating[name] = asyncio.create_task(beat.run(), name=f"heartbeat of agent {name}")

    def unreachable(self, agent: str) -> bool:
        beat = self._beats.get(agent)
        return beat is not None and beat.unreachable_since is not None

    def _silent(self, name: str, why: str) -> None:
        """The executor stopped answering but its process runs: a cut channel. Its tasks are
        reported lost; the client stays, so its events resume where they stopped."""
        if self._on_lost is not None:
            self._on_lost(name, why)

    async def _back(self, name: str, client: LocalAgentClient, silence: float) -> bool:
        """An unreachable executor answers again: kill what was destroyed meanwhile, then
        report each of its tasks as it really is (TASK_RUNNING with the OCC state it runs
        in, or how it ended). False if it cannot be listed yet (the next beat retries)."""
        try:
            for task_id in sorted(self._owed.get(name, ())):
                try:
                    await client.kill(task_id)
                except LocalAgentError as error:
                    if error.code is not grpc.StatusCode.NOT_FOUND:
                        raise
                log.warning("agent %s: task %s, destroyed while the agent was unreachable, "
                            "killed", name, task_id)
                self._owed[name].discard(task_id)
            listing = await client.list_tasks()
        except LocalAgentError as error:
            log.warning("agent %s answers heartbeats again but not yet the rest: %s", name, error)
            return False
        for task in listing.tasks:
            if task.status in ENDED:
                self._report(name, {"_messageType": "StatusUpdate", "taskId": task.task_id,
                                    "state": task.status,
                                    "message": f"task ended while agent {name} was unreachable"})
                continue
            if task.pid:
                self._report(name, {"_messageType": "AnnounceTaskPIDEvent",
                                    "taskId": task.task_id, "pid": task.pid})
            if task.status == "TASK_RUNNING":  # its state as of the listing's newest event
                self._report(name, {"_messageType": "StatusUpdate", "taskId": task.task_id,
                                    "state": "TASK_RUNNING", "taskState": task.state,
                                    "message": f"back in {task.state}: agent {name} answers "
                                               f"again after {silence:.0f} s"},
                             listing.last_seq)
        return True

    def _report(self, name: str, body: dict[str, Any], seq: int = 0) -> None:
        """Hand over one report; `seq` is its event's, or for a report the pool makes up
        the seq its content is as of (0: unknown)."""
        try:
            self._on_event(name, body, seq)
        except Exception:  # one bad report must not stop the others
            log.exception("agent %s: handling report %s failed", name, body)

    def kill_when_back(self, agent: str, task_id: str) -> None:
        """A task that could not be killed because its agent is unreachable: killed as soon
        as the agent answers again, so nothing destroyed runs on."""
        self._owed.setdefault(agent, set()).add(task_id)

    async def _follow(self, name: str, client: LocalAgentClient, after: int,
                      instance: str) -> None:
        """Hand over the executor's events until the pool closes. A break in the stream
        with the executor still alive is resumed from the last event seen; an executor
        that died is forgotten and reported lost (its tasks died with it, §1.2)."""
        def gone() -> bool:
            return self._gone(name)

        while True:
            why = "its event stream ended"
            try:
                async for seq, body in client.events(after, instance, gone):
                    after = seq
                    self._report(name, body, seq)
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
        self._stop_beating(name)
        self._owed.pop(name, None)  # its tasks died with it
        await client.close()
        if self._on_lost is not None:
            self._on_lost(name, why)

    def _stop_beating(self, name: str) -> None:
        self._beats.pop(name, None)
        beating = self._beating.pop(name, None)
        if beating is not None:
            beating.cancel()

    def client(self, agent: str) -> LocalAgentClient:
        """The agent's client; LocalAgentError (UNAVAILABLE) at once for an unreachable one,
        rather than a command waiting out its deadline."""
        beat = self._beats.get(agent)
        if beat is not None and beat.unreachable_since is not None:
            silence = time.monotonic() - beat.unreachable_since
            raise LocalAgentError(f"agent {agent} is unreachable: its executor has not "
                                  f"answered a heartbeat for {silence:.0f} s",
                                  grpc.StatusCode.UNAVAILABLE)
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
                for spec in self.specs
                if spec.name in self.clients and not self.unreachable(spec.name)]

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
            readers += self._beating.values()
            self._beats, self._beating = {}, {}
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


def local_settings(settings_file: Path) -> tuple[tuple[AgentSpec, ...], HeartbeatSettings]:
    """The agents and the heartbeat of nutshell.yaml, from one read (blocking)."""
    document = read_settings(settings_file)
    return (parse_agents(document, str(settings_file)),
            parse_heartbeat(document, str(settings_file)))


def unreachable(agents: object, agent: str) -> bool:
    """Whether a pool's heartbeat calls `agent` unreachable: its tasks may run on behind a
    cut channel. Only the local pool beats; Mesos reports its agents' loss itself."""
    check = getattr(agents, "unreachable", None)
    return bool(check is not None and check(agent))


async def _gone(pid: int, timeout: float) -> None:
    """Until `pid` has exited (its parent reaps it); SIGKILL once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while process_start(pid) is not None:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        await asyncio.sleep(0.05)
