"""Recovery: the engine's host process is SIGKILLed, the next engine re-adopts what runs.

Real executors, real dummy processes, real sqlite: a host process (a small script on
the Engine facade) creates and starts environments, prints what it made and is killed;
an Engine in the test process on the same working directory takes over.
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
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from engine import Engine, EnvironmentEvent, EventKind, Subscription, WorkingDirectory
from engine.environment.recovery import pinned_reference
from engine.scheduler.agents import default_agents
from engine.scheduler.local_agent import LocalAgentProcess, find_running
from engine.store import EnvironmentRecord, Store
from tests.conftest import ROOT, make_template_repo
from tests.test_environment_e2e import DUMMY, settings, until_idle
from tests.test_environment_hooks import CORE_SETTINGS

WORKFLOW = """\
name: recov
roles:
  - name: steady
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
  - name: main
    constraints:
      - attribute: machine_id
        value: a2
    task:
      load: dummy
  - name: spare
    constraints:
      - attribute: machine_id
        value: a2
    task:
      load: dummy
      critical: false
"""

HOST_TIMEOUT = 60.0  # seconds for the host to create and start its environments
HOST = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from engine import Engine, WorkingDirectory

    async def main():
        engine = Engine(WorkingDirectory(Path(sys.argv[1])))
        variables = {}
        if sys.argv[2] == "demo":
            from engine.demo import ensure_demo_repository
            repos = engine._workflows().repos
            reference = ensure_demo_repository(engine.workdir, repos) + "/workflows/demo"
            variables = {"hosts": '["a1", "a2"]'}
        else:
            added = await engine.add_repo(sys.argv[2], "master")
            reference = f"{added.repo}/workflows/recov@master"
        made = []
        for _ in range(int(sys.argv[3])):
            info = await engine.create_environment(reference, variables, user="alice")
            started = await engine.control_environment(info.id, "START", user="alice")
            info = await engine.get_environment(info.id)
            made.append({"id": info.id, "run": started.run_number, "state": info.state,
                         "tasks": {t.role_path: [t.task_id, t.pid] for t in info.tasks}})
        print(json.dumps(made), flush=True)
        await asyncio.sleep(120)  # hosting, until killed

    asyncio.run(main())
""")


@dataclass(frozen=True)
class Made:
    """An environment the killed host made: id, run number, role path → (task id, pid)."""

    id: str
    run: int
    tasks: dict[str, tuple[str, int]]


