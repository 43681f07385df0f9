"""The nutshell front-ends, unchanged, on the Mesos backend: headless commands, the REPL and
the TUI, each attached to one `nutshell core --mesos URL` over a real Mesos 1.11 master and
three agents (tests/mesos_cluster.py).

One cluster and one core for the module. The core's working directory says nothing of
Mesos: `--mesos` alone chooses the backend, the hosts are the agents' machine_ids (the
default `hosts` is every agent of the cluster). A warm-up environment on every agent
starts the executors once (they stay up while idle, as under Mesos they do), so each
test's processes are its tasks alone, two on two hosts, which it destroys.
At the end the core is stopped with SIGTERM (the framework fails over), the framework is
torn down (Mesos ends the executors) and nothing may be left under the harness.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from console.client import open_engine
from console.shell.app import Shell
from console.tui.app import ConsoleApp
from console.tui.role_tree import RoleTree
from engine import Engine, WorkingDirectory, find_host
from engine.api import RemoteEngine
from tests.conftest import free_port, make_template_repo
from tests.mesos_cluster import MesosCluster, mesos_cluster  # noqa: F401 (the fixture)
from tests.test_cli_env import NUTSHELL, one_line_error
from tests.test_environment_e2e import DUMMY
from tests.test_shell import Transcript
from tests.test_tui import SIZE, cell, loaded, press_until_state, table, until

HOSTS = ("flp001", "flp002", "flp003")
TWO_HOSTS = json.dumps(HOSTS[:2])

WORKFLOW = """\
name: fe
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
"""


@dataclass(frozen=True)
class Core:
    """A `nutshell core --mesos` hosting `root`, and the `fe` workflow's reference."""

    root: Path
    address: str
    reference: str

    @property
    def workdir(self) -> WorkingDirectory:
        return WorkingDirectory(self.root)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`nutshell ARGS` as a process of its own; it attaches to the core."""
        return subprocess.run([str(NUTSHELL), *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "NUTSHELL_HOME": str(self.root)})

    def json(self, *args: str) -> dict:
        done = self.run(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


async def warm_up(address: str, repo: Path) -> str:
    """Add the repository to the core, start the executors on every agent; the reference."""
    async with RemoteEngine(address) as remote:
        added = await remote.add_repo(str(repo), "master")
        reference = f"{added.repo}/workflows/fe@master"
        info = await remote.create_environment(reference)  # hosts: the cluster's agents
        assert sorted(task.host for task in info.tasks) == list(HOSTS)
        assert (await remote.destroy_environment(info.id)).state == "DONE"
    return reference


async def tear_down(workdir: WorkingDirectory, master_url: str) -> list[str]:
    """The core's framework torn down by an engine of the same working directory."""
    async with Engine(workdir, mesos=master_url) as cleanup:
        return await cleanup.shutdown_agents()


@pytest.fixture(scope="module")
def core(mesos_cluster: MesosCluster,  # noqa: F811
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    base = tmp_path_factory.mktemp("frontends")
    workdir = WorkingDirectory(base / "home").ensure()
    repo = make_template_repo(base / "templates", {"workflows/fe.yaml": WORKFLOW,
                                                   "tasks/dummy.yaml": DUMMY}, corpus=False)
    log = base / "core.out"
    address = f"127.0.0.1:{free_port()}"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(NUTSHELL), "core", "--listen", address, "--mesos", mesos_cluster.master_url],
            stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "NUTSHELL_HOME": str(workdir.root)})
    try:
        deadline = time.monotonic() + 30
        while (host := find_host(workdir)) is None or not host.address:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert host.address == address
        reference = asyncio.run(warm_up(address, repo))
        yield Core(workdir.root, address, reference)
    finally:
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                raise
        finally:
            stopped = asyncio.run(tear_down(workdir, mesos_cluster.master_url))
        assert code == 0, log.read_text()
        assert sorted(stopped) == list(HOSTS)
        mesos_cluster.wait_idle()


def mesos_tasks(cluster: MesosCluster) -> dict[str, dict]:
    """The live tasks of the core's framework ("nutshell"), by task id, as the master has them."""
    return {task["id"]: task for framework in cluster.state()["frameworks"]
            if framework["name"] == "nutshell" for task in framework.get("tasks", [])
            if task["state"] not in ("TASK_FINISHED", "TASK_KILLED", "TASK_FAILED", "TASK_LOST")}


# ---------------------------------------------------------------- headless commands

