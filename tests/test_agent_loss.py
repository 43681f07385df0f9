"""An executor that dies under a running engine: its tasks are reported lost, a critical
one puts the environment in ERROR (§1.2, agent loss), the environment can still be
destroyed, and the next deployment starts the agent's executor again."""
from __future__ import annotations

import asyncio
import os
import signal

import psutil

from engine import Engine
from engine.scheduler.local_agent import find_running
from tests.test_environment_e2e import engine  # noqa: F401  (the fixture)
from tests.test_environment_e2e import until_idle


async def test_a_killed_executor_loses_its_tasks_and_errors_the_environment(
        engine: tuple[Engine, str]) -> None:  # noqa: F811
    engine_, reference = engine
    made = await engine_.create_environment(reference, user="alice")
    assert (await engine_.control_environment(made.id, "START")).run_number == 1
    on_a2 = [t for t in made.tasks if t.host == "a2"]
    assert on_a2 and all(t.pid for t in on_a2)
    os.kill(find_running(engine_.workdir.root)["a2"].pid, signal.SIGKILL)

    info = made
    for _ in range(150):  # the loss is noticed when the event stream breaks
        info = await engine_.get_environment(made.id)
        if info.state == "ERROR":
            break
        await asyncio.sleep(0.1)
    assert info.state == "ERROR"
    info = await until_idle(engine_, made.id)  # GO_ERROR let go of it
    lost = {t.task_id: t for t in info.tasks if t.host == "a2"}
    assert {t.state for t in lost.values()} == {"ERROR"}
    assert all(t.status == "INACTIVE" for t in lost.values())
    reasons = [row.reason for row in info.last_result if row.task_id in lost]
    assert reasons and all("the executor of agent a2 is gone" in reason for reason in reasons)
    for task in on_a2:  # the tasks died with their executor
        assert not psutil.pid_exists(task.pid) or \
            psutil.Process(task.pid).status() == psutil.STATUS_ZOMBIE

    destroyed = await engine_.destroy_environment(made.id)
    assert destroyed.state == "DONE"
    again = await engine_.create_environment(reference)  # a2's executor is started anew
    assert again.state == "CONFIGURED" and {t.host for t in again.tasks} == {"a1", "a2"}
    assert "a2" in find_running(engine_.workdir.root)
    await engine_.destroy_environment(again.id)
