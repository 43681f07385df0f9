"""`nutshell-executor mesos`: the executor as a Mesos custom executor (pymesos).

A Mesos agent starts it for the framework (one per agent) and hands it LAUNCH, KILL,
framework messages and SHUTDOWN. The tasks are run by the same core as a local agent's
(AgentTasks), so a task behaves the same under either; only the wire differs: status
updates go out as Mesos UPDATE calls, command answers and device events as framework
messages with the §7.4 JSON bodies (docs/mesos-backend.md has the contract).

Threads: pymesos runs its driver on its own I/O thread and calls us there; every callback
only hands work to the one asyncio loop (the main thread), where the tasks live. Calls to
the agent block on HTTP, so they go through one sender thread, in order. The main thread
runs the loop rather than pymesos' `run()`, so SIGTERM is always seen (see the harness
README: a main thread parked in Thread.join() would miss it).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data

from executor.agent_tasks import TASK_ID, AgentError, AgentTasks
from executor.controlled_task import ControlledTask
from executor.reports import MesosTaskState, Report, StatusUpdate, TaskIdentity

log = logging.getLogger("executor.mesos")

SEND_RETRY = 0.2  # s between attempts while the agent is not reachable
SEND_PATIENCE = 120.0  # s an update or message waits for the agent before it is dropped
SHUTDOWN_MARGIN = 1.0  # s kept from the agent's grace period to send the last updates
DEFAULT_GRACE = 5.0  # the agent's --executor_shutdown_grace_period default
MESSAGE = "MesosCommandResponse"
LIST_TASKS = "MesosCommand_ListTasks"  # nutshell's: what an engine re-adopting tasks asks


class NotUnderMesos(ValueError):
    """Started by hand: none of the variables a Mesos agent gives its executors is set."""


def machine_id(agent_info: Mapping[str, Any]) -> str:
    """The agent's machine_id text attribute (every nutshell agent has one), else ""."""
    for attribute in agent_info.get("attributes") or ():
        if attribute.get("name") == "machine_id":
            return str((attribute.get("text") or {}).get("value", ""))
    return ""


def _labels(task_info: Mapping[str, Any]) -> dict[str, str]:
    found = (task_info.get("labels") or {}).get("labels") or ()
    return {str(label.get("key", "")): str(label.get("value", "")) for label in found}


# ---------------------------------------------------------------- executor → agent

@dataclass(frozen=True)
class _Outgoing:
    kind: str  # "update" or "message"
    payload: dict[str, Any]
    describe: str


