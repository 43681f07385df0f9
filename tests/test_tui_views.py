"""The console's tasks, hosts and templates views driven with Pilot against a real engine
(in-process on its own thread, or a `nutshell core`), real executors for agents a1/a2 and real dummies: keys
1-4 switch views, the tasks view filters, sorts, cleans an unlocked task and refuses a
locked one (and everything in read-only mode), the hosts view counts the tasks placed,
the templates view shows a workflow's public variables."""
from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult

from console.tui.app import ConsoleApp
from console.tui.components.confirm import ConfirmModal
from console.tui.components.environments_view import EnvironmentsView
from console.tui.components.hosts_view import HostsView
from console.tui.components.record_table import RecordTable
from console.tui.components.tasks_view import COLUMNS as TASK_COLUMNS
from console.tui.components.tasks_view import TasksView, task_row
from console.tui.components.templates_view import TemplatesView
from console.tui.log_screen import LogScreen
from console.tui.state_badge import badge
from engine import EnvEvent, TaskInfo
from engine.api.client import RemoteEngine
from tests.conftest import make_template_repo
from tests.test_cli_env import WORKFLOW, launch_orphan
from tests.test_core_api import start_core
from tests.test_environment_e2e import DUMMY
from tests.test_tui import SIZE, Home, home, loaded, notes, until

__all__ = ["home"]  # the fixture, shared with tests/test_tui.py

TUNED = WORKFLOW.replace("name: cli", "name: !public tuned\ndescription: !public \"Two dummies, tuned\"") \
    .replace('  fail_on: ""', '''  fail_on: ""
  rate: !public
    value: "50"
    type: number
    label: Rate
    description: Events per second
    widget: editBox''')


def order(table: RecordTable) -> list[str]:
    """The keys of the rows as shown, top to bottom."""
    return list(table.order)


