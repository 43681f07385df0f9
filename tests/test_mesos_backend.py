"""The engine as a Mesos framework, against a real Mesos 1.11 master and three agents.

The same workflow machinery as on local agents (tests/test_environment_e2e.py): tasks
placed by their machine_id constraints on the agents of that name, the occlib dummy
driven through its whole lifecycle over framework messages, a constraint no agent
meets failing DEPLOY with nothing left running. Each test tears its framework down at
the end (`shutdown_agents`: Mesos kills its executors), so no process outlives it.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from engine import (
    Engine,
    EnvironmentInfo,
    TaskLogError,
    TransitionFailed,
    WorkingDirectory,
)
from engine.api import RemoteEngine
from engine.logtail import LOG_CHUNK
from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.mesos import offer_holder
from engine.scheduler.mesos.framework import REFUSE_SECONDS
from engine.scheduler.mesos.launcher import Launch, fit
from engine.scheduler.mesos.offer_book import OfferBook, parse_offer
from engine.scheduler.mesos.pool import MesosAgentPool
from engine.scheduler.mesos.responses import PendingResponses
from engine.scheduler.mesos.sandbox_log import read_sandbox_log
from engine.scheduler.mesos.settings import (
    Backend,
    MesosSettings,
    MesosSettingsError,
    load_backend,
)
from engine.scheduler.mesos.task_book import FrameworkTask, parse_listing, status_report
from engine.scheduler.mesos.task_info import EXECUTOR_COST
from engine.scheduler.offers import Placement, ResourceUse, TaskDescriptor
from engine.task.taskclass import PortRange, Wants
from tests.conftest import free_port, make_template_repo
from tests.mesos_cluster import MesosCluster, mesos_cluster  # noqa: F401 (the fixture)
from tests.test_environment_e2e import DUMMY, FAIRMQ, SAMPLER_BIND, until_idle
from tests.test_sandbox_log import mesos_read_reply

HOSTS = ("flp001", "flp002", "flp003")

WORKFLOW = """\
name: spread
defaults:
  hosts: '["flp001", "flp002", "flp003"]'
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
        value: flp003
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

NOWHERE = """\
name: nowhere
roles:
  - name: here
    constraints:
      - attribute: machine_id
        value: flp001
    task:
      load: dummy
  - name: there
    constraints:
      - attribute: machine_id
        value: flp009
    task:
      load: dummy
  - name: elsewhere
    constraints:
      - attribute: rack
        value: r9
    task:
      load: dummy
"""

PAIR = """\
name: pair
roles:
  - name: host-{{ it }}
    for:
      range: '["flp001", "flp002"]'
      var: it
    constraints:
      - attribute: machine_id
        value: "{{ it }}"
    task:
      load: dummy
"""

# A long-running task with a large log: the dummy, after 400 000 filler lines (20 MB).
FILLER_LINES = 400_000
LOUD = DUMMY.replace("name: dummy", "name: loud").replace(
    'value: "exec ', f"value: \"seq -f 'filler %07.0f {'x' * 34}' {FILLER_LINES}; exec ")

LOUD_WORKFLOW = """\
name: loud
roles:
  - name: loud
    constraints:
      - attribute: machine_id
        value: flp002
    task:
      load: loud
"""

SETTINGS = """\
backend: mesos
mesos:
  master: {master}
  framework_name: nutshell-test
  failover_timeout: 60s
"""


