"""The fault matrix (issue 7), fast cases, part two: the engine's process SIGKILLed in a
transition, in a creation and in a destroy, and a transition that ends after its engine
died. The next engine must find every environment (or cleanly undo a creation cut short),
never give a run number twice and leave no process behind. Set-up: conftest.py and common.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, WorkingDirectory
from engine.store import Store
from tests.conftest import ROOT, make_template_repo
from tests.faults.common import (DUMMY, HOLD, WORKFLOW, PHASES, RUN_TAKEN, Setup, gone, resume,
                                 recover_and_run, log_shows, drained, executor_children,
                                 dummies, first_line, until)
from tests.test_environment_e2e import until_idle


# ------------------------------------------------------------------ the engine dies

HOST = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from engine import Engine, WorkingDirectory

    async def main():
        engine = Engine(WorkingDirectory(Path(sys.argv[1])))
        added = await engine.add_repo(sys.argv[2], "master")
        info = await engine.create_environment(f"{added.repo}/workflows/faults@master")
        for event in filter(None, sys.argv[3].split(",")):
            await engine.control_environment(info.id, event)
        info = await engine.get_environment(info.id)
        print(json.dumps({"id": info.id,
                          "tasks": {t.role_path: [t.task_id, t.pid] for t in info.tasks}}),
              flush=True)
        sys.stdin.readline()
        await engine.control_environment(info.id, sys.argv[4])  # held: killed during it

    asyncio.run(main())
""")
HOST_TIMEOUT = 60.0


@contextlib.contextmanager
def hosted(script: str, *argv: str) -> Iterator[subprocess.Popen[str]]:
    """An engine process running `script` with `argv`; SIGKILLed on the way out if it still
    runs, and after HOST_TIMEOUT s whatever happens."""
    host = subprocess.Popen([sys.executable, "-c", script, *argv], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HOST_TIMEOUT, host.kill)
    watchdog.start()
    try:
        yield host
    finally:
        watchdog.cancel()
        if host.poll() is None:
            host.kill()
        host.wait(timeout=10)
        for stream in (host.stdin, host.stdout):
            if stream is not None:
                stream.close()


async def killed_in_transition(host: subprocess.Popen[str], workdir: WorkingDirectory,
                               occ_event: str) -> Any:
    """What the HOST made; then the victim frozen, the transition let go, and the host
    SIGKILLed once the steady task has seen `occ_event` (the commands went out). The victim
    stays frozen: the caller resumes it."""
    made = await first_line(host)
    steady_id, _ = made["tasks"]["faults.steady"]
    victim = made["tasks"]["faults.victim"][1]
    steady_log = workdir.logs / made["id"] / f"{steady_id}.log"
    seen = steady_log.read_text().count(f"]: {occ_event} ")
    os.kill(victim, signal.SIGSTOP)
    try:
        assert host.stdin is not None
        host.stdin.write("go\n")
        host.stdin.flush()
        await log_shows(steady_log, f"]: {occ_event} ", seen + 1)
        host.kill()
        assert host.wait(timeout=10) == -signal.SIGKILL
    except BaseException:
        resume(victim)
        raise
    return made


@pytest.mark.parametrize("phase", list(PHASES))
async def test_an_engine_killed_in_a_transition_is_recovered_in_error(
        setup: Setup, phase: str) -> None:
    """The engine's process is SIGKILLed while the transition waits on a task: the next
    engine finds the stored state and the tasks' disagree, says the transition was cut
    short and goes to ERROR; the run number taken is never given again."""
    prior, occ_event, _ = PHASES[phase]
    with hosted(HOST, str(setup.workdir.root), str(setup.repo), ",".join(prior),
                phase) as host:
        made = await killed_in_transition(host, setup.workdir, occ_event)
    resume(made["tasks"]["faults.victim"][1])
    async with Engine(setup.workdir) as engine:
        try:
            [info] = await engine.list_environments()  # not lost
            assert info.id == made["id"]
            reasons = [row.reason for row in info.last_result if "cut short" in row.reason]
            assert reasons, info.last_result
            assert "when its engine stopped but the task is" in reasons[0]
            for _ in range(100):  # GO_ERROR runs in the background, after the recovery
                if (info := await engine.get_environment(made["id"])).state == "ERROR":
                    break
                await asyncio.sleep(0.1)
            info = await until_idle(engine, made["id"])
            assert info.state == "ERROR"
            assert {t.pid for t in info.tasks} == {pid for _, pid in made["tasks"].values()}
            await recover_and_run(engine, made["id"], RUN_TAKEN[phase])
        finally:
            await engine.shutdown_agents()



