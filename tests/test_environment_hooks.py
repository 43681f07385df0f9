"""Hooks and calls at their triggers, end to end: real executors, hook task processes, testplugin.

One workflow: an occlib dummy, testplugin calls around a hook task at
before_START_ACTIVITY (weights -10, 0 for the task, +5, +10 twice), a failing
Test call at +20 switched on as critical or not, and a hook task at DESTROY.
"""
from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine import Engine, TransitionFailed, WorkingDirectory
from engine.scheduler.local_agent import find_running
from tests.conftest import make_template_repo
from tests.test_environment_e2e import DUMMY, settings, stored

CORE_SETTINGS = """\
o2:
  components:
    aliecs:
      ANY:
        any:
          settings: |
            integrationPlugins:
              - testplugin
            testPluginEndpoint: "//127.0.0.1:00000"
"""

WORKFLOW = """\
name: hooks
defaults:
  gate: none
  marker_dir: ""
roles:
  - name: dummy
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
  - name: early
    call:
      func: testplugin.Test() + testplugin.CallOrderObserver()
      trigger: before_START_ACTIVITY-10
  - name: start-hook
    constraints:
      - attribute: machine_id
        value: a1
    defaults:
      marker: start
    task:
      load: marker
      trigger: before_START_ACTIVITY
      timeout: 10s
  - name: late
    call:
      func: testplugin.Test() + testplugin.CallOrderObserver()
      trigger: before_START_ACTIVITY+10
  - name: sees-run
    call:
      func: testplugin.CallOrderObserver() + run_number
      trigger: before_START_ACTIVITY+5
      return: seen_run_number
  - name: tie
    call:
      func: testplugin.CallOrderObserver()
      trigger: before_START_ACTIVITY+10
  - name: gate-critical
    enabled: "{{ gate == 'critical' }}"
    defaults:
      testplugin_fail: "true"
    call:
      func: testplugin.Test()
      trigger: before_START_ACTIVITY+20
  - name: gate-soft
    enabled: "{{ gate == 'soft' }}"
    defaults:
      testplugin_fail: "true"
    call:
      func: testplugin.Test()
      trigger: before_START_ACTIVITY+20
      critical: false
  - name: goodbye
    constraints:
      - attribute: machine_id
        value: a2
    defaults:
      marker: destroy
    task:
      load: marker
      trigger: DESTROY
"""

