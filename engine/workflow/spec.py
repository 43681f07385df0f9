"""Workflow template files read into immutable role specs, checked before any templating.

A spec is the role as written: every string still holds its `{{ }}` tags.
Parsing decides each role's kind from its keys, rejects mixtures, reads the
`for` block, defaults/vars (with AliECS's dropping rules), constraints and
channel entries. Specs are cached by file content, so loading the same
workflow for 200 hosts parses it once.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from engine.templates.yamlsource import Public, TemplateYAMLError, load_yaml, plain, variables
from engine.workflow.roles import PATH_SEPARATOR, RoleKind, WorkflowError, parse_yaml_bool

_KIND_KEYS = ("task", "call", "roles", "include")
_TAG = re.compile(r"{{(.*?)}}", re.S)


@dataclass(frozen=True)
class ForSpec:
    """`for: {range, var}` (a JSON list of strings) or `for: {begin, end, var}` (inclusive ints)."""

    var: str
    range: str | None = None
    begin: str | None = None
    end: str | None = None

    def describe(self) -> str:
        return self.range if self.range is not None else f"{self.begin}..{self.end}"


@dataclass(frozen=True)
class TaskSpec:
    load: str
    trigger: str | None
    await_: str | None
    timeout: str | None
    critical: bool


@dataclass(frozen=True)
class CallSpec:
    func: str
    return_var: str
    trigger: str | None
    await_: str | None
    timeout: str | None
    critical: bool


@dataclass(frozen=True)
class RoleSpec:
    """One role as written in a template file."""

    name: str
    where: str  # path of the role as written (names unrendered), for errors before rendering
    kind: RoleKind
    enabled: str | None
    defaults: tuple[tuple[str, str], ...]
    vars: tuple[tuple[str, str], ...]
    constraints: tuple[tuple[str, str], ...]
    connect: tuple[dict[str, str], ...]
    bind: tuple[dict[str, str], ...]
    for_: ForSpec | None = None
    children: tuple["RoleSpec", ...] = ()
    task: TaskSpec | None = None
    call: CallSpec | None = None
    include: str = ""


@dataclass(frozen=True)
class WorkflowSpec:
    """A parsed workflow template: its root role plus what front-ends show."""

    name: str
    description: str
    public: bool
    root: RoleSpec


def _fail(origin: str, where: str, message: str) -> WorkflowError:
    return WorkflowError(f"{origin}: role {where}: {message}")


def _text(value: Any, origin: str, where: str, field: str) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise _fail(origin, where, f"{field} must be a string, not a {type(value).__name__}")
    return str(value)


def _optional(mapping: dict, key: str, origin: str, where: str, field: str) -> str | None:
    if key not in mapping or mapping[key] is None:
        return None
    text = _text(mapping[key], origin, where, field)
    return text if text else None


def _bool(mapping: dict, key: str, origin: str, where: str, field: str, default: bool) -> bool:
    if key not in mapping or mapping[key] is None:
        return default
    try:
        return parse_yaml_bool(_text(mapping[key], origin, where, field))
    except ValueError as error:
        raise _fail(origin, where, f"{field}: {error}") from None


def uses_variable(template: str, var: str) -> bool:
    """Whether a `{{ }}` tag of template names the identifier var."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(var)}(?!\w)")
    return any(pattern.search(tag) for tag in _TAG.findall(template))


