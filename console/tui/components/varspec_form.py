"""The form generated from a workflow's public VarSpecs, with live visibleif/enabledif.

Which editor a field gets is varspec_fields' choice; the composite ones (comboBox,
radio set, list, map) are in varspec_editors. Fields are grouped by panel in
collapsibles; a change to any field re-evaluates every condition (varspec_condition).
A condition outside the supported subset leaves its field shown and enabled and is
logged once. `values()` gives what the
operator set for the visible fields (empty fields are left to the template's
default); `problems()` what would be refused, naming the field.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.validation import Number
from textual.widget import Widget
from textual.widgets import (
    Collapsible,
    Input,
    Label,
    Select,
    SelectionList,
    Switch,
    TextArea,
)

from console.tui.components.varspec_condition import ConditionError, condition_holds
from console.tui.components.varspec_editors import (
    VALUE_EDITORS,
    ComboEditor,
    FieldEditor,
    ListEditor,
    MapEditor,
    RadioEditor,
)
from console.tui.components.varspec_fields import (
    FieldKind,
    FieldPlan,
    bound_text,
    list_value,
    plan_form,
    switch_value,
    value_problem,
)
from engine import VarSpec

log = logging.getLogger(__name__)


def field_id(name: str) -> str:
    """The widget id of a variable's editor (ids allow letters, digits, _ and -)."""
    return "var-" + "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


