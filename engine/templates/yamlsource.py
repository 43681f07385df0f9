"""Template YAML as AliECS reads it.

Scalars keep their source text (`8500` stays "8500", `false` stays "false",
`-10` stays "-10"), because every template variable is a string and the text
is what users wrote. `!public` marks a variable (or the workflow's name and
description) as visible to front-ends; its mapping's `value` is the value.
Untagged mappings under defaults/vars are dropped, as AliECS does.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import yaml

log = logging.getLogger("engine.templates")


class TemplateYAMLError(ValueError):
    """The YAML of a template cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Public:
    """A `!public` node: a scalar (workflow name/description) or a VarSpec mapping."""

    value: Any
    line: int


@dataclass(frozen=True)
class VarSpec:
    """What a front-end needs to offer a `!public` variable as an input."""

    name: str
    default_value: str = ""
    type: str = "string"
    label: str = ""
    description: str = ""
    widget: str = "editBox"
    panel: str = ""
    allowed_values: tuple[str, ...] = ()
    index: int = 0
    visible_if: str = ""
    enabled_if: str = ""
    rows: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose scalars are all their source text, plus the !public tag."""


def _scalar_text(loader: _Loader, node: yaml.ScalarNode) -> str | None:
    # A plain `~`/`null`/empty scalar is absent, as in Go's YAML; everything else is text.
    if node.style is None and node.value in ("", "~", "null", "Null", "NULL"):
        return None
    return node.value


def _public(loader: _Loader, node: yaml.Node) -> Public:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = _scalar_text(loader, node)  # type: ignore[arg-type]
    return Public(value=value, line=node.start_mark.line + 1)


for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
             "tag:yaml.org,2002:null", "tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
    _Loader.add_constructor(_tag, _scalar_text)
_Loader.add_constructor("!public", _public)


def load_yaml(text: str, origin: str) -> Any:
    """Parse one template document; `origin` (repo and file) goes into every error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        raise TemplateYAMLError(f"{where}: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise TemplateYAMLError(f"{origin}: {error}") from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise TemplateYAMLError(f"{origin}: the document is nested too deeply") from None


def plain(value: Any) -> Any:
    """A value with its !public wrapper taken off (name and description)."""
    return value.value if isinstance(value, Public) else value


def variables(section: Any, origin: str, where: str) -> dict[str, str]:
    """A defaults/vars section as name → value text, dropping what AliECS drops.

    A `!public` mapping contributes its `value`; an untagged mapping is
    dropped with a warning; lists are kept as compact JSON text.
    """
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise TemplateYAMLError(f"{origin}: {where} must be a mapping of variables")
    result: dict[str, str] = {}
    for key, value in section.items():
        name = str(key)
        if isinstance(value, Public):
            inner = value.value
            if isinstance(inner, dict):
                value = inner.get("value")
            else:
                value = inner
        elif isinstance(value, dict):
            log.warning("%s: %s.%s is a mapping without !public; ignored as AliECS does",
                        origin, where, name)
            continue
        if isinstance(value, list):
            value = json.dumps(value, separators=(",", ":"))
        result[name] = "" if value is None else str(value)
    return result


def var_specs(section: Any) -> list[VarSpec]:
    """The VarSpecs of the `!public` variables of a defaults/vars section."""
    specs: list[VarSpec] = []
    if not isinstance(section, dict):
        return specs
    known = {"value", "type", "label", "description", "widget", "panel", "values", "index",
             "visibleif", "enabledif", "rows"}
    for key, node in section.items():
        if not isinstance(node, Public) or not isinstance(node.value, dict):
            continue
        spec = node.value
        allowed = spec.get("values") or ()
        specs.append(VarSpec(
            name=str(key),
            default_value="" if spec.get("value") is None else str(spec.get("value")),
            type=str(spec.get("type") or "string"),
            label=str(spec.get("label") or ""),
            description=str(spec.get("description") or ""),
            widget=str(spec.get("widget") or "editBox"),
            panel=str(spec.get("panel") or ""),
            allowed_values=tuple(str(v) for v in allowed) if isinstance(allowed, list) else (),
            index=int(spec.get("index") or 0),
            visible_if=str(spec.get("visibleif") or ""),
            enabled_if=str(spec.get("enabledif") or ""),
            rows=int(spec.get("rows") or 0),
            extra={str(k): str(v) for k, v in spec.items() if k not in known},
        ))
    return specs
