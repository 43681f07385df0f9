"""The operator console driven with Textual's Pilot: real engine, real executors, real dummies.

A temp NUTSHELL_HOME with agents a1/a2 and the two-dummy `cli` workflow of
tests/test_cli_env.py; the console hosts the engine on its own thread, or attaches
to a `nutshell core` subprocess. Every test stops the executors at the end.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Select, TextArea

from console.cli import main
from console.tui.app import ConsoleApp
from console.tui.components.confirm import ConfirmModal
from console.tui.components.environments_table import EnvironmentsTable
from console.tui.components.environments_view import EnvironmentsView
from console.tui.components.new_environment import NewEnvironmentModal, read_variables
from console.tui.components.result_modal import ResultModal
from console.tui.preferences import PREFERENCES_FILE, Preferences, next_theme
from console.variables import VariablesError
from engine import Engine, WorkingDirectory
from engine.api.client import RemoteEngine
from engine.scheduler.local_agent import find_running
from tests.conftest import make_template_repo
from tests.test_cli_env import WORKFLOW
from tests.test_core_api import PAUSE, start_core
from tests.test_core_api import WORKFLOW as TINY
from tests.test_environment_e2e import DUMMY, settings
from themes import DEFAULT_THEME

SIZE = (180, 40)


@dataclass(frozen=True)
class Home:
    workdir: WorkingDirectory
    repo: Path
    reference: str


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    """A working directory with agents a1/a2 and the `cli` workflow; executors stopped after."""
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/cli.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY,
        "workflows/pub.yaml": WORKFLOW.replace("name: cli", "name: !public pub"),  # in the form
    }, corpus=False)
    try:
        yield Home(workdir, repo, f"{repo}/workflows/cli")
    finally:
        async with Engine(workdir) as cleanup:
            await cleanup.shutdown_agents()
        assert find_running(workdir.root) == {}


async def until(pilot: Pilot[int], condition: Callable[[], bool], what: str,
                limit: float = 20.0) -> None:
    """Let the app run until `condition` holds; fail naming `what` and the notifications."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}; notifications: {notes(pilot.app)}")
        await pilot.pause(0.05)


def notes(app: ConsoleApp) -> list[str]:
    return [notification.message for notification in app._notifications]


def table(app: ConsoleApp) -> EnvironmentsTable:
    return app.screen_stack[1].query_one(EnvironmentsTable)


def cell(app: ConsoleApp, environment_id: str, column: str) -> str:
    value = table(app).get_cell(environment_id, column)
    return str(getattr(value, "plain", value))


async def loaded(pilot: Pilot[int]) -> EnvironmentsView:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, EnvironmentsView) and app.screen.loaded,
                "the environments view loaded")
    assert isinstance(app.screen, EnvironmentsView)
    return app.screen


async def press_until_state(pilot: Pilot[int], key: str, environment_id: str, state: str) -> None:
    await pilot.press(key)
    await until(pilot, lambda: cell(pilot.app, environment_id, "state") == state
                and not cell(pilot.app, environment_id, "transition"),
                f"{environment_id} {state} after {key!r}")


# ----------------------------------------------------------------- in-process engine

async def test_start_stop_new_and_destroy_from_the_keys(home: Home) -> None:
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, EnvironmentsView),
                    "the environments view")  # how soon: bench/, not a timed assertion
        await loaded(pilot)
        assert app.engine is not None
        await app.engine.add_repo(str(home.repo))  # the form lists the listed repositories
        info = await app.engine.create_environment(home.reference, user="tester")
        await until(pilot, lambda: info.id in table(app).rows_by_id, "the new environment's row")
        await until(pilot, lambda: cell(app, info.id, "tasks") == "2/2", "2/2 active tasks")
        assert cell(app, info.id, "state") == "CONFIGURED"
        assert cell(app, info.id, "workflow") == info.workflow
        assert cell(app, info.id, "hosts") == "a1, a2"
        assert cell(app, info.id, "user") == "tester"
        assert cell(app, info.id, "run") == ""

        await pilot.press("enter")  # the environment view (console.tui.environment_screen)
        await until(pilot, lambda: type(app.screen).__name__ == "EnvironmentScreen", "its view")
        assert getattr(app.screen, "environment_id", None) == info.id
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, EnvironmentsView), "the table again")

        await press_until_state(pilot, "s", info.id, "RUNNING")
        run = cell(app, info.id, "run")
        assert run and int(run) > 0
        assert any(f"START_ACTIVITY → RUNNING, run {run}" in note for note in notes(app))
        state = table(app).get_cell(info.id, "state")
        assert str(app.current_theme.success) in str(state.style)  # RUNNING in the theme's colour
        await press_until_state(pilot, "t", info.id, "CONFIGURED")
        assert cell(app, info.id, "run") == ""
        await press_until_state(pilot, "r", info.id, "DEPLOYED")
        await press_until_state(pilot, "c", info.id, "CONFIGURED")

        # n: the form; a bad variables line is refused in the form, a good one creates
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewEnvironmentModal), "the form")
        form = app.screen
        assert isinstance(form, NewEnvironmentModal)
        workflow = form.query_one("#workflow", Select)
        choices = [value for _, value in workflow._options if isinstance(value, str)]
        ours = next(value for value in choices if value.endswith("/workflows/pub@local"))
        workflow.value = ours
        form.query_one("#variables", TextArea).text = "not a pair"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, NewEnvironmentModal)  # still open, the problem shown
        form.query_one("#variables", TextArea).text = 'hosts=["a1"]\n# one host only'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(table(app).rows_by_id) == 2, "the form's environment")
        created = next(row for row in table(app).rows_by_id if row != info.id)
        await until(pilot, lambda: cell(app, created, "tasks") == "1/1", "1/1 task of the form's")
        assert cell(app, created, "hosts") == "a1"

        # d on the first row (the cursor stayed there): confirm, and it is gone
        assert table(app).selected == info.id
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        await pilot.press("n")  # declined: nothing happens
        assert info.id in table(app).rows_by_id and isinstance(app.screen, EnvironmentsView)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: info.id not in table(app).rows_by_id, "the row gone")
        assert [e.id for e in await app.engine.list_environments()] == [created]
        await pilot.press("q")