async def test_tasks_and_hosts_views_filter_sort_clean_and_count(home: Home,
                                                                 tmp_path: Path) -> None:
    await launch_orphan(home.workdir.root, tmp_path / "orphan.log")
    app = ConsoleApp(home.workdir)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.engine is not None
        info = await app.engine.create_environment(home.reference, user="tester")
        env_tasks = sorted(task.task_id for task in info.tasks)
        assert len(env_tasks) == 2

        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, TasksView) and app.screen.loaded,
                    "the tasks view")
        view = app.screen
        assert isinstance(view, TasksView)
        table = view.table
        await until(pilot, lambda: set(table.shown) == {"orphan-1", *env_tasks}, "three tasks")
        assert table.records["orphan-1"]["locked"] == "no"
        assert table.records["orphan-1"]["host"] == "a1"
        assert {table.records[t]["locked"] for t in env_tasks} == {"yes"}
        assert {table.records[t]["host"] for t in env_tasks} == {"a1", "a2"}
        await until(pilot, lambda: all(table.records[t]["pid"] for t in env_tasks), "pids")

        await pilot.press("slash", *"orphan")  # filter by any column's text
        await until(pilot, lambda: list(table.shown) == ["orphan-1"], "the filter narrowing")
        await pilot.press("escape")  # clears the filter
        await until(pilot, lambda: len(table.shown) == 3, "the filter cleared")
        await pilot.press("slash", *"a2", "enter")
        await until(pilot, lambda: [table.records[t]["host"] for t in table.shown] == ["a2"],
                    "the tasks on a2 only")
        await pilot.press("escape")
        await until(pilot, lambda: len(table.shown) == 3 and table.has_focus, "all again")

        await pilot.press("o")  # sort by the first column: task id
        assert table.sort_column == "task"
        assert order(table) == sorted(order(table))
        await pilot.press("O")
        assert order(table) == sorted(order(table), reverse=True)
        await pilot.click("#tasks", offset=(50, 0))  # a click on a header sorts by that column
        assert table.sort_column != "task"

        # x on a locked task: refused, no question asked
        table.move_cursor(row=order(table).index(env_tasks[0]))
        await pilot.press("x")
        await until(pilot, lambda: any("locked, not cleaned" in n for n in notes(app)),
                    "the refusal of a locked task")
        assert not isinstance(app.screen, ConfirmModal)

        # l: the selected task's log
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.reads > 0,
                    "the task's log")
        assert isinstance(app.screen, LogScreen) and app.screen.task_id == env_tasks[0]
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is view, "the tasks view again")

        # x on the unlocked one: asked, then killed and gone from the table
        table.move_cursor(row=order(table).index("orphan-1"))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("y")
        await until(pilot, lambda: "orphan-1" not in table.records, "the orphan cleaned")
        assert any("orphan-1 on a1 killed" in n for n in notes(app))
        assert sorted(task.task_id for task in await app.engine.list_tasks()) == env_tasks

        # the states follow the engine's task events, in place
        await app.engine.control_environment(info.id, EnvEvent.START_ACTIVITY, "tester")
        await until(pilot, lambda: [table.records[t]["state"] for t in env_tasks]
                    == ["RUNNING", "RUNNING"], "the tasks RUNNING")
        assert str(table.get_cell(env_tasks[0], "state")) == "RUNNING"

        await pilot.press("3")
        await until(pilot, lambda: isinstance(app.screen, HostsView) and app.screen.loaded,
                    "the hosts view")
        hosts = app.screen
        assert isinstance(hosts, HostsView)
        rows = hosts.table.records
        await until(pilot, lambda: [(r["agent"], r["tasks"]) for r in rows.values()]
                    == [("a1", "1"), ("a2", "1")], "one task on each agent")
        assert all(r["executor"].startswith("pid ") for r in rows.values())
        assert rows["a1"]["mem"] == "32/131072" and rows["a1"]["ports_used"] == "1"

        await app.engine.destroy_environment(info.id, "tester")
        await until(pilot, lambda: [r["tasks"] for r in hosts.table.records.values()]
                    == ["0", "0"], "the counts after the destroy (from events)")
        await pilot.press("1")
        await until(pilot, lambda: isinstance(app.screen, EnvironmentsView), "environments")
        assert len(app.screen_stack) == 2

        # the palette's commands open the same views
        commands = {command.title: command for command in app.get_system_commands(app.screen)}
        assert {"View: environments", "View: tasks", "View: hosts", "View: templates"} \
            <= set(commands)
        commands["View: tasks"].callback()
        await until(pilot, lambda: isinstance(app.screen, TasksView) and app.screen.loaded,
                    "the tasks view from the palette")
        assert isinstance(app.screen, TasksView) and app.screen.table.records == {}
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, EnvironmentsView), "back")


