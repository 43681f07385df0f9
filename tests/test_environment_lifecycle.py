"""The environment lifecycle beyond the user's transitions: runs that end by themselves,
EXIT and RECOVER, GO_ERROR with its hooks, hook tasks before DEPLOY, call events,
detector exclusivity, deploy retries, START/STOP arguments and runtime variables.

Real executors on two local agents, real occlib dummies and basic tasks, real sqlite.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from engine import (
    DetectorInUseError,
    Engine,
    EnvironmentEvent,
    EventKind,
    TransitionFailed,
    TransitionRefused,
    WorkingDirectory,
)
from engine.environment import deployment, runtime_vars
from engine.environment.detectors import environment_detectors
from engine.environment.events import Subscription
from engine.environment.runend import CORE_USER, TIMER_USER
from engine.scheduler.local_agent import find_running
from engine.store import Store
from engine.workflow.roles import WorkflowError
from tests.conftest import make_template_repo
from tests.test_environment_e2e import DUMMY, settings, stored, until_idle
from tests.test_environment_hooks import CORE_SETTINGS

RUNS = """\
name: runs
defaults:
  eos_after: ""
  basic_enabled: "false"
  basic_command: "sleep 0.3"
  auto_stop_enabled: "false"
  auto_stop_timeout: ""
  fail_on: ""
  late_gate: "false"
  internal_error_after: ""
roles:
  - name: dummy
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
  - name: basic
    enabled: "{{ basic_enabled == 'true' }}"
    constraints:
      - attribute: machine_id
        value: a2
    task:
      load: basic
  - name: before-error
    call:
      func: testplugin.CallOrderObserver()
      trigger: before_GO_ERROR
  - name: after-error
    call:
      func: testplugin.CallOrderObserver()
      trigger: after_GO_ERROR-1
  - name: late-gate
    enabled: "{{ late_gate == 'true' }}"
    defaults:
      testplugin_fail: "true"
    call:
      func: testplugin.Test()
      trigger: after_START_ACTIVITY+5
"""

BASIC = """\
name: basic
control:
  mode: basic
defaults:
  basic_command: "true"
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: "{{ basic_command }}"
"""

EARLY = """\
name: early
defaults:
  marker_file: ""
roles:
  - name: dummy
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
  - name: shm-cleanup
    constraints:
      - attribute: machine_id
        value: a2
    task:
      load: marker
      trigger: before_DEPLOY
      timeout: 10s
      critical: false
"""

MARKER = """\
name: marker
control:
  mode: basic
defaults:
  marker_file: ""
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: "echo ran {{ environment_id }} >> {{ marker_file }}"
"""

BIG = """\
name: big
defaults:
  nowhere_enabled: "false"
roles:
  - name: big
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: bigdummy
  - name: nowhere
    enabled: "{{ nowhere_enabled == 'true' }}"
    constraints:
      - attribute: machine_id
        value: a9
    task:
      load: dummy
"""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, Callable[[str], str]]]:
    """An engine with two agents, testplugin on, and this module's workflows; `ref(name)`
    is a workflow's reference. The executors are stopped at the end, whatever happened."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    workdir.configuration_file.write_text(CORE_SETTINGS)
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/runs.yaml": RUNS,
        "tasks/dummy.yaml": DUMMY,
        "tasks/basic.yaml": BASIC,
        "workflows/early.yaml": EARLY,
        "tasks/marker.yaml": MARKER,
        "workflows/big.yaml": BIG,
        "tasks/bigdummy.yaml": DUMMY.replace("name: dummy", "name: bigdummy")
                                    .replace("memory: 32", "memory: 100000"),
    }, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, lambda name: f"{added.repo}/workflows/{name}@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()
    assert find_running(workdir.root) == {}


async def until(events: Subscription, wanted: Callable[[EnvironmentEvent], bool],
                timeout: float = 30) -> EnvironmentEvent:
    """The first event that is `wanted` (TimeoutError after `timeout` s)."""
    async def first() -> EnvironmentEvent:
        async for event in events:
            if wanted(event):
                return event
        raise AssertionError("the subscription ended")
    return await asyncio.wait_for(first(), timeout)


def settled(state: str, user: str = "") -> Callable[[EnvironmentEvent], bool]:
    """An environment event of a finished transition into `state` (by `user`, if given)."""
    return lambda e: (e.kind is EventKind.ENVIRONMENT and e.state == state
                      and e.message.endswith(" done") and (not user or e.user == user))


# ---------------------------------------------------------------- 1. runs ending by themselves

