"""The console's `:` command line and events pane, driven with Pilot: a real engine on its
own thread (and a `nutshell core` over gRPC), real executors, the `cli` workflow of
tests/test_tui.py."""
from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input

from console.shell.line import command_name
from console.shell.parser import build_parser, subcommands
from console.tui.app import ConsoleApp
from console.tui.command_line import (
    HISTORY_FILE,
    HISTORY_LIMIT,
    MUTATING_COMMANDS,
    CommandHistory,
    CommandScreen,
    LineSink,
)
from console.tui.components.environments_view import EnvironmentsView
from console.tui.events_pane import EventsPane, event_text
from console.tui.state_badge import state_style
from console.tui.tab_completion import CURRENT_STYLE, ELLIPSIS, hint_line
from engine import EnvironmentEvent, EventKind
from engine.api.client import RemoteEngine
from tests.test_core_api import start_core
from tests.test_tui import SIZE, Home, home, loaded, table, until

__all__ = ["home"]  # the fixture, shared with tests/test_tui.py

ID = re.compile(r"^environment (\S+) created: CONFIGURED, 2 tasks on a1, a2$")


def command_screen(app: ConsoleApp) -> CommandScreen:
    screen = app.screen
    assert isinstance(screen, CommandScreen), f"not on the command line: {screen!r}"
    return screen


async def run_line(pilot: Pilot[int], line: str) -> list[str]:
    """Type `line`, enter, wait until it ended; the output lines it added."""
    screen = command_screen(pilot.app)
    before, ran = len(screen.output.plain()), len(screen.codes)
    screen.line.value = line
    await pilot.press("enter")
    await until(pilot, lambda: len(screen.codes) > ran and not screen.running, f"`{line}` done")
    await pilot.pause()
    return screen.output.plain()[before:]


def put(screen: CommandScreen, text: str) -> None:
    """The line as if typed: `text`, the cursor at its end."""
    screen.line.value = text
    screen.line.cursor_position = len(text)


async def tab(pilot: Pilot[int], key: str = "tab") -> None:
    """Press tab (or shift+tab) and wait until its completion is done."""
    await pilot.press(key)
    await until(pilot, lambda: not any(worker.group == "completion" and not worker.is_finished
                                       for worker in pilot.app.workers), f"{key} completed")
    await pilot.pause()


def highlighted(screen: CommandScreen) -> list[str]:
    """The words of the hint shown as the current one."""
    shown = screen.hint.render()
    return [shown.plain[span.start:span.end] for span in shown.spans
            if span.style == CURRENT_STYLE]


@contextmanager
def hung(app: ConsoleApp) -> Iterator[None]:
    """The in-process engine stuck: its thread blocked until the block ends."""
    gate = threading.Event()
    app.engine._loop.call_soon_threadsafe(gate.wait)  # type: ignore[union-attr]
    try:
        yield
    finally:
        gate.set()


def pane_text(app: ConsoleApp) -> str:
    return "\n".join(app.screen.query_one(EventsPane).lines())


