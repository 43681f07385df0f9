"""pymesos' scheduler driver, bridged to the engine's event loop.

The driver runs its own threads and calls back from them; every callback is
handed to the loop (`call_soon_threadsafe`) in the order it came, so the pool
sees offers, status updates and messages as ordinary loop callbacks. The
driver's calls are blocking HTTP requests to the master: they run on one
worker thread of their own, in the order the loop made them (an ACCEPT is
never overtaken by the MESSAGE that follows it).
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from pymesos import MesosSchedulerDriver, Scheduler

from engine.scheduler.mesos.settings import MesosSettings

log = logging.getLogger("engine.scheduler.mesos")

REFUSE_SECONDS = 1.0  # the refuse filter of every ACCEPT and DECLINE (§7.2)
Json = dict[str, Any]


class FrameworkListener(Protocol):
    """What the driver's callbacks become, on the event loop."""

    def subscribed(self, framework_id: str, again: bool) -> None: ...
    def disconnected(self) -> None: ...
    def offered(self, offers: list[Json]) -> None: ...
    def rescinded(self, offer_id: str) -> None: ...
    def status(self, status: Json) -> None: ...
    def message(self, agent_id: str, executor_id: str, body: Json) -> None: ...
    def agent_lost(self, agent_id: str) -> None: ...
    def executor_lost(self, agent_id: str, executor_id: str, status: int) -> None: ...
    def error(self, message: str) -> None: ...


def framework_info(settings: MesosSettings, framework_id: str = "") -> Json:
    """FrameworkInfo (§7.1): checkpointing, the failover timeout, our name, role and user."""
    info: Json = {"user": settings.user, "name": settings.framework_name,
                  "hostname": socket.gethostname(), "checkpoint": True,
                  "failover_timeout": settings.failover_timeout}
    if settings.role and settings.role != "*":  # one role (not MULTI_ROLE): plain resources
        info["role"] = settings.role
    if settings.principal:
        info["principal"] = settings.principal
    if framework_id:
        info["id"] = {"value": framework_id}
    return info


def encode_body(body: Mapping[str, Any]) -> str:
    return base64.b64encode(json.dumps(dict(body)).encode()).decode("ascii")


def decode_body(data: str) -> Json | None:
    """A framework message's JSON body; None (logged) when it is not a JSON object."""
    try:
        body = json.loads(base64.b64decode(data))
    except (ValueError, TypeError):
        log.warning("framework message that is not JSON ignored: %.200r", data)
        return None
    return body if isinstance(body, dict) else None