@pytest.fixture
async def workdir(tmp_path: Path) -> AsyncIterator[tuple[WorkingDirectory, Path]]:
    """A working directory with agents a1, a2 and a repository holding `recov`; every
    executor of it is stopped at the end."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/recov.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY}, corpus=False)
    try:
        yield workdir, repo
    finally:
        await Engine(workdir).shutdown_agents()
    assert find_running(workdir.root) == {}


def host_and_kill(workdir: WorkingDirectory, repo: Path | str, environments: int
                  ) -> list[Made]:
    """Run a host that creates and STARTs `environments` environments of `recov` (of the
    demo when `repo` is "demo"), then SIGKILL it."""
    host = subprocess.Popen([sys.executable, "-c", HOST, str(workdir.root), str(repo),
                             str(environments)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HOST_TIMEOUT, host.kill)  # a host that hangs fails the test
    watchdog.start()
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        assert line, f"the host exited with {host.wait(timeout=10)} before making anything"
        host.send_signal(signal.SIGKILL)
        assert host.wait(timeout=10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
        if host.stdout is not None:
            host.stdout.close()
    made = json.loads(line)
    assert all(entry["state"] == "RUNNING" for entry in made)
    return [Made(e["id"], e["run"], {path: (t[0], t[1]) for path, t in e["tasks"].items()})
            for e in made]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until_state(events: Subscription, environment_id: str, state: str
                      ) -> list[EnvironmentEvent]:
    """The events up to the environment reaching `state` (10 s at most)."""
    seen: list[EnvironmentEvent] = []

    async def read() -> None:
        async for event in events:
            seen.append(event)
            if (event.kind is EventKind.ENVIRONMENT and event.environment_id == environment_id
                    and event.state == state):
                return
        raise AssertionError(f"events ended before {environment_id} was {state}")
    await asyncio.wait_for(read(), 10)
    return seen


def stored_state(workdir: WorkingDirectory, environment_id: str) -> str:
    with Store.open(workdir) as store:
        return store.environments.load(environment_id).state


async def test_a_new_engine_readopts_a_running_environment_after_the_host_is_killed(
        workdir: tuple[WorkingDirectory, Path]) -> None:
    home, repo = workdir
    [made] = await asyncio.to_thread(host_and_kill, home, repo, 1)
    assert made.run == 1
    pids = [pid for _, pid in made.tasks.values()]
    assert all(alive(pid) for pid in pids)  # executors and tasks outlive their engine
    with Store.open(home) as store:
        record = store.environments.load(made.id)
    assert re.fullmatch(r"[0-9a-f]{40}", record.commit)  # reloaded at the commit, not "master"
    assert record.revision == "master"
    async with Engine(home) as engine:
        [info] = await engine.list_environments()
        assert (info.id, info.state, info.current_run_number) == (made.id, "RUNNING", 1)
        assert info.created_by == "alice"
        adopted = {t.role_path: (t.task_id, t.pid) for t in info.tasks}
        assert adopted == made.tasks  # same tasks, same processes
        assert all(t.state == "RUNNING" and t.status == "ACTIVE" for t in info.tasks)
        assert info.roles["recov"][0] == "RUNNING"
        assert engine._manager is not None and engine._manager.recovery is not None
        assert engine._manager.recovery.lost == () and engine._manager.recovery.failures == ()
        workflow = engine._manager._environments[made.id].workflow
        assert workflow.root.vars["run_number"] == "1"  # the run's variables came back
        assert workflow.env_user_vars["run_start_time_ms"]  # from the saved runtime variables

        stopped = await engine.control_environment(made.id, "STOP", user="bob")
        assert stopped.ok and stopped.state == "CONFIGURED"
        assert {(r.before, r.after) for r in stopped.rows} == {("RUNNING", "CONFIGURED")}
        started = await engine.control_environment(made.id, "START", user="bob")
        assert started.ok and started.run_number == 2  # the counter went on, nothing reused
        steady_log = Path(next(t.log_path for t in info.tasks if t.role_path == "recov.steady"))
        assert "START run=2" in steady_log.read_text()
        destroyed = await engine.destroy_environment(made.id)
        assert destroyed.state == "DONE" and len(destroyed.rows) == 3
        assert await engine.list_environments() == []
    with Store.open(home) as store:
        assert store.environments.list() == [] and store.tasks.list() == []
    await asyncio.sleep(0.2)
    assert not any(alive(pid) for pid in pids)


async def test_a_recovered_demo_runs_its_hook_and_call_again(
        workdir: tuple[WorkingDirectory, Path]) -> None:
    home, _ = workdir
    home.configuration_file.write_text(CORE_SETTINGS)  # testplugin on
    [made] = await asyncio.to_thread(host_and_kill, home, "demo", 1)
    hooks = sorted(path for path in made.tasks if path.endswith(".start-hook"))
    assert len(hooks) == 2
    async with Engine(home) as engine:
        [info] = await engine.list_environments()
        assert (info.state, info.current_run_number) == ("RUNNING", 1)
        # the basic tasks' pids came after the host reported (they start with the run)
        assert {t.role_path: t.task_id for t in info.tasks} == \
            {path: task_id for path, (task_id, _) in made.tasks.items()}
        assert all(made.tasks[t.role_path][1] in (None, t.pid) for t in info.tasks)
        assert (await engine.control_environment(made.id, "STOP")).state == "CONFIGURED"
        started = await engine.control_environment(made.id, "START")
        assert started.ok and started.run_number == 2
        ran = {row.role_path: row.exit_code for row in started.rows
               if row.role_path.endswith(".start-hook")}
        assert ran == dict.fromkeys(hooks, 0)  # the adopted hook tasks ran at their trigger
        workflow = engine._manager._environments[made.id].workflow  # type: ignore[union-attr]
        assert workflow.root.user_vars.pop("demo.testplugin_called") == "true"  # restored
        await engine.control_environment(made.id, "STOP")
        await engine.control_environment(made.id, "RESET")
        configured = await engine.control_environment(made.id, "CONFIGURE")
        assert configured.ok
        assert workflow.root.user_vars["demo.testplugin_called"] == "true"  # called again
        assert (await engine.destroy_environment(made.id)).state == "DONE"


async def test_the_tasks_of_an_executor_that_died_too_are_reported_lost(
        workdir: tuple[WorkingDirectory, Path]) -> None:
    home, repo = workdir
    [made] = await asyncio.to_thread(host_and_kill, home, repo, 1)
    executor = find_running(home.root)["a2"]
    os.kill(executor.pid, signal.SIGKILL)  # its tasks die with it (PR_SET_PDEATHSIG)
    on_a2 = [pid for path, (_, pid) in made.tasks.items() if path != "recov.steady"]
    for _ in range(100):
        if not any(alive(pid) for pid in [executor.pid, *on_a2]):
            break
        await asyncio.sleep(0.05)
    async with Engine(home) as engine:
        events = await engine.subscribe()  # the first call: hosting and recovery start here
        assert find_running(home.root)["a2"].pid != executor.pid  # a new executor serves a2
        assert engine._manager is not None and engine._manager.recovery is not None
        lost = {row.role_path: row.reason for row in engine._manager.recovery.lost}
        assert set(lost) == {"recov.main", "recov.spare"}
        assert all("agent a2 no longer runs task" in reason for reason in lost.values())
        await until_state(events, made.id, "ERROR")  # recov.main is critical
        events.close()
        now = await engine.get_environment(made.id)
        assert {t.role_path: t.state for t in now.tasks} == {
            "recov.steady": "CONFIGURED", "recov.main": "ERROR", "recov.spare": "ERROR"}
        destroyed = await engine.destroy_environment(made.id)
        assert destroyed.state == "DONE"


async def test_tasks_that_died_while_no_engine_ran_are_reported(
        workdir: tuple[WorkingDirectory, Path]) -> None:
    home, repo = workdir
    tolerant, doomed = await asyncio.to_thread(host_and_kill, home, repo, 2)
    os.kill(tolerant.tasks["recov.spare"][1], signal.SIGKILL)  # not critical
    os.kill(doomed.tasks["recov.main"][1], signal.SIGKILL)  # critical
    await asyncio.sleep(0.5)  # the executors see their processes end, with no engine to tell
    async with Engine(home) as engine:
        events = await engine.subscribe()
        assert engine._manager is not None and engine._manager.recovery is not None
        lost = {row.role_path: row for row in engine._manager.recovery.lost}
        assert set(lost) == {"recov.spare", "recov.main"}

        now = await engine.get_environment(tolerant.id)
        assert now.state == "RUNNING" and now.current_run_number == 1
        [row] = now.last_result
        assert row.task_id == tolerant.tasks["recov.spare"][0] and row.host == "a2"
        assert (row.before, row.after) == ("RUNNING", "ERROR")
        assert "ended while no engine ran" in row.reason and "TASK_FAILED" in row.reason
        spare = next(t for t in now.tasks if t.role_path == "recov.spare")
        assert spare.state == "ERROR" and spare.pid is None
        assert {t.state for t in now.tasks if t.role_path != "recov.spare"} == {"RUNNING"}

        seen = await until_state(events, doomed.id, "ERROR")
        events.close()
        reported = {(e.environment_id, e.role_path, e.state) for e in seen
                    if e.kind is EventKind.TASK}
        assert (tolerant.id, "recov.spare", "ERROR") in reported
        assert any(e.kind is EventKind.ENVIRONMENT and "recovered" in e.message for e in seen)

        failed = await engine.get_environment(doomed.id)
        assert failed.state == "ERROR" and failed.last_transition == "GO_ERROR"
        assert failed.current_run_number == 0
        [row] = failed.last_result
        assert row.role_path == "recov.main" and "ended while no engine ran" in row.reason
        assert {t.state for t in failed.tasks if t.role_path != "recov.main"} == {"CONFIGURED"}
        assert stored_state(home, doomed.id) == "ERROR"
        assert stored_state(home, tolerant.id) == "RUNNING"

        # The adopted tasks' events are followed again: a crash now is seen as it happens.
        watching = await engine.subscribe()
        os.kill(tolerant.tasks["recov.main"][1], signal.SIGKILL)
        await until_state(watching, tolerant.id, "ERROR")
        watching.close()
        assert (await engine.get_environment(tolerant.id)).last_transition == "GO_ERROR"
        for made in (tolerant, doomed):
            await engine.destroy_environment(made.id)
        assert await engine.list_environments() == []


@pytest.fixture
def agent_home(tmp_path: Path) -> Iterator[Path]:
    """A working directory for bare executors; those still alive at the end are stopped."""
    root = tmp_path / "home"
    root.mkdir()
    yield root
    for agent in find_running(root).values():
        stop(agent.pid)


def stop(pid: int) -> None:
    """SIGTERM (the executor takes its tasks down) and wait."""
    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout=15)
    except psutil.NoSuchProcess:
        pass


SLOW_AFTER_START = WORKFLOW + """\
  - name: linger
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: linger
      trigger: after_START_ACTIVITY
      timeout: 60s
