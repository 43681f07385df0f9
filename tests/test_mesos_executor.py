"""`nutshell-executor mesos` under a real Mesos 1.11 master and agents.

A tiny pymesos scheduler written here (not the engine's framework) launches the executor
as a custom executor on a chosen agent and drives the occlib dummy through it with §7.4
framework messages, the way the engine's Mesos backend does.
"""
from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from executor.command import TaskCommand
from executor.occ_client import connect
from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data
from tests.mesos_cluster import MesosCluster, mesos_cluster, running_cluster  # noqa: F401

WAIT = 30.0  # s for anything Mesos or the executor should do (a bound, not a measurement)
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
            "TASK_DROPPED", "TASK_GONE"}


def executor_id(machine_id: str) -> str:
    return f"nutshell-executor-{machine_id}"


def _attribute(offer: dict[str, Any], name: str) -> str:
    for attribute in offer.get("attributes", []):
        if attribute.get("name") == name:
            return attribute.get("text", {}).get("value", "")
    return ""


def _scalar(name: str, value: float) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


class TestFramework(Scheduler):
    """Records offers (held, per machine_id), status updates and executor messages."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.framework_id = ""
        self.subscribed = threading.Event()
        self._offers: dict[str, dict[str, Any]] = {}
        self._offered = threading.Condition()
        self.updates: queue.Queue[dict[str, Any]] = queue.Queue()
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._seen_updates: list[dict[str, Any]] = []
        self._seen_messages: list[dict[str, Any]] = []
        self.driver: MesosSchedulerDriver | None = None
        self.agent_ids: dict[str, str] = {}
        self.attributes: dict[str, dict[str, str]] = {}  # text attributes per machine_id

    # pymesos callbacks (its thread)
    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self.framework_id = framework_id["value"]
        self.subscribed.set()

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        with self._offered:
            for offer in offers:
                machine = _attribute(offer, "machine_id")
                self.agent_ids[machine] = offer["agent_id"]["value"]
                self.attributes[machine] = {a["name"]: a.get("text", {}).get("value", "")
                                            for a in offer.get("attributes", [])}
                stale = self._offers.get(machine)
                if stale is not None:
                    driver.declineOffer(stale["id"], filters={"refuse_seconds": 0.01})
                self._offers[machine] = offer
            self._offered.notify_all()

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:
        with self._offered:
            for machine, offer in list(self._offers.items()):
                if offer["id"]["value"] == offer_id["value"]:
                    del self._offers[machine]

    def statusUpdate(self, driver: Any, update: Any) -> None:
        self.updates.put(dict(update))

    def frameworkMessage(self, driver: Any, executor: Any, agent: Any, message: Any) -> None:
        self.messages.put(json.loads(decode_data(message)))

    # used by the tests (test thread)
    def _offer(self, machine: str) -> dict[str, Any]:
        with self._offered:
            if not self._offered.wait_for(lambda: machine in self._offers, WAIT):
                raise AssertionError(f"no offer from agent {machine} within {WAIT:g} s "
                                     f"(offers from: {sorted(self._offers)})")
            return self._offers.pop(machine)

    def launch(self, machine: str, command: TaskCommand, *, environment_id: str = "env-1",
               task_id: str = "", data: bytes | None = None, log_path: str = "") -> str:
        """Launch one task with the nutshell executor on the agent of that machine_id."""
        assert self.driver is not None
        offer = self._offer(machine)
        task_id = task_id or f"task-{uuid.uuid4().hex[:10]}"
        ports = [{"begin": command.control_port, "end": command.control_port}] \
            if command.control_port else []
        task: dict[str, Any] = {
            "name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
            "resources": [_scalar("cpus", 0.1), _scalar("mem", 64)]
            + ([{"name": "ports", "type": "RANGES", "ranges": {"range": ports}}] if ports else []),
            "executor": self._executor_info(machine),
            "data": encode_data(data if data is not None else command.to_json().encode()),
            "labels": {"labels": [{"key": "environmentId", "value": environment_id},
                                  {"key": "detector", "value": "TST"}]
                       + ([{"key": "logPath", "value": log_path}] if log_path else [])},
        }
        self.driver.launchTasks(offer["id"], [task], filters={"refuse_seconds": 0.01})
        return task_id

    @staticmethod
    def _executor_info(machine: str) -> dict[str, Any]:
        return {
            "executor_id": {"value": executor_id(machine)}, "name": "nutshell executor",
            "type": "CUSTOM",
            "command": {"shell": False, "value": sys.executable,
                        "arguments": [sys.executable, "-m", "executor.cli", "mesos", "--verbose"],
                        "environment": {"variables": [{"name": "PYTHONUNBUFFERED",
                                                       "value": "1"}]}},
            "resources": [_scalar("cpus", 0.01), _scalar("mem", 64)],
        }

    def send(self, machine: str, body: dict[str, Any]) -> None:
        assert self.driver is not None
        self.driver.sendFrameworkMessage({"value": executor_id(machine)},
                                         {"value": self.agent_ids[machine]},
                                         encode_data(json.dumps(body).encode()))

    def kill(self, task_id: str) -> None:
        assert self.driver is not None
        self.driver.killTask({"value": task_id})

    def update(self, task_id: str) -> dict[str, Any]:
        """The next status update of that task."""
        return self._next(self.updates, self._seen_updates,
                          lambda u: u["task_id"]["value"] == task_id, f"status update of {task_id}")

    def message(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first executor message (not yet taken) that matches."""
        return self._next(self.messages, self._seen_messages, match, what)

    @staticmethod
    def _next(source: queue.Queue[dict[str, Any]], kept: list[dict[str, Any]],
              match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        for index, item in enumerate(kept):
            if match(item):
                return kept.pop(index)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                item = source.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no {what} within {WAIT:g} s; other items: {kept}") from None
            if match(item):
                return item
            kept.append(item)

    def command(self, machine: str, task_id: str, source: str, event: str, destination: str,
                arguments: dict[str, str] | None = None) -> dict[str, Any]:
        """One MesosCommand_Transition, and its MesosCommandResponse."""
        command_id = uuid.uuid4().hex
        self.send(machine, {
            "name": "MesosCommand_Transition", "id": command_id, "environmentId": "env-1",
            "timeout": int(20e9), "arguments": arguments or {},
            "targetList": [{"AgentId": {"value": self.agent_ids[machine]},
                            "ExecutorId": {"value": executor_id(machine)},
                            "TaskId": {"value": task_id}}],
            "source": source, "event": event, "destination": destination})
        return self.message(lambda m: m.get("_messageType") == "MesosCommandResponse"
                            and m.get("id") == command_id, f"response to {event} of {task_id}")


@pytest.fixture
def framework(mesos_cluster: MesosCluster) -> Iterator[TestFramework]:  # noqa: F811
    """A framework registered for this test; torn down after it, which shuts its executors down."""
    scheduler = TestFramework()
    info = {"user": "root", "name": "nutshell-executor-test", "checkpoint": True,
            "failover_timeout": 5.0, "hostname": "localhost"}
    driver = MesosSchedulerDriver(scheduler, info, mesos_cluster.master_address, use_addict=True)
    scheduler.driver = driver
    driver.start()
    try:
        assert scheduler.subscribed.wait(WAIT), f"framework not subscribed to {mesos_cluster.master_url}"
        yield scheduler
    finally:
        driver.stop()  # TEARDOWN: the agents shut the executors down
        driver.join()
        mesos_cluster.wait_idle()


def dummy(control_port: int, *options: str) -> TaskCommand:
    return TaskCommand(value=sys.executable, arguments=("-m", "occlib.examples.dummy", *options),
                       control_port=control_port, control_mode="direct")


def states_until_terminal(framework: TestFramework, task_id: str) -> list[dict[str, Any]]:
    seen = []
    while not seen or seen[-1]["state"] not in TERMINAL:
        seen.append(framework.update(task_id))
    return seen


def task_token(port: int) -> str:
    """The OCC token the executor gave the process listening on `port` (its environment)."""
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid).environ().get("OCC_CONTROL_TOKEN", "")
    return ""


