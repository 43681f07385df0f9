"""`nutshell core` over gRPC: a real core process, a client made only from o2control.proto,
and RemoteEngine giving the records and exceptions of an in-process Engine.

Each test starts the core as a child process on a free port with its own working
directory (one agent, a tiny workflow: one occlib dummy and a hook task that can
make START last), and stops the executors at the end through a local Engine once
the core is gone.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psutil
import pytest

from engine import (
    Engine,
    EnvEvent,
    EnvironmentBusy,
    EnvState,
    RepoError,
    TaskRow,
    TemplateError,
    TransitionFailed,
    TransitionRefused,
    TransitionResult,
    UnknownEnvironmentError,
    WorkflowError,
    WorkingDirectory,
)
from engine.api import AddressInUse, RemoteEngine, RemoteEngineError, messages
from engine.api.errors import Operation, rebuild, status_code, trailing_metadata
from engine.api import server as server_module
from engine.api.protos import o2control_pb2 as o2
from engine.api.protos import o2control_pb2_grpc as o2_grpc
from engine.api.server import CoreServer, check_free
from engine.environment.environment import Busy
from engine.environment.events import EnvironmentEvent, EventKind
from engine.environment.roster import UnknownTaskError
from engine.environment.statemachine import DestroyRefused
from engine.hosting import CORE_FILE
from engine.scheduler.local_agent import find_running
from engine.templates.render import Where
from tests.conftest import ROOT, free_port, make_template_repo
from tests.test_environment_e2e import DUMMY

SETTINGS = """\
agents:
  a1:
    ports: {data}-{data_end},{control}-{control_end}
"""

WORKFLOW = """\
name: tiny
defaults:
  fail_on: ""
  pause: "0"
roles:
  - name: dummy
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
  - name: pause
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: pause
      trigger: before_START_ACTIVITY
      timeout: 10s
"""

PAUSE = """\
name: pause
control:
  mode: basic