async def test_templates_view_and_readonly_refusal(home: Home, tmp_path: Path) -> None:
    repo = make_template_repo(tmp_path / "tuned", {
        "workflows/tuned.yaml": TUNED, "workflows/cli.yaml": WORKFLOW,
        "tasks/dummy.yaml": DUMMY}, corpus=False)
    await launch_orphan(home.workdir.root, tmp_path / "orphan.log")
    app = ConsoleApp(home.workdir, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.engine is not None
        await app.engine.add_repo(str(repo))

        await pilot.press("4")
        await until(pilot, lambda: isinstance(app.screen, TemplatesView) and app.screen.loaded,
                    "the templates view")
        view = app.screen
        assert isinstance(view, TemplatesView)
        repos = {row["name"]: row for row in view.table("repos").records.values()}
        assert repos[str(repo)]["kind"] == "local" and repos[str(repo)]["revision"] == "local"
        assert [name for name, row in repos.items() if row["default"] == "*"] \
            == [str(home.workdir.root / "demo-templates")]  # the working directory's demo
        workflows = view.table("workflows")
        names = {row["name"]: row for row in workflows.records.values() if row["repo"] == str(repo)}
        assert set(names) == {"cli", "tuned"}
        assert names["tuned"]["description"] == "Two dummies, tuned"
        assert names["tuned"]["public"] == "yes" and names["cli"]["public"] == "no"
        tuned = next(key for key, row in workflows.records.items() if row["name"] == "tuned")
        workflows.move_cursor(row=order(workflows).index(tuned))
        await until(pilot, lambda: view.variables_of == tuned, "the variables of tuned")
        assert dict(view.table("variables").records["rate"]) == {
            "name": "rate", "type": "number", "widget": "editBox", "default": "50",
            "label": "Rate", "description": "Events per second"}
        cli = next(key for key, row in workflows.records.items() if row["name"] == "cli")
        workflows.move_cursor(row=order(workflows).index(cli))
        await until(pilot, lambda: view.variables_of == cli, "the variables of cli")
        assert view.table("variables").records == {}

        # read-only: cleaning is refused before anything is asked
        await pilot.press("2")
        await until(pilot, lambda: isinstance(app.screen, TasksView)
                    and "orphan-1" in app.screen.table.records, "the orphan listed")
        await pilot.press("x")
        await until(pilot, lambda: any("read-only console: cleaning task orphan-1 refused" in n
                                       for n in notes(app)), "the read-only refusal")
        assert isinstance(app.screen, TasksView)
        assert [task.task_id for task in await app.engine.list_tasks()] == ["orphan-1"]


async def test_the_views_attached_to_a_core(home: Home) -> None:
    core = await start_core(home.workdir)
    try:
        async with RemoteEngine(core.address) as remote:
            added = await remote.add_repo(str(home.repo), "master")
            info = await remote.create_environment(f"{added.repo}/workflows/cli@master")
        app = ConsoleApp(home.workdir, core=core.address)
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.engine, RemoteEngine)
            await loaded(pilot)
            await pilot.press("2")
            await until(pilot, lambda: isinstance(app.screen, TasksView)
                        and len(app.screen.table.records) == 2, "the core's two tasks")
            assert isinstance(app.screen, TasksView)
            assert {row["locked"] for row in app.screen.table.records.values()} == {"yes"}
            assert {task.task_id for task in info.tasks} == set(app.screen.table.records)
            await pilot.press("3")
            await until(pilot, lambda: isinstance(app.screen, HostsView) and [
                row["tasks"] for row in app.screen.table.records.values()] == ["1", "1"],
                "one task on each agent")
            await pilot.press("4")
            await until(pilot, lambda: isinstance(app.screen, TemplatesView) and app.screen.loaded,
                        "the templates view")
            assert isinstance(app.screen, TemplatesView)
            assert {row["name"] for row in app.screen.table("workflows").records.values()
                    if row["repo"] == added.repo} == {"cli", "pub"}
            await pilot.press("q")
    finally:
        core.stop()


class TableHost(App[None]):
    def compose(self) -> ComposeResult:
        yield RecordTable(TASK_COLUMNS, render={"state": badge}, id="tasks")


def shown_line(table: RecordTable, key: str) -> str:
    """The text on screen of `key`'s row."""
    y = table.get_row_index(key) - table.scroll_offset.y + 1  # below the header
    return table.render_line(y).text


async def test_2000_rows_change_in_place_and_filter_in_bulk() -> None:
    rows = {f"task-{n}": task_row(TaskInfo(
        task_id=f"task-{n}", role_path=f"big.h{n // 100}.t{n % 100}", class_name="dummy",
        host=f"flp{n // 100:03d}", agent="a", state="CONFIGURED", status="ACTIVE", pid=n,
        control_port=None, critical=True, log_path="")) for n in range(2000)}
    async with TableHost().run_test(size=SIZE) as pilot:
        table = pilot.app.query_one(RecordTable)
        table.set_records(rows)
        await pilot.pause()
        assert table.row_count == 2000
        table.move_cursor(row=3)
        await pilot.pause()
        assert "CONFIGURED" in shown_line(table, "task-3")

        # a batch of events: the rows change on screen, the cursor stays
        table.update_records({key: {**rows[key], "state": "RUNNING"}
                              for key in ("task-3", "task-4", "task-1999")})
        await pilot.pause()
        assert "RUNNING" in shown_line(table, "task-3") and "RUNNING" in shown_line(table,
                                                                                   "task-4")
        assert "CONFIGURED" in shown_line(table, "task-5")
        assert str(table.get_cell("task-1999", "state")) == "RUNNING"
        assert table.selected == "task-3"

        table.move_cursor(row=1500)
        table.set_filter("flp01")  # 1000 rows go at once: the table is filled anew
        assert table.row_count == len(table.shown) == 1000
        assert table.selected == "task-1500"  # the cursor stays on its record
        table.update_records({"task-5": {**rows["task-5"], "state": "ERROR"}})
        assert "task-5" not in table.shown and table.records["task-5"]["state"] == "ERROR"
        table.update_records({"task-5": {**rows["task-5"], "host": "flp010"}})  # now matches
        assert "task-5" in table.shown and table.row_count == 1001
        table.set_filter("flp015 task-150")  # every word, in any column
        assert set(table.shown) == {f"task-{n}" for n in range(1500, 1510)}
        table.set_filter("")
        assert table.row_count == 2000 and table.selected == "task-1500"

        table.sort_by("state")  # a change of the sorted column re-sorts (stably)
        assert order(table)[1997:] == ["task-3", "task-4", "task-1999"]
        table.update_records({"task-7": {**rows["task-7"], "state": "ERROR"}})
        assert order(table)[1996:] == ["task-7", "task-3", "task-4", "task-1999"]
        await pilot.pause()
        assert table.selected == "task-1500"