def occ_state(port: int) -> str:
    """GetState of the process on that control port, asked directly (not through Mesos),
    with the token its executor gave it."""
    async def ask() -> str:
        client = connect(f"127.0.0.1:{port}", token=task_token(port))
        try:
            state, _ = await client.get_state()
            return state
        finally:
            await client.close()
    return asyncio.run(ask())


def test_controlled_task_runs_and_is_driven_through_framework_messages(
        mesos_cluster: MesosCluster, framework: TestFramework, tmp_path: Path) -> None:  # noqa: F811
    agent = mesos_cluster.agent("flp002")
    port = agent.control_ports[0]
    task_id = framework.launch("flp002", dummy(port, "--startup-delay", "0.5", "--eos-after", "3"),
                               log_path=str(tmp_path / "dummy.log"))

    starting = framework.update(task_id)
    assert starting["state"] == "TASK_STARTING"
    running = framework.update(task_id)
    assert running["state"] == "TASK_RUNNING", running
    assert running["agent_id"]["value"] == agent.agent_id
    assert occ_state(port) == "STANDBY"  # RUNNING came once the process serves, in STANDBY
    body = json.loads(decode_data(running["data"]))
    assert body["labels"] == {"environmentId": "env-1", "detector": "TST"}

    announced = framework.message(lambda m: m.get("_messageType") == "AnnounceTaskPIDEvent",
                                  "AnnounceTaskPIDEvent")
    assert announced["taskId"] == task_id
    process = psutil.Process(announced["pid"])
    assert "occlib.examples.dummy" in " ".join(process.cmdline())
    assert str(agent.work_dir) in process.environ().get("MESOS_SANDBOX", "")

    configured = framework.command("flp002", task_id, "STANDBY", "CONFIGURE", "CONFIGURED",
                                   {"run_type": "PHYSICS"})
    assert configured == {**configured, "error": "", "state": "CONFIGURED", "taskId": task_id,
                          "name": "MesosCommand_Transition", "environmentId": "env-1"}
    started = framework.command("flp002", task_id, "CONFIGURED", "START", "RUNNING",
                                {"run_number": "7"})
    assert (started["error"], started["state"]) == ("", "RUNNING")
    end_of_stream = framework.message(lambda m: m.get("_messageType") == "DeviceEvent",
                                      "DeviceEvent")
    assert end_of_stream["type"] == 1  # END_OF_STREAM, after 3 events
    assert end_of_stream["origin"] == {"agentId": {"value": agent.agent_id},
                                       "executorId": {"value": executor_id("flp002")},
                                       "taskId": {"value": task_id}}
    framework.send("flp002", {"name": "MesosCommand_ListTasks", "id": "list-1"})
    listing = framework.message(lambda m: m.get("id") == "list-1", "answer to ListTasks")
    assert listing["_messageType"] == "MesosCommandResponse_ListTasks" and not listing["error"]
    assert listing["tasks"] == [{
        "taskId": task_id, "environmentId": "env-1", "detector": "TST", "controlMode": "direct",
        "pid": process.pid, "state": "RUNNING", "controlPort": port, "status": "TASK_RUNNING",
        "logPath": str(agent.sandbox(framework.framework_id, executor_id("flp002")).resolve()
                       / f"{task_id}.log")}]
    stopped = framework.command("flp002", task_id, "RUNNING", "STOP", "CONFIGURED")
    assert (stopped["error"], stopped["state"]) == ("", "CONFIGURED")
    wrong = framework.command("flp002", task_id, "RUNNING", "STOP", "CONFIGURED")
    assert "state mismatch" in wrong["error"], wrong  # STOP from CONFIGURED: refused

    framework.kill(task_id)
    killed = framework.update(task_id)
    assert killed["state"] == "TASK_KILLED", killed
    assert task_id in killed.get("message", "")
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE

    log = (tmp_path / "dummy.log").read_text()  # the engine's logPath
    assert "CONFIGURE" in log and "run_number" in log, log[-2000:]
    in_sandbox = mesos_cluster.read_sandbox_file("flp002", framework.framework_id,
                                                 executor_id("flp002"), f"{task_id}.log")
    assert in_sandbox == log