def test_headless_commands_run_an_environment_on_the_agents(
        core: Core, mesos_cluster: MesosCluster) -> None:  # noqa: F811
    created = core.json("env", "create", "-w", core.reference,
                        "-e", json.dumps({"hosts": json.dumps(["flp002", "flp003"])}))
    env_id = created["environment"]["id"]
    assert created["environment"]["state"] == "CONFIGURED"
    assert created["environment"]["numberOfTasks"] == 2

    [listed] = core.json("env", "list")["environments"]
    assert listed["id"] == env_id and listed["state"] == "CONFIGURED"
    by_host = {t["deploymentInfo"]["hostname"]: t["taskId"] for t in listed["tasks"]}
    assert sorted(by_host) == ["flp002", "flp003"]
    agent_ids = {agent.name: agent.agent_id for agent in mesos_cluster.agents}
    on_mesos = mesos_tasks(mesos_cluster)
    assert {host: on_mesos[task_id]["slave_id"] for host, task_id in by_host.items()} == \
        {host: agent_ids[host] for host in by_host}

    started = core.run("env", "control", env_id, "-e", "START")
    assert started.returncode == 0, started.stderr
    header, *rows = started.stdout.splitlines()
    run = re.search(f"environment {env_id}: START_ACTIVITY CONFIGURED → RUNNING, run (\\d+)",
                    header)
    assert run, started.stdout
    assert sum("CONFIGURED → RUNNING" in row for row in rows) == 2
    log = core.run("task", "log", by_host["flp003"], "-n", "20")  # from the agent's sandbox
    assert log.returncode == 0 and f"START run={run.group(1)}" in log.stdout, log.stderr

    refused = core.run("env", "destroy", env_id)  # RUNNING: -a needed, as on local agents
    assert refused.returncode == 1 and "-a" in one_line_error(refused.stderr)
    stopped = core.json("env", "control", env_id, "-e", "STOP")
    assert stopped["id"] == env_id and stopped["state"] == "CONFIGURED"
    destroyed = core.run("env", "destroy", env_id)
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"environment {env_id} destroyed (CONFIGURED → DONE); 2 tasks killed" \
        in destroyed.stdout
    assert core.json("env", "list")["environments"] == []
    assert mesos_tasks(mesos_cluster) == {}


# ---------------------------------------------------------------- the REPL

async def test_the_repl_creates_lists_starts_and_destroys(
        core: Core, capsys: pytest.CaptureFixture[str],
        mesos_cluster: MesosCluster) -> None:  # noqa: F811
    transcript = Transcript(capsys)
    capsys.readouterr()
    pipe: PipeInput
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        engine = await open_engine(core.workdir)
        assert isinstance(engine, RemoteEngine)  # attached to the core
        shell = Shell(engine, core.workdir)
        session = asyncio.create_task(shell.loop())
        try:
            pipe.send_text(f"env create -w {core.reference} -e 'hosts={TWO_HOSTS}'\n")
            await transcript.until(lambda: "created" in transcript.out)
            found = re.search(r"environment (\S+) created: CONFIGURED, 2 tasks", transcript.out)
            assert found, transcript.out
            env_id = found.group(1)

            pipe.send_text("env list\n")
            await transcript.until(lambda: "WORKFLOW" in transcript.out)
            row = next(line for line in transcript.out.splitlines() if line.startswith(env_id))
            assert "CONFIGURED" in row.split()

            pipe.send_text(f"env show {env_id} --tasks\n")
            await transcript.until(lambda: transcript.out.count("flp00") >= 2)
            shown = transcript.out.split("env show", 1)[-1]
            assert "flp001" in shown and "flp002" in shown

            pipe.send_text(f"env control {env_id} -e START\n")
            await transcript.until(lambda: "START_ACTIVITY" in transcript.out)
            assert re.search(f"environment {env_id}: START_ACTIVITY CONFIGURED → RUNNING, "
                             r"run \d+", transcript.out), transcript.out

            pipe.send_text(f"env destroy {env_id} -a\n")
            await transcript.until(lambda: "destroyed" in transcript.out)
            assert f"environment {env_id} destroyed (RUNNING → DONE); 2 tasks killed" \
                in transcript.out
            assert await engine.list_environments() == []
            pipe.send_text("exit\n")
            assert await asyncio.wait_for(session, 10) == 0
        finally:
            session.cancel()
            await engine.close()
    assert "Traceback" not in transcript.err
    assert mesos_tasks(mesos_cluster) == {}


# ---------------------------------------------------------------- the TUI

async def test_the_console_shows_the_environment_its_hosts_and_its_state(
        core: Core, mesos_cluster: MesosCluster) -> None:  # noqa: F811
    async with RemoteEngine(core.address) as remote:
        info = await remote.create_environment(core.reference, {"hosts": TWO_HOSTS},
                                               user="tester")
    try:
        app = ConsoleApp(core.workdir, core=core.address)
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.engine, RemoteEngine)
            await loaded(pilot)
            await until(pilot, lambda: info.id in table(app).rows_by_id, "the core's environment")
            await until(pilot, lambda: cell(app, info.id, "tasks") == "2/2", "2/2 active tasks")
            assert cell(app, info.id, "state") == "CONFIGURED"
            assert cell(app, info.id, "hosts") == "flp001, flp002"
            assert cell(app, info.id, "user") == "tester"

            await press_until_state(pilot, "s", info.id, "RUNNING")
            assert int(cell(app, info.id, "run")) > 0

            await pilot.press("enter")  # the environment view: role tree with hosts and states
            await until(pilot, lambda: type(app.screen).__name__ == "EnvironmentScreen",
                        "the environment view")
            tree = app.screen.query_one(RoleTree)
            await until(pilot, lambda: {(t.host, t.state) for t in tree.tasks.values()}
                        == {("flp001", "RUNNING"), ("flp002", "RUNNING")},
                        "both tasks RUNNING on their hosts")
            await pilot.press("escape")
            await loaded(pilot)

            await press_until_state(pilot, "t", info.id, "CONFIGURED")
            await pilot.press("d")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal",
                        "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: info.id not in table(app).rows_by_id, "the row gone")
            await pilot.press("q")
    finally:
        async with RemoteEngine(core.address) as remote:
            for left in await remote.list_environments():
                await remote.destroy_environment(left.id)
    assert mesos_tasks(mesos_cluster) == {}
