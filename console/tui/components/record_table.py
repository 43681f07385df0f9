"""A table of records by key, kept in sync in place: rows added, changed cell by cell and
removed as the records change (never a rebuild per read), with a text filter over every
column and sorting by any column (numbers as numbers).

`set_records` replaces every record (a read); `update_records` changes only those given
(task events), so a batch of fifty changes among 2000 tasks touches fifty rows, not a
pass over all of them. Each record's text for the filter is made once per change.

Rows are plain strings per column; `render` may turn a column's string into rich Text
(state badges) when shown. The cursor stays on the record the operator chose.

DataTable's costs with thousands of rows are avoided: removing a row renumbers every
row after it (a filter hiding 1000 rows of 2000 is a million steps), so when many rows
go the table is filled anew instead; new rows are added in one go (add_row re-validates
the cursor and asks for a repaint per row); and they are measured by the width of their
text rather than by rendering every cell (half a second for 2000 rows; one line per
row, the text is what is shown). And a changed cell (DataTable.update_cell)
would throw away the rendering of every cell of the table, so that each batch of task
events re-rendered all the rows on screen (tens of ms a frame); here only the changed
rows' renderings are dropped and only their lines repainted. (These lean on
DataTable's internals: textual is pinned below 9 in pyproject.toml.)
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Region, Size
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey
from textual.widgets.data_table import Row as TableRow

Row = Mapping[str, str]
REFILL_AT = 64  # rows to remove at once from which the table is filled anew


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
        self._text: dict[str, str] = {}  # key → the record's text for the filter, casefolded
        self._changed_rows: set[RowKey] = set()  # rows whose cells changed, to repaint
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
        return self._matches(" ".join(row.values()).casefold(), self.filter_text.casefold().split())

    @staticmethod
    def _matches(text: str, words: list[str]) -> bool:
        return all(word in text for word in words)

    def _text_of(self, key: str) -> str:
        text = self._text.get(key)
        if text is None:
            text = self._text[key] = " ".join(self.records[key].values()).casefold()
        return text

    def set_records(self, records: Mapping[str, Row]) -> None:
        """Every record anew: rows come, change and go to match."""
        old, self.records = self.records, dict(records)
        self._text = {key: text for key, text in self._text.items()
                      if old.get(key) == self.records.get(key)}
        self._sync()

    def update_records(self, changed: Mapping[str, Row]) -> None:
        """These records changed (or came); the others are as they were."""
        words = self.filter_text.casefold().split()
        resort = False
        for key, row in changed.items():
            self.records[key] = row
            self._text.pop(key, None)
            if self.is_mounted:
                wanted = not words or self._matches(self._text_of(key), words)
                resort = self._show_row(key, row if wanted else None) or resort
        self._repaint_changed()
        if resort:
            self._sort()

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
        words = self.filter_text.casefold().split()
        wanted = {key: row for key, row in self.records.items()
                  if not words or self._matches(self._text_of(key), words)}
        gone = [key for key in self.shown if key not in wanted]
        if len(gone) >= REFILL_AT:
            self._refill(wanted)
            return
        resort = False
        for key in gone:
            self._show_row(key, None)
        new = {key: row for key, row in wanted.items() if key not in self.shown}
        if new:
            self._append(new)
            resort = True
        for key, row in wanted.items():
            resort = self._show_row(key, row) or resort
        self._repaint_changed()
        if resort:
            self._sort()

    def _refill(self, wanted: Mapping[str, Row]) -> None:
        """The table emptied and filled with `wanted`, sorted, the cursor kept on its record
        if it is still shown."""
        selected = self.selected
        self.clear()
        self.shown = {}
        self._append(wanted)
        self._sort()
        if selected in wanted:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _append(self, rows: Mapping[str, Row]) -> None:
        """DataTable.add_row for many rows at once: its bookkeeping per row (the cursor
        re-validated, the columns listed twice, the table asked to repaint) once for all."""
        if not rows:
            return
        was_empty = not self.row_count
        columns = [(column.key, str(column.key.value)) for column in self.ordered_columns]
        index = self.row_count
        for key, row in rows.items():
            row_key = RowKey(key)
            self._row_locations[row_key] = index
            self._data[row_key] = {column: self._cell(name, row.get(name, ""))
                                   for column, name in columns}
            self.rows[row_key] = TableRow(row_key, 1)
            self._new_rows.add(row_key)
            self.shown[key] = row
            index += 1
        self._require_update_dimensions = True
        # the rows already there keep their index and look: their renderings stay valid
        # (add_row's new table revision would have every visible cell rendered again);
        # only the map from screen line to row is made anew
        self._offset_cache.clear()
        self._ordered_row_cache.clear()
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self.check_idle()
        self.refresh()

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """DataTable's, measuring a new cell by its text's width instead of rendering it
        (the record's string; the rendered cell where `render` makes one)."""
        rows = [row for row in map(self.shown.get, (key.value for key in new_rows))
                if row is not None]  # a row removed before the table was idle is not
        widened = False
        for column in self.ordered_columns:
            name = str(column.key.value)
            values = {row.get(name, "") for row in rows}  # each distinct value measured once
            render = self.render.get(name)
            widths = (cell_len(str(render(value) if render is not None else value))
                      for value in values)
            width = max(column.content_width, max(widths, default=0))
            widened = widened or width != column.content_width
            column.content_width = width
        if widened:  # every rendering (the header's too) was cut to the old widths
            self._clear_caches()
            self.refresh()
        data_width = sum(column.get_render_width(self) for column in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(data_width + self._row_label_column_width,
                                 self._total_row_height + header)

    def _show_row(self, key: str, row: Row | None) -> bool:
        """Show `row` as `key`'s row (None: no row); whether the order may have changed."""
        shown = self.shown.get(key)
        if row is None:
            if shown is not None:
                self.remove_row(key)
                del self.shown[key]
            return False
        self.shown[key] = row
        if shown is None:
            self.add_row(*(self._cell(c, row.get(c, "")) for c, _ in self.columns_shown), key=key)
            return True
        if shown is row:
            return False
        changed = {column: row.get(column, "") for column, _ in self.columns_shown
                   if shown.get(column, "") != row.get(column, "")}
        if changed:
            self._set_cells(key, changed)
        return self.sort_column in changed

    def _set_cells(self, key: str, values: Mapping[str, str]) -> None:
        """Change cells of `key`'s row; `_repaint_changed` then repaints it."""
        row_key = RowKey(key)
        cells = self._data[row_key]
        for column, value in values.items():
            cells[ColumnKey(column)] = self._cell(column, value)
        self._changed_rows.add(row_key)

    def _repaint_changed(self) -> None:
        """The changed rows' renderings forgotten (one pass over the caches), their lines on
        screen repainted."""
        rows, self._changed_rows = self._changed_rows, set()
        if not rows:
            return
        indices = [index for index in map(self._row_locations.get, rows) if index is not None]
        for index in indices:  # the cells as renderables, by (revision, row index)
            self._row_renderable_cache.discard((self._update_count, index))
        for cache in (self._cell_render_cache, self._row_render_cache):  # by row key first
            keys = cache.keys()  # an LRUCache has no __iter__
            for cached in [cached for cached in keys if cached[0] in rows]:
                cache.discard(cached)
        self._line_cache.clear()  # by screen line: the rows' lines are among them
        # every row is one line high (DataTable.refresh_row sorts all rows to find out)
        header = self.header_height if self.show_header else 0
        width = max(self.size.width, self.virtual_size.width)
        for index in indices:
            self._refresh_region(Region(0, index + header, width, 1))

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
