"""Which widget each public VarSpec gets, in which panel and order, and what it accepts.

Pure mapping from the engine's VarSpec records (no Textual here), so the rules are
tested on their own: editBox → text input (a text area when it asks for rows),
number/slider → a number input (bounded when the spec gives bounds), dropDownBox
and listBox → a select over allowedValues, comboBox → free text with the allowed
values to pick from, radioButtonBox → a radio set, checkBox → a switch holding
"true"/"false", type list → a list editor (a JSON list; a multi-select when it has
allowedValues), type map → a key/value editor (a JSON object); `hosts` and
`detectors` (or a detectorSelector) get pickers when the console knows the candidates.
"""
from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine import VarSpec

SELECT_WIDGETS = frozenset({"dropDownBox", "listBox"})
GENERAL_PANEL = "General"   # where a VarSpec without a panel goes


class FieldKind(enum.Enum):
    TEXT = "text"
    NUMBER = "number"
    CHOICE = "choice"        # one of allowedValues only (dropDownBox, listBox)
    COMBO = "combo"          # free text, allowedValues offered (comboBox)
    RADIO = "radio"          # one of allowedValues as a radio set (radioButtonBox)
    SWITCH = "switch"
    MULTILINE = "multiline"  # an editBox with rows > 1
    LIST = "list"            # type list: items edited one a row, a JSON list
    PICKS = "picks"          # type list with allowedValues: several of them, a JSON list
    MAP = "map"              # type map: key/value rows, a JSON object
    HOSTS = "hosts"          # multi-select of the agents' machine ids, a JSON list
    DETECTORS = "detectors"  # multi-select of the inventory's detectors, a JSON list


@dataclass(frozen=True)
class FieldPlan:
    """One form field: its VarSpec and the kind of widget that edits it."""

    spec: VarSpec
    kind: FieldKind

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def title(self) -> str:
        return self.spec.label or self.spec.name

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """(minimum, maximum) of a number field: `min`/`max` keys of the `!public` mapping,
        or a slider's two numeric allowedValues; None where the spec sets no bound."""
        low, high = self.spec.extra.get("min", ""), self.spec.extra.get("max", "")
        allowed = self.spec.allowed_values
        if not (low or high) and self.spec.widget == "slider" and len(allowed) == 2 \
                and all(is_number(value) for value in allowed):
            low, high = sorted(allowed, key=float)
        return (float(low) if is_number(low) else None, float(high) if is_number(high) else None)

    @property
    def enumerated(self) -> bool:
        """Whether allowedValues is the set of acceptable values (not a slider's bounds,
        not a comboBox's suggestions)."""
        return bool(self.spec.allowed_values) and self.kind is not FieldKind.COMBO \
            and not (self.spec.widget == "slider" and self.bounds != (None, None))


@dataclass(frozen=True)
class PanelPlan:
    name: str
    fields: tuple[FieldPlan, ...]


def field_kind(spec: VarSpec, *, hosts: bool = False, detectors: bool = False) -> FieldKind:
    """The widget kind for `spec`; `hosts`/`detectors` say whether those pickers can be offered."""
    if spec.name == "hosts" and hosts:
        return FieldKind.HOSTS
    if spec.name == "detectors" and detectors:
        return FieldKind.DETECTORS
    if spec.widget == "detectorSelector" and detectors:
        return FieldKind.DETECTORS
    if spec.widget == "checkBox" or (spec.type == "bool" and spec.widget == "editBox"):
        return FieldKind.SWITCH
    if spec.type == "list":
        return FieldKind.PICKS if spec.allowed_values else FieldKind.LIST
    if spec.type == "map":
        return FieldKind.MAP
    if spec.allowed_values and spec.widget in SELECT_WIDGETS:
        return FieldKind.CHOICE
    if spec.allowed_values and spec.widget == "comboBox":
        return FieldKind.COMBO
    if spec.allowed_values and spec.widget == "radioButtonBox":
        return FieldKind.RADIO
    if spec.type == "number" or spec.widget == "slider":
        return FieldKind.NUMBER
    if spec.rows > 1:
        return FieldKind.MULTILINE
    return FieldKind.TEXT


def plan_form(specs: Sequence[VarSpec], *, hosts: bool = False,
              detectors: bool = False) -> list[PanelPlan]:
    """Fields grouped by panel (panels in order of their first field), each panel's
    fields ordered by index then name, as the AliECS GUI lays them out."""
    ordered = sorted(specs, key=lambda spec: (spec.index, spec.name))
    panels: dict[str, list[FieldPlan]] = {}
    for spec in ordered:
        kind = field_kind(spec, hosts=hosts, detectors=detectors)
        panels.setdefault(spec.panel or GENERAL_PANEL, []).append(FieldPlan(spec, kind))
    return [PanelPlan(name, tuple(fields)) for name, fields in panels.items()]


