"""The Mesos agents of a cluster, as one engine uses them: the surface of LocalAgentPool.

The engine is a Mesos framework (reference §7.1): it subscribes with checkpointing
and a failover timeout, keeps its framework id in the store and subscribes with it
again after a restart, and asks for an implicit reconciliation on every
subscription. Offers are held only while a deployment may want them (offer_holder.py:
`start` and each look at `offers` hold them; otherwise they are declined and offers
suppressed, and `start` revives them, §7.2); launches go out one ACCEPT per agent
(launcher.py).

Agents are named by their `machine_id` attribute. Status updates become the
StatusUpdate bodies of the local transport, framework messages from the executors
are either command responses (matched to their command by id and task) or reports
(DeviceEvent, AnnounceTaskPIDEvent) for `on_event`; an agent or executor lost is
`on_lost` with the host named (§7.5). `close` fails the framework over (tasks keep
running, the next engine takes them back); `shutdown` tears it down, and Mesos
kills every executor and task of it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc

from engine.scheduler.agents import AgentSpec
from engine.scheduler.local_agent import (
    COMMAND_MARGIN,
    DEFAULT_COMMAND_TIMEOUT,
    AgentTaskList,
    LocalAgentError,
)
from engine.logtail import TaskLogError
from engine.scheduler.agent_info import AgentInfo
from engine.scheduler.local_pool import EventHandler, LostHandler
from engine.scheduler.mesos.agent_client import MesosAgentClient, agent_error
from engine.scheduler.mesos.cluster_view import describe_cluster
from engine.scheduler.mesos.framework import Framework, Json
from engine.scheduler.mesos.master_agents import (
    MasterAgent,
    MasterUnreachable,
    fetch_agents,
    fetch_executor_agents,
)
from engine.scheduler.mesos.launcher import Launch, Launcher
from engine.scheduler.mesos.offer_book import MesosOffer, parse_offer
from engine.scheduler.mesos.offer_holder import OFFER_WAIT, OfferHolder
from engine.scheduler.mesos.responses import PendingResponses
from engine.scheduler.mesos.sandbox_log import read_sandbox_log
from engine.scheduler.mesos.settings import MesosSettings
from engine.scheduler.mesos.task_info import (
    EXECUTOR_COST,
    EXECUTOR_PREFIX,
    executor_info,
    task_info,
)
from engine.scheduler.mesos.task_book import (
    QUIET_STATES,
    TERMINAL_STATES,
    FrameworkTask,
    parse_listing,
    status_report,
)
from engine.scheduler.offers import Offer, Placement, ResourceUse
from engine.store import AsyncStore
from engine.workdir import WorkingDirectory
from executor.command import TaskCommand

log = logging.getLogger("engine.scheduler.mesos")

FRAMEWORK_ID_KEY = "mesos.framework_id"  # the store's engine setting
SUBSCRIBE_TIMEOUT = 15.0  # seconds for SUBSCRIBED
RECONCILE_WAIT = 0.5  # seconds for the master's reconciliation answers after SUBSCRIBED again
LIST_TIMEOUT = 5.0  # seconds for an executor's task listing (MesosCommand_ListTasks)
PlacementLookup = Callable[[str], Placement | None]  # a task id's placement, if deployed


class MesosAgentPool:
    """The cluster's agents through one framework, with LocalAgentPool's surface."""

    def __init__(self, workdir: WorkingDirectory, settings: MesosSettings, store: AsyncStore,
                 placement_of: PlacementLookup, on_event: EventHandler,
                 on_lost: LostHandler | None = None) -> None:
        self.workdir = workdir
        self.settings = settings
        self._store = store
        self._placement_of = placement_of
        self._on_event = on_event
        self._on_lost = on_lost
        self.clients: dict[str, MesosAgentClient] = {}
        self.listings: dict[str, AgentTaskList] = {}
        self._agents: dict[str, MasterAgent] = {}  # by machine_id, as the master lists them
        self._machines: dict[str, str] = {}  # Mesos agent id → machine_id
        self._framework: Framework | None = None
        self._framework_id = ""
        self._subscribed = asyncio.Event()
        self._answered = asyncio.Event()  # SUBSCRIBED, or the master's refusal
        self._to_list: bool | None = None  # after SUBSCRIBED: list tasks (True: adopt them)
        self._refused = ""  # the master's error while subscribing
        self._tasks: dict[str, FrameworkTask] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self._responses = PendingResponses()
        self._jobs: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._offers = OfferHolder(lambda: self._framework, self._spawn)
        self._launcher = Launcher(self._offers, lambda: self._framework, self._spawn,
                                  self._tasks, self._has_executor)

    # ---------------------------------------------------------------- the pool's surface

    @property
    def started(self) -> bool:
        return self._framework is not None and self._subscribed.is_set()

    @property
    def specs(self) -> tuple[AgentSpec, ...]:
        """The active agents the master listed at the last `start`."""
        return tuple(agent.spec() for agent in self._agents.values())

    async def start(self) -> None:
        """Subscribe if not yet, learn the master's agents, revive offers and wait (a few
        seconds at most) for one from every active agent: a deployment follows."""
        async with self._lock:
            await self._learn_agents()  # first: reconciliation answers name agents by id
            self._offers.hold()  # the offers that come with SUBSCRIBED are wanted
            await self._subscribe()
            for name in self._agents:
                self.clients.setdefault(name, MesosAgentClient(name, self))
            if self._to_list is not None:  # the first start of this subscription
                adopt, self._to_list = self._to_list, None
                self.listings = {name: AgentTaskList(name, 0, ()) for name in self._agents}
                if adopt:
                    await self._list_adopted()
            self._offers.hold()
            if self._offers.suppressed or not self._agents.keys() <= self._offers.machines():
                self._framework_or_fail()
                await self._call(self._offers.revive())
            if not await self._offers.wait(set(self._agents), OFFER_WAIT):
                missing = sorted(self._agents.keys() - self._offers.machines())
                log.warning("no offer yet from agent(s) %s after %g s", ", ".join(missing),
                            OFFER_WAIT)

    async def default_hosts(self) -> list[str]:
        """The machine_ids of the master's active agents: a workflow's default `hosts`."""
        await self._learn_agents()
        return sorted(self._agents)

    async def _learn_agents(self) -> None:
        """The master's agents: the active ones by machine_id, every agent id's machine_id."""
        try:
            agents = await asyncio.to_thread(fetch_agents, self.settings.url)
        except MasterUnreachable as error:
            raise LocalAgentError(str(error), grpc.StatusCode.UNAVAILABLE) from None
        self._agents = {a.machine_id: a for a in agents if a.active and a.machine_id}
        for agent in agents:
            if agent.machine_id:
                self._machines[agent.agent_id] = agent.machine_id

    def client(self, agent: str) -> MesosAgentClient:
        try:
            return self.clients[agent]
        except KeyError:
            raise LocalAgentError(f"agent {agent} is not connected (Mesos agents: "
                                  f"{', '.join(self.clients) or 'none'})",
                                  grpc.StatusCode.UNAVAILABLE) from None

    def offers(self, in_use: Mapping[str, Iterable[ResourceUse]]) -> list[Offer]:
        """The held offers, one per agent. Mesos already left out what launched tasks hold;
        of `in_use` only what goes beyond the live tasks (placements not launched yet) is
        subtracted, and every port it names."""
        self._offers.hold()
        extra = {agent: [_beyond(list(uses), self._live_use(agent))]
                 for agent, uses in in_use.items()}
        running = {t.machine_id for t in self._tasks.values() if not t.ended}
        return self._offers.book.offers(extra, EXECUTOR_COST, running)

    def listing(self, agent: str) -> AgentTaskList:
        """The agent's live tasks of this framework as the pool knows them (no OCC state)."""
        return AgentTaskList(agent, 0, tuple(t.remote() for t in self._tasks.values()
                                             if t.machine_id == agent and not t.ended))

    async def list_tasks(self, agent: str) -> AgentTaskList:
        """The agent's tasks as its executor lists them (OCC state, pid: what a task listing
        shows); what the pool knows when the executor does not answer."""
        if not any(t.machine_id == agent and not t.ended for t in self._tasks.values()):
            return AgentTaskList(agent, 0, ())
        try:
            return await self._list(agent)
        except LocalAgentError as error:
            log.warning("agent %s: listing its tasks from what the framework knows: %s",
                        agent, error)
            return self.listing(agent)

    async def executors_running(self) -> bool:
        """Whether the master lists an executor of this engine's framework (one started by
        an earlier engine, say): a task listing then subscribes to learn their tasks."""
        framework_id = await self._known_framework_id()
        if not framework_id:
            return False
        try:
            return bool(await asyncio.to_thread(fetch_executor_agents, self.settings.url,
                                                framework_id))
        except MasterUnreachable as error:
            raise LocalAgentError(str(error), grpc.StatusCode.UNAVAILABLE) from None

    async def describe(self) -> list[AgentInfo]:
        """Every agent the master lists, as it is now: totals and use (all frameworks'),
        this framework's executor (pid) and live tasks on it (cluster_view.py)."""
        framework_id = await self._known_framework_id()
        try:
            return await asyncio.to_thread(describe_cluster, self.settings.url, framework_id)
        except MasterUnreachable as error:
            raise LocalAgentError(str(error), grpc.StatusCode.UNAVAILABLE) from None

    async def task_log(self, agent: str, task_id: str, log_path: str, lines: int) -> str:
        """The last `lines` lines of the task's output, fetched from its executor's sandbox
        on the agent running it (`/files/read`, its end only): the engine needs no view of that
        node's disk (`log_path` is the engine-side name, not read here)."""
        known = self._agents.get(agent)
        if known is None or not known.endpoint:
            try:
                await self._learn_agents()
            except LocalAgentError as error:
                raise TaskLogError(f"log of task {task_id}: {error}") from None
            known = self._agents.get(agent)
        if known is None or not known.endpoint:
            raise TaskLogError(f"log of task {task_id}: agent {agent} is not an active agent "
                               f"of the Mesos master {self.settings.master}")
        return await asyncio.to_thread(read_sandbox_log, agent, known.endpoint,
                                       await self._known_framework_id(), task_id, lines)

    async def _known_framework_id(self) -> str:
        """This pool's framework id, or the stored one before the pool subscribed."""
        return self._framework_id or str(await self._store.get_setting(FRAMEWORK_ID_KEY, "")
                                         or "")

    async def close(self) -> None:
        """Fail the framework over: the master keeps its executors and tasks running for
        the failover timeout, and the next engine subscribes with the same id."""
        await self._stop(failover=True)

    async def shutdown(self) -> list[str]:
        """Tear the framework down (Mesos kills its executors and tasks) and forget its id;
        returns the agents that ran its tasks. A framework of an earlier engine is
        subscribed to first, so that it can be torn down."""
        if self._framework is None and await self._store.get_setting(FRAMEWORK_ID_KEY, ""):
            async with self._lock:
                await self._learn_agents()
                await self._subscribe()
        names = {t.machine_id for t in self._tasks.values()}
        if self._framework is not None and self._framework_id:
            with contextlib.suppress(MasterUnreachable):
                names |= {self._machines.get(agent_id, agent_id) for agent_id in
                          await asyncio.to_thread(fetch_executor_agents, self.settings.url,
                                                  self._framework_id)}
        await self._stop(failover=False)
        self._framework_id = ""
        await self._store.set_setting(FRAMEWORK_ID_KEY, "")
        return sorted(names)

    # ---------------------------------------------------------------- subscription

    def _framework_or_fail(self) -> Framework:
        if self._framework is None:
            raise LocalAgentError(f"the Mesos framework is not subscribed to "
                                  f"{self.settings.master}", grpc.StatusCode.UNAVAILABLE)
        return self._framework

    async def _subscribe(self) -> None:
        if self._framework is not None:
            return
        stored = str(await self._store.get_setting(FRAMEWORK_ID_KEY, "") or "")
        for framework_id in dict.fromkeys((stored, "")):
            self._refused = ""
            self._subscribed.clear()
            self._answered.clear()
            framework = Framework(self.settings, self)
            self._framework = framework
            framework.start(framework_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), SUBSCRIBE_TIMEOUT)
            if self._subscribed.is_set():
                return
            self._framework = None
            await framework.stop(failover=bool(framework_id))
            if framework_id:  # removed meanwhile (its failover timeout passed): a new one
                log.warning("Mesos framework %s could not subscribe again (%s); subscribing "
                            "as a new framework", framework_id, self._refused or "no answer")
                await self._store.set_setting(FRAMEWORK_ID_KEY, "")
        raise LocalAgentError(f"Mesos master {self.settings.master}: the framework "
                              f"{self.settings.framework_name!r} did not subscribe within "
                              f"{SUBSCRIBE_TIMEOUT:g} s"
                              + (f": {self._refused}" if self._refused else ""),
                              grpc.StatusCode.UNAVAILABLE)

    async def _stop(self, *, failover: bool) -> None:
        framework, self._framework = self._framework, None
        self._offers.stop()  # a stopped framework's offers go back to the master
        self._tasks.clear()  # gone with a teardown, or the next engine's after a failover
        for ended in self._ended.values():
            ended.set()
        self._ended.clear()
        self._launcher.fail_all("the framework stopped")
        for jobs in list(self._jobs):
            jobs.cancel()
        self._responses.fail(lambda agent: agent_error(agent, "command", "the framework stopped",
                                                  grpc.StatusCode.UNAVAILABLE))
        self.clients = {}
        self.listings = {}
        self._subscribed.clear()
        if framework is not None:
            await framework.stop(failover=failover)

    def _spawn(self, work: Awaitable[None], what: str) -> None:
        """Follow a call already made (queued in order): only its failure is logged."""
        async def run() -> None:
            try:
                await work
            except (ConnectionError, LocalAgentError) as error:
                log.warning("Mesos %s: %s", what, error)

        job = asyncio.get_running_loop().create_task(run())
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _call(self, work: Awaitable[None]) -> None:
        try:
            await work
        except ConnectionError as error:
            raise LocalAgentError(str(error), grpc.StatusCode.UNAVAILABLE) from None

    async def _list_adopted(self) -> None:
        """After subscribing again (a previous engine's framework): what its executors run.

        The master's reconciliation names the live tasks and their agents; each of those
        agents' executor lists its tasks with their OCC state and pid (MesosCommand_ListTasks),
        and `listings` holds the answers for re-adoption (recovery.readopt); an agent with no
        live task of ours lists none. An executor that does not answer leaves its agent out:
        its tasks are reported, not silently trusted.
        """
        await asyncio.sleep(RECONCILE_WAIT)
        machines = sorted({t.machine_id for t in self._tasks.values() if not t.ended})
        answers = await asyncio.gather(*(self._list(machine) for machine in machines),
                                       return_exceptions=True)
        for machine, answer in zip(machines, answers):
            if isinstance(answer, BaseException):
                log.warning("agent %s: its tasks cannot be re-adopted: %s", machine, answer)
                self.listings.pop(machine, None)  # unknown, not empty
                continue
            self.listings[machine] = answer

    async def _list(self, machine: str) -> AgentTaskList:
        task = next(t for t in self._tasks.values() if t.machine_id == machine and not t.ended)
        command_id = f"list-{machine}-{time.monotonic_ns()}"
        future = self._responses.expect(machine, command_id, "")
        try:
            await self._framework_or_fail().message(
                task.agent_id, EXECUTOR_PREFIX + machine,
                {"name": "MesosCommand_ListTasks", "id": command_id})
            body = await asyncio.wait_for(future, LIST_TIMEOUT)
        except TimeoutError:
            raise agent_error(machine, "MesosCommand_ListTasks", f"no answer within "
                         f"{LIST_TIMEOUT:g} s", grpc.StatusCode.DEADLINE_EXCEEDED) from None
        except ConnectionError as error:
            raise agent_error(machine, "MesosCommand_ListTasks", str(error),
                         grpc.StatusCode.UNAVAILABLE) from None
        finally:
            self._responses.forget(command_id, "", future)
        if body.get("error"):
            raise agent_error(machine, "MesosCommand_ListTasks", str(body["error"]),
                         grpc.StatusCode.UNKNOWN)
        listing = parse_listing(machine, body)
        for listed in listing.tasks:
            known = self._tasks.get(listed.task_id)
            if known is not None:
                known.learn(listed)
        return listing

    # ---------------------------------------------------------------- offers

    def _has_executor(self, agent: str) -> bool:
        """Whether our executor runs on the agent (a live task of ours is there)."""
        return any(t.machine_id == agent and not t.ended for t in self._tasks.values())

    def _live_use(self, agent: str) -> list[ResourceUse]:
        uses = []
        for task in self._tasks.values():
            if task.machine_id == agent and not task.ended:
                placement = self._placement_of(task.task_id)
                if placement is not None:
                    uses.append(placement.use())
        return uses

    # ---------------------------------------------------------------- launch

    async def launch(self, agent: str, task_id: str,
                     command: TaskCommand | Mapping[str, Any] | str, *, environment_id: str,
                     detector: str, log_path: str, timeout: float) -> None:
        """Launch a placed task on its agent (launcher.py: one ACCEPT per agent)."""
        placement = self._placement_of(task_id)
        if placement is None:
            raise agent_error(agent, f"launch of {task_id}", "the task has no placement",
                         grpc.StatusCode.FAILED_PRECONDITION)
        if isinstance(command, TaskCommand):
            parsed = command
        else:
            parsed = TaskCommand.from_json(command)
        record = FrameworkTask(task_id, agent, "", environment_id, detector,
                               str(parsed.control_mode), parsed.control_port, log_path)
        info = task_info(task_id, f"{placement.descriptor.task_class}#{task_id}", placement,
                         parsed.to_json(),
                         executor_info(agent, self.workdir.root), environment_id=environment_id,
                         detector=detector, log_path=log_path)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._launcher.launch(agent, Launch(info, record, placement.use(), done), timeout)

    # ---------------------------------------------------------------- commands and kills

    async def command(self, agent: str, body: Mapping[str, Any]) -> dict[str, Any]:
        call = f"{body.get('name', 'command')} {body.get('event', '')}".strip()
        try:
            task_id = str(body["targetList"][0]["TaskId"]["value"])
        except (KeyError, IndexError, TypeError):
            raise agent_error(agent, call, "the body names no target task",
                         grpc.StatusCode.INVALID_ARGUMENT) from None
        task = self._tasks.get(task_id)
        if task is None or task.ended:
            raise agent_error(agent, call, f"task {task_id} is not running on it",
                         grpc.StatusCode.NOT_FOUND)
        framework = self._framework_or_fail()
        command_id = str(body.get("id", ""))
        future = self._responses.expect(agent, command_id, task_id)
        timeout_ns = body.get("timeout")
        seconds = (timeout_ns / 1e9 if isinstance(timeout_ns, (int, float)) and timeout_ns > 0
                   else DEFAULT_COMMAND_TIMEOUT) + COMMAND_MARGIN
        try:
            await framework.message(task.agent_id, EXECUTOR_PREFIX + agent, body)
            return await asyncio.wait_for(future, seconds)
        except ConnectionError as error:
            raise agent_error(agent, call, str(error), grpc.StatusCode.UNAVAILABLE) from None
        except TimeoutError:
            raise agent_error(agent, call, f"no response from its executor within {seconds:g} s",
                         grpc.StatusCode.DEADLINE_EXCEEDED) from None
        finally:
            self._responses.forget(command_id, task_id, future)

    async def kill(self, agent: str, task_id: str, timeout: float) -> None:
        task = self._tasks.get(task_id)
        if task is None or task.ended:
            raise agent_error(agent, f"kill of {task_id}", "no such live task",
                         grpc.StatusCode.NOT_FOUND)
        ended = self._ended.setdefault(task_id, asyncio.Event())
        try:
            await self._framework_or_fail().kill(task_id)
        except ConnectionError as error:
            raise agent_error(agent, f"kill of {task_id}", str(error),
                         grpc.StatusCode.UNAVAILABLE) from None
        try:
            await asyncio.wait_for(ended.wait(), timeout)
        except TimeoutError:
            raise agent_error(agent, f"kill of {task_id}", f"not ended {timeout:g} s after KILL",
                         grpc.StatusCode.DEADLINE_EXCEEDED) from None

    # ---------------------------------------------------------------- the driver's callbacks

    def subscribed(self, framework_id: str, again: bool) -> None:
        log.info("Mesos framework %s %s to %s", framework_id,
                 "subscribed again" if again else "subscribed", self.settings.master)
        self._framework_id = framework_id
        self._to_list = again or bool(self._to_list)
        self._subscribed.set()
        self._answered.set()
        framework = self._framework
        if framework is not None:
            self._spawn(self._store.set_setting(FRAMEWORK_ID_KEY, framework_id),
                        "storing the framework id")
            self._spawn(framework.reconcile(), "RECONCILE")  # implicit (§7.1)

    def disconnected(self) -> None:
        if self._framework is None:  # our own stop (or a refused subscription)
            return
        log.warning("Mesos framework %s: disconnected from %s", self._framework_id,
                    self.settings.master)

    def error(self, message: str) -> None:
        log.error("Mesos master %s: %s", self.settings.master, message)
        self._refused = message
        self._answered.set()

    def offered(self, offers: list[Json]) -> None:
        """Offers are held while a deployment may want them, else declined at once."""
        parsed: list[MesosOffer] = []
        for raw in offers:
            try:
                offer = parse_offer(raw)
            except (KeyError, TypeError, ValueError) as error:
                log.error("Mesos offer that cannot be read ignored: %s", error)
                continue
            if offer.machine_id:  # an agent that registered since `start` is usable too
                self._machines[offer.agent_id] = offer.machine_id
                self.clients.setdefault(offer.machine_id, MesosAgentClient(offer.machine_id,
                                                                           self))
            parsed.append(offer)
        self._offers.receive(parsed)

    def rescinded(self, offer_id: str) -> None:
        self._offers.book.remove(offer_id)

    def status(self, status: Json) -> None:
        task_id = str(status.get("task_id", {}).get("value", ""))
        state = str(status.get("state", ""))
        agent_id = str(status.get("agent_id", {}).get("value", ""))
        task = self._tasks.get(task_id)
        if task is None:
            machine = self._machines.get(agent_id, "")
            if state in TERMINAL_STATES or not machine:
                return  # nothing of ours to follow
            task = self._tasks[task_id] = FrameworkTask(task_id, machine, agent_id)  # adopted
        was_lost = task.ended
        task.status = state
        if was_lost and state == "TASK_RUNNING":  # its agent re-registered: not lost after all
            self._spawn(self._back(task, status), f"task {task_id} back on {task.machine_id}")
            return
        if task.ended:
            ended = self._ended.pop(task_id, None)
            if ended is not None:
                ended.set()
        if state in QUIET_STATES:
            return
        host = self._agents.get(task.machine_id)
        self._report(task.machine_id, status_report(task, status, host.hostname if host else ""))

    async def _back(self, task: FrameworkTask, status: Json) -> None:
        """A task reported lost runs again: Mesos 1.11 sends TASK_RUNNING (reason
        REASON_AGENT_REREGISTERED) once a partitioned agent re-registers. Its executor is
        reachable again and says in which OCC state the task is (and its pid); the update
        carries that state (`taskState`), so the task's row is what runs, whatever its
        environment did meanwhile."""
        machine = task.machine_id
        self.clients.setdefault(machine, MesosAgentClient(machine, self))
        with contextlib.suppress(LocalAgentError):
            await self._learn_agents()
        host = self._agents.get(machine)
        report = status_report(task, status, host.hostname if host else "")
        try:
            listing = await self._list(machine)
        except LocalAgentError as error:
            log.warning("task %s runs again on %s, in an OCC state unknown: %s", task.task_id,
                        machine, error)
        else:
            listed = next((t for t in listing.tasks if t.task_id == task.task_id), None)
            if listed is not None:
                report["taskState"] = listed.state
                report["message"] = (f"back on agent {machine} in {listed.state} after it "
                                     f"re-registered ({status.get('reason') or 'TASK_RUNNING'})")
                if listed.pid:
                    self._report(machine, {"_messageType": "AnnounceTaskPIDEvent",
                                           "taskId": task.task_id, "pid": listed.pid})
        log.warning("task %s is back on agent %s (%s)", task.task_id, machine,
                    status.get("reason") or "TASK_RUNNING after TASK_LOST")
        self._report(machine, report)

    def message(self, agent_id: str, executor_id: str, body: Json) -> None:
        machine = (executor_id.removeprefix(EXECUTOR_PREFIX)
                   if executor_id.startswith(EXECUTOR_PREFIX)
                   else self._machines.get(agent_id, agent_id))
        kind = str(body.get("_messageType", ""))
        if kind.startswith("MesosCommandResponse"):
            if not self._responses.answer(body):
                log.info("agent %s: an answer nobody waits for (any more): %.300s", machine,
                         body)
            return
        if kind == "AnnounceTaskPIDEvent":
            task = self._tasks.get(str(body.get("taskId", "")))
            if task is not None:
                task.pid = int(body.get("pid") or 0)
        self._report(machine, body)

    def agent_lost(self, agent_id: str) -> None:
        machine = self._machines.get(agent_id, agent_id)
        host = self._agents.get(machine)  # start() learns the agents again
        self._lose(machine, f"Mesos agent {machine} ({host.hostname if host else 'host unknown'}"
                            f", agent id {agent_id}) was lost: the master removed it")

    def executor_lost(self, agent_id: str, executor_id: str, status: int) -> None:
        machine = self._machines.get(agent_id, agent_id)
        if self._framework is None:
            return
        self._lose(machine, f"the executor {executor_id} on agent {machine} ended "
                            f"(status {status})", keep_agent=True)

    def _lose(self, machine: str, why: str, keep_agent: bool = False) -> None:
        log.error("%s", why)
        if not keep_agent:
            self.clients.pop(machine, None)
            for offer in self._offers.book.take(machine):
                log.info("offer %s of lost agent %s dropped", offer.offer_id, machine)
        self._responses.fail(lambda agent: agent_error(agent, "command", why,
                                                  grpc.StatusCode.UNAVAILABLE), machine)
        for task in self._tasks.values():
            if task.machine_id == machine and not task.ended:
                task.status = "TASK_LOST"
                ended = self._ended.pop(task.task_id, None)
                if ended is not None:
                    ended.set()
        if self._on_lost is not None:
            self._on_lost(machine, why)

    def _report(self, agent: str, body: dict[str, Any]) -> None:
        try:
            self._on_event(agent, body, 0)  # framework messages carry no event seq
        except Exception:  # one bad report must not stop the others
            log.exception("agent %s: handling report %s failed", agent, body)


def _beyond(uses: list[ResourceUse], live: list[ResourceUse]) -> ResourceUse:
    """What `uses` holds beyond `live` (cpus, mem), and every port of `uses`."""
    return ResourceUse(max(sum(u.cpus for u in uses) - sum(u.cpus for u in live), 0.0),
                       max(sum(u.mem for u in uses) - sum(u.mem for u in live), 0.0),
                       frozenset(p for u in uses for p in u.ports))
