"""A table of records by key, kept in sync in place: rows added, changed cell by cell and
removed as the records change (never a rebuild per read), with a text filter over every
column and sorting by any column (numbers as numbers).

Rows are plain strings per column; `render` may turn a column's string into rich Text
(state badges) when shown. The cursor stays on the record the operator chose.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.text import Text
from textual.widgets import DataTable

Row = Mapping[str, str]


def sort_key(value: object) -> tuple[int, int, str]:
    """Numbers before words, numbers by value: `9` before `10`."""
    text = str(getattr(value, "plain", value))
    if text.isdigit():
        return (0, int(text), "")
    return (1, 0, text.casefold())


class RecordTable(DataTable[str | Text]):
    def __init__(self, columns: Sequence[tuple[str, str]], *,
                 render: Mapping[str, Callable[[str], str | Text]] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.columns_shown = tuple(columns)
        self.render = dict(render or {})
        self.records: dict[str, Row] = {}  # every record, by key
        self.shown: dict[str, Row] = {}  # those the filter lets through, as shown
        self.filter_text = ""
        self.sort_column = ""
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in self.columns_shown:
            self.add_column(label, key=key)
        self._sync()

    @property
    def selected(self) -> str | None:
        """The key of the record under the cursor."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def matches(self, row: Row) -> bool:
        words = self.filter_text.casefold().split()
        text = " ".join(row.values()).casefold()
        return all(word in text for word in words)

    def set_records(self, records: Mapping[str, Row]) -> None:
        self.records = dict(records)
        self._sync()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._sync()

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self._sort()

    def _cell(self, column: str, value: str) -> str | Text:
        render = self.render.get(column)
        return render(value) if render is not None else value

    def _sync(self) -> None:
        if not self.is_mounted:
            return
        wanted = {key: row for key, row in self.records.items() if self.matches(row)}
        resort = False
        for key in [key for key in self.shown if key not in wanted]:
            self.remove_row(key)
            del self.shown[key]
        for key, row in wanted.items():
            shown = self.shown.get(key)
            if shown is None:
                self.add_row(*(self._cell(c, row.get(c, "")) for c, _ in self.columns_shown),
                             key=key)
                resort = True
            else:
                for column, _ in self.columns_shown:
                    value = row.get(column, "")
                    if shown.get(column, "") != value:
                        self.update_cell(key, column, self._cell(column, value))
                        resort = resort or column == self.sort_column
            self.shown[key] = row
        if resort:
            self._sort()

    def _sort(self) -> None:
        if self.sort_column and self.row_count:
            self.sort(self.sort_column, key=sort_key, reverse=self.sort_reverse)
        for key, label in self.columns_shown:
            mark = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_column else ""
            self.columns[key].label = Text(label + mark)
        self.refresh()

    def on_data_table_header_selected(self, message: DataTable.HeaderSelected) -> None:
        """A click on a column's header sorts by it."""
        message.stop()
        if message.column_key.value is not None:
            self.sort_by(message.column_key.value)
