"""`nutshell env|task|role …`: the real command, in-process for parsing and errors, and as
separate processes (each a front-end of its own, the later ones re-adopting what the
earlier ones deployed) for the create → START → STOP → destroy flow.

Real executors, real dummy processes, a temp NUTSHELL_HOME with two agents and a
small local workflow repository.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from console.cli import main
from engine import Engine, WorkingDirectory, find_host
from engine.environment.roleglob import RoleGlobError, compile_role_glob, matches
from engine.logtail import tail
from engine.scheduler.local_agent import find_running
from engine.scheduler.local_pool import LocalAgentPool
from tests.conftest import free_port, make_template_repo
from tests.test_environment_e2e import DUMMY, settings

NUTSHELL = Path(sys.executable).with_name("nutshell")

WORKFLOW = """\
name: cli
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
"""


@dataclass(frozen=True)
class Home:
    """A working directory with two agents, and the reference of the `cli` workflow."""

    root: Path
    reference: str
    capture: pytest.CaptureFixture[str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`nutshell ARGS` as a process of its own."""
        return subprocess.run([str(NUTSHELL), *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "NUTSHELL_HOME": str(self.root)})

    def here(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`nutshell ARGS` in this process: an engine of its own too, opened and closed by
        the command, without an interpreter's start-up."""
        self.capture.readouterr()
        code = main(list(args))
        captured = self.capture.readouterr()
        return subprocess.CompletedProcess(["nutshell", *args], code, captured.out, captured.err)

    def json(self, *args: str) -> dict:
        done = self.here(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Iterator[Home]:
    yield from working_home(tmp_path, monkeypatch, capsys)


def working_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> Iterator[Home]:
    """The working directory, also as $NUTSHELL_HOME of in-process commands; its executors
    are stopped at the end, whatever the test did."""
    root = tmp_path / "home"
    workdir = WorkingDirectory(root).ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/cli.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY}, corpus=False)
    made = Home(root, f"{repo}/workflows/cli", capsys)
    monkeypatch.setenv("NUTSHELL_HOME", str(made.root))
    try:
        yield made
    finally:
        asyncio.run(Engine(WorkingDirectory(made.root)).shutdown_agents())


