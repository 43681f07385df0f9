"""Launching tasks through Mesos offers (reference §7.2): one ACCEPT per agent.

The launches one deployment makes in one loop turn on one agent go out together, in one
ACCEPT of all the agent's held offers. A deployment places its tasks on held offers, but
another one may take those offers first (both placed on the same ones, one launched
first): then offers are revived and the next one is waited for, and before any ACCEPT
the offers are checked again to cover what each task was placed with (cpus, mem, every
port, and the executor's share if this ACCEPT starts it). A task they no longer cover
fails its launch naming what is missing, rather than reaching Mesos as a TASK_ERROR.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.mesos.agent_client import agent_error
from engine.scheduler.mesos.offer_book import ExecutorCost, MesosOffer
from engine.scheduler.mesos.offer_holder import OFFER_WAIT, OfferHolder, Spawn
from engine.scheduler.mesos.task_book import FrameworkTask
from engine.scheduler.mesos.task_info import EXECUTOR_COST, Json
from engine.scheduler.offers import ResourceUse

if TYPE_CHECKING:
    from engine.scheduler.mesos.framework import Framework

log = logging.getLogger("engine.scheduler.mesos")

_EPSILON = 1e-6  # Mesos scalars carry 3 decimals; ours are rounded to 6


@dataclass
class Launch:
    """One task on its way: its TaskInfo, the pool's record, what it was placed with."""

    task: Json
    record: FrameworkTask
    use: ResourceUse
    done: asyncio.Future[None]


def fit(offers: Sequence[MesosOffer], launches: Sequence[Launch],
        executor_cost: ExecutorCost | None) -> tuple[list[Launch], list[tuple[Launch, str]]]:
    """The launches the offers cover, in order, and the others with what they lack.

    `executor_cost` is what a new executor takes (None when ours runs on the agent)."""
    cpus = sum(offer.cpus for offer in offers) - (executor_cost.cpus if executor_cost else 0)
    mem = sum(offer.mem for offer in offers) - (executor_cost.mem if executor_cost else 0)
    ranges = [span for offer in offers for span in offer.ports]
    taken: set[int] = set()
    fitting: list[Launch] = []
    short: list[tuple[Launch, str]] = []
    for launch in launches:
        use = launch.use
        lacking = []
        if use.cpus > cpus + _EPSILON:
            lacking.append(f"cpus {use.cpus:g} of {max(cpus, 0):g} offered")
        if use.mem > mem + _EPSILON:
            lacking.append(f"mem {use.mem:g} MB of {max(mem, 0):g} offered")
        ports = sorted(port for port in use.ports if port in taken
                       or not any(span.begin <= port <= span.end for span in ranges))
        if ports:
            lacking.append(f"port(s) {', '.join(map(str, ports))} not offered")
        if lacking:
            short.append((launch, "; ".join(lacking)))
            continue
        cpus -= use.cpus
        mem -= use.mem
        taken |= use.ports
        fitting.append(launch)
    return fitting, short


class Launcher:
    """The launches waiting for their agent's ACCEPT, and the ACCEPTs under way."""

    def __init__(self, holder: OfferHolder, framework: Callable[[], Framework | None],
                 spawn: Spawn, tasks: dict[str, FrameworkTask],
                 has_executor: Callable[[str], bool]) -> None:
        self._holder = holder
        self._framework = framework
        self._spawn = spawn
        self._tasks = tasks  # the pool's: a launched task is known from its ACCEPT on
        self._has_executor = has_executor
        self._pending: dict[str, list[Launch]] = {}

    async def launch(self, agent: str, launch: Launch, timeout: float) -> None:
        """Queue the launch for its agent's next ACCEPT (this loop turn's); returns once the
        master took the ACCEPT (TASK_RUNNING or a failure follows as a status update)."""
        pending = self._pending.setdefault(agent, [])
        pending.append(launch)
        if len(pending) == 1:  # the first of this loop turn: one ACCEPT for them all
            asyncio.get_running_loop().call_soon(self._flush, agent)
        try:
            await asyncio.wait_for(asyncio.shield(launch.done), timeout)
        except TimeoutError:
            raise agent_error(agent, f"launch of {launch.record.task_id}",
                              f"no answer within {timeout:g} s",
                              grpc.StatusCode.DEADLINE_EXCEEDED) from None

    def fail_all(self, why: str) -> None:
        for agent, launches in list(self._pending.items()):
            self._fail(agent, launches, why)
        self._pending.clear()

    def _flush(self, agent: str) -> None:
        """One ACCEPT for the launches of this loop turn on `agent`, on its held offers; when
        none is held (another deployment took them), offers are revived and waited for."""
        launches = self._pending.pop(agent, [])
        offers = self._holder.book.take(agent)
        framework = self._framework()
        if framework is None:
            self._fail(agent, launches, "the framework is not subscribed")
        elif offers:
            self._accept(agent, framework, offers, launches)
        else:
            self._spawn(self._accept_next_offer(agent, framework, launches),
                        f"ACCEPT on {agent}")

    async def _accept_next_offer(self, agent: str, framework: Framework,
                                 launches: list[Launch]) -> None:
        log.info("agent %s: no offer held for %d launch(es); reviving offers", agent,
                 len(launches))
        try:
            await self._holder.revive()
        except ConnectionError as error:
            self._fail(agent, launches, str(error))
            return
        if not await self._holder.wait({agent}, OFFER_WAIT):
            self._fail(agent, launches, f"no offer from it within {OFFER_WAIT:g} s")
            return
        self._accept(agent, framework, self._holder.book.take(agent), launches)

    def _accept(self, agent: str, framework: Framework, offers: list[MesosOffer],
                launches: list[Launch]) -> None:
        """One ACCEPT of the agent's offers launching every task they still cover."""
        new_executor = not any(o.executor_ids for o in offers) and not self._has_executor(agent)
        fitting, short = fit(offers, launches, EXECUTOR_COST if new_executor else None)
        for launch, lacking in short:
            self._fail(agent, [launch], f"its offers no longer cover the task ({lacking}): "
                                        f"another deployment took them",
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
        if not fitting:
            self._holder.give_back(offers)
            return
        agent_id = offers[0].agent_id
        for launch in fitting:
            launch.task["agent_id"] = {"value": agent_id}
            launch.record.agent_id = agent_id
            self._tasks[launch.record.task_id] = launch.record
        accepted = framework.accept([o.offer_id for o in offers], [x.task for x in fitting])
        self._spawn(self._accepted(agent, accepted, fitting), f"ACCEPT on {agent}")

    async def _accepted(self, agent: str, accepted: Awaitable[None],
                        launches: list[Launch]) -> None:
        try:
            await accepted
        except ConnectionError as error:
            self._fail(agent, launches, str(error))
            return
        for launch in launches:
            if not launch.done.done():
                launch.done.set_result(None)

    def _fail(self, agent: str, launches: list[Launch], why: str,
              code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        for launch in launches:
            self._tasks.pop(launch.record.task_id, None)
            if not launch.done.done():
                error: LocalAgentError = agent_error(agent, f"launch of {launch.record.task_id}",
                                                     why, code)
                launch.done.set_exception(error)
