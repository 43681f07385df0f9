"""The environments table: one row per environment, updated cell by cell.

Rows are added, changed and removed in place (never a rebuild per event), so the
cursor stays on the environment the operator chose while the states move.
"""
from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.theme import Theme
from textual.widgets import DataTable

from console.tui.components.environment_row import EnvironmentRow
from engine import EnvironmentInfo

COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "ID"), ("workflow", "WORKFLOW"), ("state", "STATE"), ("run", "RUN"),
    ("tasks", "TASKS"), ("hosts", "HOSTS"), ("transition", "TRANSITION"),
    ("created", "CREATED"), ("user", "USER"),
)


def state_text(state: str, theme: Theme) -> Text:
    """A state word in the colour the active theme gives it."""
    styles = {
        "RUNNING": f"bold {theme.success}", "CONFIGURED": f"bold {theme.primary}",
        "DEPLOYED": str(theme.secondary), "STANDBY": str(theme.secondary),
        "ERROR": f"bold {theme.error}", "DONE": "dim",
    }
    return Text(state, style=styles.get(state, str(theme.warning)))


def _same(shown: object, new: str | Text) -> bool:
    """Text compares by its words and spans only; a state's colour is its style."""
    if isinstance(shown, Text) and isinstance(new, Text):
        return shown.plain == new.plain and shown.style == new.style
    return shown == new


class EnvironmentsTable(DataTable[str | Text]):
    """Environments by id; `rows_by_id` is what the table shows, for the view and for tests."""

    # enter selects the row (RowSelected: the view opens it); shown, unlike DataTable's own
    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select_cursor", "Open")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_by_id: dict[str, EnvironmentRow] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected(self) -> str | None:
        """The id of the environment under the cursor."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def _cells(self, row: EnvironmentRow) -> dict[str, str | Text]:
        return {"id": row.id, "workflow": row.workflow,
                "state": state_text(row.state, self.app.current_theme),
                "run": row.run_cell, "tasks": row.task_cell, "hosts": row.host_cell,
                "transition": row.transition_cell(), "created": row.created_cell,
                "user": row.user}

    def show(self, info: EnvironmentInfo) -> EnvironmentRow:
        """Add the environment's row, or bring its existing row up to date."""
        row = self.rows_by_id.get(info.id)
        if row is None:
            row = self.rows_by_id[info.id] = EnvironmentRow.of(info)
            cells = self._cells(row)
            self.add_row(*(cells[key] for key, _ in COLUMNS), key=info.id)
        else:
            row.refresh(info)
            self.update(row)
        return row

    def update(self, row: EnvironmentRow, *columns: str) -> None:
        """Rewrite the row's cells (only `columns` when given) where they changed."""
        cells = self._cells(row)
        for key in columns or cells:
            if not _same(self.get_cell(row.id, key), cells[key]):
                self.update_cell(row.id, key, cells[key], update_width=True)

    def drop(self, environment_id: str) -> None:
        if self.rows_by_id.pop(environment_id, None) is not None:
            self.remove_row(environment_id)

    def repaint_states(self) -> None:
        """The theme changed: the state colours follow it."""
        for row in self.rows_by_id.values():
            self.update(row, "state")

    def tick(self) -> None:
        """Advance the elapsed time of the transitions under way."""
        for row in self.rows_by_id.values():
            if row.transition:
                self.update(row, "transition")
