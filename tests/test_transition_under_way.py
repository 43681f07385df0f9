"""The transition under way, as every front-end sees it: an ENVIRONMENT event when it
begins and when it ends, and EnvironmentInfo's current_transition / transition_since
(o2control currentTransition) while it runs — whoever asked for it.

In-process engine, one agent, the tiny workflow of tests/test_core_api.py whose pause
hook makes START last as long as asked.
"""
from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

from engine import Engine, EventKind, WorkingDirectory
from engine.api import messages
from engine.scheduler.local_agent import find_running
from tests.conftest import control_ports, make_template_repo
from tests.test_core_api import PAUSE, SETTINGS, WORKFLOW
from tests.test_environment_e2e import DUMMY


async def test_a_slow_start_is_told_and_shown_while_it_runs(tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    data, control = 19900 + 10 * random.randrange(40), control_ports(10)
    workdir.settings_file.write_text(SETTINGS.format(data=data, data_end=data + 9,
                                                     control=control, control_end=control + 9))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/tiny.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY, "tasks/pause.yaml": PAUSE,
    }, corpus=False)
    async with Engine(workdir) as engine:
        try:
            added = await engine.add_repo(str(repo), "master")
            info = await engine.create_environment(f"{added.repo}/workflows/tiny@master",
                                                   {"pause": 1}, user="alice")
            assert (info.current_transition, info.transition_since) == ("", None)
            events = await engine.subscribe()
            before = datetime.now(UTC)
            starting = asyncio.create_task(engine.control_environment(info.id, "START", "bob"))
            began = await events.get(timeout=5)
            assert began is not None and began.kind is EventKind.ENVIRONMENT
            assert (began.message, began.user, began.state) == ("START_ACTIVITY started", "bob",
                                                                 "CONFIGURED")
            during = await engine.get_environment(info.id)  # the pause hook holds START 1 s
            assert during.current_transition == "START_ACTIVITY"
            assert during.transition_since is not None
            assert before <= during.transition_since <= datetime.now(UTC)
            assert messages.environment_info(during).currentTransition == "START_ACTIVITY"
            assert not starting.done()

            result = await starting
            assert result.state == "RUNNING"
            after = await engine.get_environment(info.id)
            assert (after.current_transition, after.transition_since) == ("", None)
            assert messages.environment_info(after).currentTransition == ""
            seen = []
            while (event := await events.get(timeout=5)) is not None:
                seen.append(event)
                if event.kind is EventKind.ENVIRONMENT and event.message.endswith("ended"):
                    break
            told = [(e.message, e.user) for e in seen if e.kind is EventKind.ENVIRONMENT]
            assert told[-1] == ("START_ACTIVITY ended", "bob")
            assert ("START_ACTIVITY done", "bob") in told  # the result came before the end
            events.close()

            await engine.destroy_environment(info.id, user="carol")
        finally:
            await engine.shutdown_agents()
    assert find_running(workdir.root) == {}