async def test_end_of_stream_stops_the_run_as_the_core(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"), {"eos_after": "20"}, user="alice")
    events = await engine_.subscribe()
    started = await engine_.control_environment(info.id, "START", user="alice")
    assert started.state == "RUNNING" and started.run_number == 1
    stop = await until(events, settled("CONFIGURED"))
    events.close()
    assert stop.user == CORE_USER
    now = await until_idle(engine_, info.id)
    assert now.state == "CONFIGURED" and now.last_transition == "STOP_ACTIVITY"
    assert now.current_run_number == 0 and now.last_run_number == 1
    assert {t.state for t in now.tasks} == {"CONFIGURED"}
    assert stored(engine_, info.id)[:2] == ("CONFIGURED", 0)
    await engine_.destroy_environment(info.id)


async def test_a_basic_task_ending_stops_the_run_only_once_every_basic_task_ended(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    # A basic task still running holds the run, whatever the dummy's end of stream says.
    info = await engine_.create_environment(ref("runs"), {
        "basic_enabled": "true", "basic_command": "sleep 30", "eos_after": "5"})
    assert {t.role_path for t in info.tasks} == {"runs.dummy", "runs.basic"}
    await engine_.control_environment(info.id, "START")
    await asyncio.sleep(0.4)  # the dummy's end of stream came after 0.05 s
    assert (await engine_.get_environment(info.id)).state == "RUNNING"
    stopped = await engine_.control_environment(info.id, "STOP")
    assert stopped.state == "CONFIGURED" and stopped.ok
    await engine_.destroy_environment(info.id)

    info = await engine_.create_environment(ref("runs"), {"basic_enabled": "true",
                                                          "basic_command": "sleep 0.3"})
    events = await engine_.subscribe()
    started = await engine_.control_environment(info.id, "START", user="bob")
    stop = await until(events, settled("CONFIGURED"))
    events.close()
    assert stop.user == CORE_USER
    now = await until_idle(engine_, info.id)
    assert now.last_run_number == started.run_number and {t.state for t in now.tasks} == {"CONFIGURED"}
    workflow = engine_._manager._environments[info.id].workflow  # type: ignore[union-attr]
    basic = workflow.find("runs.basic")
    assert basic.user_vars["taskResult.exitCode"] == "0"
    assert basic.user_vars["taskResult.finalStatus"] == "TASK_FINISHED"
    await engine_.destroy_environment(info.id)


async def test_auto_stop_ends_the_run_as_the_timer_unless_stopped_before(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"), {"auto_stop_enabled": "true",
                                                          "auto_stop_timeout": "400ms"})
    events = await engine_.subscribe()
    started = await engine_.control_environment(info.id, "START", user="carol")
    stop = await until(events, settled("CONFIGURED"))
    assert stop.user == TIMER_USER
    assert (await engine_.get_environment(info.id)).last_run_number == started.run_number

    # A STOP before the timeout cancels the timer: nobody stops the next run by surprise.
    await until_idle(engine_, info.id)  # the timer's stop is over ("ended" published)
    drain(events)  # what the timer's stop published
    await engine_.control_environment(info.id, "START", user="carol")
    await engine_.control_environment(info.id, "STOP", user="carol")
    await asyncio.sleep(0.6)  # past the 400 ms the timer would have waited
    assert not [e for e in drain(events) if e.user == TIMER_USER]
    events.close()
    assert (await engine_.get_environment(info.id)).state == "CONFIGURED"
    await engine_.destroy_environment(info.id)

    with pytest.raises(WorkflowError, match="auto_stop_timeout 'soon' is not a positive"):
        await engine_.create_environment(ref("runs"), {"auto_stop_enabled": "true",
                                                       "auto_stop_timeout": "soon"})
    assert await engine_.list_environments() == []


def drain(events: Subscription) -> list[EnvironmentEvent]:
    seen = []
    while not events.queue.empty():
        event = events.queue.get_nowait()
        if event is not None:
            seen.append(event)
    return seen


async def test_an_internal_error_of_a_critical_task_puts_the_environment_in_error(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"), {"internal_error_after": "10"})
    events = await engine_.subscribe()
    await engine_.control_environment(info.id, "START")
    error = await until(events, lambda e: e.kind is EventKind.ENVIRONMENT and e.state == "ERROR")
    events.close()
    assert error.user == CORE_USER
    now = await until_idle(engine_, info.id)
    [row] = now.last_result
    assert now.last_transition == "GO_ERROR" and row.role_path == "runs.dummy"
    assert "internal error" in row.reason
    await engine_.destroy_environment(info.id)


# ---------------------------------------------------------------- 2. EXIT and RECOVER

async def test_exit_kills_the_tasks_and_forgets_the_environment(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"), {"basic_enabled": "true",
                                                          "basic_command": "sleep 30"})
    await engine_.control_environment(info.id, "START")
    with pytest.raises(TransitionRefused, match=r"cannot EXIT.*allowed from RUNNING: STOP_ACTIVITY\)"):
        await engine_.control_environment(info.id, "EXIT")
    with pytest.raises(TransitionRefused, match="cannot RECOVER"):
        await engine_.control_environment(info.id, "RECOVER")
    assert (await engine_.get_environment(info.id)).state == "RUNNING"
    await engine_.control_environment(info.id, "STOP")
    exited = await engine_.control_environment(info.id, "exit", user="dave")
    assert exited.state == "DONE" and exited.event == "EXIT" and exited.user == "dave"
    assert {row.role_path for row in exited.rows} == {"runs.dummy", "runs.basic"}
    assert await engine_.list_environments() == []
    with Store.open(engine_.workdir) as store:
        assert store.environments.find(info.id) is None and store.tasks.list() == []
    for task in info.tasks:
        assert task.pid is None or not psutil.pid_exists(task.pid) or \
            psutil.Process(task.pid).status() == psutil.STATUS_ZOMBIE


async def test_recover_brings_a_crashed_and_a_failed_task_back_to_standby(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"))
    events = await engine_.subscribe()
    await engine_.control_environment(info.id, "START")
    [dummy] = info.tasks
    assert dummy.pid is not None
    psutil.Process(dummy.pid).kill()
    await until(events, lambda e: e.kind is EventKind.ENVIRONMENT and e.state == "ERROR")
    events.close()
    await until_idle(engine_, info.id)
    recovered = await engine_.control_environment(info.id, "RECOVER", user="erin")
    assert recovered.state == "DEPLOYED" and recovered.ok
    now = await engine_.get_environment(info.id)
    [again] = now.tasks
    assert again.task_id != dummy.task_id and again.state == "STANDBY" and again.pid
    assert stored(engine_, info.id) == ("DEPLOYED", 0, ["STANDBY"])
    await engine_.control_environment(info.id, "CONFIGURE")
    started = await engine_.control_environment(info.id, "START")
    assert started.ok and started.state == "RUNNING"
    await engine_.destroy_environment(info.id)

    # A task that failed its transition stays alive in ERROR: OCC RECOVER takes it back.
    info = await engine_.create_environment(ref("runs"), {"fail_on": "START"})
    with pytest.raises(TransitionFailed):
        await engine_.control_environment(info.id, "START")
    [task] = (await engine_.get_environment(info.id)).tasks
    assert task.state == "ERROR"
    recovered = await engine_.control_environment(info.id, "RECOVER")
    assert recovered.state == "DEPLOYED"
    [row] = recovered.rows
    assert (row.before, row.after) == ("ERROR", "STANDBY") and row.task_id == task.task_id
    await engine_.destroy_environment(info.id)


# ---------------------------------------------------------------- 3. GO_ERROR and its hooks

async def test_a_critical_after_hook_failure_sends_the_environment_through_go_error(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"), {"late_gate": "true"})
    events = await engine_.subscribe()
    with pytest.raises(TransitionFailed, match="runs.late-gate") as failed:
        await engine_.control_environment(info.id, "START", user="frank")
    seen = drain(events)
    events.close()
    # 5. every call's start and end is an event (Ev_CallEvent), and every event names the user
    calls = [(e.role_path, e.call_status) for e in seen if e.kind is EventKind.CALL]
    assert calls == [("runs.late-gate", "STARTED"), ("runs.late-gate", "DONE_ERROR"),
                     ("runs.before-error", "STARTED"), ("runs.before-error", "DONE_OK"),
                     ("runs.after-error", "STARTED"), ("runs.after-error", "DONE_OK")]
    gate = next(e for e in seen if e.kind is EventKind.CALL and e.call_status == "DONE_ERROR")
    assert gate.func == "testplugin.Test()" and "error triggered" in gate.error
    assert gate.traits is not None and gate.traits.trigger == "after_START_ACTIVITY+5"
    assert gate.traits.critical and gate.environment_id == info.id
    assert {e.user for e in seen} == {"frank"}
    assert {e.kind for e in seen} == {EventKind.CALL, EventKind.TASK, EventKind.ENVIRONMENT}
    result = failed.value.result
    assert result.event == "START_ACTIVITY" and result.state == "ERROR" and result.user == "frank"
    [row] = result.failed
    assert row.role_path == "runs.late-gate" and "error triggered" in row.reason
    now = await engine_.get_environment(info.id)
    assert now.state == "ERROR" and now.current_run_number == 0
    assert now.last_run_number == 1
    assert {t.state for t in now.tasks} == {"CONFIGURED"}  # GO_ERROR stopped the run
    workflow = engine_._manager._environments[info.id].workflow  # type: ignore[union-attr]
    assert workflow.root.user_vars["call_history"].split(",") == ["runs.before-error",
                                                                  "runs.after-error"]
    assert stored(engine_, info.id)[:2] == ("ERROR", 0)
    recovered = await engine_.control_environment(info.id, "RECOVER")
    assert recovered.state == "DEPLOYED"
    await engine_.destroy_environment(info.id)


# ---------------------------------------------------------------- 4. hook tasks before DEPLOY

async def test_a_before_deploy_hook_task_is_deployed_first_and_runs(
        engine: tuple[Engine, Callable[[str], str]], tmp_path: Path) -> None:
    engine_, ref = engine
    marker = tmp_path / "cleanup"
    events = await engine_.subscribe()
    info = await engine_.create_environment(ref("early"), {"marker_file": str(marker)})
    assert info.state == "CONFIGURED"
    assert marker.read_text() == f"ran {info.id}\n"
    hook = next(t for t in info.tasks if t.role_path == "early.shm-cleanup")
    dummy = next(t for t in info.tasks if t.role_path == "early.dummy")
    assert hook.host == "a2"
    launched = [e.task_id for e in drain(events) if e.kind is EventKind.TASK]
    assert launched.index(hook.task_id) < launched.index(dummy.task_id)  # deployed first
    events.close()
    await engine_.destroy_environment(info.id)


# ---------------------------------------------------------------- 6. detector exclusivity

async def test_a_detector_is_held_by_one_environment_until_it_is_destroyed(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    first = await engine_.create_environment(ref("runs"), {"detectors": '["TPC", "ITS"]'})
    assert first.detectors == ("ITS", "TPC")
    with Store.open(engine_.workdir) as store:
        assert store.environments.detector_holders() == {"ITS": first.id, "TPC": first.id}
    with pytest.raises(DetectorInUseError,
                       match=f"detector ITS is already in use by environment {first.id}"):
        await engine_.create_environment(ref("runs"), {"detectors": '["ITS", "MCH"]'})
    assert [info.id for info in await engine_.list_environments()] == [first.id]
    for agent in find_running(engine_.workdir.root):  # nothing of the refused one deployed
        client = engine_._manager.agents.client(agent)  # type: ignore[union-attr]
        assert {t.task_id for t in (await client.list_tasks()).tasks} <= \
            {t.task_id for t in first.tasks}
    with pytest.raises(WorkflowError, match="variable detectors 'TPC' is not a JSON list"):
        await engine_.create_environment(ref("runs"), {"detectors": "TPC"})
    workflow = engine_._manager._environments[first.id].workflow  # type: ignore[union-attr]
    workflow.env_user_vars["detectors"] = '{"error": "detector not found for host \'a1\'"}'
    assert environment_detectors(workflow) == ()  # inventory.DetectorsForHosts failed: none

    await engine_.destroy_environment(first.id)
    second = await engine_.create_environment(ref("runs"), {"detectors": '["ITS"]'})
    with Store.open(engine_.workdir) as store:
        assert store.environments.detector_holders() == {"ITS": second.id}
    await engine_.destroy_environment(second.id)
    with Store.open(engine_.workdir) as store:
        assert store.environments.detector_holders() == {}


# ---------------------------------------------------------------- 7. deployment, arguments, variables

async def test_deploy_retries_while_resources_are_short_and_names_what_cannot_be_placed(
        engine: tuple[Engine, Callable[[str], str]], monkeypatch: pytest.MonkeyPatch) -> None:
    engine_, ref = engine
    monkeypatch.setattr(deployment, "ATTEMPT_INTERVAL", 0.5)
    first = await engine_.create_environment(ref("big"))  # holds most of a1's memory

    async def release() -> None:
        await asyncio.sleep(0.1)
        await engine_.destroy_environment(first.id)
    releasing = asyncio.create_task(release())
    second = await engine_.create_environment(ref("big"))  # placed on a later attempt
    await releasing
    assert second.state == "CONFIGURED"

    monkeypatch.setattr(deployment, "ATTEMPT_INTERVAL", 0.05)
    with pytest.raises(TransitionFailed) as failed:
        await engine_.create_environment(ref("big"))
    [row] = failed.value.result.failed
    assert row.role_path == "big.big" and row.before == "-"
    assert row.reason.startswith("undeployed after 5 attempts: role big.big: ")
    assert "mem" in row.reason

    with pytest.raises(TransitionFailed) as failed:  # hopeless: no retry
        await engine_.create_environment(ref("big"), {"nowhere_enabled": "true"})
    rows = {row.role_path: row.reason for row in failed.value.result.failed}
    assert rows["big.nowhere"] == ("UNDEPLOYABLE: role big.nowhere: no resource offer for "
                                   "required host a9")
    assert rows["big.big"].startswith("undeployed after 1 attempt: ")
    assert [info.id for info in await engine_.list_environments()] == [second.id]
    await engine_.destroy_environment(second.id)


async def test_start_and_stop_send_the_run_variables_in_both_casings_and_persist_them(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"), {"fill_info_fill_number": "8123"})
    started = await engine_.control_environment(info.id, "START")
    run = started.run_number
    tree = await engine_._manager.store.load_role_tree(info.id)  # type: ignore[union-attr]
    assert tree.runtime_vars[runtime_vars.ROOT_VARS] == {"run_number": str(run),
                                                         "runNumber": str(run)}
    start_ms = tree.runtime_vars[runtime_vars.ENVIRONMENT]["run_start_time_ms"]
    assert int(start_ms) > 0
    await engine_.control_environment(info.id, "STOP")
    tree = await engine_._manager.store.load_role_tree(info.id)  # type: ignore[union-attr]
    assert tree.runtime_vars[runtime_vars.ROOT_VARS] == {"last_run_number": str(run)}
    end_ms = tree.runtime_vars[runtime_vars.ENVIRONMENT]["run_end_time_ms"]

    lines = Path(info.tasks[0].log_path).read_text().splitlines()
    start = next(line for line in lines if ": START run=" in line)
    stop = next(line for line in lines if ": STOP run=" in line)
    for pair in (f"runNumber={run}", f"run_number={run}", "cleanup=0",
                 f"run_start_time_ms={start_ms}", f"runStartTimeMs={start_ms}",
                 "fill_info_fill_number=8123", "fillInfoFillNumber=8123"):
        assert pair in start, pair
    for pair in (f"run_end_time_ms={end_ms}", f"runEndTimeMs={end_ms}",
                 "fill_info_fill_number=8123", "fillInfoFillNumber=8123"):
        assert pair in stop, pair
    assert "runNumber" not in stop

    # What a restarted engine reads back onto a freshly loaded workflow.
    workflow = engine_._manager._environments[info.id].workflow  # type: ignore[union-attr]
    saved = runtime_vars.collect(workflow)
    workflow.root.vars.pop("last_run_number")
    workflow.env_user_vars.pop("run_end_time_ms")
    assert runtime_vars.apply(workflow, {**saved, "gone.role": {"x": "1"}}) == ["gone.role"]
    assert runtime_vars.collect(workflow) == saved
    await engine_.destroy_environment(info.id)


async def test_destroy_can_refuse_a_running_environment_force_it_and_keep_its_tasks(
        engine: tuple[Engine, Callable[[str], str]]) -> None:
    engine_, ref = engine
    info = await engine_.create_environment(ref("runs"))
    await engine_.control_environment(info.id, "START")
    with pytest.raises(TransitionRefused, match="cannot destroy environment .* it is RUNNING"):
        await engine_.destroy_environment(info.id, allow_in_running_state=False)
    assert (await engine_.get_environment(info.id)).state == "RUNNING"
    destroyed = await engine_.destroy_environment(info.id, keep_tasks=True, force=True,
                                                  allow_in_running_state=False)
    assert destroyed.state == "DONE" and await engine_.list_environments() == []
    [task] = info.tasks
    assert task.pid is not None and psutil.pid_exists(task.pid)  # released, still running
    with Store.open(engine_.workdir) as store:
        [record] = store.tasks.list()
        assert record.task_id == task.task_id and not record.locked
        assert record.environment_id == ""
    killed, running = await engine_.cleanup_tasks([task.task_id])
    assert [t.task_id for t in killed] == [task.task_id] and running == []
