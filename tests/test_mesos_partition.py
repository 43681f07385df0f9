"""A partitioned Mesos agent that comes back (a cluster of its own: the agent is frozen).

Mesos 1.11 reports the tasks of an agent it cannot reach TASK_LOST, and TASK_RUNNING
(REASON_AGENT_REREGISTERED) once the agent re-registers (../shared/mesos/README.md,
"Partition, then heal"). The environment goes to ERROR at the loss and stays there (the
operator RECOVERs it), but the task that came back shows the state its executor reports.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine import Engine, EnvironmentInfo, WorkingDirectory
from tests.conftest import make_template_repo
from tests.mesos_cluster import MesosCluster, mesos_cluster  # noqa: F401 (the fixture)
from tests.test_environment_e2e import DUMMY, until_idle
from tests.test_mesos_backend import PAIR, SETTINGS, framework_tasks


@pytest.fixture
async def engine(tmp_path: Path, mesos_cluster: MesosCluster  # noqa: F811
                 ) -> AsyncIterator[tuple[Engine, str]]:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(SETTINGS.format(master=mesos_cluster.master_url))
    repo = make_template_repo(tmp_path / "templates", {"workflows/pair.yaml": PAIR,
                                                       "tasks/dummy.yaml": DUMMY}, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/"
    finally:
        await engine.shutdown_agents()
        await engine.close()


async def until(engine: Engine, environment_id: str, what: str,
                check: Callable[[EnvironmentInfo], bool]) -> EnvironmentInfo:
    for _ in range(400):  # Mesos declares a frozen agent lost after its ping timeouts (3-4 s)
        info = await engine.get_environment(environment_id)
        if check(info):
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"environment {environment_id}: never {what}: {info}")


async def test_a_task_back_from_a_partition_shows_its_state_and_recover_takes_it_back(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    engine_, workflows = engine
    made = await engine_.create_environment(workflows + "pair@master")
    assert (await engine_.control_environment(made.id, "START")).state == "RUNNING"
    away = next(t for t in made.tasks if t.host == "flp002")

    mesos_cluster.kill_agent("flp002", "--signal", "STOP")
    try:
        lost = await until(engine_, made.id, "ERROR", lambda info: info.state == "ERROR")
        lost = await until_idle(engine_, made.id)
        [row] = [t for t in lost.tasks if t.task_id == away.task_id]
        assert (row.state, row.status) == ("ERROR", "INACTIVE")
    finally:
        mesos_cluster.kill_agent("flp002", "--signal", "CONT")

    def back(info: EnvironmentInfo) -> bool:
        return any(t.task_id == away.task_id and t.status == "ACTIVE" for t in info.tasks)

    healed = await until(engine_, made.id, "the task back", back)
    assert healed.state == "ERROR"  # the operator decides: RECOVER
    [row] = [t for t in healed.tasks if t.task_id == away.task_id]
    assert (row.state, row.pid) == ("RUNNING", away.pid)
    assert {t["id"]: t["state"] for t in framework_tasks(mesos_cluster)} == \
        {t.task_id: "TASK_RUNNING" for t in made.tasks}

    recovered = await engine_.control_environment(made.id, "RECOVER")
    assert recovered.state == "DEPLOYED"
    info = await engine_.get_environment(made.id)
    assert {t.task_id: t.state for t in info.tasks} == \
        {t.task_id: "STANDBY" for t in made.tasks}  # the same tasks, none deployed again
    assert (await engine_.destroy_environment(made.id)).state == "DONE"
    assert framework_tasks(mesos_cluster) == []