async def test_a_transition_ending_after_its_engine_died_is_learnt_by_the_next(
        setup: Setup, tmp_path: Path) -> None:
    """START is under way when the engine is SIGKILLed; the critical victim, frozen, has not
    answered. The steady task is not critical here, so the next engine finds nothing
    critical at odds and keeps the environment CONFIGURED. The victim then finishes START:
    its executor ran the transition to its end though its caller died, and tells the answer
    on its event stream; the new engine learns it, sees the task RUNNING in a CONFIGURED
    environment and goes to ERROR. Run 1 is never given again."""
    repo = make_template_repo(tmp_path / "lenient", {
        "workflows/faults.yaml": WORKFLOW.replace("      load: dummy\n",
                                                  "      load: dummy\n      critical: false\n", 1),
        "tasks/dummy.yaml": DUMMY, "tasks/hold.yaml": HOLD}, corpus=False)
    with hosted(HOST, str(setup.workdir.root), str(repo), "", "START") as host:
        made = await killed_in_transition(host, setup.workdir, "START")
    victim_id, victim = made["tasks"]["faults.victim"]  # still frozen
    async with Engine(setup.workdir) as engine:
        try:
            info = await until_idle(engine, made["id"])
            assert info.state == "CONFIGURED"  # nothing critical at odds, yet
            events = await engine.subscribe()
            resume(victim)
            for _ in range(300):
                if (info := await engine.get_environment(made["id"])).state == "ERROR":
                    break
                await asyncio.sleep(0.1)
            info = await until_idle(engine, made["id"])
            assert info.state == "ERROR"  # and GO_ERROR stopped the runaway victim
            assert next(t for t in info.tasks if t.task_id == victim_id).state == "CONFIGURED"
            told = [e.message for e in drained(events) if e.task_id == victim_id]
            assert any("ended afterwards, the task in RUNNING" in m for m in told), told
            [row] = [r for r in info.last_result if r.task_id == victim_id]
            assert "the environment was CONFIGURED when its engine stopped but the task is " \
                   "RUNNING" in row.reason
            events.close()
            await recover_and_run(engine, made["id"], 1)
        finally:
            resume(victim)
            await engine.shutdown_agents()



# ------------------------------------------------------------------ the engine dies mid-creation

# Releases an environment (destroy with keep_tasks: its tasks run on, unlocked) and prints
# their pids, then creates `argv[3]` with the variables `argv[4]`, held until killed; or,
# with `destroy` / `destroy-force` as `argv[5]`, creates it, prints its tasks and destroys it
# at the word, held until killed.
HOST_CUT = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from engine import Engine, WorkingDirectory

    async def main():
        home, repo, environment_id, variables, action = sys.argv[1:6]
        engine = Engine(WorkingDirectory(Path(home)))
        added = await engine.add_repo(repo, "master")
        reference = f"{added.repo}/workflows/faults@master"
        create = lambda: engine.create_environment(reference, json.loads(variables),
                                                   user="alice", environment_id=environment_id)
        if action == "create":
            released = await engine.create_environment(reference, user="bob")
            await engine.destroy_environment(released.id, keep_tasks=True)
            print(json.dumps([t.pid for t in released.tasks]), flush=True)
            await create()  # held: killed during it
            return
        info = await create()
        print(json.dumps({t.role_path: t.pid for t in info.tasks if t.pid}), flush=True)
        sys.stdin.readline()
        await engine.destroy_environment(environment_id, force=action == "destroy-force")

    asyncio.run(main())