async def test_a_failing_start_shows_the_failed_tasks(home: Home) -> None:
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.engine is not None
        await app.engine.add_repo(str(home.repo))  # the form lists the listed repositories
        info = await app.engine.create_environment(home.reference, {"fail_on": "START"})
        await until(pilot, lambda: info.id in table(app).rows_by_id, "the row")
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ResultModal), "the failures")
        result = app.screen
        assert isinstance(result, ResultModal)
        rows = result.query_one(DataTable)
        first = [str(value) for value in rows.get_row_at(0)]
        assert rows.row_count == 2
        assert first[3].startswith("CONFIGURED → ") and first[4], first  # failed: a reason
        assert {str(rows.get_row_at(i)[2]) for i in range(2)} == {"a1", "a2"}
        assert first[4].startswith("transition unsuccessful") and first[6].endswith(".log")
        assert result.message == (f"START_ACTIVITY of environment {info.id} failed; "
                                  "the environment is ERROR")
        assert result.message in notes(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, EnvironmentsView), "the table again")
        await until(pilot, lambda: not cell(app, info.id, "transition"), "no transition under way")
        await until(pilot, lambda: cell(app, info.id, "state") == "ERROR", "ERROR in the table")
        await press_until_state(pilot, "R", info.id, "DEPLOYED")  # RECOVER

        # a creation that fails (CONFIGURE) from the form: its failed tasks, no new row
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewEnvironmentModal), "the form")
        form = app.screen
        workflow = form.query_one("#workflow", Select)
        workflow.value = next(value for _, value in workflow._options
                              if isinstance(value, str) and value.endswith("/workflows/pub@local"))
        form.query_one("#variables", TextArea).text = '{"fail_on": "CONFIGURE"}'
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ResultModal), "the creation's failures")
        assert app.screen.result.event == "CONFIGURE" and app.screen.result.failed
        await until(pilot, lambda: list(table(app).rows_by_id) == [info.id],
                    "the failed creation's row gone (it showed while it deployed)")


