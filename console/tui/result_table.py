"""The last transition's result table: a row per task, the failed ones first.

What a shifter reads after a transition went wrong: which task, where, the
state before and after, the reason, the exit code and the log to open.
"""
from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from console.tui.state_badge import badge
from engine import TaskRow

COLUMNS = ("TASK", "ROLE", "HOST", "BEFORE → AFTER", "REASON", "EXIT", "LOG")
REASON_WIDTH = 48  # the rest of a long reason is in the task's log; the log column stays in view


def failures_first(rows: Sequence[TaskRow]) -> list[TaskRow]:
    """The failed rows, then the others, each in the engine's order."""
    return [row for row in rows if row.failed] + [row for row in rows if not row.failed]


class ResultTable(DataTable[Text | str]):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[TaskRow] = []
        self.transition = ""
        self._source: Sequence[TaskRow] = ()  # the rows last given, as given

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column, width=REASON_WIDTH if column == "REASON" else None)
        self._title()

    def _title(self) -> None:
        failed = sum(row.failed for row in self.rows_shown)
        what = self.transition or "no transition yet"
        self.border_title = f"last transition: {what}" + (f" — {failed} failed" if failed else "")

    def show(self, transition: str, rows: Sequence[TaskRow]) -> None:
        """Replace the table with `rows` of `transition`, unless it shows them already (the
        environment is re-read several times a second: the same rows again cost nothing)."""
        if rows is self._source and transition == self.transition:
            return
        self._source = rows
        ordered = failures_first(rows)
        if ordered == self.rows_shown and transition == self.transition:
            return
        self.rows_shown, self.transition = ordered, transition
        self.clear()
        for row in ordered:
            change = Text(row.before or "-")
            change.append(" → ")
            change.append_text(badge(row.after or "-"))
            reason = (Text(row.reason, style="bold red", overflow="ellipsis", no_wrap=True)
                      if row.failed else Text("ok", style="green"))
            self.add_row(row.task_id or "not deployed", row.role_path, row.host or "-", change,
                         reason, "" if row.exit_code is None else str(row.exit_code),
                         row.log_path)
        self._title()
