"""The heartbeat on the executor channel (issue 7's "cut the executor channel for longer
than the heartbeat").

The channel to agent a2's executor is cut for real: its unix socket is moved aside and
a relay (SocketCut) takes its place, which then stops passing bytes while holding both
ends open, as a network partition does. The executor and its tasks run on, unaware.
Past the heartbeat timeout the engine calls a2 unreachable: its tasks are reported
lost, the environment goes to ERROR naming the agent and the heartbeat. When the relay
passes bytes again, the tasks' real states come back; RECOVER brings the environment to
a new run; a destroy while the channel is cut kills a2's tasks once it answers again.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine import Engine, EnvironmentEvent, EnvironmentInfo, Subscription, TransitionFailed
from engine.scheduler.agents import AgentSpecError
from engine.scheduler.heartbeat import HeartbeatSettings, parse_heartbeat
from engine.scheduler.local_agent import find_running
from engine.store import Store
from tests.faults.common import Setup, gone, task

HEARTBEAT = "heartbeat:\n  interval: 0.2\n  timeout: 1.5\n"
WAIT = 30.0  # seconds any awaited change may take on a loaded machine


class SocketCut:
    """A relay in front of a unix socket that can stop passing bytes and start again.

    Runs its own event loop on a thread. Cut, every connection stays open and every byte
    waits (nothing is lost or refused, as across a partitioned network); healed, what
    waited flows on.
    """

    def __init__(self, listen: Path, target: Path) -> None:
        self.listen, self.target = listen, target
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def start(self) -> None:
        self._thread.start()
        self._call(self._start)

    def cut(self) -> None:
        self._call(self._set, False)

    def heal(self) -> None:
        self._call(self._set, True)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, function: Callable[..., object], *args: object) -> None:
        asyncio.run_coroutine_threadsafe(function(*args), self._loop).result(timeout=10)

    async def _set(self, passing: bool) -> None:
        if passing:
            self._open.set()
        else:
            self._open.clear()

    async def _start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_unix_server(self._relay, path=str(self.listen))
        self.listen.chmod(0o600)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.target))
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._open.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def cut_a2(setup: Setup) -> AsyncIterator[tuple[Setup, SocketCut, str]]:
    """`setup` with a fast heartbeat, an environment created by a first engine, and a2's
    socket behind a relay before the engine under test connects."""
    settings = setup.workdir.settings_file
    settings.write_text(settings.read_text() + HEARTBEAT)
    async with Engine(setup.workdir) as first:
        added = await first.add_repo(str(setup.repo), "master")
        setup.reference = f"{added.repo}/workflows/faults@master"
        info = await first.create_environment(setup.reference)
    socket = Path(find_running(setup.workdir.root)["a2"].address.removeprefix("unix:"))
    direct = socket.with_name("a2-direct.sock")
    socket.rename(direct)
    relay = SocketCut(socket, direct)
    relay.start()
    try:
        yield setup, relay, info.id
    finally:
        relay.heal()
        relay.close()


async def until(engine: Engine, environment_id: str,
                check: Callable[[EnvironmentInfo], bool]) -> EnvironmentInfo:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        info = await engine.get_environment(environment_id)
        if check(info) and not info.current_transition:
            return info
        assert asyncio.get_running_loop().time() < deadline, info
        await asyncio.sleep(0.05)


def drained(events: Subscription) -> list[EnvironmentEvent]:
    """The events queued so far."""
    queued = []
    while not events.queue.empty():
        event = events.queue.get_nowait()
        if event is not None:
            queued.append(event)
    return queued


def victim(info: EnvironmentInfo):  # noqa: ANN201 (the engine's task record)
    return next(t for t in info.tasks if t.role_path == "faults.victim")


async def test_a_channel_cut_past_the_heartbeat_errors_the_environment_then_heals(
        cut_a2: tuple[Setup, SocketCut, str]) -> None:
    setup_, relay, environment_id = cut_a2
    async with Engine(setup_.workdir) as engine:
        try:
            started = await engine.control_environment(environment_id, "START")
            assert started.run_number == 1
            victim_id, pid = task(await engine.get_environment(environment_id), "victim")
            events = await engine.subscribe()
            relay.cut()
            info = await until(engine, environment_id, lambda i: i.state == "ERROR")
            lost = victim(info)
            assert lost.state == "ERROR" and lost.status == "INACTIVE"
            [event] = [e for e in drained(events) if e.task_id == victim_id
                       and "agent a2 is unreachable" in e.message]
            assert event.state == "ERROR" and "has not answered a heartbeat" in event.message
            [row] = [row for row in info.last_result if row.role_path == "faults.victim"]
            assert "faults.victim" in row.reason and "ERROR" in row.reason, row
            assert not gone(pid)  # alive behind the cut: not killed, not forgotten
            listed = {t.task_id: t for t in await engine.list_tasks()}  # a2 not asked
            assert listed[victim_id].state == "ERROR" and listed[victim_id].locked
            with pytest.raises(TransitionFailed, match=r"agent\(s\) a2 unreachable"):
                await engine.control_environment(environment_id, "RECOVER")
            relay.heal()
            info = await until(engine, environment_id,
                               lambda i: victim(i).state == "RUNNING")
            back = victim(info)
            assert back.status == "ACTIVE" and back.pid == pid
            [event] = [e for e in drained(events) if e.task_id == victim_id
                       and "answers again" in e.message]
            assert event.state == "RUNNING" and event.status == "ACTIVE"
            events.close()
            assert info.state == "ERROR"  # the operator decides: RECOVER or destroy
            await engine.control_environment(environment_id, "RECOVER")
            await engine.control_environment(environment_id, "CONFIGURE")
            again = await engine.control_environment(environment_id, "START")
            assert again.ok and again.run_number == 2  # run 1 was not given twice
            assert (await engine.destroy_environment(environment_id)).state == "DONE"
            assert gone(pid)
        finally:
            await engine.shutdown_agents()


async def test_an_environment_destroyed_behind_a_cut_has_its_tasks_killed_when_it_heals(
        cut_a2: tuple[Setup, SocketCut, str]) -> None:
    setup_, relay, environment_id = cut_a2
    async with Engine(setup_.workdir) as engine:
        try:
            _, pid = task(await engine.get_environment(environment_id), "victim")
            _, steady = task(await engine.get_environment(environment_id), "steady")
            relay.cut()
            await until(engine, environment_id, lambda i: i.state == "ERROR")
            result = await engine.destroy_environment(environment_id)
            assert result.state == "DONE"
            [row] = [row for row in result.rows if row.role_path == "faults.victim"]
            assert "killed when the agent answers again" in row.reason
            assert await engine.list_environments() == []
            assert gone(steady) and not gone(pid)
            relay.heal()
            deadline = asyncio.get_running_loop().time() + WAIT
            while not gone(pid):  # nothing destroyed runs on
                assert asyncio.get_running_loop().time() < deadline, f"task {pid} runs on"
                await asyncio.sleep(0.05)
            info = await engine.create_environment(setup_.reference)  # a2 serves again
            assert {t.state for t in info.tasks} == {"CONFIGURED"}
            assert (await engine.destroy_environment(info.id)).state == "DONE"
        finally:
            await engine.shutdown_agents()


@pytest.mark.parametrize(("section", "fault"), [
    ("heartbeat: 3", "heartbeat: must be a mapping"),
    ("heartbeat:\n  intervl: 1", "heartbeat.intervl: unknown key"),
    ("heartbeat:\n  interval: -1", "heartbeat.interval: must be a positive number"),
    ("heartbeat:\n  timeout: yes", "heartbeat.timeout: must be a positive number"),
    ("heartbeat:\n  interval: 5\n  timeout: 5", "must be longer than the interval"),
])
def test_bad_heartbeat_settings_name_the_file_and_key(section: str, fault: str) -> None:
    import yaml
    with pytest.raises(AgentSpecError, match=fault) as refused:
        parse_heartbeat(yaml.safe_load(section), "/w/nutshell.yaml")
    assert str(refused.value).startswith("/w/nutshell.yaml: heartbeat")


def test_heartbeat_defaults_and_settings() -> None:
    assert parse_heartbeat(None, "f") == HeartbeatSettings(2.0, 15.0)
    assert parse_heartbeat({"agents": {}}, "f") == HeartbeatSettings(2.0, 15.0)
    assert parse_heartbeat({"heartbeat": {"interval": 1, "timeout": 4.5}}, "f") \
        == HeartbeatSettings(1.0, 4.5)


async def test_a_kill_owed_behind_a_cut_is_carried_out_by_the_next_engine(
        cut_a2: tuple[Setup, SocketCut, str]) -> None:
    """The engine that destroyed the environment behind the cut stops before a2 answers:
    the kill it owed is in the store, and the next engine carries it out."""
    setup_, relay, environment_id = cut_a2
    async with Engine(setup_.workdir) as engine:
        victim_id, pid = task(await engine.get_environment(environment_id), "victim")
        relay.cut()
        await until(engine, environment_id, lambda i: i.state == "ERROR")
        assert (await engine.destroy_environment(environment_id)).state == "DONE"
    with Store.open(setup_.workdir) as store:
        assert [(k.task_id, k.agent_id) for k in store.owed_kills.list()] == [(victim_id, "a2")]
    assert not gone(pid)
    relay.heal()
    async with Engine(setup_.workdir) as engine:
        try:
            assert await engine.list_environments() == []  # hosting: the recovery ran
            assert engine._manager is not None and engine._manager.recovery is not None
            [line] = engine._manager.recovery.owed_kills
            assert line == (f"task {victim_id} of environment {environment_id}, destroyed "
                            "while agent a2 was unreachable, killed")
            assert gone(pid)
            assert await engine.list_tasks() == []
            with Store.open(setup_.workdir) as store:
                assert store.owed_kills.list() == []
        finally:
            await engine.shutdown_agents()