def is_number(text: str) -> bool:
    try:
        number = float(text)
    except ValueError:
        return False
    return math.isfinite(number)  # no nan, no inf


def value_problem(plan: FieldPlan, value: str) -> str | None:
    """Why `value` is refused for this field (the message names it), or None.

    Empty stays allowed: the template's default applies (the form sends nothing)."""
    if value == "":
        return None
    where = f"{plan.title} ({plan.name})"
    if plan.kind is FieldKind.NUMBER:
        if not is_number(value):
            return f"{where}: {value!r} is not a number"
        low, high = plan.bounds
        if (low is not None and float(value) < low) or (high is not None and float(value) > high):
            return f"{where}: {value} is outside {bound_text(low)}..{bound_text(high)}"
    if plan.kind in (FieldKind.LIST, FieldKind.PICKS):
        problem = _list_problem(where, value)
        if problem or plan.kind is FieldKind.LIST:
            return problem
        unknown = [str(item) for item in json.loads(value)
                   if str(item) not in plan.spec.allowed_values]
        if unknown:
            allowed = ", ".join(plan.spec.allowed_values)
            return f"{where}: {', '.join(unknown)} not among the allowed values: {allowed}"
        return None
    if plan.kind is FieldKind.MAP:
        return _map_problem(where, value)
    if plan.kind in (FieldKind.TEXT, FieldKind.NUMBER, FieldKind.CHOICE, FieldKind.RADIO,
                     FieldKind.MULTILINE) and plan.enumerated \
            and value not in plan.spec.allowed_values:
        allowed = ", ".join(plan.spec.allowed_values)
        return f"{where}: {value!r} is not one of the allowed values: {allowed}"
    return None


def bound_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _list_problem(where: str, value: str) -> str | None:
    try:
        items = json.loads(value)
    except json.JSONDecodeError as error:
        return f"{where}: not a JSON list ({error})"
    return None if isinstance(items, list) else f"{where}: not a JSON list"


def _map_problem(where: str, value: str) -> str | None:
    try:
        entries = json.loads(value)
    except json.JSONDecodeError as error:
        return f"{where}: not a JSON object ({error})"
    return None if isinstance(entries, dict) else f"{where}: not a JSON object"


def item_text(item: object) -> str:
    """How a list item or map value is shown for editing: a string as it is (quoted when it
    would read back as something else, e.g. "1"), other JSON values in JSON."""
    if isinstance(item, str):
        return json.dumps(item) if item_value(item) != item else item
    return json.dumps(item)


def item_value(text: str) -> object:
    """The JSON value an edited item stands for: a number, true/false/null, a quoted string
    or a nested list/object written in JSON keeps its type (so a default like [1, "2"]
    round-trips); anything else is the string as typed."""
    stripped = text.strip()
    if stripped in ("true", "false", "null") or is_number(stripped) \
            or stripped.startswith(("[", "{", '"')):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


def json_text(value: object, default: str) -> str:
    """`value` in JSON; the default's own text when it says the same (untouched fields
    send what the template wrote)."""
    try:
        if json.loads(default) == value:
            return default
    except json.JSONDecodeError:
        pass
    return json.dumps(value)


def list_items(text: str) -> list[str]:
    """A list variable's value as the editor's item texts (JSON list, else comma-separated)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list):
            return [item_text(item) for item in items]
    return list_value(text)


def map_entries(text: str) -> list[tuple[str, str]]:
    """A map variable's value as the editor's key/value texts (a JSON object; else none)."""
    try:
        entries = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return []
    if not isinstance(entries, dict):
        return []
    return [(str(key), item_text(value)) for key, value in entries.items()]


def map_problem(where: str, entries: Sequence[tuple[str, str]]) -> str | None:
    """What is wrong with edited key/value rows (an empty or repeated key), naming the field."""
    keys = [key.strip() for key, value in entries if key.strip() or value.strip()]
    if "" in keys:
        return f"{where}: a value without a key"
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        return f"{where}: key {', '.join(repeated)} given twice"
    return None


def list_value(text: str) -> list[str]:
    """A hosts/detectors value as a list: a JSON list, or comma-separated names."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            return []
        return [str(item) for item in items] if isinstance(items, list) else []
    return [item.strip() for item in stripped.split(",") if item.strip()]


def switch_value(text: str) -> bool:
    return text.strip().lower() == "true"
