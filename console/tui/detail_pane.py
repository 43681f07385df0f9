"""The detail pane: everything known of the selected task or role.

A task: id, role, state/status, host, pid, control port, class, critical, log
path. A role: path, kind, state/status, task count and its consolidated
variables (the stack its tasks are built from).
"""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from console.tui.state_badge import badge
from engine import RoleInfo, TaskInfo

VARIABLES = "variables"
MIN_LINES = 12  # a task's details and a small role's fit: moving between them keeps the height


def _state(state: str, status: str) -> Text:
    text = badge(state)
    text.append(f" / {status or '-'}")
    return text


def task_fields(task: TaskInfo) -> dict[str, str | Text]:
    return {
        "task": task.task_id,
        "role": task.role_path,
        "state": _state(task.state, task.status),
        "host": f"{task.host} (agent {task.agent})",
        "pid": "-" if task.pid is None else str(task.pid),
        "control port": "-" if task.control_port is None else str(task.control_port),
        "class": task.class_name or "-",
        "critical": Text("yes", style="bold red") if task.critical else "no",
        "log": task.log_path or "-",
    }


def role_fields(role: RoleInfo, state: str, status: str) -> dict[str, str | Text]:
    fields: dict[str, str | Text] = {
        "role": role.full_path,
        "kind": role.kind,
        "state": _state(state, status),
        "tasks": str(len(role.task_ids)),
    }
    if role.description:
        fields["description"] = role.description
    fields[VARIABLES] = "" if role.consolidated_stack else "none"
    for key in sorted(role.consolidated_stack):
        fields[f"  {key}"] = Text(role.consolidated_stack[key], overflow="fold")
    return fields


class DetailPane(Static):
    """Shows one task or role as a two-column grid; `fields` holds what it shows."""

    DEFAULT_CSS = f"DetailPane {{ min-height: {MIN_LINES}; }}"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("select a role or task", id=id)
        self.shown = ""  # the task id or role path shown
        self.fields: dict[str, str | Text] = {}
        self._lines = (-1, -1)  # (width, height) of what is shown, in cells

    def show_task(self, task: TaskInfo) -> None:
        self._show(task.task_id, task_fields(task))

    def show_role(self, role: RoleInfo, state: str, status: str) -> None:
        self._show(role.full_path, role_fields(role, state, status))

    def _show(self, shown: str, fields: dict[str, str | Text]) -> None:
        self.shown, self.fields = shown, fields
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        for key, value in fields.items():
            grid.add_row(Text(key, style="bold underline") if key == VARIABLES else key, value)
        # the screen is laid out again only when the pane's height changes (a layout
        # repaints the whole screen): moving from task to task, or to a role with few
        # variables, keeps it
        width = self.content_size.width
        lines = (width, max(MIN_LINES, len(self.app.console.render_lines(
            grid, self.app.console.options.update_width(width), pad=False)))) \
            if width else (-1, -1)
        self.update(grid, layout=lines != self._lines or width == 0)
        self._lines = lines

    def plain(self) -> dict[str, str]:
        """The fields as plain text."""
        return {key: str(value) for key, value in self.fields.items()}