def test_task_that_crashes_at_start_fails_with_the_reason(
        mesos_cluster: MesosCluster, framework: TestFramework) -> None:  # noqa: F811
    port = mesos_cluster.agent("flp003").control_ports[0]
    task_id = framework.launch("flp003", dummy(port, "--crash-at-start"))
    states = states_until_terminal(framework, task_id)
    assert [s["state"] for s in states] == ["TASK_STARTING", "TASK_FAILED"], states
    assert "crashed on startup" in states[-1]["message"], states[-1]


def test_refusals_are_answered(
        mesos_cluster: MesosCluster, framework: TestFramework) -> None:  # noqa: F811
    port = mesos_cluster.agent("flp001").control_ports[0] + 2
    bad = framework.launch("flp001", dummy(port), data=b'{"value": ""}')
    failed = framework.update(bad)
    assert failed["state"] == "TASK_FAILED"
    assert "bad TaskCommandInfo" in failed["message"] and "flp001" in failed["message"], failed

    framework.send("flp001", {"name": "MesosCommand_Transition", "id": "c-1",
                              "targetList": [{"TaskId": {"value": "no-such-task"}}],
                              "source": "STANDBY", "event": "CONFIGURE"})
    refused = framework.message(lambda m: m.get("id") == "c-1", "answer to c-1")
    assert refused["_messageType"] == "MesosCommandResponse"
    assert "no-such-task" in refused["error"] and "flp001" in refused["error"], refused
    framework.send("flp001", {"name": "MesosCommand_Transition", "id": "c-2", "targetList": []})
    refused = framework.message(lambda m: m.get("id") == "c-2", "answer to c-2")
    assert "exactly one target" in refused["error"], refused


