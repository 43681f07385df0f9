"""ThreadedEngine: the in-process engine on its own thread and loop, used from another loop.

Real executors and dummy processes on a temp working directory with two agents; the
caller's loop (the test's) must keep running while the engine works, get the engine's
records, exceptions and events as they are, and be left with no thread and no process.
"""
from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from console.client import open_engine
from console.engine_thread import ThreadedEngine, ThreadedSubscription
from engine import (
    Engine,
    EnvironmentEvent,
    EventKind,
    TransitionRefused,
    UnknownEnvironmentError,
    WorkingDirectory,
)
from engine.scheduler.local_agent import find_running
from engine.store import Store
from tests.conftest import make_template_repo
from tests.test_environment_e2e import DUMMY, settings

WORKFLOW = """\
name: tiny
roles:
  - name: dummy
    constraints:
      - attribute: machine_id
        value: a1
    task:
      load: dummy
"""


def engine_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("nutshell engine")]


@pytest.fixture
async def threaded(tmp_path: Path) -> AsyncIterator[tuple[ThreadedEngine, str]]:
    """A ThreadedEngine (as open_engine gives it) with the tiny workflow; executors stopped
    and the engine closed at the end, whatever the test did."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/tiny.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY}, corpus=False)
    engine = await open_engine(workdir, threaded=True)
    assert isinstance(engine, ThreadedEngine)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/tiny@master"
    finally:
        await engine.close()
        await Engine(workdir).shutdown_agents()
    assert find_running(workdir.root) == {}


def test_threaded_engine_has_every_method_of_the_engine() -> None:
    for name, method in inspect.getmembers(Engine, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        ours = getattr(ThreadedEngine, name, None)
        assert inspect.iscoroutinefunction(ours), f"ThreadedEngine lacks {name}"
        assert (list(inspect.signature(ours).parameters.values())
                == list(inspect.signature(method).parameters.values())), name


async def events_until(subscription: ThreadedSubscription, done: str, timeout: float = 10
                       ) -> list[EnvironmentEvent]:
    """The events read on this loop up to the environment event in state `done`."""
    seen: list[EnvironmentEvent] = []
    while True:
        event = await subscription.get(timeout)
        assert event is not None, "the subscription ended early"
        seen.append(event)
        if event.kind is EventKind.ENVIRONMENT and event.state == done:
            return seen


async def test_a_cycle_from_another_loop_with_events_and_errors_as_themselves(
        threaded: tuple[ThreadedEngine, str]) -> None:
    engine, reference = threaded
    events = await engine.subscribe()
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beating = asyncio.create_task(heartbeat())
    try:
        info = await engine.create_environment(reference, user="alice")
    finally:
        beating.cancel()
    assert info.state == "CONFIGURED" and [t.role_path for t in info.tasks] == ["tiny.dummy"]
    # the caller's loop ran all along: the deployment worked on the engine's thread
    assert len(gaps) > 10 and max(gaps) < 0.2, (len(gaps), max(gaps))
    created = await events_until(events, "CONFIGURED")
    assert any(e.kind is EventKind.TASK and e.state == "CONFIGURED" for e in created)

    started = await engine.control_environment(info.id, "START_ACTIVITY", user="bob")
    assert started.ok and started.state == "RUNNING" and started.run_number == 1
    running = await events_until(events, "RUNNING")
    assert any(e.kind is EventKind.TASK and e.state == "RUNNING" for e in running)

    a1, a2 = await engine.list_agents()  # records made on the engine's thread
    assert (a1.name, a1.tasks, a1.executor_running, a2.tasks) == ("a1", 1, True, 0)

    with pytest.raises(TransitionRefused) as refused:
        await engine.control_environment(info.id, "CONFIGURE")
    assert type(refused.value) is TransitionRefused and info.id in str(refused.value)
    with pytest.raises(UnknownEnvironmentError):
        await engine.get_environment("nope")
    assert (await engine.get_environment(info.id)).state == "RUNNING"

    destroyed = await engine.destroy_environment(info.id, user="alice")
    assert destroyed.state == "DONE" and await engine.list_environments() == []
    assert (await events_until(events, "DONE"))[-1].user == "alice"
    events.close()
    assert await events.get(1) is None


def stored_states(workdir: WorkingDirectory) -> list[str]:
    """The environments' states as a fresh connection to the store reads them."""
    with Store.open(workdir) as store:
        return [record.state for record in store.environments.list()]


async def test_the_engine_works_on_while_the_callers_loop_is_blocked(
        threaded: tuple[ThreadedEngine, str]) -> None:
    """What an Engine on the caller's loop cannot do: with that loop stuck (here on purpose),
    a deployment goes on to CONFIGURED on the engine's own loop."""
    engine, reference = threaded
    creating = asyncio.create_task(engine.create_environment(reference))
    await asyncio.sleep(0)  # the call is submitted to the engine's loop
    deadline = time.monotonic() + 30
    while stored_states(engine.workdir) != ["CONFIGURED"]:
        assert time.monotonic() < deadline, "the engine made no progress"
        time.sleep(0.05)  # blocks the caller's loop
    info = await creating
    assert info.state == "CONFIGURED"
    await engine.destroy_environment(info.id)


async def test_close_ends_the_thread_and_the_subscriptions(
        threaded: tuple[ThreadedEngine, str]) -> None:
    engine, reference = threaded
    assert engine.thread.is_alive() and engine.thread in engine_threads()
    events = await engine.subscribe()
    info = await engine.create_environment(reference)
    assert await engine.shutdown_agents() != []
    assert find_running(engine.workdir.root) == {}
    await engine.close()
    assert not engine.thread.is_alive() and engine.thread not in engine_threads()
    seen = [event async for event in events]  # the engine's close ended the stream
    assert any(e.environment_id == info.id for e in seen)
    with pytest.raises(RuntimeError, match="closed"):
        await engine.list_environments()
    await engine.close()  # a second close is harmless
