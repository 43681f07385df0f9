"""The composite editors of the new-environment form: comboBox, radio set, list and map.

Each holds a variable's value as the text the engine takes (`text`, `set_text`) and
posts FieldEditor.Changed when the operator changes it, so the form re-evaluates its
visibleif/enabledif. Their buttons' presses stop here: the dialog's own buttons
(create, save, cancel) must not see them.
"""
from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, RadioButton, RadioSet, Select

from console.tui.components.varspec_fields import (
    item_value,
    json_text,
    list_items,
    map_entries,
    map_problem,
)


class FieldEditor(Vertical):
    """A variable's editor made of several widgets. Each subclass has `text` (the value as
    the engine takes it) and `set_text(value)` (None, or why it cannot show the value)."""

    class Changed(Message):
        def __init__(self, editor: FieldEditor) -> None:
            super().__init__()
            self.editor = editor

    def problem(self, where: str) -> str | None:
        """What the operator entered that has no JSON form (an editor's own check)."""
        return None

    def changed(self) -> None:
        self.post_message(self.Changed(self))


class ComboEditor(FieldEditor):
    """comboBox: any text, with the allowed values to pick one from."""

    DEFAULT_CSS = """
    ComboEditor { height: auto; layout: horizontal; }
    ComboEditor Input { width: 1fr; }
    ComboEditor Select { width: 30; }
    """

    def __init__(self, value: str, allowed: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.input = Input(value, placeholder="type a value or pick one", classes="combo-text")
        self.allowed = list(allowed)

    def compose(self) -> ComposeResult:
        yield self.input
        yield Select([(value, value) for value in self.allowed], prompt="pick",
                     classes="combo-pick")

    @on(Select.Changed, ".combo-pick")
    def _picked(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str):
            self.input.value = event.value  # its Input.Changed tells the form

    @property
    def text(self) -> str:
        return self.input.value.strip()

    def set_text(self, value: str) -> str | None:
        self.input.value = value
        return None


class RadioEditor(FieldEditor):
    """radioButtonBox: one of the allowed values, all shown."""

    DEFAULT_CSS = "RadioEditor { height: auto; } RadioEditor RadioSet { width: auto; }"

    def __init__(self, value: str, allowed: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.allowed = list(allowed)
        self.buttons = [RadioButton(choice, value=choice == value) for choice in self.allowed]

    def compose(self) -> ComposeResult:
        yield RadioSet(*self.buttons)

    @on(RadioSet.Changed)
    def _pressed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.changed()

    @property
    def text(self) -> str:
        return next((choice for choice, button in zip(self.allowed, self.buttons, strict=True)
                     if button.value), "")

    def set_text(self, value: str) -> str | None:
        if value and value not in self.allowed:
            return f"{value!r} is not one of the allowed values: {', '.join(self.allowed)}"
        for choice, button in zip(self.allowed, self.buttons, strict=True):
            button.value = choice == value
        return None


class _RowsEditor(FieldEditor):
    """Rows of inputs with a remove button each and an add button below; a row is
    `width` inputs with the given placeholders and classes."""

    DEFAULT_CSS = """
    _RowsEditor { height: auto; }
    _RowsEditor .row { height: auto; }
    _RowsEditor .row Input { width: 1fr; }
    _RowsEditor .row Button, _RowsEditor .add { min-width: 5; width: auto; }
    """

    COLUMNS: tuple[str, ...] = ()  # one input a column, the name its class and placeholder

    def __init__(self, default: str, rows: list[Sequence[str]], *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.default = default
        self.initial = rows
        self.rows: list[tuple[Horizontal, tuple[Input, ...]]] = []

    def _row(self, texts: Sequence[str]) -> Horizontal:
        inputs = tuple(Input(texts[i] if i < len(texts) else "", placeholder=column,
                             classes=column) for i, column in enumerate(self.COLUMNS))
        row = Horizontal(*inputs, Button("-", classes="remove", tooltip="remove this row"),
                         classes="row")
        self.rows.append((row, inputs))
        return row

    def compose(self) -> ComposeResult:
        for texts in self.initial:
            yield self._row(texts)
        yield Button("+ add", classes="add")

    async def add_row(self, texts: Sequence[str] = ()) -> Input:
        """A new row above the add button; its first input, for focus."""
        row = self._row(texts)
        await self.mount(row, before=self.query_one(".add"))
        return self.rows[-1][1][0]

    async def remove_row(self, index: int) -> None:
        row, _ = self.rows.pop(index)
        await row.remove()

    @on(Button.Pressed)
    async def _button(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.has_class("add"):
            (await self.add_row()).focus()
        else:
            index = next(i for i, (row, _) in enumerate(self.rows) if event.button in row.children)
            await self.remove_row(index)
        self.changed()

    def _replace(self, rows: list[Sequence[str]]) -> None:
        if not self.is_mounted:
            self.initial = rows
            return
        for row, _ in self.rows:
            row.remove()
        self.rows.clear()
        if rows:
            add = self.query_one(".add")
            for texts in rows:
                self.mount(self._row(texts), before=add)

    def _texts(self) -> list[tuple[str, ...]]:
        return [tuple(field.value for field in inputs) for _, inputs in self.rows]


class ListEditor(_RowsEditor):
    """type list: one item a row; the value is a JSON list (blank rows dropped)."""

    COLUMNS = ("item",)

    def __init__(self, default: str, *, id: str | None = None) -> None:
        super().__init__(default, [(item,) for item in list_items(default)], id=id)

    @property
    def items(self) -> list[str]:
        return [texts[0] for texts in self._texts() if texts[0].strip()]

    @property
    def text(self) -> str:
        items = self.items
        if not items and not self.default.strip():
            return ""  # nothing given, nothing by default: the template decides
        return json_text([item_value(item) for item in items], self.default)

    def set_text(self, value: str) -> str | None:
        self._replace([(item,) for item in list_items(value)])
        return None


class MapEditor(_RowsEditor):
    """type map: key and value a row; the value is a JSON object (blank rows dropped)."""

    DEFAULT_CSS = "MapEditor .row .key { width: 1fr; } MapEditor .row .value { width: 2fr; }"

    COLUMNS = ("key", "value")

    def __init__(self, default: str, *, id: str | None = None) -> None:
        super().__init__(default, list(map_entries(default)), id=id)

    @property
    def entries(self) -> list[tuple[str, str]]:
        return [(key.strip(), value) for key, value in self._texts()
                if key.strip() or value.strip()]

    @property
    def text(self) -> str:
        entries = self.entries
        if not entries and not self.default.strip():
            return ""
        return json_text({key: item_value(value) for key, value in entries}, self.default)

    def set_text(self, value: str) -> str | None:
        stripped = value.strip()
        entries = map_entries(stripped)
        if stripped and not entries and stripped != "{}":
            return f"{value!r} is not a JSON object"
        self._replace(list(entries))
        return None

    def problem(self, where: str) -> str | None:
        return map_problem(where, self.entries)


ValueEditor = ComboEditor | RadioEditor | ListEditor | MapEditor
VALUE_EDITORS = (ComboEditor, RadioEditor, ListEditor, MapEditor)