class Outbox:
    """Status updates and framework messages to the agent, sent in the order they were
    made, from a thread of their own: the driver's calls are blocking HTTP requests."""

    def __init__(self, driver: MesosExecutorDriver) -> None:
        self._driver = driver
        self._queue: queue.Queue[_Outgoing | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="mesos-outbox", daemon=True)
        self._thread.start()

    def update(self, task_id: str, state: str, message: str = "",
               body: Mapping[str, Any] | None = None) -> None:
        status: dict[str, Any] = {"task_id": {"value": task_id}, "state": state,
                                  "timestamp": time.time()}
        if message:
            status["message"] = message
        if body is not None:
            status["data"] = encode_data(json.dumps(body).encode())
        self._put(_Outgoing("update", status, f"{state} of task {task_id}"))

    def message(self, body: Mapping[str, Any]) -> None:
        what = f"{body.get('_messageType', 'message')} for task {body.get('taskId', '?')}"
        self._put(_Outgoing("message", dict(body), what))

    def _put(self, item: _Outgoing) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued is sent (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._send(item)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _send(self, item: _Outgoing) -> None:
        deadline = time.monotonic() + SEND_PATIENCE
        while True:
            try:
                if item.kind == "update":
                    self._driver.sendStatusUpdate(dict(item.payload))
                else:
                    self._driver.sendFrameworkMessage(
                        encode_data(json.dumps(item.payload).encode()))
                return
            except Exception as error:  # not connected yet, agent restarting, HTTP failure
                if self._driver.aborted or time.monotonic() > deadline:
                    log.error("dropped %s: %s", item.describe, error)
                    return
                log.debug("retrying %s: %s", item.describe, error)
                time.sleep(SEND_RETRY)


# ---------------------------------------------------------------- the executor's work (loop side)

class MesosNode:
    """The tasks of this executor and how their reports and answers reach Mesos.

    Runs on the asyncio loop only; the bridge hands every callback here.
    """

    def __init__(self, outbox: Outbox, sandbox: Path | None) -> None:
        self.outbox = outbox
        self.tasks = AgentTasks(os.environ.get("MESOS_EXECUTOR_ID", "executor"), sandbox,
                                publish=self._publish)
        self._killing: set[str] = set()
        self._held: dict[str, StatusUpdate] = {}  # terminal updates of kills under way
        self._shutdown: asyncio.Future[None] | None = None

    @property
    def executor_id(self) -> str:
        return self.tasks.executor_id

    def registered(self, executor_id: str, agent_id: str, name: str) -> None:
        self.tasks.executor_id = executor_id
        self.tasks.agent_id = agent_id
        self.tasks.name = name or executor_id
        log.info("executor %s registered on agent %s (%s)", executor_id, self.tasks.name, agent_id)

    def _publish(self, record: Report) -> None:
        if not isinstance(record, StatusUpdate):
            self.outbox.message(record.to_message())
            return
        task_id = record.task.task_id
        if task_id in self._killing and record.state.terminal:
            # The kill reports before its last signals; Mesos hears once nothing is left.
            task = self.tasks.find(task_id)
            if record.state is MesosTaskState.TASK_FINISHED and isinstance(task, ControlledTask):
                log.info("task %s: reported to Mesos as TASK_KILLED (it was asked to die)", task_id)
                record = StatusUpdate(record.task, MesosTaskState.TASK_KILLED, record.message)
            self._held[task_id] = record
            return
        self._send_status(record)

    def _send_status(self, record: StatusUpdate) -> None:
        self.outbox.update(record.task.task_id, record.state.name, record.message,
                           record.to_message())

    def _killed(self, task_id: str) -> None:
        """The kill of that task returned: its process is gone, its terminal update goes out."""
        self._killing.discard(task_id)
        held = self._held.pop(task_id, None)
        if held is not None:
            self._send_status(held)

    def launch(self, task_info: Mapping[str, Any]) -> None:
        task_id = str((task_info.get("task_id") or {}).get("value", ""))
        labels = _labels(task_info)
        identity = TaskIdentity(task_id, self.tasks.agent_id, self.executor_id,
                                labels.get("environmentId", ""), labels.get("detector", ""))
        try:
            data = decode_data(task_info.get("data") or "").decode()
        except (ValueError, UnicodeDecodeError) as error:
            self._refuse(identity, f"launch of task {task_id} on {self.tasks.name}: TaskInfo.data "
                                   f"is not base64 UTF-8 JSON: {error}")
            return
        try:
            self.tasks.launch(task_id, data, identity.environment_id, identity.detector,
                              self._log_path(task_id, labels.get("logPath", "")))
        except AgentError as error:
            self._refuse(identity, f"{error} (executor {self.executor_id} on {self.tasks.name})")

    def _log_path(self, task_id: str, wanted: str) -> str:
        """Where the task's output goes: "" (the sandbox's <task id>.log, which the agent's
        /files serves), and the engine's `logPath` label, when its directory is on this
        node, becomes a link to that file. A logPath that exists already gets the output."""
        if not wanted or not TASK_ID.fullmatch(task_id) or self.tasks.log_dir is None:
            return ""  # a bad task id is refused by the launch
        path = Path(wanted)
        if not path.is_absolute() or not path.parent.is_dir():
            log.warning("task %s: logPath %s is not an absolute path in a directory of this "
                        "node; its output is only in the sandbox", task_id, wanted)
            return ""
        if path.exists():
            return wanted
        try:
            path.symlink_to(self.tasks.log_dir / f"{task_id}.log")
        except OSError as error:
            log.warning("task %s: cannot link %s to the sandbox: %s", task_id, path, error)
        return ""

    def _refuse(self, identity: TaskIdentity, message: str) -> None:
        log.error("%s", message)
        self._send_status(StatusUpdate(identity, MesosTaskState.TASK_FAILED, message))

    async def command(self, data: bytes) -> None:
        """Run one MesosCommand body; the answer (or the refusal) goes back as a message."""
        try:
            if _name(data) == LIST_TASKS:
                response = self.listing(data)
            else:
                response = (await self.tasks.command(data.decode(errors="replace"))).body
        except AgentError as error:
            response = self._refusal(data, f"executor {self.executor_id} on {self.tasks.name}: "
                                           f"{error}")
        except Exception as error:  # a fault of ours: still answer, so nobody waits for nothing
            log.exception("command %.200r failed", data)
            response = self._refusal(data, f"executor {self.executor_id} on {self.tasks.name}: "
                                           f"{error!r}")
        self.outbox.message(response)

    def listing(self, data: bytes) -> dict[str, Any]:
        """The answer to MesosCommand_ListTasks: every task of this executor as it is now."""
        body = json.loads(data)
        reply = self.tasks.list_tasks()
        return {"_messageType": f"{MESSAGE}_ListTasks", "name": LIST_TASKS,
                "id": str(body.get("id", "")), "environmentId": "", "error": "", "taskId": "",
                "tasks": [{"taskId": task.task_id, "environmentId": task.environment_id,
                           "detector": task.detector, "controlMode": task.control_mode,
                           "pid": task.pid, "state": task.state, "controlPort": task.control_port,
                           "status": task.status, "logPath": task.log_path}
                          for task in reply.tasks]}

    @staticmethod
    def _refusal(data: bytes, error: str) -> dict[str, Any]:
        """A MesosCommandResponse saying why, carrying what could be read of the request."""
        try:
            body = json.loads(data)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        task_id = ""
        targets = body.get("targetList")
        if isinstance(targets, list) and len(targets) == 1 and isinstance(targets[0], dict):
            task_id = str((targets[0].get("TaskId") or {}).get("value", ""))
        return {"_messageType": MESSAGE, "name": str(body.get("name", "")),
                "id": str(body.get("id", "")), "environmentId": str(body.get("environmentId", "")),
                "error": error, "taskId": task_id}

    async def kill(self, task_id: str) -> None:
        """Mesos KILL: walk the task to DONE, then signals; TASK_KILLED (or what it ended with)."""
        if self.tasks.find(task_id) is None:
            self.outbox.update(task_id, "TASK_LOST",
                               f"task {task_id} is not on executor {self.executor_id} "
                               f"({self.tasks.name})")
            return
        self._killing.add(task_id)
        try:
            await self.tasks.kill(task_id)
        except AgentError as error:  # gone meanwhile (a concurrent kill)
            log.info("kill of task %s: %s", task_id, error)
        finally:
            self._killed(task_id)

    async def shutdown(self) -> None:
        """Every task down (once, however often asked)."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._take_down())
        await asyncio.shield(self._shutdown)

    async def _take_down(self) -> None:
        task_ids = [task.task_id for task in self.tasks.list_tasks().tasks]
        log.info("executor %s: taking %d task(s) down", self.executor_id, len(task_ids))
        self._killing.update(task_ids)
        try:
            await self.tasks.kill_all()
        finally:
            for task_id in task_ids:
                self._killed(task_id)


def _name(data: bytes) -> str:
    """The `name` of a command body, "" if it has none or is not a JSON object."""
    try:
        body = json.loads(data)
    except ValueError:
        return ""
    return str(body.get("name", "")) if isinstance(body, dict) else ""


# ---------------------------------------------------------------- pymesos callbacks (driver thread)

class ExecutorBridge(Executor):
    """pymesos' callbacks, each handed to the loop without waiting, but SHUTDOWN: that one
    holds the driver until the tasks are down, since pymesos stops the driver after it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, node: MesosNode, outbox: Outbox,
                 grace: float) -> None:
        self.loop = loop
        self.node = node
        self.outbox = outbox
        self.grace = grace

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(function, *args)

    def _spawn(self, coroutine: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        future.add_done_callback(_log_failure)

    def registered(self, driver: Any, executor_info: Any, framework_info: Any,
                   agent_info: Any) -> None:
        self._call(self.node.registered, str(executor_info["executor_id"]["value"]),
                   str(agent_info["id"]["value"]), machine_id(agent_info))

    def reregistered(self, driver: Any, agent_info: Any) -> None:
        log.info("re-registered with agent %s", agent_info.get("id", {}).get("value"))

    def disconnected(self, driver: Any) -> None:
        if not driver.aborted:
            log.warning("disconnected from the agent; pymesos reconnects (checkpointing "
                        "framework) or shuts this executor down (not checkpointing)")

    def launchTask(self, driver: Any, task: Any) -> None:
        self._call(self.node.launch, task)

    def killTask(self, driver: Any, task_id: Any) -> None:
        self._spawn(self.node.kill(str(task_id["value"])))

    def frameworkMessage(self, driver: Any, message: Any) -> None:
        try:
            data = decode_data(message)
        except ValueError:
            data = str(message).encode()
        self._spawn(self.node.command(data))

    def shutdown(self, driver: Any) -> None:
        log.info("SHUTDOWN from the agent")
        budget = max(self.grace - SHUTDOWN_MARGIN, 0.5)
        started = time.monotonic()
        future = asyncio.run_coroutine_threadsafe(self.node.shutdown(), self.loop)
        try:
            future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            log.error("tasks not down within %.1f s of SHUTDOWN", budget)
        except Exception:
            log.exception("taking the tasks down at SHUTDOWN failed")
        self.outbox.flush(max(self.grace - (time.monotonic() - started) - 0.2, 0.1))

    def error(self, driver: Any, message: str) -> None:
        log.error("error from the agent: %s", message)


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("executor callback failed", exc_info=future.exception())


def _grace() -> float:
    """The agent's shutdown grace period (MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, e.g. "5secs")."""
    text = os.environ.get("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "")
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0, "hrs": 3600.0}
    for unit, scale in units.items():
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * scale
            except ValueError:
                break
    return DEFAULT_GRACE


# ---------------------------------------------------------------- running it

async def run_executor(options: argparse.Namespace) -> int:
    """Serve the agent until SHUTDOWN, a lost connection (no checkpointing) or SIGTERM/SIGINT."""
    missing = [name for name in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID")
               if not os.environ.get(name)]
    if missing:
        raise NotUnderMesos(f"not started by a Mesos agent: {', '.join(missing)} unset "
                         f"(nutshell-executor mesos is launched as a Mesos custom executor)")
    loop = asyncio.get_running_loop()
    sandbox = os.environ.get("MESOS_SANDBOX") or os.environ.get("MESOS_DIRECTORY")
    driver_done = asyncio.Event()
    signalled = asyncio.Event()
    driver = MesosExecutorDriver(None, use_addict=True)  # its executor is set below
    outbox = Outbox(driver)
    node = MesosNode(outbox, Path(sandbox) if sandbox else None)
    bridge = ExecutorBridge(loop, node, outbox, _grace())
    driver.executor = bridge
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    driver.start()

    def wait_driver() -> None:
        driver.join()
        loop.call_soon_threadsafe(driver_done.set)

    threading.Thread(target=wait_driver, name="mesos-driver-join", daemon=True).start()
    waiters = [asyncio.ensure_future(driver_done.wait()), asyncio.ensure_future(signalled.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        if signalled.is_set():
            log.info("signalled: taking the tasks down")
        await node.shutdown()  # at once if SHUTDOWN already did it
        outbox.close(timeout=2.0)
        driver.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("executor %s: exiting", node.executor_id)
    return 0