defaults:
  pause: "0"
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: "sleep {{ pause }}"
"""


@dataclass
class Core:
    """A `nutshell core` child process."""

    process: subprocess.Popen[str]
    address: str

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=20)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.process.stdout.close()
        self.process.stderr.close()
        return code


def run_core(workdir: WorkingDirectory, address: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "console.cli", "core", "--listen", address],
                            env={**os.environ, "NUTSHELL_HOME": str(workdir.root)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def start_core(workdir: WorkingDirectory) -> Core:
    address = f"127.0.0.1:{free_port()}"
    process = run_core(workdir, address)
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    if "serving" not in line:
        process.kill()
        _, errors = process.communicate(timeout=10)
        raise AssertionError(f"nutshell core did not start: {line!r} {errors}")
    assert line.strip().endswith(f"on {address} (pid {process.pid})")
    return Core(process, address)


@dataclass
class Setup:
    workdir: WorkingDirectory
    reference: str
    core: Core


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    data, control = 19500 + 10 * random.randrange(40), 32300 + 10 * random.randrange(40)
    workdir.settings_file.write_text(SETTINGS.format(data=data, data_end=data + 9,
                                                     control=control, control_end=control + 9))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/tiny.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY, "tasks/pause.yaml": PAUSE,
    }, corpus=False)
    core = await start_core(workdir)
    try:
        async with RemoteEngine(core.address) as remote:  # a local path lives in the core only
            added = await remote.add_repo(str(repo), "master")
        yield Setup(workdir, f"{added.repo}/workflows/tiny@master", core)
    finally:
        core.stop()
        async with Engine(workdir) as cleanup:
            await cleanup.shutdown_agents()
    assert find_running(workdir.root) == {}


def o2control_client(address: str, steps: list[list[object]]) -> list[dict[str, object]]:
    """Run the proto-only client; one reply per step."""
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "clients" /
                                               "o2control_only_client.py"),
                           str(ROOT), address, json.dumps(steps)],
                          check=False, capture_output=True, text=True, timeout=90, cwd="/")
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["step"] for r in replies] == [step[0] for step in steps]
    return [r["reply"] for r in replies]


async def test_a_client_made_only_from_o2control_proto_runs_an_environment(
        setup: Setup) -> None:
    replies = o2control_client(setup.core.address, [
        ["health", ""], ["health", "o2control.Control"], ["reflection"], ["info"], ["list"],
        ["repos"], ["templates"], ["create", setup.reference, {}], ["get", "$env", True],
        ["roles", "$env", "tiny.d*"], ["control", "$env", "STOP_ACTIVITY"],
        ["control", "$env", "START_ACTIVITY"], ["tasks"], ["task", "$task"], ["cleanup", []],
        ["detectors"], ["services"], ["control", "$env", "STOP_ACTIVITY"],
        ["destroy", "$env"], ["list"], ["get", "$env", False], ["control", "nope", "RESET"],
        ["create_async", setup.reference, {"fail_on": "START"}], ["wait", "$env", "CONFIGURED"],
        ["control", "$env", "START_ACTIVITY"], ["destroy", "$env"],
        ["create", setup.reference, {}, True], ["wait", "$env", "RUNNING"],
        ["control", "$env", "STOP_ACTIVITY"], ["wait", "$env", "NOT_FOUND"],
        ["auto", setup.reference, {"fail_on": "START"}, "req-1"], ["subscribe", "req-1"],
        ["list"], ["auto", setup.reference, {}, ""]])
    (health, control_health, reflection, info, empty, repos, templates, created, shown, roles,
     refused, started, tasks, task_detail, cleanup, detectors, services, stopped, destroyed,
     after, gone, unknown, pending, configured, failed, destroyed_too, auto, auto_running,
     auto_stopped, auto_gone, auto_request, auto_events, finally_empty,
     auto_without_id) = replies

    assert health == {"status": "SERVING"} and control_health == {"status": "SERVING"}
    assert {"o2control.Control", "nutshell.ControlExt", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= set(reflection["services"])
    assert info["state"] == "CONNECTED" and info["version"]["productName"] == "nutshell"
    assert "environmentsCount" not in info  # zero: proto3 leaves it out
    assert "environments" not in empty and "frameworkId" in empty
    [mine] = [r for r in repos["repos"] if not r["name"].endswith("/demo-templates")]
    assert mine["defaultRevision"] == "master" and [r.get("default") for r in repos["repos"]
                                                    ].count(True) == 1
    assert [t["template"] for t in templates["workflowTemplates"]] == ["demo", "tiny"]

    environment = created["environment"]
    assert environment["state"] == "CONFIGURED" and environment["rootRole"] == "tiny"
    by_class = {t["className"].rpartition("/")[2].partition("@")[0]: t
                for t in environment["tasks"]}
    task, hook = by_class["dummy"], by_class["pause"]
    assert task["deploymentInfo"]["hostname"] == "a1" and task["state"] == "CONFIGURED"
    assert hook["state"] == "STANDBY" and "pid" not in hook  # a hook runs at its trigger
    assert task["name"].endswith(f"#{task['taskId']}") and int(task["pid"]) > 0
    assert shown["environment"]["id"] == environment["id"]
    assert shown["environment"]["defaults"]["pause"] == "0"
    assert shown["workflow"]["fullPath"] == "tiny"
    assert [r["fullPath"] for r in shown["workflow"]["roles"]] == ["tiny.dummy", "tiny.pause"]
    assert [r["fullPath"] for r in roles["roles"]] == ["tiny.dummy"]

    assert refused["code"] == "INVALID_ARGUMENT"
    assert "cannot STOP_ACTIVITY" in refused["details"] and "CONFIGURED" in refused["details"]
    assert started["state"] == "RUNNING" and started["currentRunNumber"] == 1
    assert {row["after"] for row in started["nutshell-result-bin"]} == {"RUNNING", "STANDBY"}
    assert int(started["transitionDuration"]) >= 0
    listed = {t["taskId"]: t for t in tasks["tasks"]}
    assert set(listed) == {task["taskId"], hook["taskId"]}
    assert listed[task["taskId"]]["state"] == "RUNNING" and listed[task["taskId"]]["locked"]
    assert task_detail["task"]["shortInfo"]["taskId"] == task["taskId"]
    assert task_detail["task"]["envId"] == environment["id"]
    assert task_detail["task"]["taskPath"] == "tiny.dummy"
    assert "killedTasks" not in cleanup  # tasks of an environment are locked, never killed
    assert {t["taskId"] for t in cleanup["runningTasks"]} == {task["taskId"], hook["taskId"]}
    assert "detectors" not in detectors["active"] and "timestamp" in detectors["available"]
    assert "timestamp" in services
    assert stopped["state"] == "CONFIGURED" and "currentRunNumber" not in stopped
    killed = destroyed["cleanupTasksReply"]["killedTasks"]
    assert {t["taskId"] for t in killed} == {task["taskId"], hook["taskId"]}
    assert "environments" not in after
    assert gone["code"] == "NOT_FOUND" and environment["id"] in gone["details"]
    assert unknown["code"] == "NOT_FOUND"
    assert pending["environment"]["state"] == "PENDING"
    assert configured["environment"]["id"] == pending["environment"]["id"]
    assert configured["environment"]["state"] == "CONFIGURED"
    assert failed["code"] == "ABORTED" and "tiny.dummy" in failed["details"]
    error = failed["nutshell-error-bin"]
    assert error["kind"] == "TransitionFailed" and error["result"]["state"] == "ERROR"
    (row,) = [row for row in error["result"]["rows"] if row["reason"]]
    assert row["role_path"] == "tiny.dummy" and row["before"] == "CONFIGURED"
    assert len(destroyed_too["cleanupTasksReply"]["killedTasks"]) == 2
    # autoTransition: START after CONFIGURE; once the run ends, the environment is destroyed
    assert auto["environment"]["state"] == "CONFIGURED"
    assert auto_running["environment"]["currentRunNumber"] == 3  # the failed START took 2
    assert auto_stopped["state"] == "CONFIGURED" and auto_gone["code"] == "NOT_FOUND"
    # NewAutoEnvironment: its events on Subscribe(id) until it is gone (here START fails)
    assert "code" not in auto_request
    streamed = auto_events["events"]
    states = [e["environmentEvent"]["state"] for e in streamed if "environmentEvent" in e]
    assert states[0] == "STANDBY" and "CONFIGURED" in states and states[-1] == "DONE"
    assert "ERROR" in states
    assert any(e.get("taskEvent", {}).get("path") == "tiny.dummy" for e in streamed)
    assert len({e.get("environmentEvent", e.get("taskEvent", {})).get("environmentId")
                for e in streamed}) == 1
    assert "environments" not in finally_empty
    assert auto_without_id["code"] == "INVALID_ARGUMENT" and "needs an id" in auto_without_id[
        "details"]

    second = run_core(setup.workdir, f"127.0.0.1:{free_port()}")
    out, errors = second.communicate(timeout=30)
    assert second.returncode == 1 and out == ""
    assert errors.count("\n") == 1 and "hosted by another process" in errors
    assert find_running(setup.workdir.root)  # the executor the environment used
    assert setup.core.stop() == 0
    assert not (setup.workdir.root / CORE_FILE).exists()
    assert find_running(setup.workdir.root), "stopping the core must leave the executors"


async def refused_while_busy(remote: RemoteEngine, environment_id: str,
                             transition: asyncio.Task[TransitionResult]) -> EnvironmentBusy:
    """The EnvironmentBusy a second request gets while `transition` runs. CONFIGURE is
    refused from CONFIGURED and RUNNING alike, so asking before the transition began
    (or after) changes nothing."""
    while not transition.done():
        try:
            await remote.control_environment(environment_id, "CONFIGURE", user="erin")
        except EnvironmentBusy as busy:
            return busy
        except TransitionRefused:
            await asyncio.sleep(0.02)
    raise AssertionError("the transition ended before a second request found it busy")


async def test_remote_engine_gives_the_records_and_exceptions_of_the_engine(
        setup: Setup) -> None:
    remote = RemoteEngine(setup.core.address)
    # repositories need no hosting; the core, as every front-end, has the demo
    async with Engine(setup.workdir, demo=True) as local:
        [repo] = [r for r in await remote.list_repos() if not r.name.endswith("/demo-templates")]
        await local.add_repo(repo.name, "master")  # a local path lives in its engine only
        assert await remote.list_repos() == await local.list_repos()
        with pytest.raises(RepoError) as local_error:
            await local.add_repo(repo.name)
        with pytest.raises(RepoError) as remote_error:
            await remote.add_repo(repo.name)
        assert str(remote_error.value) == str(local_error.value)
        for bad in (lambda e: e.remove_repo(99), lambda e: e.set_default_repo(99),
                    lambda e: e.refresh_repos(99)):  # o2control's RPCs, the facade's errors
            with pytest.raises(RepoError) as local_error:
                await bad(local)
            with pytest.raises(RepoError) as remote_error:
                await bad(remote)
            assert str(remote_error.value) == str(local_error.value)
        await remote.set_global_default_revision("main")
        assert await remote.global_default_revision() == "main"
        await remote.set_global_default_revision("master")
        assert (await remote.list_workflow_templates(all_workflows=True)
                == await local.list_workflow_templates(all_workflows=True))
        assert (await remote.render_workflow(setup.reference)
                == await local.render_workflow(setup.reference))

    events = await remote.subscribe()
    info = await remote.create_environment(setup.reference, {"pause": 1}, user="alice")
    assert info.state == "CONFIGURED" and info.created_by == "alice"
    assert await remote.get_environment(info.id) == info
    assert await remote.list_environments() == [info]
    assert [t.task_id for t in await remote.list_tasks()] == [t.task_id for t in info.tasks]
    (root,) = await remote.query_roles(info.id, "tiny")
    assert root == await remote.get_workflow_tree(info.id)
    assert root.consolidated_stack["pause"] == "1" and set(root.task_ids) == {t.task_id for t in info.tasks}

    with pytest.raises(TransitionRefused) as refused:
        await remote.control_environment(info.id, "STOP")
    assert (refused.value.event, refused.value.state) == (EnvEvent.STOP_ACTIVITY,
                                                          EnvState.CONFIGURED)
    assert EnvEvent.START_ACTIVITY in refused.value.allowed
    assert str(refused.value).startswith(f"cannot STOP_ACTIVITY: environment {info.id} is "
                                         "CONFIGURED (allowed from CONFIGURED: ")

    starting = asyncio.create_task(remote.control_environment(info.id, "START", user="bob"))
    busy = await refused_while_busy(remote, info.id, starting)  # the pause hook holds START 1 s
    assert re.search(r"busy: START_ACTIVITY by bob since 20", str(busy))
    assert busy.busy.user == "bob" and busy.environment_id == info.id
    during = await remote.get_environment(info.id)  # the transition under way crosses the wire
    assert during.current_transition == "START_ACTIVITY" and during.transition_since is not None
    assert abs((during.transition_since - busy.busy.since).total_seconds()) < 1e-3
    started = await starting
    assert started.state == "RUNNING" and started.run_number == 1 and started.user == "bob"
    assert (await remote.get_environment(info.id)).last_result == started.rows
    assert (await remote.get_environment(info.id)).current_transition == ""

    seen = []
    while True:
        event = await events.get(timeout=5)
        assert event is not None
        seen.append(event)
        if event.kind is EventKind.ENVIRONMENT and event.message == "START_ACTIVITY ended":
            break
    assert any(e.kind is EventKind.TASK and e.state == "RUNNING" for e in seen)
    assert any((e.kind, e.message, e.user) == (EventKind.ENVIRONMENT, "START_ACTIVITY started",
                                               "bob") for e in seen)
    events.close()
    assert await events.get(timeout=5) is None

    log = await remote.task_log(info.tasks[0].task_id, 50)
    assert "START" in log

    with pytest.raises(DestroyRefused, match=f"cannot destroy environment {info.id}: it is "
                                             "RUNNING"):
        await remote.destroy_environment(info.id, allow_in_running_state=False)
    with pytest.raises(UnknownEnvironmentError, match="no environment nope"):
        await remote.get_environment("nope")
    destroyed = await remote.destroy_environment(info.id, user="alice")
    assert destroyed.state == "DONE" and destroyed.environment_id == info.id
    assert await remote.list_environments() == []

    with pytest.raises(TransitionFailed) as remote_failure:
        await remote.create_environment(setup.reference, {"fail_on": "CONFIGURE"})
    watching = await remote.subscribe()
    assert setup.core.stop() == 0  # promptly, though a subscriber still listens
    assert await watching.get(timeout=5) is None
    await remote.close()

    async with Engine(setup.workdir) as local:  # the same failure in process
        with pytest.raises(TransitionFailed) as local_failure:
            await local.create_environment(setup.reference, {"fail_on": "CONFIGURE"})
        await local.shutdown_agents()
    remote_result, local_result = remote_failure.value.result, local_failure.value.result
    assert (remote_result.event, remote_result.state) == (local_result.event, local_result.state)
    shape = [(r.role_path, r.host, r.before, r.after, r.failed) for r in remote_result.rows]
    assert shape == [(r.role_path, r.host, r.before, r.after, r.failed) for r in local_result.rows]
    first_lines = [str(failure.value).splitlines()[0].replace(failure.value.result.environment_id,
                                                              "ID")
                   for failure in (remote_failure, local_failure)]
    assert first_lines[0] == first_lines[1]
    assert len(str(remote_failure.value).splitlines()) == len(remote_result.failed) + 1
    assert "tiny.dummy" in str(remote_failure.value)

    with pytest.raises(RemoteEngineError, match=f"cannot reach the engine at {setup.core.address}"):
        await RemoteEngine(setup.core.address).list_environments()


async def test_a_core_killed_while_running_leaves_its_environment_to_the_next_core(
        setup: Setup) -> None:
    """The acceptance test of recovery with the real daemon: SIGKILL `nutshell core` while
    RUNNING; a new core shows the environment RUNNING with the same tasks and processes,
    and the next START gets the next run number."""
    async with RemoteEngine(setup.core.address) as remote:
        made = await remote.create_environment(setup.reference, user="alice")
        assert (await remote.control_environment(made.id, "START")).run_number == 1
        before = {t.task_id: t.pid for t in (await remote.get_environment(made.id)).tasks}
    setup.core.process.kill()
    assert setup.core.process.wait(timeout=10) == -signal.SIGKILL
    pids = [pid for pid in before.values() if pid]
    assert pids and all(alive(pid) for pid in pids)  # the tasks outlived their engine
    core = await start_core(setup.workdir)
    try:
        async with RemoteEngine(core.address) as remote:
            again = await remote.get_environment(made.id)
            assert (again.state, again.current_run_number) == ("RUNNING", 1)
            assert {t.task_id: t.pid for t in again.tasks} == before
            assert (await remote.control_environment(made.id, "STOP")).state == "CONFIGURED"
            restarted = await remote.control_environment(made.id, "START")
            assert restarted.ok and restarted.run_number == 2
            assert (await remote.destroy_environment(made.id)).state == "DONE"
    finally:
        assert core.stop() == 0
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_a_busy_port_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        process = run_core(workdir, address)
        out, errors = process.communicate(timeout=30)
    assert process.returncode == 1 and out == ""
    assert errors.startswith(f"error: cannot listen on {address}") and errors.count("\n") == 1
    assert not (workdir.root / CORE_FILE).exists()
    with socket.socket() as again, pytest.raises(AddressInUse, match="cannot listen on"):
        again.bind(("127.0.0.1", 0))
        again.listen()
        check_free(f"127.0.0.1:{again.getsockname()[1]}")


FAILED_RESULT = TransitionResult("e1", "CONFIGURE", "ERROR", 0, (
    TaskRow("t1", "tiny.dummy", "a1", "STANDBY", "ERROR", "CONFIGURE failed: no", 1, "/l/t1.log"),
    TaskRow("t2", "tiny.pause", "a1", "STANDBY", "STANDBY")), "alice")


@pytest.mark.parametrize("error", [
    TransitionFailed("creation of environment e1 failed; the environment is ERROR", FAILED_RESULT),
    EnvironmentBusy("e1", Busy("START_ACTIVITY", "bob", datetime.now(UTC))),
    TransitionRefused(EnvEvent.STOP_ACTIVITY, EnvState.CONFIGURED, [EnvEvent.RESET], "e1"),
    DestroyRefused("e1", EnvState.RUNNING),
    UnknownEnvironmentError("e1"),
    UnknownTaskError("t9"),
    WorkflowError("repo r, file workflows/w.yaml, role w.a, field task: no class x"),
    RepoError("repository /x is already present"),
    TemplateError(Where(repo="r", role_path="w.a"), "a == b", "undefined name a"),
    ValueError("'x' is not an environment event"),
], ids=lambda error: type(error).__name__)
def test_every_engine_error_crosses_the_wire_as_itself(error: Exception) -> None:
    rebuilt = rebuild(json.loads(trailing_metadata(error)[0][1]))
    assert type(rebuilt) is type(error) and str(rebuilt) == str(error)
    if isinstance(error, TransitionFailed):
        assert rebuilt.result == error.result  # type: ignore[attr-defined]
    if isinstance(error, EnvironmentBusy):
        assert rebuilt.busy == error.busy  # type: ignore[attr-defined]


def test_status_codes_follow_the_reference() -> None:
    failed = TransitionFailed("failed", FAILED_RESULT)
    refused = TransitionRefused(EnvEvent.DEPLOY, EnvState.RUNNING, [], "e1")
    assert status_code(failed, Operation.CONTROL) is grpc.StatusCode.ABORTED
    assert status_code(failed, Operation.CREATE) is grpc.StatusCode.INTERNAL
    assert status_code(WorkflowError("bad"), Operation.CREATE) is grpc.StatusCode.INTERNAL
    assert status_code(WorkflowError("bad"), Operation.OTHER) is grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(refused, Operation.CONTROL) is grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(UnknownEnvironmentError("e"), Operation.DESTROY) is grpc.StatusCode.NOT_FOUND
    assert status_code(RuntimeError("bug"), Operation.OTHER) is grpc.StatusCode.INTERNAL
    busy = EnvironmentBusy("e1", Busy("RESET", "", datetime.now(UTC)))
    assert status_code(busy, Operation.CONTROL) is grpc.StatusCode.FAILED_PRECONDITION


def test_remote_engine_has_every_method_of_the_engine() -> None:
    hosting = {"host", "start_hosting"}  # what hosting the engine in-process means
    for name, method in inspect.getmembers(Engine, inspect.iscoroutinefunction):
        if name.startswith("_") or name in hosting:
            continue
        remote = getattr(RemoteEngine, name, None)
        assert inspect.iscoroutinefunction(remote), f"RemoteEngine lacks {name}"
        ours = list(inspect.signature(method).parameters.values())
        theirs = list(inspect.signature(remote).parameters.values())
        assert theirs[:len(ours)] == ours, f"{name}: {theirs} is not {ours}"
        assert all(p.default is not p.empty for p in theirs[len(ours):]), name


def test_engine_events_read_as_aliecs_events() -> None:
    task = messages.event_message(EnvironmentEvent(
        EventKind.TASK, "e1", "RUNNING", task_id="t1", role_path="tiny.dummy", status="ACTIVE"))
    assert task.WhichOneof("Payload") == "taskEvent"
    assert (task.taskEvent.taskid, task.taskEvent.path, task.taskEvent.environmentId,
            task.taskEvent.state, task.taskEvent.status) == (
        "t1", "tiny.dummy", "e1", "RUNNING", "ACTIVE")
    environment = messages.event_message(EnvironmentEvent(
        EventKind.ENVIRONMENT, "e1", "CONFIGURED", user="alice", message="created"))
    assert environment.WhichOneof("Payload") == "environmentEvent"
    assert environment.environmentEvent.lastRequestUser.name == "alice"
    assert environment.timestamp == environment.timestampNano // 1_000_000 > 0


async def test_remote_engine_lists_the_agents_as_the_engine_does(setup: Setup) -> None:
    """The hosts view's agents over gRPC, then from an in-process Engine that recovered the
    same environment once the core is gone: the same records."""
    async with RemoteEngine(setup.core.address) as remote:
        info = await remote.create_environment(setup.reference, user="alice")
        (agent,) = await remote.list_agents()
    (task,) = [t for t in info.tasks if t.role_path == "tiny.dummy"]
    running = find_running(setup.workdir.root)
    assert (agent.name, agent.machine_id, agent.hostname) == ("a1", "a1", "127.0.0.1")
    assert agent.executor_running and agent.executor_pid == running["a1"].pid
    assert agent.tasks == len(info.tasks) == 2  # the dummy and the (placed) pause hook
    assert (agent.cpus, agent.mem, agent.mem_used) == (32, 131072, 32 + 8)
    assert agent.cpus_used == pytest.approx(0.02) and agent.ports_in_use == (task.control_port,)
    begin, end = map(int, agent.port_ranges.split(",")[1].split("-"))
    assert all(begin <= port <= end for port in agent.ports_in_use)
    assert setup.core.stop() == 0
    async with Engine(setup.workdir) as local:
        assert await local.list_agents() == [agent]
        await local.destroy_environment(info.id)
        (idle,) = await local.list_agents()
        assert (idle.tasks, idle.cpus_used, idle.ports_in_use) == (0, 0, ())
        await local.shutdown_agents()
        (stopped,) = await local.list_agents()
        assert not stopped.executor_running and stopped.executor_pid is None


async def test_auto_environment_events_nobody_reads_are_forgotten_after_a_grace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NewAutoEnvironment keeps its events for Subscribe(id) whether the client subscribes
    before or after the call, and forgets them a grace period after the request ended when
    nobody subscribed: a client that never subscribes does not grow the core."""
    async with Engine(WorkingDirectory(tmp_path / "home").ensure()) as engine:
        server = CoreServer(engine)
        address = await server.start("127.0.0.1:0")
        control = server.control
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = o2_grpc.ControlStub(channel)

                async def auto(request_id: str) -> set[asyncio.Task[object]]:
                    """The request (its reference names no repository: creation fails at
                    once); the background job it started."""
                    before = set(control._jobs)
                    await stub.NewAutoEnvironment(o2.NewAutoEnvironmentRequest(
                        id=request_id, workflowTemplate="nowhere/workflows/none@master"))
                    return {job for job in set(control._jobs) - before
                            if job.get_coro().__name__ == "_auto_environment"}

                async def read(request_id: str) -> list[str]:
                    return [e.environmentEvent.state async for e in
                            stub.Subscribe(o2.SubscribeRequest(id=request_id))]

                monkeypatch.setattr(server_module, "AUTO_CHANNEL_GRACE", 0.0)
                await auto("unread")
                while control._jobs:  # the request's job, then the one that forgets it
                    await asyncio.gather(*list(control._jobs))
                assert control._channels == {}
                await auto("unread")  # its id is free again
                while control._jobs:
                    await asyncio.gather(*list(control._jobs))

                monkeypatch.setattr(server_module, "AUTO_CHANNEL_GRACE", 60.0)
                early = asyncio.create_task(read("early"))  # AliECS clients often do this
                await auto("early")
                await asyncio.gather(*await auto("late"))  # the request is over
                assert "late" in control._channels  # kept for the grace period
                assert await early == await read("late") == ["ERROR"]
                assert control._channels == {}
        finally:
            await server.stop(0)
