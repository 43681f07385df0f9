"""A table of records by key, kept in sync in place, drawn line by line: rows added, changed
and removed as the records change (never a rebuild per read), with a text filter over every
column and sorting by any column (numbers as numbers).

`set_records` replaces every record (a read); `update_records` changes only those given
(task events), so a batch of fifty changes among 2000 tasks touches fifty rows, not a
pass over all of them. Each record's text for the filter is made once per change.

Rows are plain strings per column (shown as they are, never read as markup); `render`
may turn a column's string into rich Text (state badges) when shown. The cursor stays on
the record the operator chose.

Why not Textual's DataTable: its cell renderings are keyed on the table's revision and
focus, so a narrowing filter or the focus coming back re-renders every visible cell
through Rich's layout (tens of ms for a screenful), and removing a row renumbers every
row after it. Here a screen line is one row: `render_line` draws only the rows on screen,
each row's line is built straight from its strings and kept by (row key, row version,
place on screen: even or odd, cursor, hover), and the kept lines are dropped only when
the widths, the size or the styles (focus, theme) change. A changed row repaints its own
line, nothing else.

The look is DataTable's (zebra stripes, a bold header, a row cursor, a hover row; the
same theme variables), styled through this widget's own component classes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Row = Mapping[str, str]
Cell = str | Text
HEADER = -1  # the header's place, for the hover
PADDING = 1  # blank cells either side of a column's text
CACHE_LIMIT = 8000  # kept row lines before they are all dropped (a few screens × states)


def sort_key(value: object) -> tuple[int, int, str]:
    """Numbers before words, numbers by value: `9` before `10`."""
    text = str(getattr(value, "plain", value))
    if text.isdigit():
        return (0, int(text), "")
    return (1, 0, text.casefold())


def first_line(value: str) -> str:
    """What a one-line cell shows of `value`."""
    end = value.find("\n")
    return value if end == -1 else value[:end]


class RecordTable(ScrollView, can_focus=True):
    """Records as rows under a header; `selected` is the key of the row under the cursor."""

    DEFAULT_CSS = """
    RecordTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;

        &:focus {
            background-tint: $foreground 5%;
            & > .record-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .record-table--header {
                background-tint: $foreground 5%;
            }
        }

        &:dark {
            & > .record-table--even-row {
                background: $surface-darken-1 40%;
            }
        }

        & > .record-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .record-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }

        & > .record-table--odd-row {

        }

        & > .record-table--even-row {
            background: $surface-lighten-1 50%;
        }

        & > .record-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }

        & > .record-table--header-hover {
            background: $accent 30%;
        }

        & > .record-table--hover {
            background: $block-hover-background;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "record-table--header", "record-table--even-row", "record-table--odd-row",
        "record-table--cursor", "record-table--hover", "record-table--header-hover",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("ctrl+home", "first_row", "Top", show=False),
        Binding("ctrl+end", "last_row", "Bottom", show=False),
        Binding("home", "scroll_home", "Home", show=False),
        Binding("end", "scroll_end", "End", show=False),
    ]

    class _RowMessage(Message):
        def __init__(self, table: RecordTable, key: str) -> None:
            super().__init__()
            self.table, self.key = table, key

        @property
        def control(self) -> RecordTable:
            return self.table

    class RowHighlighted(_RowMessage):
        """The cursor is on another record (`key`), or on the first one shown."""

    class RowSelected(_RowMessage):
        """enter (or a click on the cursor's row) on record `key`."""

    def __init__(self, columns: Sequence[tuple[str, str]], *,
                 render: Mapping[str, Callable[[str], Cell]] | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns_shown = tuple(columns)
        self.renderers = dict(render or {})
        self.records: dict[str, Row] = {}  # every record, by key
        self.shown: dict[str, Row] = {}  # those the filter lets through, as shown
        self.order: list[str] = []  # the keys shown, top to bottom
        self._index: dict[str, int] = {}  # key → its place in `order`
        self._text: dict[str, str] = {}  # key → the record's text for the filter, casefolded
        self._version: dict[str, int] = {}  # key → changes so far (part of its lines' keys)
        self._widths: dict[str, int] = {column: cell_len(label) for column, label in columns}
        self._lines: dict[tuple[str, int, int, bool, bool], Strip] = {}  # the kept rows' lines
        self._lines_for: tuple[object, ...] = ()  # what the kept lines were drawn for
        self._styles: dict[str, Style] = {}  # the widget's and its components', as drawn
        self.filter_text = ""
        self.sort_column = ""
        self.sort_reverse = False
        self.cursor_row = 0
        self._cursor_key: str | None = None  # the record the cursor is on
        self._highlighted: str | None = None  # the last key told in a RowHighlighted
        self._hover: int | None = None  # the place under the mouse (HEADER: the header)
        self._show_hover = False  # the mouse moved last (not the keyboard)

    # -- the records --------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.order)

    @property
    def selected(self) -> str | None:
        """The key of the record under the cursor."""
        return self._cursor_key if self.order else None

    def get_row_index(self, key: str) -> int:
        """Where `key`'s row is shown, top first; KeyError when it is not shown."""
        return self._index[key]

    def get_cell(self, key: str, column: str) -> Cell:
        """`key`'s cell in `column` as shown (after the column's `render`)."""
        return self._cell(column, self.records[key].get(column, ""))

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
        changed = {key: row for key, row in self.records.items() if old.get(key) is not row
                   and old.get(key) != row}
        self._text = {key: text for key, text in self._text.items()
                      if key in self.records and key not in changed}
        self._version = {key: version for key, version in self._version.items()
                         if key in self.records}
        for key in changed:
            self._version[key] = self._version.get(key, 0) + 1
        widened = self._measure(changed.values())
        self._refilter()
        if not widened:  # (widened: everything is drawn anew)
            self._repaint_rows(list(changed))

    def update_records(self, changed: Mapping[str, Row]) -> None:
        """These records changed (or came); the others are as they were."""
        words = self.filter_text.casefold().split()
        again = False  # rows come, go or move: the order is made anew
        repaint: list[str] = []
        for key, row in changed.items():
            old = self.records.get(key)
            self.records[key] = row
            self._text.pop(key, None)
            self._version[key] = self._version.get(key, 0) + 1
            wanted = not words or self._matches(self._text_of(key), words)
            if wanted != (key in self.shown):
                again = True
            if wanted:
                self.shown[key] = row
                if old is None or (self.sort_column and old.get(self.sort_column)
                                   != row.get(self.sort_column)):
                    again = True
                repaint.append(key)
            else:
                self.shown.pop(key, None)
        widened = self._measure(changed.values())
        if again:
            self._refilter()
        if not widened:  # (widened: everything is drawn anew)
            self._repaint_rows(repaint)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._refilter()

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        self.sort_reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column = column
        self._measure(())
        self._arrange()
        self.refresh()  # the header's marks

    def _cell(self, column: str, value: str) -> Cell:
        render = self.renderers.get(column)
        return render(value) if render is not None else first_line(value)

    def _label(self, column: str, label: str) -> str:
        if column != self.sort_column:
            return label
        return label + (" ▼" if self.sort_reverse else " ▲")

    def _measure(self, rows: Iterable[Row]) -> bool:
        """Widen the columns to the cells of `rows` (and the labels); whether any widened.
        Columns never narrow: a filter does not make the table jump."""
        widened = False
        widths = self._widths
        rows = list(rows)
        for column, label in self.columns_shown:
            values = {row.get(column, "") for row in rows}  # each distinct value measured once
            render = self.renderers.get(column)
            width = max((cell_len(str(render(value)) if render is not None
                                  else first_line(value)) for value in values), default=0)
            width = max(width, cell_len(self._label(column, label)))
            if width > widths[column]:
                widths[column] = width
                widened = True
        if widened:
            self._resize()
        return widened

    def _refilter(self) -> None:
        """The rows the filter lets through, in order."""
        words = self.filter_text.casefold().split()
        if not words:
            self.shown = dict(self.records)
        else:  # a pass over 2000 texts per keystroke: no call per record but for a new text
            texts, text_of = self._text, self._text_of
            self.shown = {key: row for key, row in self.records.items()
                          if all(word in (texts.get(key) or text_of(key)) for word in words)}
        self._arrange()

    def _arrange(self) -> None:
        """`order` made anew from `shown` (sorted), the cursor kept on its record."""
        keys = list(self.shown)
        if self.sort_column:
            column = self.sort_column
            keys.sort(key=lambda key: sort_key(self.shown[key].get(column, "")),
                      reverse=self.sort_reverse)
        if keys == self.order:
            return  # the same rows (a filter typed on that still lets all of them through)
        self.order = keys
        self._index = {key: index for index, key in enumerate(keys)}
        self._resize()
        cursor = self._index.get(self._cursor_key) if self._cursor_key is not None else None
        self._place_cursor(self.cursor_row if cursor is None else cursor, scroll=None)
        self.refresh()

    def _resize(self) -> None:
        self.virtual_size = Size(self._table_width(), len(self.order) + 1)
        self.refresh()

    def _table_width(self) -> int:
        return sum(width + 2 * PADDING for width in self._widths.values())

    # -- the cursor -----------------------------------------------------------------------

    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """The cursor to the row shown at `row` (kept within the rows)."""
        self._place_cursor(row, scroll=scroll, animate=animate)

    def _place_cursor(self, row: int, *, scroll: bool | None = True,
                      animate: bool = False) -> None:
        """The cursor to `row`; scrolled into view if `scroll` (None: if it moved)."""
        before = self.cursor_row
        row = max(0, min(row, len(self.order) - 1))
        self.cursor_row = row
        if scroll is None:
            scroll = row != before
        self._cursor_key = self.order[row] if self.order else None
        if before != row:
            self._repaint_places((before, row))
        if scroll and self.order:
            self.scroll_to_region(Region(int(self.scroll_x), row + 1, self.size.width, 1),
                                  animate=animate, spacing=Spacing(1, 0, 0, 0), force=True)
        if self._cursor_key is not None and self._cursor_key != self._highlighted:
            self._highlighted = self._cursor_key
            self.post_message(self.RowHighlighted(self, self._cursor_key))

    def _keyboard(self) -> None:
        """A key moves things: the hover row no longer shows."""
        if self._show_hover:
            self._show_hover = False
            if self._hover is not None:
                self._repaint_places((self._hover,))

    def action_cursor_up(self) -> None:
        self._keyboard()
        self._place_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._keyboard()
        self._place_cursor(self.cursor_row + 1)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def action_page_up(self) -> None:
        self._keyboard()
        self._place_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self._keyboard()
        self._place_cursor(self.cursor_row + self._page())

    def action_first_row(self) -> None:
        self._keyboard()
        self._place_cursor(0)

    def action_last_row(self) -> None:
        self._keyboard()
        self._place_cursor(len(self.order) - 1)

    def action_scroll_home(self) -> None:
        self._keyboard()
        self.scroll_to(x=0, animate=False)

    def action_scroll_end(self) -> None:
        self._keyboard()
        self.scroll_to(x=self.max_scroll_x, animate=False)

    def action_select_cursor(self) -> None:
        self._keyboard()
        if self._cursor_key is not None and self.order:
            self.post_message(self.RowSelected(self, self._cursor_key))

    # -- the mouse ------------------------------------------------------------------------

    def _place_at(self, event: events.MouseEvent) -> int | None:
        """The place under the mouse: HEADER, a row's, or None (below the rows)."""
        offset = event.get_content_offset(self)
        if offset is None:
            return None
        if offset.y == 0:
            return HEADER
        place = offset.y - 1 + int(self.scroll_y)
        return place if place < len(self.order) else None

    def _column_at(self, x: int) -> str | None:
        edge = 0
        for column, _label in self.columns_shown:
            edge += self._widths[column] + 2 * PADDING
            if x < edge:
                return column
        return None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        place = self._place_at(event)
        if place != self._hover or not self._show_hover:
            self._repaint_places(p for p in (self._hover, place) if p is not None)
            self._hover, self._show_hover = place, True

    def on_leave(self, _event: events.Leave) -> None:
        if self._hover is not None:
            self._repaint_places((self._hover,))
        self._hover = None

    def on_click(self, event: events.Click) -> None:
        """A click on a header sorts by its column; on a row, puts the cursor there (on
        the cursor's row: selects it)."""
        place = self._place_at(event)
        if place == HEADER:
            offset = event.get_content_offset(self)
            column = self._column_at(offset.x + int(self.scroll_x)) if offset else None
            if column is not None:
                self.sort_by(column)
        elif place is not None:
            event.stop()
            if place == self.cursor_row:
                self.action_select_cursor()
            else:
                self._place_cursor(place)

    # -- drawing --------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()
        self._styles.clear()
        self.refresh()

    def _repaint_places(self, places: Iterable[int]) -> None:
        """Repaint the screen lines of these places (rows by place, or the header)."""
        top, width, height = int(self.scroll_y), self.size.width, self.size.height
        for place in places:
            y = 0 if place == HEADER else place - top + 1
            if 0 <= y < height:
                self.refresh(Region(0, y, width, 1))

    def _repaint_rows(self, keys: list[str]) -> None:
        self._repaint_places(place for place in map(self._index.get, keys)
                             if place is not None)

    def render_lines(self, crop: Region) -> list[Strip]:
        drawn_for = (self.get_pseudo_class_state(), self.size.width,
                     tuple(self._widths.values()), self.sort_column, self.sort_reverse)
        if drawn_for != self._lines_for or len(self._lines) > CACHE_LIMIT:
            self._lines.clear()
            self._styles.clear()
            self._lines_for = drawn_for
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x = int(self.scroll_x)
        hover = self._hover if self._show_hover else None
        if y == 0:
            line = self._header_line(hover == HEADER)
        else:
            place = y - 1 + int(self.scroll_y)
            if place >= len(self.order):
                return Strip.blank(width, self._style(""))
            key = self.order[place]
            odd, cursor, hovered = bool(place % 2), place == self.cursor_row, place == hover
            kept = (key, self._version.get(key, 0), odd, cursor, hovered)
            line = self._lines.get(kept)
            if line is None:
                line = self._lines[kept] = self._row_line(self.shown[key], odd, cursor, hovered)
        return line.crop(scroll_x, scroll_x + width).adjust_cell_length(width, self._style(""))

    def _style(self, component: str) -> Style:
        """The widget's style (component ""), or a component's, kept until the styles change
        (each is worked out through the ancestors' backgrounds: a fraction of a ms)."""
        style = self._styles.get(component)
        if style is None:
            style = self._styles[component] = self.rich_style if not component \
                else self.get_component_styles(component).rich_style
        return style

    def _highlight(self, header: bool, hover: bool, cursor: bool) -> Style:
        """The hover's and the cursor's style over a row (DataTable's)."""
        style = Style()
        if hover:
            style += self.get_component_rich_style("record-table--hover")
            if header:
                style += self.get_component_rich_style("record-table--header-hover")
        if cursor:
            style += self.get_component_rich_style("record-table--cursor")
        return style

    def _line(self, cells: list[Cell], row_style: Style, highlight: Style) -> Strip:
        """One row's line over the whole table width, and the widget's beyond it."""
        pre = row_style + highlight
        post = Style.from_color(highlight.color) + Style.from_color(bgcolor=highlight.bgcolor)
        console = self.app.console
        line: list[Segment] = []
        pad = " " * PADDING
        # a segment (or a few, for rich Text) per cell, as DataTable's: the screen (and its
        # SVG export) is cut the same way
        for width, cell in zip(self._widths.values(), cells, strict=True):
            if isinstance(cell, Text):
                # its own style under its spans' (Text.render leaves it out without spans)
                text = Segment.apply_style(cell.render(console, end=""), console.get_style(
                    cell.style, default=Style.null()))
                segments = [Segment(pad), *Segment.adjust_line_length(list(text), width),
                            Segment(pad)]
                line.extend(Segment.simplify(Segment.apply_style(segments, pre, post)))
            else:
                line.append(Segment(pad + set_cell_size(cell, width) + pad, pre + post))
        remaining = self.size.width - self._table_width()
        if remaining > 0:
            line.append(Segment(" " * remaining, row_style + highlight))
        return Strip(line)

    def _row_line(self, row: Row, odd: bool, cursor: bool, hover: bool) -> Strip:
        style = self._style("record-table--odd-row" if odd else "record-table--even-row")
        cells = [self._cell(column, row.get(column, "")) for column, _ in self.columns_shown]
        return self._line(cells, style, self._highlight(False, hover, cursor))

    def _header_line(self, hover: bool) -> Strip:
        style = self._style("record-table--header")
        cells: list[Cell] = [Text(self._label(column, label))
                             for column, label in self.columns_shown]
        return self._line(cells, style, self._highlight(True, hover, False))
