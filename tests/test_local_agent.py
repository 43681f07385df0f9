"""The local-agent transport: a real `nutshell-executor agent`, real dummy tasks, real gRPC."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from engine.scheduler import local_agent
from engine.scheduler.agents import default_agents
from engine.scheduler.local_agent import (
    LocalAgentClient,
    LocalAgentError,
    LocalAgentProcess,
    agent_secret,
    find_running,
    socket_address,
)
from executor.protos import agent_pb2, agent_pb2_grpc
from tests.conftest import ROOT, free_port

FLP001 = default_agents()[0]


def dummy(port: int) -> dict[str, Any]:
    return {"value": sys.executable, "arguments": ["-m", "occlib.examples.dummy"],
            "controlPort": port, "controlMode": "direct", "shell": False, "stdout": "none"}


def transition(task_id: str, src: str, event: str, dst: str, **arguments: str) -> dict[str, Any]:
    return {"name": "MesosCommand_Transition", "id": f"cmd-{event}", "environmentId": "env1",
            "timeout": 20 * 10**9, "arguments": arguments,
            "targetList": [{"AgentId": {"value": "flp001"}, "ExecutorId": {"value": "flp001"},
                            "TaskId": {"value": task_id}}],
            "labels": {}, "source": src, "event": event, "destination": dst}


def _stop(pid: int) -> None:
    """SIGTERM (the executor takes its tasks down), SIGKILL if it lingers; reaped either way."""
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    except psutil.NoSuchProcess:
        pass


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A working directory; every executor of it still alive at the end is stopped."""
    root = tmp_path / "home"
    root.mkdir()
    yield root
    for agent in find_running(root).values():
        _stop(agent.pid)


@pytest.fixture
def agent(home: Path) -> Iterator[LocalAgentProcess]:
    """flp001's executor starter; the executor it started is collected at the end."""
    starter = LocalAgentProcess(home, FLP001)
    yield starter
    if starter.process is not None:
        _stop(starter.process.pid)
        starter.process.wait(timeout=5)


class Events:
    """An events() reader that collects bodies until one matches."""

    def __init__(self, client: LocalAgentClient, after: int = 0) -> None:
        self.stream: AsyncIterator[tuple[int, dict[str, Any]]] = client.events(after)
        self.seen: list[tuple[int, dict[str, Any]]] = []

    async def until(self, **match: Any) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            async for seq, body in self.stream:
                self.seen.append((seq, body))
                if all(body.get(k) == v for k, v in match.items()):
                    return body
            raise AssertionError(f"events ended before {match}")
        return await asyncio.wait_for(read(), timeout=20)

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        return [body for _, body in self.seen if body["_messageType"] == kind]

    async def close(self) -> None:
        await self.stream.aclose()  # type: ignore[attr-defined]


async def test_a_task_is_launched_driven_and_killed_through_the_agent(
        home: Path, agent: LocalAgentProcess) -> None:
    async with await agent.connect() as client:
        assert oct((home / "agent.secret").stat().st_mode & 0o777) == "0o600"
        socket_path = Path(find_running(home)["flp001"].address.removeprefix("unix:"))
        assert oct(socket_path.stat().st_mode & 0o777) == "0o600"
        events = Events(client)
        await client.launch("t1", dummy(free_port()), environment_id="env1", detector="TST")
        await events.until(_messageType="StatusUpdate", state="TASK_RUNNING")
        announced = await events.until(_messageType="AnnounceTaskPIDEvent")
        assert announced["taskId"] == "t1" and announced["pid"] > 0
        states = []
        for src, event, dst in (("STANDBY", "CONFIGURE", "CONFIGURED"),
                                ("CONFIGURED", "START", "RUNNING"),
                                ("RUNNING", "STOP", "CONFIGURED"),
                                ("CONFIGURED", "RESET", "STANDBY")):
            response = await client.command(transition("t1", src, event, dst, runNumber="7"))
            assert response["_messageType"] == "MesosCommandResponse"
            assert response["error"] == "" and response["taskId"] == "t1"
            assert response["id"] == f"cmd-{event}" and response["environmentId"] == "env1"
            states.append(response["state"])
        assert states == ["CONFIGURED", "RUNNING", "CONFIGURED", "STANDBY"]
        [listed] = (await client.list_tasks()).tasks
        assert (listed.task_id, listed.state, listed.status, listed.detector) == \
            ("t1", "STANDBY", "TASK_RUNNING", "TST")
        assert listed.pid == announced["pid"] and listed.log_path.endswith("t1.log")
        pid = listed.pid
        await client.kill("t1")
        finished = await events.until(_messageType="StatusUpdate", state="TASK_FINISHED")
        assert finished["labels"] == {"environmentId": "env1", "detector": "TST"}
        assert [b["state"] for b in events.bodies("StatusUpdate")] == \
            ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert (await client.list_tasks()).tasks == ()
        assert "START run=7" in (home / "logs" / "t1.log").read_text()
        with pytest.raises(LocalAgentError, match="no task 't1' on agent flp001") as refused:
            await client.command(transition("t1", "STANDBY", "CONFIGURE", "CONFIGURED"))
        assert refused.value.code is grpc.StatusCode.NOT_FOUND
        await events.close()


