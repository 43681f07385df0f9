"""Many clients at once (issue 7): transitions, creates and destroys on several environments.

Each environment sees one transition at a time (the others asking are answered busy at
once), ends in a consistent state (its tasks' states agree with its own), run numbers are
unique and increase per environment, and nothing is left running. Once on one in-process
Engine shared by asyncio tasks, once over gRPC: RemoteEngine clients of a `nutshell core`.
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine import (
    Engine,
    WorkingDirectory,
    EnvironmentBusy,
    EnvironmentEvent,
    EventKind,
    TransitionRefused,
    UnknownEnvironmentError,
)
from engine.api import RemoteEngine
from engine.scheduler.local_agent import find_running
from tests.conftest import make_template_repo
from tests.test_core_api import Setup as CoreSetup
from tests.test_core_api import setup  # noqa: F401  (the fixture: a `nutshell core`)
from tests.test_environment_e2e import settings
from tests.faults.common import CONSISTENT, DUMMY, WORKFLOW

EVENTS = ("START", "STOP", "RESET", "CONFIGURE")
# What a client may be answered while others act on the same environments.
EXPECTED = (EnvironmentBusy, TransitionRefused, UnknownEnvironmentError)


@dataclass
class Tally:
    """What the clients were answered, and the run numbers STARTs gave, per environment."""

    answers: Counter[str] = field(default_factory=Counter)
    runs: dict[str, list[int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)


async def act(client: Any, environment_id: str, event: str, tally: Tally) -> None:
    try:
        result = await client.control_environment(environment_id, event, user="client")
    except EXPECTED as answer:
        tally.answers[type(answer).__name__] += 1
        return
    except Exception as error:  # anything else breaks the promise: kept for the assertion
        tally.unexpected.append(f"{event} on {environment_id}: {type(error).__name__}: {error}")
        return
    tally.answers["ok"] += 1
    if event == "START":
        tally.runs.setdefault(environment_id, []).append(result.run_number)


async def transitions(client: Any, live: list[str], rounds: int, seed: int,
                      tally: Tally) -> None:
    """A client sending random transitions to random environments of `live`."""
    rng = random.Random(seed)
    for _ in range(rounds):
        if live:
            await act(client, rng.choice(live), rng.choice(EVENTS), tally)
        await asyncio.sleep(rng.random() * 0.02)


async def churn(client: Any, reference: str, variables: dict[str, str], live: list[str],
                rounds: int, tally: Tally) -> None:
    """A client destroying an environment others are using and creating another."""
    for n in range(rounds):
        victim = live[n % len(live)]
        try:
            destroyed = await client.destroy_environment(victim, user="churn")
            assert destroyed.state == "DONE"
            live.remove(victim)
            tally.answers["destroyed"] += 1
        except EXPECTED as answer:
            tally.answers[f"destroy {type(answer).__name__}"] += 1
        made = await client.create_environment(reference, variables, user="churn")
        live.append(made.id)
        tally.answers["created"] += 1


def one_at_a_time(events: list[EnvironmentEvent]) -> dict[str, int]:
    """Per environment, its "<transition> started" / "… ended" events alternate; the count
    of transitions each saw. An overlap fails, naming the two transitions."""
    under_way: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for event in events:
        if event.kind is not EventKind.ENVIRONMENT:
            continue
        name, _, edge = event.message.rpartition(" ")
        if edge == "started":
            assert event.environment_id not in under_way, (
                f"{event.environment_id}: {name} began while "
                f"{under_way[event.environment_id]} ran")
            under_way[event.environment_id] = name
            seen[event.environment_id] += 1
        elif edge == "ended":
            assert under_way.pop(event.environment_id, None) == name, event
    assert not under_way, f"transitions never ended: {under_way}"
    return dict(seen)


async def drain(subscription: Any) -> list[EnvironmentEvent]:
    """Every event so far (the stream goes quiet for a second once all is done)."""
    events = []
    try:
        while (event := await subscription.get(timeout=1)) is not None:
            events.append(event)
    except TimeoutError:
        pass
    subscription.close()
    assert subscription.dropped == 0  # the check needs every event
    return events


async def settled(client: Any, environment_id: str) -> Any:
    for _ in range(300):
        info = await client.get_environment(environment_id)
        if not info.current_transition:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"{environment_id} stays busy")


async def check_the_end(client: Any, tally: Tally, live: list[str],
                        hooks: tuple[str, ...] = ()) -> None:
    """No unexpected answer; every environment consistent (its hook tasks, `hooks`, run
    only at their trigger and keep their own state); run numbers never given twice."""
    assert tally.unexpected == []
    for environment_id in live:
        info = await settled(client, environment_id)
        assert info.state in CONSISTENT, (info.id, info.state)
        states = {t.state for t in info.tasks if t.role_path not in hooks}
        assert states <= CONSISTENT[info.state], info.tasks
    given = [run for runs in tally.runs.values() for run in runs]
    assert len(given) == len(set(given)), f"a run number was given twice: {sorted(given)}"
    for environment_id, runs in tally.runs.items():
        assert runs == sorted(runs), (environment_id, runs)


async def burst(client: Any, environment_id: str, clients: int) -> Counter[str]:
    """`clients` STARTs at the very same moment: one runs, the others are told busy."""
    tally = Tally()
    await asyncio.gather(*(act(client, environment_id, "START", tally)
                           for _ in range(clients)))
    assert tally.unexpected == []
    return tally.answers


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    """An in-process engine on agents a1 and a2 with the `faults` workflow (a dummy on each)."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/faults.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY}, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/faults@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()
    assert find_running(workdir.root) == {}


