"""Which widget each public VarSpec gets, in which panel and order, and what it accepts.

Pure mapping from the engine's VarSpec records (no Textual here), so the rules are
tested on their own: editBox/slider → text input (numbers checked), the choice
widgets → a select over allowedValues, checkBox → a switch holding "true"/"false";
`hosts` and `detectors` get pickers when the console knows the candidates.
"""
from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass

from engine import VarSpec

CHOICE_WIDGETS = frozenset({"dropDownBox", "comboBox", "listBox", "radioButtonBox"})
GENERAL_PANEL = "General"   # where a VarSpec without a panel goes


class FieldKind(enum.Enum):
    TEXT = "text"
    NUMBER = "number"
    CHOICE = "choice"
    SWITCH = "switch"
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
    if spec.widget == "checkBox" or (spec.type == "bool" and spec.widget == "editBox"):
        return FieldKind.SWITCH
    if spec.widget in CHOICE_WIDGETS and spec.allowed_values:
        return FieldKind.CHOICE
    if spec.type == "number" or spec.widget == "slider":
        return FieldKind.NUMBER
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
        float(text)
    except ValueError:
        return False
    return True


def value_problem(plan: FieldPlan, value: str) -> str | None:
    """Why `value` is refused for this field (the message names it), or None.

    Empty stays allowed: the template's default applies (the form sends nothing)."""
    if value == "":
        return None
    where = f"{plan.title} ({plan.name})"
    if plan.kind is FieldKind.NUMBER and not is_number(value):
        return f"{where}: {value!r} is not a number"
    if plan.kind in (FieldKind.TEXT, FieldKind.NUMBER, FieldKind.CHOICE) \
            and plan.spec.allowed_values and value not in plan.spec.allowed_values:
        allowed = ", ".join(plan.spec.allowed_values)
        return f"{where}: {value!r} is not one of the allowed values: {allowed}"
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
