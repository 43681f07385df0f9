"""A transition's failed result: what was asked, where it ended, a row per task, failures first."""
from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from engine import TaskRow, TransitionResult

RESULT_COLUMNS = ("TASK", "ROLE", "HOST", "BEFORE → AFTER", "REASON", "EXIT", "LOG")


def ordered(rows: tuple[TaskRow, ...]) -> list[TaskRow]:
    """Failures first, each group in the engine's order."""
    return [row for row in rows if row.failed] + [row for row in rows if not row.failed]


class ResultModal(ModalScreen[None]):
    """Shown when a transition (or a creation) fails; escape or enter closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("enter", "close", "Close", show=False),
    ]

    def __init__(self, title: str, message: str, result: TransitionResult) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.result = result

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            yield Label(self.message, id="message")
            yield DataTable(id="rows", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*RESULT_COLUMNS)
        for row in ordered(self.result.rows):
            table.add_row(row.task_id or "not deployed", row.role_path, row.host or "-",
                          f"{row.before} → {row.after}", row.reason,
                          "" if row.exit_code is None else str(row.exit_code), row.log_path)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)