async def test_a_call_without_the_secret_is_refused(agent: LocalAgentProcess) -> None:
    async with await agent.connect() as good:
        address = good.address
    async with LocalAgentClient("flp001", address, "not-the-secret") as bad:
        with pytest.raises(LocalAgentError, match="UNAUTHENTICATED.*wrong secret") as refused:
            await bad.list_tasks()
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(LocalAgentError, match="Events failed: UNAUTHENTICATED"):
            async for _ in bad.events():
                pass
        with pytest.raises(LocalAgentError, match="UNAUTHENTICATED"):
            await bad.launch("t1", dummy(free_port()))
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as bare:
            await agent_pb2_grpc.AgentStub(channel).ListTasks(agent_pb2.ListTasksRequest())
        assert bare.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "no 'authorization: Bearer <secret>' metadata" in (bare.value.details() or "")


async def test_events_wait_for_the_executor_and_refuse_a_future_seq(
        home: Path, agent: LocalAgentProcess) -> None:
    async with LocalAgentClient("flp001", socket_address(home, "flp001"),
                                agent_secret(home)) as client:
        events = Events(client)
        running = asyncio.ensure_future(events.until(state="TASK_RUNNING"))
        await asyncio.sleep(0.3)  # nothing serves yet: the reader keeps retrying
        assert not running.done()
        await agent.start()
        await client.wait_ready(10)
        await client.launch("t1", dummy(free_port()))
        await running
        with pytest.raises(LocalAgentError, match="no event 1000 yet") as ahead:
            async for _ in client.events(after=1000):
                pass
        assert ahead.value.code is grpc.StatusCode.OUT_OF_RANGE
        await client.kill("t1")
        await events.until(state="TASK_FINISHED")
        await events.close()


async def test_a_hook_is_triggered_and_bad_bodies_are_refused(agent: LocalAgentProcess) -> None:
    async with await agent.connect() as client:
        events = Events(client)
        await client.launch("h1", {"value": 'echo "hook run $runNumber"', "shell": True,
                                   "controlMode": "hook"}, environment_id="env1")
        await events.until(state="TASK_RUNNING")
        trigger = {**transition("h1", "", "", "", runNumber="5"), "name": "MesosCommand_TriggerHook"}
        response = await client.command(trigger)
        assert (response["name"], response["error"], response["taskId"]) == \
            ("MesosCommand_TriggerHook", "", "h1")
        terminated = await events.until(_messageType="DeviceEvent")
        assert terminated["exitCode"] == 0 and "hook run 5" in terminated["stdout"]
        two = transition("h1", "STANDBY", "CONFIGURE", "CONFIGURED")
        two["targetList"] = two["targetList"] * 2
        with pytest.raises(LocalAgentError, match="exactly one target") as refused:
            await client.command(two)
        assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(LocalAgentError, match="unknown command 'MesosCommand_Nope'"):
            await client.command({**two, "name": "MesosCommand_Nope", "targetList": [
                {"TaskId": {"value": "h1"}}]})
        with pytest.raises(LocalAgentError, match="task h1 already exists on agent flp001"):
            await client.launch("h1", {"value": "true", "controlMode": "hook"})
        with pytest.raises(LocalAgentError, match="bad TaskCommandInfo"):
            await client.launch("h2", {"value": "true", "stdout": "loud"})
        with pytest.raises(LocalAgentError, match="task id '../x' is not letters"):
            await client.launch("../x", {"value": "true"})
        await client.kill("h1")
        await events.until(state="TASK_FINISHED")
        await events.close()



