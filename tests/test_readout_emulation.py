"""readout-dataflow from the corpus, emulated, end to end on two local agents.

The issue's promise: `--emulate` runs the main ALICE workflow with its default
variables on local agents. Real executors, real emulator processes, real gRPC,
real sqlite; the corpus repository is used by path (the corpus_repo fixture
commits a copy in a temp dir, never in the project).
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from engine import Engine, EnvironmentInfo, TaskInfo, WorkingDirectory
from engine.emulation import DUMMY_MODULE, FAIRMQ_MODULE
from engine.scheduler.local_agent import find_running
from engine.store import Store

HOSTS = ["flp001", "flp002"]
# Two local agents named as the built-in ones, on port ranges of their own: test runs side by
# side (and other suites' default agents) rarely share a port.
SETTINGS = """\
agents:
  flp001:
    ports: {data}-{data_end},{control}-{control_end}
  flp002:
    ports: {data2}-{data2_end},{control2}-{control2_end}
"""
# An inventory placing the hosts in a detector, as DCS's calls need (its `dcs_detectors`).
INVENTORY = """\
o2:
  hardware:
    detectors:
      TST:
        flps:
          flp001: ""
          flp002: ""
"""
# Per host, the critical controlled tasks of readout-dataflow's defaults (dd_enabled): readout
# (direct) and the data-distribution pair (fairmq), by role below host-<name>.
CONTROLLED = {"readout": DUMMY_MODULE, "data-distribution.stfb": FAIRMQ_MODULE,
              "data-distribution.stfs": FAIRMQ_MODULE}


@pytest.fixture
async def engine(tmp_path: Path, corpus_repo: Path) -> AsyncIterator[tuple[Engine, str]]:
    """An engine on a fresh working directory (agents flp001 and flp002, no
    configuration.yaml) with the corpus as a repository; executors stopped at the end."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    # Control ports below Linux's ephemeral range (32768-60999), where no outgoing connection
    # takes them; above the built-in flp002's first ports.
    data, control = 21000 + 40 * random.randrange(50), 31300 + 40 * random.randrange(10)
    workdir.settings_file.write_text(SETTINGS.format(
        data=data, data_end=data + 19, control=control, control_end=control + 19,
        data2=data + 20, data2_end=data + 39, control2=control + 20, control2_end=control + 39))
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(corpus_repo), "master")
        yield engine, f"{added.repo}/workflows/readout-dataflow@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()
    assert find_running(workdir.root) == {}


def controlled(info: EnvironmentInfo) -> dict[str, TaskInfo]:
    """The controlled tasks by `<host>/<role below host-…>`."""
    found: dict[str, TaskInfo] = {}
    for task in info.tasks:
        host_part, _, below = task.role_path.removeprefix("readout-dataflow.").partition(".")
        if below in CONTROLLED:
            found[f"{host_part.removeprefix('host-')}/{below}"] = task
    return found


def cmdline(pid: int) -> str:
    return " ".join(psutil.Process(pid).cmdline())


async def test_readout_dataflow_runs_emulated_on_two_hosts(engine: tuple[Engine, str]) -> None:
    eng, reference = engine
    info = await eng.create_environment(reference, {"hosts": json.dumps(HOSTS)}, emulate=True)
    assert info.state == "CONFIGURED"
    tasks = controlled(info)
    assert sorted(tasks) == sorted(f"{h}/{r}" for h in HOSTS for r in CONTROLLED)
    for key, task in tasks.items():
        host, role = key.split("/", 1)
        assert (task.host, task.state, task.critical) == (host, "CONFIGURED", True), key
        assert task.pid is not None and CONTROLLED[role] in cmdline(task.pid), key
    pids = [task.pid for task in tasks.values() if task.pid is not None]

    started = await eng.control_environment(info.id, "START")
    assert (started.state, started.run_number) == ("RUNNING", 1)
    running = await eng.get_environment(info.id)
    assert running.current_run_number == 1
    assert all(t.state == "RUNNING" for t in controlled(running).values())
    with Store.open(eng.workdir) as store:
        assert store.environments.load(info.id).current_run_number == 1

    stopped = await eng.control_environment(info.id, "STOP")
    assert stopped.state == "CONFIGURED"
    assert not [row for row in stopped.rows if row.failed and row.task_id in
                {t.task_id for t in tasks.values()}]

    destroyed = await eng.destroy_environment(info.id)
    assert destroyed.state == "DONE"
    assert not [row for row in destroyed.rows if row.failed]
    assert await eng.list_environments() == []
    assert not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    with Store.open(eng.workdir) as store:
        assert store.tasks.by_environment(info.id) == []


async def test_calls_of_plugins_not_configured_are_logged_no_ops(
        engine: tuple[Engine, str], caplog: pytest.LogCaptureFixture) -> None:
    """With DCS enabled, its calls (critical at START and STOP) go to a plugin nutshell
    does not load: emulation answers each with a logged no-op, and the run goes on."""
    eng, reference = engine
    eng.workdir.configuration_file.write_text(INVENTORY)
    with caplog.at_level(logging.WARNING, logger="engine.integration"):
        info = await eng.create_environment(
            reference, {"hosts": json.dumps(HOSTS[:1]), "dcs_enabled": "true"}, emulate=True)
        started = await eng.control_environment(info.id, "START")
        assert (started.state, started.run_number) == ("RUNNING", 1)
        stopped = await eng.control_environment(info.id, "STOP")
        assert stopped.state == "CONFIGURED"
        destroyed = await eng.destroy_environment(info.id)
    assert destroyed.state == "DONE"
    noops = [record.getMessage() for record in caplog.records if "no-op" in record.getMessage()]
    for func in ("PrepareForRun", "StartOfRun", "EndOfRun", "Cleanup"):
        assert any(f"dcs.{func}(" in message for message in noops), (func, noops)