class RecordingHost(App[None]):
    """A RecordTable alone, keeping the keys its messages name."""

    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[str] = []
        self.chosen: list[str] = []

    def compose(self) -> ComposeResult:
        yield RecordTable(TASK_COLUMNS, render={"state": badge}, id="tasks")

    def on_record_table_row_highlighted(self, message: RecordTable.RowHighlighted) -> None:
        self.highlighted.append(message.key)

    def on_record_table_row_selected(self, message: RecordTable.RowSelected) -> None:
        self.chosen.append(message.key)


async def test_record_table_keys_clicks_and_messages() -> None:
    rows = {key: {"task": key, "pid": pid, "state": "RUNNING", "status": "[bold]as typed[/]"}
            for key, pid in (("a", "10"), ("b", "9"), ("c", "100"))}
    async with RecordingHost().run_test(size=SIZE) as pilot:
        app = pilot.app
        table = app.query_one(RecordTable)
        table.set_records(rows)
        table.focus()
        await until(pilot, lambda: app.highlighted == ["a"], "the first row highlighted")
        assert "[bold]as typed[/]" in shown_line(table, "a")  # text, never markup

        header = table.render_line(0).text
        await pilot.click(RecordTable, offset=(header.index("PID"), 0))  # sorts, numbers as numbers
        assert order(table) == ["b", "a", "c"] and table.sort_column == "pid"
        assert "PID ▲" in table.render_line(0).text
        assert table.selected == "a" and table.cursor_row == 1  # the cursor kept its record
        await pilot.click(RecordTable, offset=(header.index("PID"), 0))  # again: reversed
        assert order(table) == ["c", "a", "b"] and "PID ▼" in table.render_line(0).text

        await pilot.press("down")
        await until(pilot, lambda: app.highlighted == ["a", "b"], "b highlighted")
        await pilot.press("up", "up", "enter")
        await until(pilot, lambda: app.chosen == ["c"], "c chosen by enter")
        await pilot.click(RecordTable, offset=(2, 3))  # the third row: the cursor goes there
        assert table.selected == "b" and app.chosen == ["c"]
        await pilot.click(RecordTable, offset=(2, 3))  # on the cursor's row: chosen
        await until(pilot, lambda: app.chosen == ["c", "b"], "b chosen by a click")

        table.update_records({"b": {**rows["b"], "state": "ERROR"}})  # its line drawn anew
        await pilot.pause()
        assert "ERROR" in shown_line(table, "b") and "RUNNING" in shown_line(table, "a")
        await pilot.press("ctrl+home")
        assert table.selected == "c"
        await pilot.press("ctrl+end")
        assert table.selected == "b"

        # a changed record whose place stays: its line on screen is painted anew
        table.set_records({**rows, "a": {**rows["a"], "status": "re-read"}})
        table.update_records({"c": {**rows["c"], "pid": "99"}})  # the sorted column; same order
        await pilot.pause()
        assert order(table) == ["c", "a", "b"]
        screen = app.export_screenshot()
        assert "re-read" in screen and ">99<" in screen.replace("&#160;", " ").replace(" ", "")