async def test_clients_on_one_engine_transition_create_and_destroy_at_once(
        local: tuple[Engine, str]) -> None:
    engine_, reference = local
    events = await engine_.subscribe()
    made = await asyncio.gather(*(engine_.create_environment(reference, user="client")
                                  for _ in range(3)))  # creates at once
    live = [info.id for info in made]
    assert len(set(live)) == 3

    assert await burst(engine_, live[0], 6) == Counter(ok=1, EnvironmentBusy=5)

    tally = Tally()
    await asyncio.gather(*(transitions(engine_, live, 25, seed, tally) for seed in range(6)),
                         churn(engine_, reference, {}, live, 2, tally))
    assert tally.answers["ok"] > 0 and tally.answers["EnvironmentBusy"] > 0, tally.answers
    assert tally.answers["created"] == 2
    await check_the_end(engine_, tally, live)
    assert sorted(info.id for info in await engine_.list_environments()) == sorted(live)
    for environment_id in live:
        assert (await engine_.destroy_environment(environment_id)).state == "DONE"
    assert await engine_.list_environments() == []
    seen = one_at_a_time(await drain(events))
    assert set(live) <= set(seen)


async def test_remote_clients_of_a_core_transition_create_and_destroy_at_once(
        setup: CoreSetup) -> None:  # noqa: F811
    remotes = [RemoteEngine(setup.core.address) for _ in range(4)]
    try:
        watcher = remotes[0]
        events = await watcher.subscribe()
        made = await asyncio.gather(*(remote.create_environment(setup.reference, user="client")
                                      for remote in remotes[:3]))
        live = [info.id for info in made]

        tally = Tally()  # four connections START the same environment at once
        await asyncio.gather(*(act(remote, live[1], "START", tally) for remote in remotes))
        assert tally.unexpected == []
        assert tally.answers == Counter(ok=1, EnvironmentBusy=3), tally.answers

        tally = Tally()
        await asyncio.gather(*(transitions(remote, live, 12, seed, tally)
                               for seed, remote in enumerate(remotes[:3])),
                             churn(remotes[3], setup.reference, {}, live, 1, tally))
        assert tally.answers["ok"] > 0, tally.answers
        await check_the_end(watcher, tally, live, hooks=("tiny.pause",))
        for environment_id in live:
            assert (await watcher.destroy_environment(environment_id)).state == "DONE"
        assert await watcher.list_environments() == []
        seen = one_at_a_time(await drain(events))
        assert set(live) <= set(seen)
    finally:
        for remote in remotes:
            await remote.close()