MARKER = """\
name: marker
control:
  mode: basic
defaults:
  marker_dir: ""
  marker: ""
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: >-
    echo "begin $(date +%s.%N) run=$run_number" >> {{ marker_dir }}/{{ marker }};
    sleep 0.3;
    echo "end $(date +%s.%N)" >> {{ marker_dir }}/{{ marker }}
"""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, str, Path]]:
    """An engine with two agents, testplugin enabled in the core settings and the hooks
    workflow; the executors are stopped at the end, whatever the test did."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    workdir.configuration_file.write_text(CORE_SETTINGS)
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/hooks.yaml": WORKFLOW,
        "tasks/dummy.yaml": DUMMY,
        "tasks/marker.yaml": MARKER,
    }, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/hooks@master", markers
    finally:
        await engine.shutdown_agents()
        await engine.close()
    assert find_running(workdir.root) == {}


def marker_times(path: Path) -> tuple[float, float, str]:
    """begin and end time of a hook run, and the run number it saw."""
    begin, end = path.read_text().splitlines()[:2]
    _, started, run = begin.split()
    return float(started), float(end.split()[1]), run.partition("=")[2]


def call_times(caplog: pytest.LogCaptureFixture) -> dict[str, float]:
    """When each testplugin.Test call began, by role path."""
    return {record.getMessage().split("role ")[1].split(",")[0]: record.created
            for record in caplog.records
            if record.getMessage().startswith("executing testplugin.Test call")}


def workflow_of(engine: Engine, environment_id: str):  # type: ignore[no-untyped-def]
    return engine._manager._environments[environment_id].workflow  # type: ignore[union-attr]


async def test_hooks_and_calls_run_at_their_triggers_in_weight_order(
        engine: tuple[Engine, str, Path], caplog: pytest.LogCaptureFixture) -> None:
    engine_, reference, markers = engine
    caplog.set_level(logging.INFO, logger="engine.integration.testplugin")
    info = await engine_.create_environment(reference, {"marker_dir": str(markers)})
    assert info.state == "CONFIGURED"
    assert {t.role_path for t in info.tasks} == {"hooks.dummy", "hooks.start-hook",
                                                 "hooks.goodbye"}
    assert not (markers / "start").exists()  # deployed, not run: no trigger yet

    started = await engine_.control_environment(info.id, "START")
    assert started.ok and started.state == "RUNNING" and started.run_number == 1
    workflow = workflow_of(engine_, info.id)
    order = workflow.root.user_vars["call_history"].split(",")
    # weights −10, +5, then the two +10 calls: those start together (as AliECS's goroutines),
    # so which of them reaches the plugin first is not defined
    assert order[:2] == ["hooks.early", "hooks.sees-run"]
    assert sorted(order[2:]) == ["hooks.late", "hooks.tie"]
    assert workflow.find("hooks.sees-run").user_vars["seen_run_number"] == "1"
    assert workflow.stack_of(workflow.root)["run_number"] == "1"
    begin, end, hook_run = marker_times(markers / "start")
    assert hook_run == "1"  # the hook task runs after the run-number step too
    times = call_times(caplog)
    assert times["hooks.early"] < begin and times["hooks.late"] > end
    [hook_row] = [row for row in started.rows if row.role_path == "hooks.start-hook"]
    assert hook_row.exit_code == 0 and not hook_row.failed and hook_row.host == "a1"

    stopped = await engine_.control_environment(info.id, "STOP")
    assert stopped.state == "CONFIGURED"
    assert "run_number" not in workflow.stack_of(workflow.root)
    assert not (markers / "destroy").exists()
    destroyed = await engine_.destroy_environment(info.id)
    assert destroyed.state == "DONE"
    goodbye = next(row for row in destroyed.rows if row.role_path == "hooks.goodbye")  # its run
    assert goodbye.exit_code == 0 and goodbye.host == "a2"
    assert (markers / "destroy").read_text().startswith("begin")


async def test_a_critical_call_failure_cancels_start_and_keeps_configured(
        engine: tuple[Engine, str, Path]) -> None:
    engine_, reference, markers = engine
    info = await engine_.create_environment(reference, {"marker_dir": str(markers),
                                                        "gate": "critical"})
    with pytest.raises(TransitionFailed, match="hooks.gate-critical") as failed:
        await engine_.control_environment(info.id, "START")
    result = failed.value.result
    assert result.event == "START_ACTIVITY" and result.state == "CONFIGURED"
    [row] = result.failed
    assert row.role_path == "hooks.gate-critical"
    assert "error triggered in testplugin.Test call" in row.reason
    now = await engine_.get_environment(info.id)
    assert now.state == "CONFIGURED" and now.current_run_number == 0
    assert {t.state for t in now.tasks if t.role_path == "hooks.dummy"} == {"CONFIGURED"}
    assert stored(engine_, info.id)[:2] == ("CONFIGURED", 0)
    assert "run_number" not in workflow_of(engine_, info.id).stack_of(
        workflow_of(engine_, info.id).root)
    await engine_.destroy_environment(info.id)
    assert (markers / "destroy").exists()


async def test_a_non_critical_call_failure_is_reported_and_the_run_starts(
        engine: tuple[Engine, str, Path], caplog: pytest.LogCaptureFixture) -> None:
    engine_, reference, markers = engine
    info = await engine_.create_environment(reference, {"marker_dir": str(markers),
                                                        "gate": "soft"})
    started = await engine_.control_environment(info.id, "START")
    assert started.state == "RUNNING" and started.run_number == 1 and not started.ok
    [row] = started.failed
    assert row.role_path == "hooks.gate-soft" and "error triggered" in row.reason
    assert any("hooks.gate-soft" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    await engine_.destroy_environment(info.id)