async def test_the_line_runs_the_shells_commands_and_the_pane_shows_events(home: Home) -> None:
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("e")  # the events pane, before anything happens
        await until(pilot, lambda: bool(app.screen.query(EventsPane)), "the events pane")
        await pilot.press("colon")
        screen = command_screen(app)
        assert screen.line.has_focus
        await pilot.press("colon")  # typed into the line, not a second command line
        assert screen.line.value == ":" and command_screen(app) is screen
        screen.line.value = ""

        out = await run_line(pilot, "env list")
        assert out == [": env list",
                       "no environments; create one with: nutshell env create -w <workflow>"]
        out = await run_line(pilot, "frobnicate")
        assert out[1].startswith("error: : argument COMMAND: invalid choice: 'frobnicate'")
        assert out[-1] == "✗ exit code 1" and screen.codes[-2:] == [0, 1]
        out = await run_line(pilot, "help")
        assert any(re.match(r"environment \(env, e\) +environments$", line) for line in out)
        assert any(re.match(r"clear +empty the output$", line) for line in out)
        assert (await run_line(pilot, "help env control"))[1].startswith(
            "usage: environment control [-h] -e EVENT")

        out = await run_line(pilot, f"env create -w {home.reference}")
        created = ID.match(out[-1])
        assert created, out
        env_id = created.group(1)
        await until(pilot, lambda: env_id in table(app).rows_by_id, "its row in the view below")
        out = await run_line(pilot, "env list")
        assert out[1].split()[:3] == ["ID", "WORKFLOW", "STATE"]
        assert out[2].split()[0] == env_id and "CONFIGURED" in out[2].split()
        out = await run_line(pilot, f"e ct {env_id} -e start")
        assert any(line.startswith(f"environment {env_id}: START_ACTIVITY") for line in out), out
        await until(pilot, lambda: table(app).rows_by_id[env_id].state == "RUNNING",
                    "RUNNING in the view")

        # history: up and down walk it, the line being typed comes back
        screen.line.value = "env sh"
        await pilot.press("up")
        assert screen.line.value == f"e ct {env_id} -e start"
        await pilot.press("up")
        assert screen.line.value == "env list"
        await pilot.press("down", "down")
        assert screen.line.value == "env sh"
        put(screen, "env li")
        await tab(pilot)  # the completion of the word being typed
        assert screen.line.value == "env list "
        put(screen, f"env show {env_id[:3]}")
        await tab(pilot)  # the engine's environment ids
        assert screen.line.value == f"env show {env_id} "
        screen.line.value = ""

        # `env watch` runs on, the console stays live; escape stops it, escape closes
        screen.line.value = f"env watch {env_id}"
        await pilot.press("enter")
        await until(pilot, lambda: any(line.startswith(f"environment {env_id}: RUNNING  run ")
                                       for line in screen.output.plain()), "the watched state")
        assert screen.running
        await pilot.press("escape")
        assert not screen.running and screen.output.plain()[-1] == "error: interrupted"
        assert isinstance(app.screen, CommandScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, EnvironmentsView)

        # the events pane had every change; the START among them
        await until(pilot, lambda: f"{env_id}  env   RUNNING  " in pane_text(app),
                    "the environment's RUNNING in the pane")
        assert app.event_log.received >= 3
        assert re.search(rf"^\d\d:\d\d:\d\d\.\d{{3}}  {env_id}  task  \S+  RUNNING",
                         pane_text(app), re.MULTILINE), pane_text(app)

        # the line comes back as it was left; its destroy goes through
        await pilot.press("colon")
        assert command_screen(app) is screen and "error: interrupted" in screen.output.plain()
        out = await run_line(pilot, f"env destroy {env_id} -a")
        assert f"environment {env_id} destroyed (RUNNING → DONE); 2 tasks killed" in out
        await run_line(pilot, "clear")
        assert screen.output.plain() == []
        await run_line(pilot, "exit")
        assert isinstance(app.screen, EnvironmentsView)
        await until(pilot, lambda: env_id not in table(app).rows_by_id, "the row gone")
        await pilot.press("e")
        assert not app.screen.query(EventsPane)
        await pilot.press("q")
    history = (home.workdir.root / HISTORY_FILE).read_text().splitlines()
    assert history[:2] == ["env list", "frobnicate"] and history[-1] == "exit"


