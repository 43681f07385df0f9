"""Environments end to end: real executors, real task processes, real sqlite, real gRPC.

A small workflow on two local agents with disjoint port ranges: an occlib dummy per
host (direct) and a FairMQ-emulator sampler → sink pair joined by a channel.
"""
from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from engine import (
    Engine,
    EnvironmentBusy,
    EnvironmentInfo,
    TransitionFailed,
    TransitionRefused,
    WorkflowError,
    WorkingDirectory,
)
from engine.environment.events import EventKind
from engine.scheduler.local_agent import find_running
from engine.store import Store
from tests.conftest import make_template_repo

SETTINGS = """\
agents:
  a1:
    ports: {data}-{data_end},{control}-{control_end}
  a2:
    ports: {data2}-{data2_end},{control2}-{control2_end}
"""


def settings(offset: int) -> str:
    """Two agents with ten data and ten control ports each, at `offset` from 19000 / 32000
    (control ports below Linux's ephemeral ports, 32768 on, which connections hold)."""
    data, control = 19000 + offset, 32000 + offset
    return SETTINGS.format(data=data, data_end=data + 9, control=control,
                           control_end=control + 9, data2=data + 10, data2_end=data + 19,
                           control2=control + 10, control2_end=control + 19)

WORKFLOW = """\
name: e2e
defaults:
  hosts: '["a1", "a2"]'
  fail_on: ""
roles:
  - name: host-{{ it }}
    for:
      range: "{{ hosts }}"
      var: it
    constraints:
      - attribute: machine_id
        value: "{{ it }}"
    roles:
      - name: dummy
        task:
          load: dummy
  - name: chain
    constraints:
      - attribute: machine_id
        value: a2
    roles:
      - name: sampler
        task:
          load: fairmq-sampler
      - name: sink
        connect:
          - name: data
            type: pull
            transport: zeromq
            target: "{{ Parent().Path }}.sampler:data"
        task:
          load: fairmq-sink
"""

TOLERANT = """\
name: tolerant
roles:
  - name: steady
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
  - name: flaky
    constraints:
      - attribute: machine_id
        value: a2
    defaults:
      fail_on: START
    task:
      load: dummy
      critical: false
"""

# The occlib dummy with its failure switches as variables (shared by the engine tests).
DUMMY = f"""\
name: dummy
control:
  mode: direct
defaults:
  fail_on: ""
  eos_after: ""
  internal_error_after: ""
wants:
  cpu: 0.01
  memory: 32
command:
  shell: true
  value: "exec {sys.executable} -m occlib.examples.dummy"
  arguments:
    - "--o2-role {{{{ task_parent_role }}}}"
    - "{{{{ fail_on == '' ? '' : '--fail-on ' + fail_on }}}}"
    - "{{{{ eos_after == '' ? '' : '--eos-after ' + eos_after }}}}"
    - "{{{{ internal_error_after == '' ? '' : '--internal-error-after ' + internal_error_after }}}}"
"""

FAIRMQ = """\
name: {name}
control:
  mode: fairmq
wants:
  cpu: 0.01
  memory: 32
{channels}command:
  value: "{python}"
  arguments:
    - "-m"
    - "occlib.examples.fairmq"
"""

SAMPLER_BIND = """\
bind:
  - name: data
    type: push
    transport: zeromq
    addressing: tcp
"""

PATHS = ["e2e.chain.sampler", "e2e.chain.sink", "e2e.host-a1.dummy", "e2e.host-a2.dummy"]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    """An engine on a fresh working directory with two agents and the e2e workflow;
    the executors are stopped at the end, whatever the test did."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    offset = 20 * random.randrange(38)  # runs side by side rarely share ports
    workdir.settings_file.write_text(settings(offset))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/e2e.yaml": WORKFLOW,
        "workflows/tolerant.yaml": TOLERANT,
        "tasks/dummy.yaml": DUMMY,
        "tasks/fairmq-sampler.yaml": FAIRMQ.format(name="fairmq-sampler", channels=SAMPLER_BIND,
                                                   python=sys.executable),
        "tasks/fairmq-sink.yaml": FAIRMQ.format(name="fairmq-sink", channels="",
                                                python=sys.executable),
    }, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/e2e@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()
    assert find_running(workdir.root) == {}



async def until_idle(engine: Engine, environment_id: str, timeout: float = 30) -> EnvironmentInfo:
    """The environment once no transition runs on it: a "done" or ERROR event comes before
    the transition lets go of it ("<EVENT> ended"), and a request before then is busy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (info := await engine.get_environment(environment_id)).current_transition:
        assert asyncio.get_running_loop().time() < deadline, f"{environment_id} stays busy"
        await asyncio.sleep(0.02)
    return info