async def test_a_batch_runs_every_command_and_keeps_each_outcome_apart(
        home: Path, agent: LocalAgentProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    async with await agent.connect() as client:
        events = Events(client)
        for task_id in ("t1", "t2", "t3"):
            await client.launch(task_id, dummy(free_port()), environment_id="env1")
        while {b["taskId"] for b in events.bodies("AnnounceTaskPIDEvent")} != {"t1", "t2", "t3"}:
            await events.until(_messageType="AnnounceTaskPIDEvent")
        configured = await client.command_batch(
            [transition(t, "STANDBY", "CONFIGURE", "CONFIGURED", **{"fail-on": "START"} if
                        t == "t2" else {}) for t in ("t1", "t2", "t3")])
        assert [(r["taskId"], r["state"], r["error"]) for r in configured] == \
            [("t1", "CONFIGURED", ""), ("t2", "CONFIGURED", ""), ("t3", "CONFIGURED", "")]
        two = transition("t3", "CONFIGURED", "START", "RUNNING")
        two["targetList"] = two["targetList"] * 2
        monkeypatch.setattr(local_agent, "BATCH_LIMIT", 2)  # five commands: three calls
        started = await client.command_batch(
            [transition("t1", "CONFIGURED", "START", "RUNNING", runNumber="3"),
             transition("t2", "CONFIGURED", "START", "RUNNING", runNumber="3"),
             transition("nope", "CONFIGURED", "START", "RUNNING"),
             two,
             transition("t3", "CONFIGURED", "START", "RUNNING", runNumber="3")])
        ok, failed, unknown, refused, last = started
        assert isinstance(ok, dict) and (ok["taskId"], ok["state"], ok["error"]) == \
            ("t1", "RUNNING", "")
        assert isinstance(failed, dict) and failed["taskId"] == "t2"
        assert failed["state"] == "ERROR" and failed["error"]
        assert isinstance(unknown, LocalAgentError)
        assert unknown.code is grpc.StatusCode.NOT_FOUND
        assert str(unknown).startswith(f"agent flp001 ({client.address}): "
                                       "MesosCommand_Transition START failed: NOT_FOUND: ")
        assert "no task 'nope' on agent flp001" in str(unknown)
        assert isinstance(refused, LocalAgentError)
        assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "exactly one target" in str(refused)
        assert isinstance(last, dict) and (last["taskId"], last["state"]) == ("t3", "RUNNING")
        # The same command alone gives the same error as in the batch.
        with pytest.raises(LocalAgentError) as alone:
            await client.command(transition("nope", "CONFIGURED", "START", "RUNNING"))
        assert str(alone.value) == str(unknown)
        assert {t.task_id: t.state for t in (await client.list_tasks()).tasks} == \
            {"t1": "RUNNING", "t2": "ERROR", "t3": "RUNNING"}
        for task_id in ("t1", "t2", "t3"):
            await client.kill(task_id)
        await events.close()
    assert "START run=3" in (home / "logs" / "t1.log").read_text()


async def test_a_batch_to_an_unreachable_agent_fails_each_command_naming_it(home: Path) -> None:
    address = f"unix:{home / 'nobody.sock'}"
    async with LocalAgentClient("flp009", address, agent_secret(home)) as client:
        bodies = [transition(t, "CONFIGURED", "START", "RUNNING") for t in ("t1", "t2")]
        bodies[0]["timeout"] = 10**9  # the call's deadline: the longest timeout plus a margin
        outcomes = await client.command_batch(bodies)
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert isinstance(outcome, LocalAgentError)
        assert outcome.code is grpc.StatusCode.UNAVAILABLE
        assert str(outcome).startswith(
            f"agent flp009 ({address}): MesosCommand_Transition START failed: UNAVAILABLE")


ENGINE_THAT_DIES = textwrap.dedent("""
    import asyncio, json, os, sys
    from pathlib import Path
    from engine.scheduler.agents import default_agents
    from engine.scheduler.local_agent import LocalAgentProcess

    async def main():
        client = await LocalAgentProcess(Path(sys.argv[1]), default_agents()[0]).connect()
        await client.launch("t1", json.loads(sys.argv[2]), environment_id="env1")
        async for seq, body in client.events():
            if body.get("state") == "TASK_STARTING":
                print(seq, flush=True)
                os._exit(0)  # the engine dies: no clean-up at all

    asyncio.run(main())
""")


async def test_a_new_engine_finds_the_executor_its_task_and_the_missed_events(home: Path) -> None:
    engine = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", ENGINE_THAT_DIES, str(home),
                         json.dumps(dummy(free_port()))],
        check=False, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert engine.returncode == 0, engine.stderr
    seen = int(engine.stdout)
    running = find_running(home)
    assert list(running) == ["flp001"]
    reconnecting = LocalAgentProcess(home, FLP001)
    async with await reconnecting.connect() as client:
        assert client.address == running["flp001"].address
        assert reconnecting.process is None  # found, not started
        with pytest.raises(LocalAgentError, match="an executor already serves it"):
            await reconnecting.start()
        events = Events(client, after=seen)
        await events.until(_messageType="AnnounceTaskPIDEvent")
        assert [b["state"] for b in events.bodies("StatusUpdate")] == ["TASK_RUNNING"]
        assert events.seen[0][0] == seen + 1
        listing = await client.list_tasks()
        assert listing.agent_name == "flp001" and listing.last_seq >= events.seen[-1][0]
        [task] = listing.tasks
        assert (task.task_id, task.environment_id, task.state, task.status) == \
            ("t1", "env1", "STANDBY", "TASK_RUNNING")
        assert psutil.pid_exists(task.pid)
        response = await client.command(transition("t1", "STANDBY", "CONFIGURE", "CONFIGURED"))
        assert response["state"] == "CONFIGURED"
        await events.close()


