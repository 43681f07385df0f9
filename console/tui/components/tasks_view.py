"""The tasks view: every task of the working directory (the environments', locked, and those
the executors run for no environment, unlocked), filtered with `/`, sorted by any column
(`o` cycles the column, `O` reverses, or click a header); `x` cleans the selected unlocked
task, `l` shows its log.

Task events change the state and status cells in place; a task not shown yet or an
environment event (created, destroyed: tasks come and go) calls for one read of the list.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Header, Input

from console.tui.components.confirm import ConfirmModal
from console.tui.components.live_view import LiveView
from console.tui.components.record_table import RecordTable, Row
from console.tui.log_screen import LogScreen
from console.tui.messages import EngineEvents
from console.tui.stable_footer import StableFooter
from console.tui.state_badge import badge
from engine import EventKind, TaskInfo

if TYPE_CHECKING:
    from console.client import AnyEngine

COLUMNS: tuple[tuple[str, str], ...] = (
    ("task", "TASK ID"), ("role", "ROLE PATH"), ("host", "HOST"), ("state", "STATE"),
    ("status", "STATUS"), ("pid", "PID"), ("critical", "CRITICAL"), ("locked", "LOCKED"),
    ("class", "CLASS"), ("log", "LOG"),
)


def task_row(task: TaskInfo) -> dict[str, str]:
    return {
        "task": task.task_id, "role": task.role_path, "host": task.host, "state": task.state,
        "status": task.status, "pid": "" if task.pid is None else str(task.pid),
        "critical": "yes" if task.critical else "no", "locked": "yes" if task.locked else "no",
        "class": task.class_name, "log": task.log_path,
    }


class TasksView(LiveView):
    DEFAULT_CSS = """
    TasksView #tasks { height: 1fr; }
    TasksView #filter { display: none; }
    TasksView #filter.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("o", "sort", "Sort"),
        Binding("O", "sort_reverse", "Reverse", show=False),
        Binding("l", "task_log", "Log"),
        Binding("x", "clean", "Clean"),
        Binding("escape", "back", "Back"),
    ]
    VIEW_NAME = "tasks"

    def __init__(self, engine: AnyEngine, *, readonly: bool = False) -> None:
        super().__init__(engine, readonly=readonly)
        self.tasks: dict[str, TaskInfo] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield RecordTable(COLUMNS, render={"state": badge}, id="tasks")
        yield Input(placeholder="filter by any column (enter: keep, escape: clear)", id="filter")
        yield StableFooter()

    @property
    def table(self) -> RecordTable:
        return self.query_one(RecordTable)

    async def reload(self) -> None:
        tasks = await self.engine.list_tasks()
        self.tasks = {task.task_id: task for task in tasks}
        self.table.set_records({task.task_id: task_row(task) for task in tasks})

    def on_engine_events(self, message: EngineEvents) -> None:
        """State and status from the events at once; a read for tasks that come or go
        (instead of LiveView's read per batch)."""
        message.prevent_default()
        records = self.table.records
        changed: dict[str, Row] = {}
        read = False
        for event in message.events:
            if event.kind is EventKind.ENVIRONMENT:
                read = True
            elif event.kind is EventKind.TASK and event.task_id:
                row = changed.get(event.task_id) or records.get(event.task_id)
                if row is None:
                    read = True
                    continue
                changed[event.task_id] = {**row, "state": event.state or row["state"],
                                          "status": event.status or row["status"]}
        if changed:
            self.table.update_records(changed)
        if read:
            self.request_reload()

    # -- keys ---------------------------------------------------------------------------

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("shown")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, message: Input.Changed) -> None:
        self.table.set_filter(message.value)

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, _message: Input.Submitted) -> None:
        self.table.focus()

    def action_back(self) -> None:
        """escape: out of the filter (clearing it) first, else back to the environments."""
        field = self.query_one("#filter", Input)
        if field.has_class("shown"):
            field.value = ""
            field.remove_class("shown")
            self.table.set_filter("")
            self.table.focus()
            return
        super().action_back()

    def action_sort(self) -> None:
        """The next column (the first after none)."""
        keys = [key for key, _ in COLUMNS]
        current = self.table.sort_column
        following = keys[(keys.index(current) + 1) % len(keys)] if current else keys[0]
        self.table.sort_by(following)

    def action_sort_reverse(self) -> None:
        self.table.sort_by(self.table.sort_column or COLUMNS[0][0])

    def _selected(self) -> TaskInfo | None:
        key = self.table.selected
        task = self.tasks.get(key) if key is not None else None
        if task is None:
            self.notify("no task selected", severity="warning")
        return task

    def action_task_log(self) -> None:
        task = self._selected()
        if task is not None:
            self.app.push_screen(LogScreen(self.engine, task.task_id, task.log_path))

    def action_clean(self) -> None:
        task = self._selected()
        if task is None or self.refused(f"cleaning task {task.task_id}"):
            return
        if task.locked:
            self.notify(f"task {task.task_id} ({task.role_path}) belongs to an environment: "
                        "locked, not cleaned; destroy its environment instead",
                        severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._clean(task), group="actions", name=f"clean {task.task_id}")
        self.app.push_screen(ConfirmModal(f"Kill task {task.task_id} on {task.host}? It belongs "
                                          "to no environment.", "Clean"), answered)

    async def _clean(self, task: TaskInfo) -> None:
        outcome = await self.engine_call(f"cleaning task {task.task_id}",
                                         lambda: self.engine.cleanup_tasks([task.task_id]))
        if outcome is None:
            return
        killed, _running = outcome
        if any(info.task_id == task.task_id for info in killed):
            self.notify(f"task {task.task_id} on {task.host} killed", title="task cleaned")
        else:
            self.notify(f"task {task.task_id} on {task.host} was not killed", severity="error")
        self.request_reload()
