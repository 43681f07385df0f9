"""What `template list` says about one workflow file: public?, description, VarSpecs.

As AliECS's ParseWorkflowPublicVariableInfo: the workflow is public iff its
root `name` carries the `!public` tag; the description counts only when it is
`!public` too; VarSpecs are the `!public` mappings found in every
`defaults`/`vars` section anywhere in the file, and a variable declared
public twice makes the file invalid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.repos.records import RepoError
from engine.templates.yamlsource import Public, TemplateYAMLError, VarSpec, load_yaml, var_specs

DEFAULTS = "defaults"
VARS = "vars"


@dataclass(frozen=True)
class ParsedWorkflowInfo:
    """The listing facts of one workflow file; `from_defaults` names specs declared under defaults."""

    public: bool
    description: str
    var_specs: tuple[VarSpec, ...]
    from_defaults: frozenset[str]


def parse_workflow_info(text: str, origin: str) -> ParsedWorkflowInfo:
    try:
        root = load_yaml(text, origin)
    except TemplateYAMLError as error:
        raise RepoError(str(error)) from None
    if not isinstance(root, dict):
        raise RepoError(f"{origin}: a workflow template must be a mapping")
    description = root.get("description")
    specs: dict[str, VarSpec] = {}
    from_defaults: set[str] = set()
    _collect(root, "", specs, from_defaults, origin)
    return ParsedWorkflowInfo(
        public=isinstance(root.get("name"), Public),
        description=str(description.value or "") if isinstance(description, Public) else "",
        var_specs=tuple(specs.values()),
        from_defaults=frozenset(from_defaults),
    )


def _collect(node: Any, parent: str, specs: dict[str, VarSpec], from_defaults: set[str],
             origin: str) -> None:
    if isinstance(node, Public):
        node = node.value
    if isinstance(node, list):
        for item in node:
            _collect(item, "", specs, from_defaults, origin)
        return
    if not isinstance(node, dict):
        return
    if parent in (DEFAULTS, VARS):
        for spec in var_specs(node):
            if spec.name in specs:
                raise RepoError(f"{origin}: duplicate public variable {spec.name!r} "
                                f"(declared !public in more than one defaults/vars section)")
            specs[spec.name] = spec
            if parent == DEFAULTS:
                from_defaults.add(spec.name)
    for key, value in node.items():
        if parent in (DEFAULTS, VARS) and isinstance(value, Public) and isinstance(value.value, dict):
            continue  # a VarSpec, taken above
        _collect(value, str(key), specs, from_defaults, origin)