"""

LINGER = """\
name: linger
control:
  mode: basic
wants:
  cpu: 0.01
  memory: 8
defaults:
  linger_off: /nonexistent
command:
  shell: true
  value: "test -e {{ linger_off }} || sleep 6"
"""

HOST_MID_START = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from engine import Engine, WorkingDirectory

    async def main():
        engine = Engine(WorkingDirectory(Path(sys.argv[1])))
        added = await engine.add_repo(sys.argv[2], "master")
        info = await engine.create_environment(f"{added.repo}/workflows/recov@master",
                                               {"linger_off": sys.argv[3]})
        print(info.id, flush=True)
        await engine.control_environment(info.id, "START")  # its after_ hook lingers

    asyncio.run(main())
""")


async def test_a_transition_cut_short_by_the_host_s_death_sends_the_environment_to_error(
        tmp_path: Path) -> None:
    """The host dies after the tasks STARTed but before START was committed (an after_
    hook lingers): the stored state (CONFIGURED) and the tasks' (RUNNING) disagree. The
    next engine says so and goes to ERROR; the run number taken is never given again."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/recov.yaml": SLOW_AFTER_START, "tasks/dummy.yaml": DUMMY,
        "tasks/linger.yaml": LINGER}, corpus=False)
    linger_off = tmp_path / "linger-off"  # once it exists, the after_START hook is quick
    # (the first run lingers 6 s: the host is killed during it, the next START waits for it)
    host = subprocess.Popen([sys.executable, "-c", HOST_MID_START, str(workdir.root),
                             str(repo), str(linger_off)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert host.stdout is not None
        environment_id = (await asyncio.to_thread(host.stdout.readline)).strip()
        assert environment_id, f"the host exited with {host.wait(timeout=10)}"
        logs = workdir.logs / environment_id
        deadline = asyncio.get_running_loop().time() + HOST_TIMEOUT
        while sum("START run=1" in path.read_text() for path in logs.glob("*.log")) < 3:
            assert asyncio.get_running_loop().time() < deadline, "the dummies never STARTed"
            await asyncio.sleep(0.1)
        host.kill()
        assert host.wait(timeout=10) == -signal.SIGKILL
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(timeout=10)
        if host.stdout is not None:
            host.stdout.close()
    try:
        async with Engine(workdir) as engine:
            info = await engine.get_environment(environment_id)
            reasons = [row.reason for row in info.last_result if "cut short" in row.reason]
            assert len(reasons) == 3, info.last_result
            assert "was CONFIGURED when its engine stopped but the task is RUNNING" in reasons[0]
            for _ in range(100):  # GO_ERROR runs in the background, after the recovery
                info = await engine.get_environment(environment_id)
                if info.state == "ERROR":
                    break
                await asyncio.sleep(0.1)
            info = await until_idle(engine, environment_id)  # GO_ERROR let go of it
            assert info.state == "ERROR" and info.current_run_number == 0
            assert (await engine.control_environment(environment_id, "RECOVER")).ok
            assert (await engine.control_environment(environment_id, "CONFIGURE")).ok
            linger_off.touch()
            started = await engine.control_environment(environment_id, "START")
            assert started.run_number == 2  # 1 went to the cut-short START, never again
            assert (await engine.destroy_environment(environment_id)).state == "DONE"
    finally:
        await Engine(workdir).shutdown_agents()


async def test_events_of_a_restarted_executor_are_not_skipped(agent_home: Path) -> None:
    spec = default_agents()[0]
    first = LocalAgentProcess(agent_home, spec)
    async with await first.connect() as client:
        for n in range(3):  # the first executor counts a few events
            await client.launch(f"t{n}", {"value": "true", "controlMode": "basic"})
        await asyncio.sleep(0.5)
        before = await client.list_tasks()
        assert before.instance and before.last_seq >= 3
        stream = client.events(before.last_seq, before.instance)
        assert first.process is not None
        first.process.terminate()
        await asyncio.to_thread(first.process.wait, 15)
        second = LocalAgentProcess(agent_home, spec)
        await second.start()
        async with await second.connect() as fresh:
            await fresh.launch("after-restart", {"value": "true", "controlMode": "basic"})
            after = await fresh.list_tasks()
        assert after.instance != before.instance and after.last_seq < before.last_seq
        seq, body = await asyncio.wait_for(anext(stream), 15)  # the old client, reconnected
        assert (seq, body["taskId"], body["state"]) == (1, "after-restart", "TASK_RUNNING")
        await stream.aclose()  # type: ignore[attr-defined]
        assert second.process is not None
        second.process.terminate()
        await asyncio.to_thread(second.process.wait, 15)


@pytest.mark.parametrize(("workflow", "repo", "commit", "expected"), [
    ("recov", "example.org/templates", "c" * 40,
     f"example.org/templates/workflows/recov@{'c' * 40}"),
    ("example.org/templates/workflows/recov.yaml@v1", "example.org/templates", "c" * 40,
     f"example.org/templates/workflows/recov@{'c' * 40}"),
    ("/srv/repo/workflows/recov", "/srv/repo", "local", "/srv/repo/workflows/recov@local"),
    ("generated", "", "", "generated"),  # no repository (a generated workflow): as requested
])
def test_the_workflow_is_reloaded_at_its_pinned_commit(workflow: str, repo: str, commit: str,
                                                       expected: str) -> None:
    record = EnvironmentRecord(id="e1", workflow=workflow, repo=repo, revision="v1",
                               commit=commit, state="RUNNING", created_by="")
    assert pinned_reference(record) == expected