def stored(engine: Engine, environment_id: str) -> tuple[str, int, list[str]]:
    """What a fresh connection to the store reads: state, run number, task states."""
    with Store.open(engine.workdir) as store:
        record = store.environments.load(environment_id)
        tasks = store.tasks.by_environment(environment_id)
    return record.state, record.current_run_number, [t.state for t in tasks]


def pids(info: EnvironmentInfo) -> list[int]:
    return [task.pid for task in info.tasks if task.pid is not None]


async def test_a_full_cycle_with_two_runs_and_nothing_left(engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    events = await engine_.subscribe()
    info = await engine_.create_environment(reference, user="alice")
    assert info.state == "CONFIGURED" and info.created_by == "alice"
    assert sorted(t.role_path for t in info.tasks) == PATHS
    assert {t.host for t in info.tasks} == {"a1", "a2"}
    assert all(t.state == "CONFIGURED" and t.status == "ACTIVE" for t in info.tasks)
    assert len(pids(info)) == 4 and all(psutil.pid_exists(pid) for pid in pids(info))
    ports = {t.control_port for t in info.tasks}
    assert all(32000 <= port < 32768 for port in ports) and len(ports) == 4
    assert stored(engine_, info.id) == ("CONFIGURED", 0, ["CONFIGURED"] * 4)
    with Store.open(engine_.workdir) as store:
        assert store.environments.load_role_tree(info.id).tree["name"] == "e2e"
    assert [row.after for row in info.last_result] == ["CONFIGURED"] * 4

    run_numbers = []
    for _ in range(2):
        started = await engine_.control_environment(info.id, "START_ACTIVITY", user="bob")
        assert started.ok and started.state == "RUNNING"
        assert {(r.before, r.after) for r in started.rows} == {("CONFIGURED", "RUNNING")}
        run_numbers.append(started.run_number)
        assert stored(engine_, info.id) == ("RUNNING", started.run_number, ["RUNNING"] * 4)
        stopped = await engine_.control_environment(info.id, "stop", user="bob")
        assert stopped.state == "CONFIGURED" and stopped.run_number == 0
        assert stored(engine_, info.id) == ("CONFIGURED", 0, ["CONFIGURED"] * 4)
    assert run_numbers == [1, 2]
    current = await engine_.get_environment(info.id)
    assert current.last_run_number == 2

    reset = await engine_.control_environment(info.id, "RESET")
    assert reset.state == "DEPLOYED" and {r.after for r in reset.rows} == {"STANDBY"}
    assert stored(engine_, info.id) == ("DEPLOYED", 0, ["STANDBY"] * 4)
    configured = await engine_.control_environment(info.id, "CONFIGURE")
    assert configured.state == "CONFIGURED"

    log = Path(next(t.log_path for t in info.tasks if t.role_path == "e2e.host-a1.dummy"))
    assert "START run=1" in log.read_text() and "START run=2" in log.read_text()
    sampler = next(t for t in info.tasks if t.role_path == "e2e.chain.sampler")
    sink_log = Path(next(t.log_path for t in info.tasks if t.role_path == "e2e.chain.sink"))
    bound = sampler.control_port and [line for line in sink_log.read_text().splitlines()
                                      if "chans.data.0.address=tcp://127.0.0.1:19" in line]
    assert bound, "the sink was not configured with the sampler's data endpoint"

    destroyed = await engine_.destroy_environment(info.id, user="alice")
    assert destroyed.state == "DONE" and len(destroyed.rows) == 4
    assert await engine_.list_environments() == []
    with Store.open(engine_.workdir) as store:
        assert store.environments.find(info.id) is None
        assert store.tasks.by_environment(info.id) == []
    for pid in pids(info):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    seen = []
    while not events.queue.empty():
        seen.append(events.queue.get_nowait())
    events.close()
    env_states = [e.state for e in seen if e and e.kind is EventKind.ENVIRONMENT]
    assert env_states[0] == "STANDBY" and env_states[-1] == "DONE"
    assert "RUNNING" in env_states
    assert any(e.kind is EventKind.TASK and e.state == "RUNNING" for e in seen if e)


async def test_a_critical_configure_failure_names_the_task_and_leaves_nothing(
        engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    with pytest.raises(TransitionFailed) as failed:
        await engine_.create_environment(reference, {"fail_on": "CONFIGURE"}, user="carol")
    result = failed.value.result
    assert result.event == "CONFIGURE" and result.state == "ERROR"
    rows = {row.role_path: row for row in result.failed}
    assert set(rows) == {"e2e.host-a1.dummy", "e2e.host-a2.dummy"}
    row = rows["e2e.host-a1.dummy"]
    assert row.host == "a1" and row.before == "STANDBY" and row.reason
    assert row.log_path.endswith(".log") and Path(row.log_path).exists()
    assert "e2e.host-a1.dummy" in str(failed.value)
    assert await engine_.list_environments() == []
    with Store.open(engine_.workdir) as store:
        assert store.environments.list() == [] and store.tasks.list() == []
    for agent in find_running(engine_.workdir.root):
        client = engine_._manager.agents.client(agent)  # type: ignore[union-attr]
        assert (await client.list_tasks()).tasks == ()


async def test_an_invalid_or_concurrent_event_changes_nothing(engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    info = await engine_.create_environment(reference)
    with pytest.raises(TransitionRefused, match="cannot STOP_ACTIVITY.*is CONFIGURED"):
        await engine_.control_environment(info.id, "STOP_ACTIVITY")
    with pytest.raises(TransitionRefused, match="cannot DEPLOY"):
        await engine_.control_environment(info.id, "DEPLOY")
    assert (await engine_.get_environment(info.id)).state == "CONFIGURED"
    assert stored(engine_, info.id)[0] == "CONFIGURED"
    first = asyncio.create_task(engine_.control_environment(info.id, "START", user="dave"))
    await asyncio.sleep(0)
    with pytest.raises(EnvironmentBusy, match=r"busy: START_ACTIVITY by dave since 20"):
        await engine_.control_environment(info.id, "RESET", user="erin")
    assert (await first).state == "RUNNING"
    destroyed = await engine_.destroy_environment(info.id)
    assert destroyed.state == "DONE"


async def test_the_demo_runs_with_its_hook_and_call(engine: tuple[Engine, str]) -> None:
    from engine.demo import ensure_demo_repository
    from tests.test_environment_hooks import CORE_SETTINGS

    engine_, _ = engine
    engine_.workdir.configuration_file.write_text(CORE_SETTINGS)  # testplugin on
    engine_._workflows().config.reload()
    demo = ensure_demo_repository(engine_.workdir, engine_._workflows().repos) + "/workflows/demo"
    info = await engine_.create_environment(demo, {"hosts": '["a1", "a2"]'})
    assert info.state == "CONFIGURED" and {t.host for t in info.tasks} == {"a1", "a2"}
    assert sum(1 for t in info.tasks if t.role_path.endswith(".start-hook")) == 2
    assert all(not row.failed for row in info.last_result)
    root = engine_._manager._environments[info.id].workflow.root  # type: ignore[union-attr]
    assert root.user_vars["demo.testplugin_called"] == "true"  # ran at after_CONFIGURE
    started = await engine_.control_environment(info.id, "START")
    assert started.ok and started.state == "RUNNING" and started.run_number == 1
    hooks = [row for row in started.rows if row.role_path.endswith(".start-hook")]
    assert len(hooks) == 2 and {row.exit_code for row in hooks} == {0}
    log = Path(hooks[0].log_path).read_text()
    assert "START hook" in log and info.id in log
    stopped = await engine_.control_environment(info.id, "STOP")
    assert stopped.state == "CONFIGURED"
    assert (await engine_.destroy_environment(info.id)).state == "DONE"
    assert await engine_.list_environments() == []


async def test_an_emulated_demo_answers_unloaded_plugins_with_a_no_op(
        engine: tuple[Engine, str], caplog: pytest.LogCaptureFixture) -> None:
    from engine.demo import ensure_demo_repository

    engine_, _ = engine  # no core settings: testplugin is not loaded
    demo = ensure_demo_repository(engine_.workdir, engine_._workflows().repos) + "/workflows/demo"
    info = await engine_.create_environment(demo, {"hosts": '["a1"]'}, emulate=True)
    assert info.state == "CONFIGURED" and all(not row.failed for row in info.last_result)
    assert any("testplugin.Test() answered with a no-op" in r.getMessage()
               for r in caplog.records)
    assert (await engine_.control_environment(info.id, "START")).ok
    await engine_.destroy_environment(info.id)


async def test_a_crashed_critical_task_puts_the_environment_in_error(
        engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    info = await engine_.create_environment(reference)
    await engine_.control_environment(info.id, "START")
    events = await engine_.subscribe()
    victim = next(t for t in info.tasks if t.role_path == "e2e.host-a2.dummy")
    assert victim.pid is not None
    psutil.Process(victim.pid).kill()

    async def error_reached() -> None:
        async for event in events:
            if event.kind is EventKind.ENVIRONMENT and event.state == "ERROR":
                return
    await asyncio.wait_for(error_reached(), 10)
    events.close()
    now = await until_idle(engine_, info.id)
    assert now.state == "ERROR" and now.last_transition == "GO_ERROR"
    [row] = now.last_result
    assert row.role_path == "e2e.host-a2.dummy" and row.host == "a2"
    assert "critical task 'e2e.host-a2.dummy' on host 'a2' transitioned to ERROR" in row.reason
    assert now.roles["e2e"][0] == "ERROR" and now.current_run_number == 0
    survivors = {t.role_path: t.state for t in now.tasks}
    assert survivors["e2e.host-a1.dummy"] == "CONFIGURED"  # stopped by GO_ERROR
    assert stored(engine_, info.id)[0] == "ERROR"
    with pytest.raises(TransitionRefused, match="allowed from ERROR: RECOVER"):
        await engine_.control_environment(info.id, "START")
    await engine_.destroy_environment(info.id)
    assert await engine_.list_environments() == []


async def test_a_non_critical_failure_does_not_stop_the_run(engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    info = await engine_.create_environment(reference.replace("/e2e@", "/tolerant@"))
    started = await engine_.control_environment(info.id, "START")
    assert started.state == "RUNNING" and started.run_number == 1 and not started.ok
    [failed] = started.failed
    assert failed.role_path == "tolerant.flaky" and failed.host == "a2" and failed.reason
    await asyncio.sleep(1.0)  # past the ERROR grace: a critical failure would have acted by now
    now = await engine_.get_environment(info.id)
    assert now.state == "RUNNING" and now.roles["tolerant"][0] == "RUNNING"
    assert stored(engine_, info.id)[:2] == ("RUNNING", 1)
    stopped = await engine_.control_environment(info.id, "STOP")
    assert stopped.state == "CONFIGURED"
    await engine_.destroy_environment(info.id)


async def test_an_emulated_workflow_runs_its_tasks_as_emulators(engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    info = await engine_.create_environment(reference, emulate=True)
    dummy = next(t for t in info.tasks if t.role_path == "e2e.host-a1.dummy")
    assert dummy.pid is not None
    assert psutil.Process(dummy.pid).cmdline()[1:3] == ["-m", "occlib.examples.dummy"]
    assert (await engine_.control_environment(info.id, "START")).run_number == 1
    await engine_.destroy_environment(info.id)


async def test_a_caller_may_name_the_environment_but_never_twice(
        engine: tuple[Engine, str]) -> None:
    engine_, reference = engine
    made = await engine_.create_environment(reference, environment_id="named1")
    assert made.id == "named1"
    for bad, reason in (("named1", "already in use"), ("no spaces", "letters or digits")):
        with pytest.raises(WorkflowError, match=reason):
            await engine_.create_environment(reference, environment_id=bad)
    assert [info.id for info in await engine_.list_environments()] == ["named1"]
    assert len((await engine_.get_environment("named1")).tasks) == len(made.tasks)
    await engine_.destroy_environment("named1")