def one_line_error(stderr: str) -> str:
    """The reason a failing command gave: exactly one line on stderr, no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# ---------------------------------------------------------------- in-process: bad inputs

@pytest.mark.parametrize("argv, reason", [
    (["env", "show", "nope"], "error: no environment nope"),
    (["env", "control", "nope", "-e", "START"], "error: no environment nope"),
    (["env", "control", "nope", "-e", "LAUNCH"], "'LAUNCH' is not an event one can ask for"),
    (["env", "destroy", "nope"], "error: no environment nope"),
    (["role", "query", "nope", "cli.*"], "error: no environment nope"),
    (["task", "log", "nope"], "error: no task nope"),
    (["task", "clean", "nope"], "error: no task nope"),
    (["env", "create", "-w", "{ref}", "-e", "{{bad"], "-e '{bad': not valid JSON"),
    (["env", "create", "-w", "{ref}", "-e", "novalue"], "expected a JSON object or key=value"),
    (["run", "{ref}", "--duration", "5 parsecs"], "--duration: '5 parsecs' is not a duration"),
    (["run", "{ref}", "--duration=-1s"], "a duration cannot be negative"),
])
def test_bad_inputs_exit_non_zero_with_a_one_line_reason(home: Home, argv: list[str],
                                                         reason: str) -> None:
    done = home.here(*(word.format(ref=home.reference) for word in argv))
    assert done.returncode == 1 and done.stdout == ""
    assert reason in one_line_error(done.stderr)


def test_an_unknown_workflow_is_a_one_line_error(home: Home) -> None:
    done = home.here("env", "create", "-w", home.reference.replace("/cli", "/nosuch"))
    assert done.returncode == 1 and "nosuch" in one_line_error(done.stderr)


def test_an_empty_working_directory_lists_nothing(home: Home) -> None:
    listed = home.here("env", "list")
    assert listed.returncode == 0 and "no environments" in listed.stdout
    assert home.json("env", "list")["environments"] == []
    assert home.json("task", "list")["tasks"] == []
    cleaned = home.here("task", "clean")
    assert cleaned.returncode == 0 and "0 task(s) killed, 0 still running" in cleaned.stdout


# ---------------------------------------------------------------- separate processes

def test_create_start_show_stop_destroy_each_in_its_own_process(home: Home) -> None:
    created = json.loads(home.run("env", "create", "-w", home.reference, "-o", "json").stdout
                         )["environment"]
    env_id = created["id"]
    assert created["state"] == "CONFIGURED" and created["numberOfTasks"] == 2

    [listed] = home.json("env", "list")["environments"]
    assert listed["id"] == env_id and listed["state"] == "CONFIGURED"
    assert listed["currentRunNumber"] == 0
    assert {t["deploymentInfo"]["hostname"] for t in listed["tasks"]} == {"a1", "a2"}
    assert all(t["taskId"] and t["state"] == "CONFIGURED" and t["locked"] and int(t["pid"])
               for t in listed["tasks"])
    pids = [int(t["pid"]) for t in listed["tasks"]]

    started = home.run("env", "control", env_id, "-e", "start")
    assert started.returncode == 0, started.stderr
    header, *rows = started.stdout.splitlines()
    assert f"environment {env_id}: START_ACTIVITY CONFIGURED → RUNNING, run 1" in header
    assert rows[0].split() == ["TASK", "ROLE", "HOST", "BEFORE", "→", "AFTER", "EXIT",
                               "REASON", "LOG"]
    assert sum("CONFIGURED → RUNNING" in row for row in rows) == 2

    shown = home.here("env", "show", env_id, "--tasks", "--workflow")
    assert shown.returncode == 0, shown.stderr
    assert "RUNNING" in shown.stdout and "run number       1" in shown.stdout
    assert all(t["taskId"] in shown.stdout for t in listed["tasks"])
    assert "    dummy  task" in shown.stdout  # the role tree, indented by depth
    detail = home.json("env", "show", env_id, "--workflow")
    assert detail["environment"]["currentRunNumber"] == 1
    assert detail["workflow"]["fullPath"] == "cli" and len(detail["workflow"]["roles"]) == 2

    roles = home.json("role", "query", env_id, "cli.*.dummy")["roles"]
    assert sorted(r["fullPath"] for r in roles) == ["cli.host-a1.dummy", "cli.host-a2.dummy"]
    assert all(r["state"] == "RUNNING" and len(r["taskIds"]) == 1 for r in roles)
    task_id = roles[0]["taskIds"][0]
    log = home.here("task", "log", task_id, "-n", "20")
    assert log.returncode == 0 and "START run=1" in log.stdout

    running = home.here("env", "destroy", env_id)  # coconut: -a needed while RUNNING
    assert running.returncode == 1 and "-a" in one_line_error(running.stderr)

    stopped = json.loads(home.run("env", "control", env_id, "-e", "STOP_ACTIVITY", "-o", "json"
                                  ).stdout)
    assert stopped["id"] == env_id and stopped["state"] == "CONFIGURED"
    assert stopped["currentRunNumber"] == 0 and int(stopped["transitionDuration"]) >= 0

    refused = home.here("env", "control", env_id, "-e", "STOP")
    assert refused.returncode == 1
    assert "cannot STOP_ACTIVITY" in one_line_error(refused.stderr)

    destroyed = home.run("env", "destroy", env_id, "--keep-tasks")
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"environment {env_id} destroyed (CONFIGURED → DONE); 2 tasks released" \
        in destroyed.stdout
    assert home.json("env", "list")["environments"] == []
    released = home.json("task", "list")["tasks"]  # left running, unlocked
    assert {t["taskId"] for t in released} == {t["taskId"] for t in listed["tasks"]}
    assert all(t["locked"] is False and int(t["pid"]) in pids for t in released)
    cleaned = home.json("task", "clean")
    assert len(cleaned["killedTasks"]) == 2 and cleaned["runningTasks"] == []
    assert home.json("task", "list")["tasks"] == []
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status()
                   != psutil.STATUS_ZOMBIE for pid in pids)


def test_a_failed_transition_prints_its_table_then_recover_and_exit_end_it(home: Home) -> None:
    env_id = home.json("env", "create", "-w", home.reference, "-e",
                       "fail_on=START")["environment"]["id"]  # in this process…
    failed = home.run("env", "control", env_id, "-e", "START")  # …started by another
    assert failed.returncode == 1
    assert f"START_ACTIVITY of environment {env_id} failed" in one_line_error(failed.stderr)
    rows = [line for line in failed.stdout.splitlines() if "cli.host-a" in line]
    assert len(rows) == 2 and all("CONFIGURED → ERROR" in row and "event: START" in row
                                  and row.endswith(".log") for row in rows)
    shown = home.json("env", "show", env_id)["environment"]
    assert shown["state"] == "ERROR"
    locked = shown["tasks"][0]["taskId"]
    kept = home.json("task", "clean", locked)  # a task of an environment is never killed
    assert kept["killedTasks"] == [] and locked in {t["taskId"] for t in kept["runningTasks"]}
    recovered = home.here("env", "control", env_id, "-e", "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert f"environment {env_id}: RECOVER ERROR → DEPLOYED" in recovered.stdout
    exited = home.here("env", "control", env_id, "-e", "EXIT")
    assert exited.returncode == 0, exited.stderr
    assert f"environment {env_id}: EXIT DEPLOYED → DONE" in exited.stdout
    assert home.json("env", "list")["environments"] == []
    assert home.json("task", "list")["tasks"] == []


# ---------------------------------------------------------------- unlocked tasks

async def launch_orphan(root: Path, log: Path) -> None:
    """A task on agent a1 whose environment is not in the store: unlocked, as one left by
    an engine that crashed before it recorded its environment."""
    pool = LocalAgentPool(WorkingDirectory(root), lambda agent, body: None)
    await pool.start()
    try:
        await pool.client("a1").launch(
            "orphan-1", {"value": sys.executable, "arguments": ["-m", "occlib.examples.dummy"],
                         "controlPort": free_port(), "controlMode": "direct", "shell": False},
            environment_id="gone", log_path=log)
    finally:
        await pool.close()


def test_an_unlocked_task_is_listed_logged_and_cleaned(home: Home, tmp_path: Path) -> None:
    asyncio.run(launch_orphan(home.root, tmp_path / "orphan.log"))
    [task] = home.json("task", "list")["tasks"]
    assert task["taskId"] == "orphan-1" and task["locked"] is False
    assert task["deploymentInfo"]["hostname"] == "a1" and task["sandboxStdout"].endswith(
        "orphan.log")
    listed = home.here("task", "list")
    assert "orphan-1" in listed.stdout and " no " in listed.stdout.splitlines()[1]
    deadline = time.monotonic() + 10
    while "state STANDBY" not in home.here("task", "log", "orphan-1", "-n", "3").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cleaned = home.json("task", "clean", "orphan-1")
    assert [t["taskId"] for t in cleaned["killedTasks"]] == ["orphan-1"]
    assert cleaned["runningTasks"] == []
    assert home.json("task", "list")["tasks"] == []


def test_agents_stop_is_refused_while_an_environment_exists_then_stops_them(home: Home) -> None:
    created = home.here("env", "create", "-w", home.reference)
    assert created.returncode == 0, created.stderr
    assert set(find_running(home.root)) == {"a1", "a2"}
    running = find_running(home.root)
    agents = home.json("agents", "list")["agents"]
    assert [(a["name"], a["machineId"], a["tasks"], a["executorRunning"], a["executorPid"])
            for a in agents] == [(name, name, 1, True, running[name].pid) for name in ("a1", "a2")]
    assert all(a["memUsed"] == 32 and len(a["portsInUse"]) == 1 for a in agents)
    listed = home.here("agents", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("AGENT  MACHINE  EXECUTOR")
    assert re.search(rf"^a1 +a1 +pid {running['a1'].pid} +1 +0\.01/32 +32/131072 ",
                     listed.stdout, re.M), listed.stdout
    refused = home.here("agents", "stop")
    assert refused.returncode == 1
    assert "environment(s) still use the agents" in one_line_error(refused.stderr)
    assert set(find_running(home.root)) == {"a1", "a2"}  # nothing was stopped
    [env] = home.json("env", "list")["environments"]
    assert home.here("env", "destroy", env["id"]).returncode == 0
    stopped = home.here("agents", "stop")
    assert stopped.returncode == 0 and stopped.stdout == "stopped agents: a1, a2\n"
    assert find_running(home.root) == {}
    again = home.here("agents", "stop")
    assert again.returncode == 0 and again.stdout == "no agent was running\n"
    idle = home.json("agents", "list")["agents"]
    assert [(a["tasks"], a["executorRunning"], "executorPid" in a) for a in idle] == [
        (0, False, False)] * 2


# ---------------------------------------------------------------- attached to `nutshell core`

def test_commands_attach_to_the_core_hosting_the_working_directory(home: Home,
                                                                   tmp_path: Path) -> None:
    workdir = WorkingDirectory(home.root)
    with (tmp_path / "core.out").open("w") as output:
        core = subprocess.Popen([str(NUTSHELL), "core", "--listen", f"127.0.0.1:{free_port()}"],
                                stdout=output, stderr=subprocess.STDOUT,
                                env={**os.environ, "NUTSHELL_HOME": str(home.root)})
    try:
        deadline = time.monotonic() + 30
        while (host := find_host(workdir)) is None or not host.address:
            assert core.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "core.out").read_text()
            time.sleep(0.1)
        assert host.pid == core.pid
        # Hosted elsewhere: an in-process engine would be refused, so these went over gRPC.
        created = home.run("env", "create", "-w", home.reference, "-o", "json")
        assert created.returncode == 0, created.stderr
        env_id = json.loads(created.stdout)["environment"]["id"]
        started = home.here("env", "control", env_id, "-e", "START")
        assert started.returncode == 0 and "run 1" in started.stdout, started.stderr
        [listed] = home.json("env", "list")["environments"]
        assert listed["id"] == env_id and listed["state"] == "RUNNING"
        destroyed = home.here("env", "destroy", env_id, "-a")
        assert destroyed.returncode == 0, destroyed.stderr
        assert "(RUNNING → DONE); 2 tasks killed" in destroyed.stdout
        assert home.json("task", "list")["tasks"] == []
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(30) == 0, (tmp_path / "core.out").read_text()


# ---------------------------------------------------------------- role globs and log tails

@pytest.mark.parametrize("glob, path, matched", [
    ("cli.*", "cli.host-a1", True),
    ("cli.*", "cli.host-a1.dummy", False),  # `*` stays within one path element
    ("cli.**", "cli.host-a1.dummy", True),  # `**` crosses elements
    ("**.dummy", "cli.host-a1.dummy", True),
    ("cli.host-a?.dummy", "cli.host-a2.dummy", True),
    ("cli.host-a?.dummy", "cli.host-a10.dummy", False),
    ("cli.host-[ab]1.*", "cli.host-b1.dummy", True),
    ("cli.host-[!a]1.*", "cli.host-a1.dummy", False),
    ("cli.{host-a1,chain}.*", "cli.chain.sink", True),
    ("cli.{host-a1,chain}.*", "cli.host-a2.dummy", False),
    ("cli.host\\*", "cli.host*", True),
    ("cli.host\\*", "cli.host-a1", False),
    ("cli", "cli.host-a1", False),  # the whole path must match
])
def test_role_globs_follow_gobwas_with_a_dot_separator(glob: str, path: str,
                                                       matched: bool) -> None:
    assert matches(glob, path) is matched


@pytest.mark.parametrize("glob", ["cli.{a,b", "cli.[ab", "cli.a}", "cli.\\"])
def test_a_malformed_role_glob_is_refused_naming_it(glob: str) -> None:
    with pytest.raises(RoleGlobError, match=re.escape(repr(glob))):
        compile_role_glob(glob)


def test_a_log_tail_reads_only_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("".join(f"line {n}\n" for n in range(20000)))
    assert tail(log, 3) == "line 19997\nline 19998\nline 19999\n"
    assert tail(log, 0) == ""
    log.write_text("only\npartial")
    assert tail(log, 5) == "only\npartial" and tail(log, 1) == "partial"
    log.write_text("")
    assert tail(log, 5) == ""