async def test_sigterm_takes_the_executor_and_its_tasks_down(home: Path,
                                                             agent: LocalAgentProcess) -> None:
    async with await agent.connect() as client:
        events = Events(client)
        await client.launch("t1", dummy(free_port()))
        pid = (await events.until(_messageType="AnnounceTaskPIDEvent"))["pid"]
        await client.command(transition("t1", "STANDBY", "CONFIGURE", "CONFIGURED"))
        await events.close()
    assert agent.process is not None and psutil.Process(pid).ppid() == agent.process.pid
    assert os.getsid(agent.process.pid) == agent.process.pid  # its own session: not ours
    agent.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(agent.process.wait, 20) == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert find_running(home) == {}
    assert not agent.info_file.exists() and not (home / "agents" / "flp001.sock").exists()
    log = (home / "logs" / "t1.log").read_text()
    assert "RESET" in log and "EXIT" in log  # walked to DONE before any signal


def test_the_executor_refuses_a_secret_others_can_read(home: Path) -> None:
    agent_secret(home)
    (home / "agent.secret").chmod(0o644)
    with pytest.raises(LocalAgentError, match="mode 0644 lets others read it"):
        agent_secret(home)
    done = subprocess.run([sys.executable, "-m", "executor.cli", "agent", "--name", "flp001",
                           "--listen", "127.0.0.1:0", "--secret-file", str(home / "agent.secret"),
                           "--info-file", str(home / "flp001.json")],
                          check=False, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "agent.secret: mode 0644 lets others read it; make it 0600" in done.stderr
    wide = subprocess.run([sys.executable, "-m", "executor.cli", "agent", "--name", "flp001",
                           "--listen", "0.0.0.0:5000", "--secret-file", "x", "--info-file", "y"],
                          check=False, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert wide.returncode == 2 and "expected unix:PATH or 127.0.0.1:PORT" in wide.stderr