@pytest.fixture
async def engine(tmp_path: Path, mesos_cluster: MesosCluster  # noqa: F811
                 ) -> AsyncIterator[tuple[Engine, str]]:
    """An engine whose nutshell.yaml chooses the cluster's master; torn down at the end."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(SETTINGS.format(master=mesos_cluster.master_url))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/spread.yaml": WORKFLOW,
        "workflows/nowhere.yaml": NOWHERE,
        "workflows/pair.yaml": PAIR,
        "workflows/loud.yaml": LOUD_WORKFLOW,
        "tasks/dummy.yaml": DUMMY,
        "tasks/loud.yaml": LOUD,
        "tasks/fairmq-sampler.yaml": FAIRMQ.format(name="fairmq-sampler", channels=SAMPLER_BIND,
                                                   python=sys.executable),
        "tasks/fairmq-sink.yaml": FAIRMQ.format(name="fairmq-sink", channels="",
                                                python=sys.executable),
    }, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/"
    finally:
        await engine.shutdown_agents()
        await engine.close()


def framework_tasks(cluster: MesosCluster, name: str = "nutshell-test") -> list[dict[str, Any]]:
    """The live tasks the master holds for our framework."""
    frameworks = [f for f in cluster.state()["frameworks"] if f["name"] == name]
    return [t for f in frameworks for t in f.get("tasks", [])
            if t["state"] not in ("TASK_FINISHED", "TASK_KILLED", "TASK_FAILED", "TASK_LOST")]


def test_settings_choose_the_backend_and_name_what_is_wrong(tmp_path: Path) -> None:
    settings_file = tmp_path / "nutshell.yaml"
    assert load_backend(settings_file) == (Backend.LOCAL, MesosSettings())
    settings_file.write_text("agents:\n  a1: {}\n")
    assert load_backend(settings_file)[0] is Backend.LOCAL
    backend, chosen = load_backend(settings_file, "http://10.0.0.5:5050")  # nutshell core --mesos
    assert (backend, chosen.address) == (Backend.MESOS, "10.0.0.5:5050")
    settings_file.write_text("backend: mesos\nmesos:\n  master: mesos-master\n  role: ecs\n"
                             "  principal: p\n  failover_timeout: 2h\n")
    backend, chosen = load_backend(settings_file)
    assert backend is Backend.MESOS and chosen.url == "http://mesos-master:5050"
    assert (chosen.role, chosen.principal, chosen.failover_timeout) == ("ecs", "p", 7200.0)
    assert chosen.user == "root" and chosen.framework_name == "nutshell"
    for text, named in (("backend: yarn\n", "backend: 'yarn'"),
                        ("mesos:\n  master: zk://zk1:2181/mesos\n", "mesos.master"),
                        ("mesos:\n  failover_timeout: soon\n", "mesos.failover_timeout"),
                        ("mesos:\n  secret: x\n", r"unknown field\(s\) secret")):
        settings_file.write_text(text)
        with pytest.raises(MesosSettingsError, match=named) as error:
            load_backend(settings_file)
        assert str(settings_file) in str(error.value)


def test_mesos_offers_become_the_shared_offer_records() -> None:
    raw = {"id": {"value": "o1"}, "agent_id": {"value": "S1"}, "hostname": "localhost",
           "attributes": [{"name": "machine_id", "type": "TEXT", "text": {"value": "flp001"}},
                          {"name": "slots", "type": "SCALAR", "scalar": {"value": 4.0}}],
           "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}},
                         {"name": "mem", "type": "SCALAR", "scalar": {"value": 2048.0}},
                         {"name": "ports", "type": "RANGES", "ranges": {"range": [
                             {"begin": 30000, "end": 30009}, {"begin": 9000, "end": 9009}]}}]}
    rest = {**raw, "id": {"value": "o2"}, "resources": [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}}]}
    book = OfferBook()
    assert book.add(parse_offer(raw)) and book.add(parse_offer(rest))
    assert not book.add(parse_offer({**raw, "id": {"value": "o3"}, "attributes": []}))
    placed = ResourceUse(1.0, 1000.0, frozenset({9000, 30000}))
    [offer] = book.offers({"flp001": [placed]}, EXECUTOR_COST)
    assert (offer.agent_id, offer.machine_id, offer.attributes["slots"]) == \
        ("flp001", "flp001", "4")
    assert offer.cpus == pytest.approx(2.5 - 1.0 - EXECUTOR_COST.cpus)
    assert offer.mem == pytest.approx(2048 - 1000 - EXECUTOR_COST.mem)
    assert offer.ports == (PortRange(9001, 9009), PortRange(30001, 30009))
    [running] = book.offers({}, EXECUTOR_COST, running_executors=["flp001"])
    assert running.cpus == pytest.approx(2.5)  # its executor runs already: no share taken
    assert sorted(o.offer_id for o in book.take("flp001")) == ["o1", "o2"]
    assert book.offers({}, EXECUTOR_COST) == []


def test_offers_are_checked_again_against_what_each_launch_was_placed_with() -> None:
    offer = parse_offer({"id": {"value": "o1"}, "agent_id": {"value": "S1"}, "resources": [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 200.0}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 30000,
                                                                   "end": 30001}]}}]})

    def launch(task_id: str, cpus: float, mem: float, *ports: int) -> Launch:
        return Launch({}, FrameworkTask(task_id, "flp001", ""),
                      ResourceUse(cpus, mem, frozenset(ports)), asyncio.Future())

    async def check() -> None:
        wanted = [launch("a", 0.2, 64, 30000), launch("b", 0.2, 64, 30000),
                  launch("c", 0.4, 10), launch("d", 0.1, 100, 30001)]
        fitting, short = fit([offer], wanted, EXECUTOR_COST)
        assert [x.record.task_id for x in fitting] == ["a"]
        assert [(x.record.task_id, why) for x, why in short] == [
            ("b", "port(s) 30000 not offered"), ("c", "cpus 0.4 of 0.29 offered"),
            ("d", "mem 100 MB of 72 offered")]  # after the executor's share and a's
        # our executor runs already: no share taken, c and d use the last 0.5 cpus
        assert [x.record.task_id for x in fit([offer], wanted[2:], None)[0]] == ["c", "d"]

    asyncio.run(check())


async def test_answers_find_their_command_by_id_and_task() -> None:
    pending = PendingResponses()
    first = pending.expect("flp001", "c1", "t1")  # one transition: one id, many tasks
    second = pending.expect("flp002", "c1", "t2")
    refused = pending.expect("flp001", "c2", "t3")
    assert pending.answer({"id": "c1", "taskId": "t2", "state": "RUNNING"})
    assert second.result()["state"] == "RUNNING" and not first.done()
    assert not pending.answer({"id": "c1", "taskId": "t9"})  # nobody waits for it
    assert pending.answer({"id": "c2", "taskId": "", "error": "no such task"})  # refused early
    assert refused.result()["error"] == "no such task"
    pending.fail(lambda agent: ConnectionError(f"{agent} lost"), "flp001")
    with pytest.raises(ConnectionError, match="flp001 lost"):
        first.result()


def test_mesos_statuses_become_the_reports_the_manager_reads() -> None:
    task = FrameworkTask("t1", "flp002", "S2")
    lost = status_report(task, {"state": "TASK_UNREACHABLE", "reason": "REASON_AGENT_REMOVED"},
                         "node2")
    assert lost["state"] == "TASK_LOST" and lost["taskId"] == "t1"
    assert "flp002" in lost["message"] and "node2" in lost["message"]
    assert "REASON_AGENT_REMOVED" in lost["message"]
    failed = status_report(task, {"state": "TASK_FAILED", "message": "exit 3"}, "node2")
    assert (failed["state"], failed["message"]) == ("TASK_FAILED", "exit 3")
    listing = parse_listing("flp002", {"tasks": [{"taskId": "t1", "pid": 42, "state": "RUNNING",
                                                   "status": "TASK_RUNNING"}]})
    [remote] = listing.tasks
    assert (listing.agent_name, remote.task_id, remote.pid, remote.state) == \
        ("flp002", "t1", 42, "RUNNING")


async def test_lifecycle_on_the_hosts_the_constraints_name(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    engine_, workflows = engine
    info = await engine_.create_environment(workflows + "spread@master")
    assert info.state == "CONFIGURED"
    by_role = {task.role_path: task for task in info.tasks}
    assert sorted(by_role) == ["spread.chain.sampler", "spread.chain.sink",
                               *(f"spread.host-{h}.dummy" for h in HOSTS)]
    agent_ids = {a.name: a.agent_id for a in mesos_cluster.agents}
    on_mesos = {t["id"]: t for t in framework_tasks(mesos_cluster)}
    assert set(on_mesos) == {task.task_id for task in info.tasks}
    for host in HOSTS:
        task = by_role[f"spread.host-{host}.dummy"]
        assert task.host == host
        assert on_mesos[task.task_id]["slave_id"] == agent_ids[host]
        assert on_mesos[task.task_id]["state"] == "TASK_RUNNING"
        name = on_mesos[task.task_id]["name"]  # AliECS's task name: <class>#<task id>
        assert "/tasks/dummy@" in name and name.endswith(f"#{task.task_id}")
        assert {"key": "environmentId", "value": info.id} in on_mesos[task.task_id]["labels"]
        assert on_mesos[task.task_id]["executor_id"] == f"nutshell-executor-{host}"
        control = mesos_cluster.agent(host).control_ports
        assert task.control_port is not None
        assert control[0] <= task.control_port <= control[1]
    for role in ("spread.chain.sampler", "spread.chain.sink"):
        assert on_mesos[by_role[role].task_id]["slave_id"] == agent_ids["flp003"]
    assert {task.state for task in info.tasks} == {"CONFIGURED"}
    hosts = {agent.name: agent for agent in await engine_.list_agents()}  # the hosts view
    assert sorted(hosts) == list(HOSTS) and hosts["flp003"].tasks == 3
    assert hosts["flp001"].cpus == 2.0 and hosts["flp001"].mem == 2048.0

    started = await engine_.control_environment(info.id, "START")
    assert (started.state, started.run_number) == ("RUNNING", 1)
    dummy = by_role["spread.host-flp002.dummy"]  # its output, from the agent's sandbox
    assert "START" in await engine_.task_log(dummy.task_id, 50)
    assert {row.after for row in started.rows} == {"RUNNING"}
    stopped = await engine_.control_environment(info.id, "STOP")
    assert stopped.state == "CONFIGURED"
    reset = await engine_.control_environment(info.id, "RESET")
    assert reset.state == "DEPLOYED"
    assert {t.state for t in (await engine_.get_environment(info.id)).tasks} == {"STANDBY"}

    destroyed = await engine_.destroy_environment(info.id)
    assert destroyed.state == "DONE"
    assert framework_tasks(mesos_cluster) == []
    assert await engine_.list_environments() == []


async def test_an_unsatisfiable_constraint_fails_deploy_leaving_nothing(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    engine_, workflows = engine
    with pytest.raises(TransitionFailed) as failed:
        await engine_.create_environment(workflows + "nowhere@master")
    reasons = {row.role_path: row.reason for row in failed.value.result.rows if row.failed}
    assert "no resource offer for required host flp009" in reasons["nowhere.there"]
    assert "nowhere.there" in reasons["nowhere.there"]
    assert "rack" in reasons["nowhere.elsewhere"] and "r9" in reasons["nowhere.elsewhere"]
    assert framework_tasks(mesos_cluster) == []
    assert await engine_.list_environments() == []


async def test_environments_created_at_once_share_the_agents(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """Both deployments match the same held offers; the one that comes second gets fresh
    offers of those agents (revived) and launches there too."""
    engine_, workflows = engine
    made = await asyncio.gather(*(engine_.create_environment(workflows + "pair@master")
                                  for _ in range(3)))
    assert [info.state for info in made] == ["CONFIGURED"] * 3
    on_mesos = {t["id"]: t for t in framework_tasks(mesos_cluster)}
    assert set(on_mesos) == {task.task_id for info in made for task in info.tasks}
    for info in made:
        await engine_.destroy_environment(info.id)
    assert framework_tasks(mesos_cluster) == []


async def test_idle_offers_are_declined_and_suppressed_and_a_deploy_revives_them(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offer_holder, "HOLD_SECONDS", 0.5)
    engine_, _ = engine
    pool = (await engine_._environments()).agents
    assert isinstance(pool, MesosAgentPool)
    came: list[int] = []
    offered = pool.offered
    monkeypatch.setattr(pool, "offered", lambda offers: (came.append(len(offers)),
                                                         offered(offers)))
    await pool.start()
    assert {offer.machine_id for offer in pool.offers({})} == set(HOSTS)
    for _ in range(100):  # the hold lapses: declined
        if not any(f.get("offers") for f in mesos_cluster.state()["frameworks"]):
            break
        await asyncio.sleep(0.05)
    came.clear()
    await asyncio.sleep(2 * REFUSE_SECONDS + 0.5)  # past the refuse filter: suppressed, none came
    assert came == [] and pool.offers({}) == []
    await pool.start()  # a deployment's start revives
    assert {offer.machine_id for offer in pool.offers({})} == set(HOSTS)


async def test_a_new_engine_takes_the_running_tasks_back(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """Framework failover: the first engine goes (its framework is kept by the master), the
    next subscribes with the stored framework id, reconciles, and re-adopts every task with
    its state and pid; the run goes on and ends under the new engine."""
    first, workflows = engine
    made = await first.create_environment(workflows + "spread@master")
    assert (await first.control_environment(made.id, "START")).run_number == 1
    before = {t.task_id: t for t in (await first.get_environment(made.id)).tasks}
    await first.close()
    assert {t["id"] for t in framework_tasks(mesos_cluster)} == set(before)

    second = Engine(first.workdir)
    try:
        info = await second.get_environment(made.id)
        assert info.state == "RUNNING"
        assert {t.task_id: (t.state, t.pid, t.host) for t in info.tasks} == \
            {t.task_id: ("RUNNING", t.pid, t.host) for t in before.values()}
        stopped = await second.control_environment(made.id, "STOP")
        assert stopped.state == "CONFIGURED"
        assert (await second.destroy_environment(made.id)).state == "DONE"
        assert framework_tasks(mesos_cluster) == []
    finally:
        await second.shutdown_agents()
        await second.close()


async def test_a_framework_expired_while_no_engine_ran_is_replaced_and_its_tasks_reported(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """Past the failover timeout the master removes the framework and kills its tasks: the
    next engine is refused the old id, subscribes as a new framework, and reports every task
    of the stored environment dead (a row each, ERROR) instead of waiting or adopting."""
    first, workflows = engine
    first.workdir.settings_file.write_text(
        SETTINGS.format(master=mesos_cluster.master_url).replace("60s", "1s"))
    made = await first.create_environment(workflows + "pair@master")
    await first.close()
    for _ in range(200):  # the master expires the framework 1 s after the engine left
        if not framework_tasks(mesos_cluster):
            break
        await asyncio.sleep(0.05)
    assert framework_tasks(mesos_cluster) == []

    second = Engine(first.workdir)
    try:
        info = await second.get_environment(made.id)
        assert {t.state for t in info.tasks} == {"ERROR"}
        reasons = [row.reason for row in info.last_result]
        assert len(reasons) == 2 and all("no longer runs task" in r for r in reasons), reasons
        assert (await second.destroy_environment(made.id)).state == "DONE"
    finally:
        await second.shutdown_agents()
        await second.close()


async def test_nutshell_core_mesos_serves_the_front_ends_on_the_cluster(
        tmp_path: Path, mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """`nutshell core --mesos URL` on a working directory that says nothing of Mesos: the
    same RemoteEngine a front-end uses runs a workflow whose default hosts are the cluster's
    agents; stopping the core fails the framework over, `agents stop` tears it down."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/spread.yaml": WORKFLOW.replace(
            "  hosts: '[\"flp001\", \"flp002\", \"flp003\"]'\n", "  unused: x\n"),
        "tasks/dummy.yaml": DUMMY,
        "tasks/fairmq-sampler.yaml": FAIRMQ.format(name="fairmq-sampler", channels=SAMPLER_BIND,
                                                   python=sys.executable),
        "tasks/fairmq-sink.yaml": FAIRMQ.format(name="fairmq-sink", channels="",
                                                python=sys.executable),
    }, corpus=False)
    address = f"127.0.0.1:{free_port()}"
    core = subprocess.Popen([sys.executable, "-m", "console.cli", "core", "--listen", address,
                             "--mesos", mesos_cluster.master_url],
                            env={**os.environ, "NUTSHELL_HOME": str(workdir.root)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert core.stdout is not None
        line = await asyncio.to_thread(core.stdout.readline)
        assert f"on {address}" in line, line
        async with RemoteEngine(address) as remote:
            added = await remote.add_repo(str(repo), "master")
            info = await remote.create_environment(f"{added.repo}/workflows/spread@master")
            assert {t.host for t in info.tasks} == set(HOSTS)
            assert {t["id"] for t in framework_tasks(mesos_cluster, "nutshell")} == \
                {t.task_id for t in info.tasks}
            assert (await remote.destroy_environment(info.id)).state == "DONE"
    finally:
        if core.poll() is None:
            core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0
        for stream in (core.stdout, core.stderr):
            if stream is not None:
                stream.close()
        async with Engine(workdir, mesos=mesos_cluster.master_url) as cleanup:
            assert await cleanup.shutdown_agents() == list(HOSTS)
    assert framework_tasks(mesos_cluster, "nutshell") == []


async def settled(engine_: Engine, environment_id: str, state: str) -> EnvironmentInfo:
    """The environment once it reached `state` and no transition runs on it."""
    for _ in range(300):
        info = await engine_.get_environment(environment_id)
        if info.state == state:
            return await until_idle(engine_, environment_id)
        await asyncio.sleep(0.05)
    raise AssertionError(f"environment {environment_id} is {info.state}, not {state}")


async def no_offers_held(cluster: MesosCluster) -> None:  # noqa: F811
    for _ in range(200):
        if not any(f.get("offers") for f in cluster.state()["frameworks"]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the framework still holds offers")


async def test_recover_deploys_a_killed_task_again_on_revived_offers(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The task's process dies, the environment goes to ERROR; by the time of RECOVER the
    pool holds no offer (declined, suppressed), and RECOVER revives them to deploy the
    role again on the host its machine_id constraint names."""
    monkeypatch.setattr(offer_holder, "HOLD_SECONDS", 0.5)
    engine_, workflows = engine
    made = await engine_.create_environment(workflows + "pair@master")
    victim = next(t for t in made.tasks if t.host == "flp001")
    assert victim.pid is not None
    await no_offers_held(mesos_cluster)
    os.kill(victim.pid, signal.SIGKILL)
    failed = await settled(engine_, made.id, "ERROR")
    assert {t.state for t in failed.tasks if t.task_id == victim.task_id} == {"ERROR"}
    await no_offers_held(mesos_cluster)

    recovered = await engine_.control_environment(made.id, "RECOVER")
    assert recovered.state == "DEPLOYED"
    info = await engine_.get_environment(made.id)
    [again] = [t for t in info.tasks if t.host == "flp001"]
    assert again.task_id != victim.task_id and again.state == "STANDBY"
    on_mesos = {t["id"]: t for t in framework_tasks(mesos_cluster)}
    assert set(on_mesos) == {t.task_id for t in info.tasks}
    assert on_mesos[again.task_id]["slave_id"] == mesos_cluster.agent("flp001").agent_id
    assert on_mesos[again.task_id]["state"] == "TASK_RUNNING"
    assert (await engine_.destroy_environment(made.id)).state == "DONE"
    assert framework_tasks(mesos_cluster) == []


async def test_task_logs_come_from_the_agents_sandbox(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """The engine reads a task's log from its agent (`/files/read` of the sandbox), not
    from the logPath symlink the executor leaves on the node; a log the agent cannot serve
    is an error naming the agent and the path."""
    engine_, workflows = engine
    made = await engine_.create_environment(workflows + "pair@master")
    assert (await engine_.control_environment(made.id, "START")).state == "RUNNING"
    task = next(t for t in made.tasks if t.host == "flp002")
    Path(task.log_path).unlink(missing_ok=True)  # only the sandbox has it now
    [framework] = [f for f in mesos_cluster.state()["frameworks"]
                   if f["name"] == "nutshell-test"]
    executor = "nutshell-executor-flp002"
    whole = mesos_cluster.read_sandbox_file("flp002", framework["id"], executor,
                                            f"{task.task_id}.log")
    assert "START" in whole
    assert await engine_.task_log(task.task_id, 2) == \
        "".join(whole.splitlines(keepends=True)[-2:])
    assert await engine_.task_log(task.task_id, 10_000) == whole

    sandbox = mesos_cluster.agent("flp002").sandbox(framework["id"], executor)
    (sandbox / f"{task.task_id}.log").unlink()
    with pytest.raises(TaskLogError) as error:
        await engine_.task_log(task.task_id, 5)
    assert "flp002" in str(error.value) and f"{task.task_id}.log" in str(error.value)
    assert "404" in str(error.value)
    assert (await engine_.destroy_environment(made.id)).state == "DONE"


class CountingProxy:
    """A plain HTTP proxy in front of one agent that counts the body bytes it relays, by
    endpoint path: what reading a log really costs on the wire."""

    def __init__(self, upstream: str) -> None:
        self.relayed: dict[str, int] = {}
        proxy = self

        class Relay(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                try:
                    with urllib.request.urlopen(f"http://{upstream}{self.path}",
                                                timeout=10) as reply:
                        status, body = reply.status, reply.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                endpoint = urllib.parse.urlsplit(self.path).path
                proxy.relayed[endpoint] = proxy.relayed.get(endpoint, 0) + len(body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.endpoint = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


async def test_a_large_log_is_read_from_its_end_not_downloaded(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """A task that wrote 20 MB: its last 50 lines cost one chunk from the end of the file
    (`/files/read`), measured on the wire by a proxy in front of the real agent; and the
    agent's replies are byte for byte those the fake agent of tests/test_sandbox_log.py
    sends, raw non-UTF-8 bytes and escapes included."""
    engine_, workflows = engine
    made = await engine_.create_environment(workflows + "loud@master")
    [task] = made.tasks
    [framework] = [f for f in mesos_cluster.state()["frameworks"]
                   if f["name"] == "nutshell-test"]
    agent = mesos_cluster.agent("flp002")
    sandbox = agent.sandbox(framework["id"], "nutshell-executor-flp002").resolve()
    content = (sandbox / f"{task.task_id}.log").read_bytes()
    assert content.count(b"filler ") == FILLER_LINES and len(content) > 20_000_000
    expected = "".join(content.decode().splitlines(keepends=True)[-50:])
    assert b"filler %07d" % FILLER_LINES in expected.encode()  # the tail spans both writers

    with CountingProxy(agent.endpoint) as proxy:
        got = await asyncio.to_thread(read_sandbox_log, "flp002", proxy.endpoint,
                                      framework["id"], task.task_id, 50)
    assert got == expected
    assert set(proxy.relayed) == {"/state", "/files/read"}
    assert proxy.relayed["/files/read"] < 2 * LOG_CHUNK  # JSON: the bytes plus escapes
    assert await engine_.task_log(task.task_id, 50) == expected

    every_byte = bytes(range(256)) * 2
    (sandbox / "every-byte.log").write_bytes(every_byte)
    path = str(sandbox / "every-byte.log")
    for offset, length, data in ((-1, None, b""), (0, 512, every_byte), (3, 100, every_byte[3:103])):
        query = {"path": path, "offset": str(offset)} | ({"length": str(length)} if length else {})
        with urllib.request.urlopen(f"{agent.url}/files/read?{urllib.parse.urlencode(query)}",
                                    timeout=10) as reply:
            assert reply.read() == mesos_read_reply(data, len(every_byte) if offset < 0 else offset)
    assert (await engine_.destroy_environment(made.id)).state == "DONE"


async def test_hosts_and_tasks_views_show_the_cluster_before_the_pool_starts(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """A destroy that keeps its tasks leaves them running, unlocked; the next engine shows
    every agent with our executor (pid) and task count from the master, lists those tasks
    with their OCC state from the executors, and cleans them up."""
    first, workflows = engine
    made = await first.create_environment(workflows + "pair@master")
    await first.destroy_environment(made.id, keep_tasks=True)
    await first.close()
    kept = {t.task_id: t for t in made.tasks}
    assert {t["id"] for t in framework_tasks(mesos_cluster)} == set(kept)

    second = Engine(first.workdir)
    try:
        hosts = {agent.name: agent for agent in await second.list_agents()}
        manager = await second._environments()
        assert not manager.agents.started  # the views so far needed no subscription
        assert sorted(hosts) == list(HOSTS)
        for name in ("flp001", "flp002"):  # the pid is the executor's container (its parent)
            assert hosts[name].executor_running and hosts[name].executor_pid is not None
            [executor] = psutil.Process(hosts[name].executor_pid).children()
            assert "executor.cli" in executor.cmdline()
            assert hosts[name].tasks == 1
            assert hosts[name].cpus_used >= 0.02 and hosts[name].mem_used >= 32 + 64
            assert len(hosts[name].ports_in_use) == 1  # the control port
        assert not hosts["flp003"].executor_running and hosts["flp003"].executor_pid is None
        assert (hosts["flp003"].tasks, hosts["flp003"].cpus_used) == (0, 0.0)
        assert hosts["flp003"].attributes == {} and hosts["flp003"].cpus == 2.0

        listed = {t.task_id: t for t in await second.list_tasks()}
        assert set(listed) == set(kept)
        for task_id, task in listed.items():
            assert not task.locked and (task.state, task.host) == ("STANDBY", kept[task_id].host)
            assert task.pid == kept[task_id].pid
        killed, running = await second.cleanup_tasks()
        assert {t.task_id for t in killed} == set(kept) and running == []
        assert framework_tasks(mesos_cluster) == []
    finally:
        await second.shutdown_agents()
        await second.close()


async def test_a_launch_whose_offers_were_taken_fails_naming_what_is_missing(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A task placed on offers a racing deployment launched on first: the offers are
    checked again before the ACCEPT, and the launch fails naming the port now taken
    instead of reaching Mesos (a TASK_ERROR)."""
    engine_, workflows = engine
    manager = await engine_._environments()
    pool = manager.agents
    assert isinstance(pool, MesosAgentPool)
    await pool.start()
    [stale] = [offer for offer in pool.offers({}) if offer.agent_id == "flp001"]
    made = await engine_.create_environment(workflows + "pair@master")  # the race's winner
    taken = next(t for t in made.tasks if t.host == "flp001").control_port
    assert taken is not None and any(r.begin <= taken <= r.end for r in stale.ports)
    late = Placement(TaskDescriptor("race.late", "dummy", Wants(0.01, 32)), stale, taken)
    placed = pool._placement_of
    monkeypatch.setattr(pool, "_placement_of",
                        lambda task_id: late if task_id == "late1" else placed(task_id))
    command = next(iter(manager._environments[made.id].tasks.values())).command
    with pytest.raises(LocalAgentError) as refused:
        await pool.client("flp001").launch("late1", command, environment_id="race")
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"port(s) {taken} not offered" in str(refused.value)
    assert "flp001" in str(refused.value) and "late1" in str(refused.value)
    assert {t["id"] for t in framework_tasks(mesos_cluster)} == {t.task_id for t in made.tasks}
    assert (await engine_.destroy_environment(made.id)).state == "DONE"


async def test_a_lost_agent_puts_the_environment_in_error_naming_it(
        engine: tuple[Engine, str], mesos_cluster: MesosCluster) -> None:  # noqa: F811
    """Last in the module: the agent killed stays dead for the module's cluster."""
    engine_, workflows = engine
    made = await engine_.create_environment(workflows + "spread@master")
    assert (await engine_.control_environment(made.id, "START")).run_number == 1
    mesos_cluster.kill_agent("flp002")
    info = made
    for _ in range(300):  # Mesos declares the agent lost after its ping timeouts (3-4 s)
        info = await engine_.get_environment(made.id)
        if info.state == "ERROR":
            break
        await asyncio.sleep(0.1)
    assert info.state == "ERROR"
    info = await until_idle(engine_, made.id)
    lost = {t.task_id for t in info.tasks if t.host == "flp002"}
    assert lost and {(t.state, t.status) for t in info.tasks if t.task_id in lost} == \
        {("ERROR", "INACTIVE")}
    reasons = [row.reason for row in info.last_result if row.task_id in lost]
    assert reasons and all("flp002" in reason for reason in reasons)
    assert (await engine_.destroy_environment(made.id)).state == "DONE"
    assert framework_tasks(mesos_cluster) == []