def test_teardown_takes_running_tasks_down(mesos_cluster: MesosCluster) -> None:  # noqa: F811
    scheduler = TestFramework()
    info = {"user": "root", "name": "nutshell-teardown-test", "checkpoint": True,
            "failover_timeout": 5.0}
    driver = MesosSchedulerDriver(scheduler, info, mesos_cluster.master_address, use_addict=True)
    scheduler.driver = driver
    driver.start()
    try:
        assert scheduler.subscribed.wait(WAIT)
        port = mesos_cluster.agent("flp001").control_ports[0] + 1
        task_id = scheduler.launch("flp001", dummy(port))
        assert [scheduler.update(task_id)["state"] for _ in range(2)] == ["TASK_STARTING",
                                                                          "TASK_RUNNING"]
        pid = scheduler.message(lambda m: m.get("_messageType") == "AnnounceTaskPIDEvent",
                                "AnnounceTaskPIDEvent")["pid"]
        assert psutil.pid_exists(pid)
    finally:
        driver.stop()
        driver.join()
    mesos_cluster.wait_idle()  # SHUTDOWN reached the executor: task and executor gone
    log = mesos_cluster.read_sandbox_file("flp001", scheduler.framework_id,
                                          executor_id("flp001"), "stderr")
    assert "SHUTDOWN" in log and "taking 1 task(s) down" in log, log[-3000:]


def executor_process(cluster: MesosCluster, framework_id: str, machine: str) -> psutil.Process:
    """The executor process of that framework on that agent (by its Mesos environment)."""
    for proc in psutil.Process(cluster.process.pid).children(recursive=True):
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if (env.get("MESOS_FRAMEWORK_ID") == framework_id
                and env.get("MESOS_EXECUTOR_ID") == executor_id(machine)
                and "executor.cli" in proc.cmdline()):
            return proc
    raise AssertionError(f"no executor {executor_id(machine)} of {framework_id} running")


def test_sigterm_takes_the_tasks_down_before_the_executor_exits(
        mesos_cluster: MesosCluster, framework: TestFramework) -> None:  # noqa: F811
    port = mesos_cluster.agent("flp003").control_ports[0] + 1
    task_id = framework.launch("flp003", dummy(port))
    assert [framework.update(task_id)["state"] for _ in range(2)] == ["TASK_STARTING",
                                                                      "TASK_RUNNING"]
    pid = framework.message(lambda m: m.get("_messageType") == "AnnounceTaskPIDEvent",
                            "AnnounceTaskPIDEvent")["pid"]
    task_process = psutil.Process(pid)
    executor = executor_process(mesos_cluster, framework.framework_id, "flp003")
    executor.terminate()
    killed = framework.update(task_id)
    assert killed["state"] == "TASK_KILLED", killed  # sent by the executor, not the agent
    assert killed["source"] == "SOURCE_EXECUTOR", killed
    executor.wait(timeout=WAIT)
    assert not task_process.is_running() or task_process.status() == psutil.STATUS_ZOMBIE


def test_a_crashed_node_loses_its_task_and_leaves_nothing() -> None:
    """kill_agent.sh on a cluster of its own (the module's keeps its agents): the task is
    reported lost, and the node's executor and task processes are gone with it. The
    framework does not checkpoint here, so the master says TASK_LOST as the link drops
    instead of after the ping timeouts (about 3 s)."""
    with running_cluster(["lone1", "lone2"], attributes={"lone1": "rack:r1"}) as cluster:
        scheduler = TestFramework()
        info = {"user": "root", "name": "nutshell-loss-test", "checkpoint": False,
                "failover_timeout": 5.0}
        driver = MesosSchedulerDriver(scheduler, info, cluster.master_address, use_addict=True)
        scheduler.driver = driver
        driver.start()
        try:
            assert scheduler.subscribed.wait(WAIT)
            task_id = scheduler.launch("lone1", dummy(cluster.agent("lone1").control_ports[0]))
            assert [scheduler.update(task_id)["state"] for _ in range(2)] == ["TASK_STARTING",
                                                                              "TASK_RUNNING"]
            assert scheduler.attributes["lone1"] == {"machine_id": "lone1", "rack": "r1"}
            crashed = cluster.kill_agent("lone1")
            assert crashed["agent"] == "lone1" and crashed["processes"], crashed
            lost = scheduler.update(task_id)
            assert lost["state"] == "TASK_LOST", lost
            cluster.wait_idle()  # SIGKILLed: gone once the harness reaped them
        finally:
            driver.stop()
            driver.join()


def test_outside_mesos_the_executor_says_what_is_missing() -> None:
    done = subprocess.run([sys.executable, "-m", "executor.cli", "mesos"], capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 2
    assert "not started by a Mesos agent: MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, " \
           "MESOS_EXECUTOR_ID unset" in done.stderr, done.stderr