class _Callbacks(Scheduler):  # type: ignore[misc]
    """pymesos' Scheduler: each callback is posted to the loop, nothing done here."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: FrameworkListener) -> None:
        self._loop = loop
        self._listener = listener

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed: the engine is gone
            pass

    def registered(self, driver: MesosSchedulerDriver, framework_id: Json,
                   master_info: Json) -> None:
        self._post(self._listener.subscribed, str(framework_id["value"]), False)

    def reregistered(self, driver: MesosSchedulerDriver, master_info: Json) -> None:
        self._post(self._listener.subscribed, str(driver.framework_id), True)

    def disconnected(self, driver: MesosSchedulerDriver) -> None:
        self._post(self._listener.disconnected)

    def resourceOffers(self, driver: MesosSchedulerDriver, offers: list[Json]) -> None:
        self._post(self._listener.offered, list(offers))

    def offerRescinded(self, driver: MesosSchedulerDriver, offer_id: Json) -> None:
        self._post(self._listener.rescinded, str(offer_id.get("value", "")))

    def statusUpdate(self, driver: MesosSchedulerDriver, status: Json) -> None:
        self._post(self._listener.status, dict(status))

    def frameworkMessage(self, driver: MesosSchedulerDriver, executor_id: Json,
                         agent_id: Json, data: str) -> None:
        body = decode_body(data)
        if body is not None:
            self._post(self._listener.message, str(agent_id.get("value", "")),
                       str(executor_id.get("value", "")), body)

    def slaveLost(self, driver: MesosSchedulerDriver, agent_id: Json) -> None:
        self._post(self._listener.agent_lost, str(agent_id.get("value", "")))

    def executorLost(self, driver: MesosSchedulerDriver, executor_id: Json, agent_id: Json,
                     status: int) -> None:
        self._post(self._listener.executor_lost, str(agent_id.get("value", "")),
                   str(executor_id.get("value", "")), int(status or 0))

    def error(self, driver: MesosSchedulerDriver, message: str) -> None:
        self._post(self._listener.error, str(message))


class Framework:
    """One subscription of the engine to a master, and the calls it makes."""

    def __init__(self, settings: MesosSettings, listener: FrameworkListener) -> None:
        self.settings = settings
        self._listener = listener
        self._driver: MesosSchedulerDriver | None = None
        self._calls = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mesos-calls")

    @property
    def running(self) -> bool:
        return self._driver is not None

    def start(self, framework_id: str) -> None:
        """Subscribe (again, with `framework_id`, after a failover); SUBSCRIBED follows as
        `listener.subscribed`. Cheap: the driver connects on its own thread."""
        loop = asyncio.get_running_loop()
        driver = MesosSchedulerDriver(_Callbacks(loop, self._listener),
                                      framework_info(self.settings, framework_id),
                                      self.settings.address, use_addict=False,
                                      principal=self.settings.principal or None)
        driver.start()
        self._driver = driver

    async def stop(self, *, failover: bool) -> None:
        """Unsubscribe. `failover`: the master keeps the framework, its executors and tasks
        for the failover timeout (the next engine takes them back); otherwise TEARDOWN, and
        Mesos kills every executor and task of the framework."""
        driver, self._driver = self._driver, None
        if driver is None:
            return

        def stop() -> None:
            driver.stop(failover=failover)
            driver.join()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._calls, stop)
        self._calls.shutdown(wait=False)

    def _call(self, what: str, call: Callable[[MesosSchedulerDriver], None]
              ) -> asyncio.Future[None]:
        """Queue the call now (calls run in the order they were made); its future raises
        ConnectionError when the master cannot be told."""
        driver = self._driver
        loop = asyncio.get_running_loop()
        if driver is None:
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(ConnectionError(f"Mesos {what}: the framework is not "
                                                 f"subscribed to {self.settings.master}"))
            return failed

        def run() -> None:
            try:
                call(driver)
            except (RuntimeError, OSError) as error:  # "Not connected yet", HTTP refusals
                raise ConnectionError(f"Mesos {what} to {self.settings.master} failed: "
                                      f"{error}") from None

        return loop.run_in_executor(self._calls, run)

    def accept(self, offer_ids: Sequence[str], tasks: Sequence[Json]) -> asyncio.Future[None]:
        ids = [{"value": i} for i in offer_ids]
        return self._call("ACCEPT", lambda d: d.launchTasks(
            ids, list(tasks), {"refuse_seconds": REFUSE_SECONDS}))

    def decline(self, offer_ids: Sequence[str]) -> asyncio.Future[None]:
        ids = [{"value": i} for i in offer_ids]
        return self._call("DECLINE", lambda d: d.declineOffer(
            ids, {"refuse_seconds": REFUSE_SECONDS}))

    def suppress(self) -> asyncio.Future[None]:
        return self._call("SUPPRESS", lambda d: d.suppressOffers())

    def revive(self) -> asyncio.Future[None]:
        return self._call("REVIVE", lambda d: d.reviveOffers())

    def kill(self, task_id: str) -> asyncio.Future[None]:
        return self._call(f"KILL of {task_id}", lambda d: d.killTask({"value": task_id}))

    def message(self, agent_id: str, executor_id: str, body: Mapping[str, Any]
                ) -> asyncio.Future[None]:
        data = encode_body(body)
        return self._call("MESSAGE", lambda d: d.sendFrameworkMessage(
            {"value": executor_id}, {"value": agent_id}, data))

    def reconcile(self, tasks: Sequence[tuple[str, str]] = ()) -> asyncio.Future[None]:
        """Ask the master for the status of `tasks` ((task id, agent id)); none: all of ours."""
        body = [{"task_id": {"value": t}, "agent_id": {"value": a}} for t, a in tasks]
        return self._call("RECONCILE", lambda d: d.reconcileTasks(body))