async def test_readonly_refuses_every_action(home: Home) -> None:
    async with Engine(home.workdir) as engine:
        info = await engine.create_environment(home.reference)
    app = ConsoleApp(home.workdir, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await until(pilot, lambda: info.id in table(app).rows_by_id, "the recovered row")
        for key in ("c", "s", "t", "r", "R", "d", "n"):  # hidden keys, refused out loud
            await pilot.press(key)
        await pilot.pause(0.3)
        refused = [note for note in notes(app) if note.startswith("read-only console:")]
        assert len(refused) == 7, notes(app)
        assert "read-only console: Start (START_ACTIVITY) of " + info.id + " refused" in refused
        assert isinstance(app.screen, EnvironmentsView)  # no modal opened
        assert cell(app, info.id, "state") == "CONFIGURED"
        assert app.screen.sub_title.endswith("(read-only)")
        shown = {key: active.binding.description  # what the footer lists
                 for key, active in app.screen.active_bindings.items() if active.binding.show}
        assert shown == {"enter": "Open", "question_mark": "Keys",
                         "ctrl+t": "Theme", "q": "Quit", "colon": "Command", "e": "Events",
                         "1": "Envs", "2": "Tasks", "3": "Hosts", "4": "Templates"}


async def test_the_theme_switches_and_is_remembered(tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    try:
        app = ConsoleApp(workdir)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            assert app.theme == DEFAULT_THEME
            await pilot.press("ctrl+t")
            assert app.theme == next_theme(DEFAULT_THEME) == "nutshell-light"
            await pilot.pause(0.1)
            saved = json.loads((workdir.root / PREFERENCES_FILE).read_text())
            assert saved == {"theme": "nutshell-light"}
            palette = {command.title: command for command in app.get_system_commands(app.screen)}
            palette["Theme: nutshell-high-contrast"].callback()  # Ctrl+P's command
            await pilot.pause(0.1)
            await pilot.press("question_mark")
            await until(pilot, lambda: bool(app.screen.query("HelpPanel")), "the key help")
            await pilot.press("question_mark")
            await until(pilot, lambda: not app.screen.query("HelpPanel"), "the key help gone")
        again = ConsoleApp(workdir)
        async with again.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            assert again.theme == "nutshell-high-contrast"
    finally:
        async with Engine(workdir) as cleanup:
            await cleanup.shutdown_agents()


def test_preferences_and_variables_read_leniently(tmp_path: Path) -> None:
    (tmp_path / PREFERENCES_FILE).write_text("{not json")
    assert Preferences.load(tmp_path).theme == DEFAULT_THEME
    (tmp_path / PREFERENCES_FILE).write_text('{"theme": "textual-dark"}')  # not ours
    assert Preferences.load(tmp_path).theme == DEFAULT_THEME
    assert next_theme("nutshell-high-contrast") == DEFAULT_THEME
    assert read_variables('{"a": 1, "b": [1, 2]}') == {"a": "1", "b": "[1,2]"}
    assert read_variables("a=1\n\n# note\nb=x=y\n") == {"a": "1", "b": "x=y"}
    with pytest.raises(VariablesError, match="'oops'"):
        read_variables("oops")


# ----------------------------------------------------------------- attached to a core

async def test_attached_to_a_core_it_follows_and_controls(home: Home) -> None:
    core = await start_core(home.workdir)
    try:
        async with RemoteEngine(core.address) as remote:
            added = await remote.add_repo(str(home.repo), "master")
            info = await remote.create_environment(f"{added.repo}/workflows/cli@master")
        app = ConsoleApp(home.workdir, core=core.address)
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.engine, RemoteEngine)
            await loaded(pilot)
            await until(pilot, lambda: info.id in table(app).rows_by_id, "the core's environment")
            await press_until_state(pilot, "s", info.id, "RUNNING")
            assert int(cell(app, info.id, "run")) > 0
            await press_until_state(pilot, "t", info.id, "CONFIGURED")

            # the core goes away: the console says so and stays up; actions fail visibly
            await asyncio.to_thread(core.stop)
            await until(pilot, lambda: any("event stream ended" in n for n in notes(app)),
                        "the end of the events told")
            before = len(app._notifications)
            await pilot.press("s")
            await until(pilot, lambda: len(app._notifications) > before, "the failed START told")
            failed = list(app._notifications)[-1]
            assert failed.title == f"START_ACTIVITY of {info.id} failed"
            assert failed.severity == "error" and "cannot reach the engine" in failed.message
            assert isinstance(app.screen, EnvironmentsView)
            await pilot.press("q")
    finally:
        core.stop()


# ----------------------------------------------------------------- the command line

@pytest.mark.parametrize("argv, expected", [
    ([], ("", False)),
    (["--readonly"], ("", True)),
    (["console"], ("", False)),
    (["--core", "127.0.0.1:1", "console", "--readonly"], ("127.0.0.1:1", True)),
    (["console", "--core", "h:2"], ("h:2", False)),
])
def test_nutshell_alone_or_console_opens_the_console(
        argv: list[str], expected: tuple[str, bool], monkeypatch: pytest.MonkeyPatch) -> None:
    import console.tui.app

    opened: list[tuple[str, bool]] = []
    monkeypatch.setattr(console.tui.app, "run", lambda *, core, readonly:
                        opened.append((core, readonly)) or 0)
    assert main(argv) == 0
    assert opened == [expected]


def test_console_options_belong_to_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--core", "127.0.0.1:1", "env", "list"])
    assert exit_.value.code == 2
    assert "--core and --readonly are the console's" in capsys.readouterr().err


async def test_a_transition_started_elsewhere_shows_with_its_elapsed_time(
        home: Home, tmp_path: Path) -> None:
    """A START another client asked for (here the engine itself, not the console's keys)
    shows in the Transition column while it runs, ticking, and goes when it ends."""
    slow = make_template_repo(tmp_path / "slow", {
        "workflows/tiny.yaml": TINY, "tasks/dummy.yaml": DUMMY, "tasks/pause.yaml": PAUSE,
    }, corpus=False)
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.engine is not None
        repo = await app.engine.add_repo(str(slow), "master")
        info = await app.engine.create_environment(f"{repo.repo}/workflows/tiny@master",
                                                   {"pause": 3}, user="bob")
        await until(pilot, lambda: info.id in table(app).rows_by_id, "the new environment's row")
        starting = asyncio.ensure_future(app.engine.control_environment(info.id, "START", "bob"))
        try:
            await until(pilot, lambda: cell(app, info.id, "transition").startswith(
                "START_ACTIVITY "), "START_ACTIVITY in the transition column", limit=5)
            assert not table(app).rows_by_id[info.id].own
            await until(pilot, lambda: cell(app, info.id, "transition") in (
                "START_ACTIVITY 1s", "START_ACTIVITY 2s"), "the elapsed time ticking", limit=3)
        finally:
            result = await starting
        assert result.state == "RUNNING"
        await until(pilot, lambda: cell(app, info.id, "state") == "RUNNING"
                    and not cell(app, info.id, "transition"), "the transition gone")
        await pilot.press("q")