def _section(role: dict, key: str, origin: str, where: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(variables(role.get(key), origin, f"{where}.{key}").items())
    except TemplateYAMLError as error:
        raise _fail(origin, where, f"{key}: {error}") from None


def _constraints(role: dict, origin: str, where: str) -> tuple[tuple[str, str], ...]:
    raw = role.get("constraints")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(origin, where, "constraints must be a list of {attribute, value}")
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("attribute"):
            raise _fail(origin, where, f"constraints[{index}] must be a mapping with an attribute "
                                       "and a value")
        out.append((_text(item["attribute"], origin, where, f"constraints[{index}].attribute"),
                    _text(item.get("value"), origin, where, f"constraints[{index}].value")))
    return tuple(out)


def _channels(role: dict, key: str, origin: str, where: str) -> tuple[dict[str, str], ...]:
    raw = role.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(origin, where, f"{key} must be a list of channels")
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("name"):
            raise _fail(origin, where, f"{key}[{index}] must be a mapping with a name")
        out.append({str(k): _text(v, origin, where, f"{key}[{index}].{k}")
                    for k, v in item.items() if v is not None})
    return tuple(out)


def _for(role: dict, origin: str, where: str) -> ForSpec:
    block = role["for"]
    if not isinstance(block, dict):
        raise _fail(origin, where, "invalid range specifier in iterator: for must be "
                                   "{range, var} or {begin, end, var}")
    var = _optional(block, "var", origin, where, "for.var")
    if var is None:
        raise _fail(origin, where, "invalid range specifier in iterator: for.var is missing")
    if not re.fullmatch(r"[A-Za-z_]\w*", var):
        raise _fail(origin, where, f"for.var {var!r} is not a variable name")
    begin = _optional(block, "begin", origin, where, "for.begin")
    end = _optional(block, "end", origin, where, "for.end")
    if begin is not None and end is not None:
        return ForSpec(var=var, begin=begin, end=end)
    range_ = _optional(block, "range", origin, where, "for.range")
    if range_ is not None:
        return ForSpec(var=var, range=range_)
    raise _fail(origin, where, "invalid range specifier in iterator: for needs range, "
                               "or begin and end")


def parse_role(role: Any, origin: str, parent_where: str, index: int) -> RoleSpec:
    """One role mapping (and its subtree) into a RoleSpec; WorkflowError names file and role."""
    if not isinstance(role, dict):
        raise WorkflowError(f"{origin}: role {parent_where}[{index}] must be a mapping")
    name = _text(role.get("name"), origin, f"{parent_where}[{index}]", "name").strip()
    if not name:
        raise WorkflowError(f"{origin}: role {parent_where}[{index}] has no name "
                            "(name is mandatory)")
    where = f"{parent_where}{PATH_SEPARATOR}{name}" if parent_where else name
    present = [k for k in _KIND_KEYS if role.get(k) is not None]
    if not present:
        raise _fail(origin, where, "a role needs one of task, call, roles or include")
    if len(present) > 1:
        raise _fail(origin, where, f"{' and '.join(present)} cannot be combined: a role is "
                                   "exactly one of task, call, roles (aggregator) or include")
    kind = {"task": RoleKind.TASK, "call": RoleKind.CALL, "roles": RoleKind.AGGREGATOR,
            "include": RoleKind.INCLUDE}[present[0]]
    for_ = _for(role, origin, where) if role.get("for") is not None else None
    if for_ is not None and not uses_variable(name, for_.var):
        raise _fail(origin, where, f"the name of an iterated role must use the iterator "
                                   f"variable {for_.var!r} (e.g. name: x-{{{{ {for_.var} }}}})")
    children: tuple[RoleSpec, ...] = ()
    task = call = None
    include = ""
    if kind is RoleKind.AGGREGATOR:
        roles = role["roles"]
        if not isinstance(roles, list):
            raise _fail(origin, where, "roles must be a list of roles")
        children = tuple(parse_role(child, origin, where, i) for i, child in enumerate(roles))
    elif kind is RoleKind.TASK:
        body = role["task"]
        if not isinstance(body, dict):
            raise _fail(origin, where, "task must be a mapping with load, trigger, timeout…")
        load = _optional(body, "load", origin, where, "task.load")
        if load is None:
            raise _fail(origin, where, "task.load is missing (the task template to run)")
        task = TaskSpec(load=load,
                        trigger=_optional(body, "trigger", origin, where, "task.trigger"),
                        await_=_optional(body, "await", origin, where, "task.await"),
                        timeout=_optional(body, "timeout", origin, where, "task.timeout"),
                        critical=_bool(body, "critical", origin, where, "task.critical", True))
    elif kind is RoleKind.CALL:
        body = role["call"]
        if not isinstance(body, dict):
            raise _fail(origin, where, "call must be a mapping with func, trigger, timeout…")
        func = _optional(body, "func", origin, where, "call.func")
        if func is None:
            raise _fail(origin, where, "call.func is missing (e.g. dcs.StartOfRun())")
        call = CallSpec(func=func,
                        return_var=_optional(body, "return", origin, where, "call.return") or "",
                        trigger=_optional(body, "trigger", origin, where, "call.trigger"),
                        await_=_optional(body, "await", origin, where, "call.await"),
                        timeout=_optional(body, "timeout", origin, where, "call.timeout"),
                        critical=_bool(body, "critical", origin, where, "call.critical", True))
    else:
        include = _text(role["include"], origin, where, "include").strip()
        if not include:
            raise _fail(origin, where, "include is empty (a workflow name or repo path)")
    return RoleSpec(
        name=name, where=where, kind=kind,
        enabled=_optional(role, "enabled", origin, where, "enabled"),
        defaults=_section(role, "defaults", origin, where),
        vars=_section(role, "vars", origin, where),
        constraints=_constraints(role, origin, where),
        connect=_channels(role, "connect", origin, where),
        bind=_channels(role, "bind", origin, where),
        for_=for_, children=children, task=task, call=call, include=include)


def parse_workflow(text: str, origin: str) -> WorkflowSpec:
    """A workflow template file into a WorkflowSpec; errors name the file and role."""
    try:
        document = load_yaml(text, origin)
    except TemplateYAMLError as error:
        raise WorkflowError(str(error)) from None
    if not isinstance(document, dict):
        raise WorkflowError(f"{origin}: a workflow template must be a mapping with name and roles")
    name_node = document.get("name")
    name = _text(name_node, origin, "<root>", "name").strip()
    if not name:
        raise WorkflowError(f"{origin}: the workflow has no name (name is mandatory)")
    if document.get("roles") is None:
        raise WorkflowError(f"{origin}: role {name}: the workflow root needs roles")
    if any(document.get(k) is not None for k in ("task", "call", "include", "for")):
        raise WorkflowError(f"{origin}: role {name}: the workflow root is an aggregator: "
                            "only name, description, defaults, vars and roles are allowed")
    body = dict(document)
    body["name"] = name
    root = parse_role(body, origin, "", 0)
    description = _text(document.get("description"), origin, name, "description")
    return WorkflowSpec(name=name, description=description,
                        public=isinstance(name_node, Public), root=root)


class SpecCache:
    """Parsed workflows by (origin, text): thread-safe, bounded, shared by all loads."""

    def __init__(self, limit: int = 256) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], WorkflowSpec] = {}
        self._limit = limit

    def get(self, text: str, origin: str) -> WorkflowSpec:
        key = (origin, text)
        with self._lock:
            found = self._items.get(key)
        if found is not None:
            return found
        spec = parse_workflow(text, origin)
        with self._lock:
            if len(self._items) >= self._limit:
                self._items.pop(next(iter(self._items)))
            self._items[key] = spec
        return spec