""")


@contextlib.contextmanager
def hosting(setup: Setup, environment_id: str, variables: dict[str, str], action: str
            ) -> Iterator[subprocess.Popen[str]]:
    """The HOST_CUT engine process (hosted)."""
    with hosted(HOST_CUT, str(setup.workdir.root), str(setup.repo), environment_id,
                json.dumps(variables), action) as host:
        yield host



@pytest.mark.parametrize("phase", ["DEPLOY", "CONFIGURE"])
async def test_an_engine_killed_in_a_creation_has_its_tasks_killed_by_the_next(
        setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture, phase: str) -> None:
    """The engine is SIGKILLed while it creates an environment: at DEPLOY (the victim is
    launched but sleeps before serving: the store has no task of it yet) or at CONFIGURE
    (held by a before_CONFIGURE hook task). The user never got the environment, so the next
    engine does not rebuild it: it kills every task launched for it, forgets it and says
    so; the tasks an earlier destroy released (keep_tasks) run on until a cleanup."""
    environment_id = f"cut{phase.lower()}"
    hold = tmp_path / "hold"
    variables = ({"startup_delay": "30"} if phase == "DEPLOY"
                 else {"hold_at": "CONFIGURE", "hold_file": str(hold)})
    with hosting(setup, environment_id, variables, "create") as host:
        released = set(await first_line(host))
        if phase == "DEPLOY":  # both dummies of the creation launched, one still asleep
            await until(lambda: len(dummies(executor_children(setup.workdir)) - released) == 2,
                        "launched the creation's tasks")
        else:
            await until(Path(f"{hold}.began").exists, "began the before_CONFIGURE hook")
        launched = executor_children(setup.workdir) - released
        host.kill()
        assert host.wait(timeout=10) == -signal.SIGKILL
    caplog.set_level("WARNING", logger="engine.environment")
    async with Engine(setup.workdir) as engine:
        try:
            events = await engine.subscribe()  # first: what the recovery reports
            assert await engine.list_environments() == []
            assert all(gone(pid) for pid in launched), launched
            assert not any(gone(pid) for pid in released)
            assert engine._manager is not None and engine._manager.recovery is not None
            [undone] = engine._manager.recovery.creations
            killed = 2 if phase == "DEPLOY" else 3  # with the hook task
            assert undone.message == (
                f"creation of environment {environment_id} (workflow "
                f"{undone.workflow}, by alice) was cut short when its engine stopped: "
                f"{killed} task(s) killed")
            assert undone.workflow == f"{setup.repo}/workflows/faults@master"
            assert undone.message in caplog.text
            told = []
            while (event := await events.get(timeout=5)) is not None:
                if event.environment_id == environment_id:
                    told.append((event.state, event.message))
                    break
            events.close()
            assert told == [("DONE", undone.message)]
            with Store.open(setup.workdir) as store:
                assert store.environments.find(environment_id) is None
                assert store.tasks.by_environment(environment_id) == []
            unlocked = await engine.list_tasks()
            assert {t.pid for t in unlocked} == released and not any(t.locked for t in unlocked)
            info = await engine.create_environment(undone.workflow)  # the same reference
            started = await engine.control_environment(info.id, "START")
            assert started.ok and started.run_number == 1
            assert (await engine.destroy_environment(info.id)).state == "DONE"
            killed_tasks, running = await engine.cleanup_tasks()
            assert {t.pid for t in killed_tasks} == released and running == []
            assert all(gone(pid) for pid in released)
        finally:
            await engine.shutdown_agents()



# ------------------------------------------------------------------ the engine dies mid-destroy


@pytest.mark.parametrize("held", ["hooks", "kills"])
async def test_an_engine_killed_in_a_destroy_leaves_an_environment_a_destroy_completes(
        setup: Setup, tmp_path: Path, held: str) -> None:
    """The engine is SIGKILLed while it destroys an environment: at its teardown hooks (a
    DESTROY hook task waits; every task is alive) or while it kills the tasks (a forced
    destroy: the steady task is gone, the frozen victim's kill waits on it). The next
    engine lists the environment, the tasks found dead as rows of its last result and the
    live ones re-adopted; a destroy then completes and leaves no process."""
    environment_id = f"cut{held}"
    hold = tmp_path / "hold"
    variables = {"hold_at": "DESTROY", "hold_file": str(hold)} if held == "hooks" else {}
    victim = 0
    with hosting(setup, environment_id, variables, "destroy" if held == "hooks"
                 else "destroy-force") as host:
        try:
            pids: dict[str, int] = await first_line(host)
            victim, steady = pids["faults.victim"], pids["faults.steady"]
            assert host.stdin is not None
            if held == "kills":
                os.kill(victim, signal.SIGSTOP)  # its walk to DONE waits
            host.stdin.write("go\n")
            host.stdin.flush()
            if held == "hooks":
                await until(Path(f"{hold}.began").exists, "began the DESTROY hook")
            else:
                await until(lambda: gone(steady), "killed the steady task")
            launched = executor_children(setup.workdir) | {steady, victim}
            host.kill()
            assert host.wait(timeout=10) == -signal.SIGKILL
        finally:
            if victim:
                resume(victim)
    hold.touch()  # a DESTROY hook run again goes through
    async with Engine(setup.workdir) as engine:
        try:
            [info] = await engine.list_environments()  # not lost
            assert info.id == environment_id
            found_dead = {row.role_path for row in info.last_result if row.failed}
            if held == "hooks":  # the RESET before the hooks was recorded; all alive
                assert info.state == "DEPLOYED" and found_dead == set()
                assert {t.pid for t in info.tasks if t.role_path in pids} == {steady, victim}
            else:
                assert "faults.steady" in found_dead
                [row] = [r for r in info.last_result if r.role_path == "faults.steady"]
                assert "no engine ran" in row.reason  # the victim: alive or not, as it went
            await until_idle(engine, environment_id)  # a GO_ERROR the recovery started
            assert (await engine.destroy_environment(environment_id)).state == "DONE"
            assert await engine.list_environments() == []
            assert await engine.list_tasks() == []
            assert all(gone(pid) for pid in launched), launched
        finally:
            await engine.shutdown_agents()