class VarSpecForm(Vertical):
    """One workflow's public variables as widgets; `hosts`/`detectors` are the pickers' choices."""

    DEFAULT_CSS = """
    VarSpecForm { height: auto; }
    VarSpecForm .field { height: auto; margin-bottom: 1; }
    VarSpecForm .field-label { text-style: bold; }
    VarSpecForm .field-description { color: $text-muted; }
    VarSpecForm SelectionList { height: auto; max-height: 8; }
    VarSpecForm TextArea { max-height: 10; }
    """

    MAX_ROWS = 8  # a multi-line field taller than this scrolls

    def __init__(self, specs: Sequence[VarSpec], *, hosts: Sequence[str] = (),
                 detectors: Sequence[str] = (), id: str | None = None) -> None:
        super().__init__(id=id)
        self.hosts = list(hosts)
        self.detectors = list(detectors)
        self.panels = plan_form(specs, hosts=bool(self.hosts), detectors=bool(self.detectors))
        self.plans: dict[str, FieldPlan] = {plan.name: plan
                                            for panel in self.panels for plan in panel.fields}
        self._logged: set[str] = set()

    def compose(self) -> ComposeResult:
        for panel in self.panels:
            with Collapsible(title=panel.name.replace("_", " "), collapsed=False,
                             classes="panel"):
                for plan in panel.fields:
                    with Vertical(classes="field", id=field_id(plan.name) + "-field"):
                        yield Label(plan.title, classes="field-label")
                        if plan.spec.description:
                            yield Label(plan.spec.description, classes="field-description")
                        yield self._editor(plan)

    def _editor(self, plan: FieldPlan) -> Widget:
        spec = plan.spec
        ident = field_id(plan.name)
        if plan.kind is FieldKind.SWITCH:
            return Switch(switch_value(spec.default_value), id=ident)
        if plan.kind is FieldKind.COMBO:
            return ComboEditor(spec.default_value, spec.allowed_values, id=ident)
        if plan.kind is FieldKind.RADIO:
            return RadioEditor(spec.default_value, spec.allowed_values, id=ident)
        if plan.kind is FieldKind.LIST:
            return ListEditor(spec.default_value, id=ident)
        if plan.kind is FieldKind.MAP:
            return MapEditor(spec.default_value, id=ident)
        if plan.kind is FieldKind.MULTILINE:
            area = TextArea(spec.default_value, id=ident)
            area.styles.height = min(spec.rows, self.MAX_ROWS) + 2  # and its border
            return area
        if plan.kind is FieldKind.NUMBER:
            low, high = plan.bounds
            ranged = low is not None or high is not None
            hint = f"number {bound_text(low)}..{bound_text(high)}"
            return Input(spec.default_value, placeholder=hint if ranged else "number", id=ident,
                         type="number", validators=[Number(low, high)] if ranged else None)
        if plan.kind is FieldKind.CHOICE:
            options = [(value, value) for value in spec.allowed_values]
            value = spec.default_value if spec.default_value in spec.allowed_values \
                else Select.BLANK
            return Select(options, value=value, prompt=plan.name, id=ident)
        if plan.kind in (FieldKind.HOSTS, FieldKind.DETECTORS, FieldKind.PICKS):
            choices = {FieldKind.HOSTS: self.hosts, FieldKind.DETECTORS: self.detectors}.get(
                plan.kind, list(spec.allowed_values))
            chosen = set(list_value(spec.default_value))
            return SelectionList[str](*[(choice, choice, choice in chosen) for choice in choices],
                                      id=ident)
        return Input(spec.default_value, placeholder=spec.type, id=ident)

    def on_mount(self) -> None:
        self.refresh_conditions()

    # --- reading and writing values

    def raw_value(self, name: str) -> str:
        """The text a field holds now (what conditions compare against)."""
        plan = self.plans[name]
        widget = self.query_one("#" + field_id(name))
        if isinstance(widget, Switch):
            return "true" if widget.value else "false"
        if isinstance(widget, VALUE_EDITORS):
            return widget.text
        if isinstance(widget, TextArea):
            return widget.text
        if isinstance(widget, Select):
            return "" if widget.value is Select.BLANK else str(widget.value)
        if isinstance(widget, SelectionList):
            chosen = set(widget.selected)  # in the list's order, not the clicks'
            selected = [choice for choice in self._choices(widget) if choice in chosen]
            return json.dumps(selected) if selected else ""
        assert isinstance(widget, Input), plan
        return widget.value.strip()

    def set_value(self, name: str, value: str) -> str | None:
        """Put `value` in a field; the problem (naming the field) if it cannot hold it."""
        plan = self.plans[name]
        widget = self.query_one("#" + field_id(name))
        if isinstance(widget, Switch):
            widget.value = switch_value(value)
        elif isinstance(widget, VALUE_EDITORS):
            problem = widget.set_text(value)
            if problem:
                return f"{plan.title} ({name}): {problem}"
        elif isinstance(widget, TextArea):
            widget.text = value
        elif isinstance(widget, Select):
            if value and value not in plan.spec.allowed_values:
                return value_problem(plan, value)
            widget.value = value if value else Select.BLANK
        elif isinstance(widget, SelectionList):
            wanted = list(dict.fromkeys(list_value(value)))
            unknown = [choice for choice in wanted if choice not in self._choices(widget)]
            if unknown:
                return (f"{plan.title} ({name}): {', '.join(unknown)} not among this "
                        f"console's choices ({', '.join(self._choices(widget))})")
            widget.deselect_all()
            for choice in wanted:
                widget.select(choice)
        elif isinstance(widget, Input):
            widget.value = value
        return None

    @staticmethod
    def _choices(widget: SelectionList[str]) -> list[str]:
        return [widget.get_option_at_index(i).value for i in range(widget.option_count)]

    def visible_names(self) -> list[str]:
        return [name for name in self.plans
                if self.query_one("#" + field_id(name) + "-field").display]

    def values(self) -> dict[str, str]:
        """The visible fields' values; empty ones are left out (the template default applies)."""
        result: dict[str, str] = {}
        for name in self.visible_names():
            value = self.raw_value(name)
            if value != "":
                result[name] = value
        return result

    def problems(self, overridden: Collection[str] = ()) -> list[str]:
        """What the visible fields hold that would be refused (each names its field);
        `overridden` fields (set in the advanced box) are not the form's to check."""
        found: list[str] = []
        for name in self.visible_names():
            if name in overridden:
                continue
            plan = self.plans[name]
            editor = self.query_one("#" + field_id(name))
            problem = editor.problem(f"{plan.title} ({name})") \
                if isinstance(editor, FieldEditor) else None
            problem = problem or value_problem(plan, self.raw_value(name))
            if problem:
                found.append(problem)
        return found

    # --- live conditions

    def _holds(self, name: str, which: str, expression: str, current: Mapping[str, str]) -> bool:
        try:
            return condition_holds(expression, current)
        except ConditionError as error:
            key = f"{name}.{which}"
            if key not in self._logged:
                self._logged.add(key)
                log.warning("variable %s: %s %s; the field stays shown and enabled",
                            name, which, error)
            return True

    def refresh_conditions(self) -> None:
        """Show/enable every field per its visibleif/enabledif over the current values."""
        current = {name: self.raw_value(name) for name in self.plans}
        for name, plan in self.plans.items():
            container = self.query_one("#" + field_id(name) + "-field")
            container.display = self._holds(name, "visibleif", plan.spec.visible_if, current)
            editor = self.query_one("#" + field_id(name))
            editor.disabled = not self._holds(name, "enabledif", plan.spec.enabled_if, current)

    def on_switch_changed(self, _event: Switch.Changed) -> None:
        self.refresh_conditions()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()  # the dialog's own workflow Select listens for its own changes
        self.refresh_conditions()

    def on_input_changed(self, _event: Input.Changed) -> None:
        self.refresh_conditions()

    def on_text_area_changed(self, _event: TextArea.Changed) -> None:
        self.refresh_conditions()

    def on_field_editor_changed(self, _event: FieldEditor.Changed) -> None:
        self.refresh_conditions()

    def on_selection_list_selected_changed(self, _event: SelectionList.SelectedChanged) -> None:
        self.refresh_conditions()