async def test_readonly_refuses_what_changes_things(home: Home) -> None:
    app = ConsoleApp(home.workdir, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("colon")
        out = await run_line(pilot, f"env create -w {home.reference}")
        refused = "error: read-only console: `environment create` changes things and is refused"
        assert out[1:] == [refused, "✗ exit code 1"]
        out = await run_line(pilot, "repo add /nowhere")
        assert "`repository add`" in out[1]
        out = await run_line(pilot, "env list")
        assert out[1].startswith("no environments")
        assert command_screen(app).codes == [1, 1, 0]
        assert await app.engine.list_environments() == []  # type: ignore[union-attr]
        await pilot.press("escape")
        assert isinstance(app.screen, EnvironmentsView)
        palette = {command.title: command for command in app.get_system_commands(app.screen)}
        palette["Command line"].callback()  # Ctrl+P's command: the line as it was left
        await pilot.pause()
        assert command_screen(app).codes == [1, 1, 0]
        await pilot.press("escape")

        # typing in a view's own input, `:` and `e` are characters, not keys of the app
        await pilot.press("2", "slash")
        await until(pilot, lambda: isinstance(app.focused, Input), "the tasks view's filter")
        await pilot.press("colon", "e")
        assert isinstance(app.focused, Input) and app.focused.value == ":e"
        assert not isinstance(app.screen, CommandScreen) and not app.screen.query(EventsPane)


def test_the_mutating_commands_are_commands_and_aliases_resolve() -> None:
    parser = build_parser()
    names = set()

    def walk(node: object, words: list[str]) -> None:
        children = subcommands(node)  # type: ignore[arg-type]
        if not children:
            names.add(command_name(parser, words))
        for word, child in children.items():
            walk(child, [*words, word])

    walk(parser, [])
    assert MUTATING_COMMANDS <= names
    assert command_name(parser, ["e", "d", "x", "-a"]) == "environment destroy"
    assert command_name(parser, ["repo", "default-revision", "1", "v"]) == \
        "repository default-revision"
    assert {"environment list", "environment watch", "task log"} <= names - MUTATING_COMMANDS


def test_an_events_line_names_what_changed_and_other_threads_print_elsewhere() -> None:
    call = EnvironmentEvent(EventKind.CALL, "env1", "CONFIGURED", user="bob",
                            role_path="root.dcs", func="dcs.PrepareForRun()",
                            call_status="DONE_ERROR", error="refused by DCS",
                            time=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    text = event_text(call)
    stamp = call.time.astimezone()
    assert text.plain == (f"{stamp:%H:%M:%S}.678  env1  call  root.dcs dcs.PrepareForRun()  "
                          "DONE_ERROR  bob  refused by DCS")
    task = event_text(EnvironmentEvent(EventKind.TASK, "env1", "ERROR", task_id="t1",
                                       status="INACTIVE"))
    assert task.plain.endswith("  env1  task  t1  ERROR  INACTIVE")
    assert any(span.style == state_style("ERROR") for span in task.spans)

    shown: list[str] = []
    elsewhere = io.StringIO()
    sink = LineSink(shown.append, elsewhere)
    sink.write("one\ntw")
    thread = threading.Thread(target=sink.write, args=("engine thread\n",))
    thread.start()
    thread.join()
    sink.write("o")
    sink.close()
    assert shown == ["one", "two"] and elsewhere.getvalue() == "engine thread\n"


def test_the_history_walks_back_keeps_the_draft_and_is_remembered(tmp_path: Path) -> None:
    history = CommandHistory(tmp_path / HISTORY_FILE)
    for line in ("a", "b", "b", ""):
        history.add(line)
    assert history.entries == ["a", "b"]
    assert history.older("typed") == "b" and history.older("b") == "a"
    assert history.older("a") is None
    assert history.newer() == "b" and history.newer() == "typed" and history.newer() is None
    for number in range(HISTORY_LIMIT):
        history.add(str(number))
    again = CommandHistory(tmp_path / HISTORY_FILE)
    assert len(again.entries) == HISTORY_LIMIT and again.entries[-1] == str(HISTORY_LIMIT - 1)
    assert again.older("") == str(HISTORY_LIMIT - 1)


async def test_the_line_and_the_pane_on_a_core(home: Home) -> None:
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
            palette = {command.title: command for command in app.get_system_commands(app.screen)}
            palette["Events pane"].callback()  # Ctrl+P's command
            await until(pilot, lambda: bool(app.screen.query(EventsPane)), "the events pane")
            await pilot.press("colon")
            out = await run_line(pilot, "env list")
            assert out[2].split()[0] == info.id
            out = await run_line(pilot, f"env control {info.id} -e START")
            assert any("START_ACTIVITY" in line for line in out), out
            out = await run_line(pilot, "env show nope")
            assert out[1:] == ["error: no environment nope", "✗ exit code 1"]
            screen = command_screen(app)
            screen.line.value = f"env watch {info.id}"
            await pilot.press("enter")
            await until(pilot, lambda: screen.output.plain()[-1].startswith(
                f"environment {info.id}: RUNNING"), "the watched environment")
            await pilot.press("ctrl+c")  # stops the command, the line stays
            assert not screen.running and screen.codes[-1] == 130
            assert screen.output.plain()[-1] == "error: interrupted"
            await pilot.press("escape")
            await until(pilot, lambda: f"{info.id}  env   RUNNING  " in pane_text(app),
                        "RUNNING in the pane")
            await pilot.press("q")
    finally:
        core.stop()


async def test_tab_completes_the_common_prefix_then_cycles_with_a_hint(home: Home) -> None:
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("colon")
        screen = command_screen(app)
        assert screen.hint.plain == "" and not screen.hint.display

        put(screen, "repo def")  # `default` and `default-revision`: their common prefix
        await tab(pilot)
        assert screen.line.value == "repo default" and screen.line.cursor_position == 12
        assert screen.hint.plain == "default  default-revision" and highlighted(screen) == []
        assert screen.hint.region.y == screen.line.region.y + 1  # the line under the input
        await tab(pilot)  # it adds nothing more: tab cycles
        assert screen.line.value == "repo default" and highlighted(screen) == ["default"]
        await tab(pilot)
        assert screen.line.value == "repo default-revision"
        assert highlighted(screen) == ["default-revision"]
        await tab(pilot)  # round again
        assert screen.line.value == "repo default" and highlighted(screen) == ["default"]
        await tab(pilot, "shift+tab")  # and back
        assert screen.line.value == "repo default-revision"
        assert screen.hint.plain == "default  default-revision"

        put(screen, "env c")  # the prefix adds nothing: the first tab cycles already
        await pilot.pause()
        assert screen.hint.plain == ""  # the line changed: the hint went
        await tab(pilot)
        assert screen.line.value == "env create" and highlighted(screen) == ["create"]
        assert screen.hint.plain == "create  c  control  ctl  ct"
        await tab(pilot, "shift+tab")
        await tab(pilot, "shift+tab")
        assert screen.line.value == "env ctl" and highlighted(screen) == ["ctl"]
        await pilot.press("backspace")  # typing ends the cycle and takes the hint away
        assert screen.line.value == "env ct" and screen.hint.plain == ""
        await tab(pilot)  # a new cycle, over what matches `ct`
        assert screen.line.value == "env ctl" and screen.hint.plain == "ctl  ct"
        await pilot.press("space")
        assert screen.hint.plain == ""

        put(screen, "env wa")  # a single match: the whole word and a space, no hint
        await tab(pilot)
        assert screen.line.value == "env watch " and screen.hint.plain == ""
        put(screen, "env ct x -e sta")  # events in any case, offered as the command takes them
        await tab(pilot)
        assert screen.line.value == "env ct x -e START"
        assert screen.hint.plain == "START_ACTIVITY  START"
        put(screen, "env ct x -e rec -a")  # completed at the cursor; what follows stays
        screen.line.cursor_position = len("env ct x -e rec")
        await tab(pilot)
        assert screen.line.value == "env ct x -e RECOVER -a"
        assert screen.line.cursor_position == len("env ct x -e RECOVER")

        put(screen, "zz")  # nothing matches: the hint says so until the line changes
        await tab(pilot)
        assert screen.line.value == "zz" and screen.hint.plain == "no match for zz"
        put(screen, "env show ")  # the engine's environment ids: there are none
        await tab(pilot)
        assert screen.line.value == "env show " and screen.hint.plain == "no match"
        await pilot.press("enter")  # running the line takes the hint away
        await until(pilot, lambda: not screen.running and screen.hint.plain == "", "run")
        await pilot.press("escape")


async def test_tab_cycles_the_engines_names_and_a_hung_engine_costs_a_hint(home: Home) -> None:
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("colon")
        screen = command_screen(app)
        await run_line(pilot, f"repo add {home.repo}")
        put(screen, "env create -w ")
        await tab(pilot)  # the templates the engine knows (the demo's and ours)
        names = screen.hint.words
        assert {"demo", "pub"} <= set(names), names  # the public ones
        assert screen.line.value == f"env create -w {names[0]}"
        await tab(pilot)
        assert screen.line.value == f"env create -w {names[1]}"
        assert highlighted(screen) == [names[1]]
        await tab(pilot, "shift+tab")
        await tab(pilot, "shift+tab")
        assert screen.line.value == f"env create -w {names[-1]}"

        assert screen.tab is not None
        screen.tab.timeout = 0.5
        with hung(app):
            put(screen, "env show ")
            await pilot.press("tab")  # the engine is asked and does not answer
            await pilot.press("x")  # meanwhile the line takes keys
            assert screen.line.value == "env show x"
            await pilot.press("backspace", "tab")
            await until(pilot, lambda: screen.hint.plain.startswith(
                "the engine did not answer within 0.5 s"), "the hint on the hung engine")
            assert screen.line.value == "env show "
        await tab(pilot)  # the engine back: it has no environments
        assert screen.hint.plain == "no match"
        await pilot.press("escape")


def test_the_hint_keeps_the_current_candidate_in_view_and_cuts_the_rest() -> None:
    words = tuple(f"word{number:02}" for number in range(10))  # 6 cells each, 2 between
    assert hint_line(words, -1, 80).plain == "  ".join(words)
    first = hint_line(words, 0, 30)
    assert first.plain == f"word00  word01  word02  {ELLIPSIS}"
    assert [first.plain[span.start:span.end] for span in first.spans
            if span.style == CURRENT_STYLE] == ["word00"]
    later = hint_line(words, 6, 30)
    assert later.plain == f"{ELLIPSIS}  word04  word05  word06  {ELLIPSIS}"  # 28 cells
    last = hint_line(words, 9, 30)
    assert last.plain == f"{ELLIPSIS}  word07  word08  word09"
    assert len(hint_line(("a" * 50,), 0, 20).plain) == 20
