"""Task classes: task templates (`tasks/<name>.yaml`) read and checked once.

A task class is what every task loaded from one template at one commit has
in common (AliECS core/task/taskclass, reference §4.2). Its values stay
templates here; they are rendered per task at deploy time (command.py) and
CONFIGURE (properties.py).
"""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Protocol

from engine.task.channels import (InboundChannel, OutboundChannel, parse_bind_list,
                                  parse_connect_list)
from engine.task.errors import ChannelError, TaskClassError
from engine.templates.yamlsource import TemplateYAMLError, load_yaml, plain, variables
from executor.controlmode import ControlMode

log = logging.getLogger("engine.task")

_TOP_KEYS = frozenset({"name", "defaults", "vars", "control", "wants", "limits", "bind", "connect",
                       "constraints", "properties", "command"})
_COMMAND_KEYS = frozenset({"env", "shell", "value", "arguments", "user", "stdout", "stderr", "log"})
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_PORT = re.compile(r"\d+")


class TemplateSource(Protocol):
    """A template file as read from a repository (engine.repos TemplateFile)."""

    repo: str
    commit: str
    path: str
    text: str

    @property
    def origin(self) -> str: ...


@dataclass(frozen=True)
class PortRange:
    begin: int
    end: int


@dataclass(frozen=True)
class Wants:
    """Resources a task needs on its host; `ports` keeps the ranges expression as written."""

    cpu: float
    memory: float
    ports: str = ""
    port_ranges: tuple[PortRange, ...] = ()


@dataclass(frozen=True)
class Limits:
    """Optional caps; None means unlimited."""

    cpu: float | None = None
    memory: float | None = None


@dataclass(frozen=True)
class Constraint:
    """Equality against an agent attribute (`machine_id`, `machine_type`, …)."""

    attribute: str
    value: str


@dataclass(frozen=True)
class CommandTemplate:
    """`command:` with its fields still templates. stdout/stderr are None when not given
    (AliECS then uses "none" without templating)."""

    value: str
    arguments: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    shell: bool = False
    user: str = ""
    stdout: str | None = None
    stderr: str | None = None


@dataclass(frozen=True)
class TaskClass:
    """One task template at one commit."""

    name: str
    repo: str
    commit: str
    path: str
    control_mode: ControlMode
    command: CommandTemplate
    wants: Wants
    limits: Limits = Limits()
    defaults: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)
    bind: tuple[InboundChannel, ...] = ()
    connect: tuple[OutboundChannel, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def identifier(self) -> str:
        """`<repo>/tasks/<name>@<commit>`, AliECS's task class id."""
        return f"{self.repo}/tasks/{self.name}@{self.commit}"

    @property
    def origin(self) -> str:
        """The file for messages: `<repo>/<path>@<commit>`."""
        return f"{self.repo}/{self.path}@{self.commit}"

    def task_name(self, task_id: str) -> str:
        """A task's name: `<class identifier>#<task id>`."""
        return f"{self.identifier}#{task_id}"

    @classmethod
    def from_template(cls, file: TemplateSource) -> "TaskClass":
        """Read and check a task template; every error names the file and field."""
        origin = file.origin
        try:
            document = load_yaml(file.text, origin)
        except TemplateYAMLError as error:
            raise TaskClassError(str(error)) from None
        return cls.from_document(document, repo=file.repo, commit=file.commit, path=file.path,
                                 origin=origin)

    @classmethod
    def from_document(cls, document: Any, *, repo: str, commit: str, path: str,
                      origin: str = "") -> "TaskClass":
        """A task class from an already parsed template (load_yaml's output)."""
        origin = origin or f"{repo}/{path}@{commit}"
        if not isinstance(document, dict):
            raise TaskClassError(f"{origin}: a task template must be a mapping, "
                                 f"not {type(document).__name__}")
        unknown = sorted(str(k) for k in document if k not in _TOP_KEYS)
        if unknown:
            log.warning("%s: unknown top-level key(s) %s ignored", origin, ", ".join(unknown))

        name = _text(plain(document.get("name"))).strip()
        expected = _file_stem(path)
        if not name:
            raise TaskClassError(f"{origin}: name is missing (it must be {expected!r}, "
                                 "the file name)")
        if name != expected:
            raise TaskClassError(f"{origin}: name {name!r} does not match the file name "
                                 f"{expected!r}; a task template's name must equal its file name")
        try:
            defaults = variables(document.get("defaults"), origin, "defaults")
            vars_ = variables(document.get("vars"), origin, "vars")
            bind = parse_bind_list(document.get("bind"), origin)
            connect = parse_connect_list(document.get("connect"), origin, in_task_template=True)
        except (TemplateYAMLError, ChannelError) as error:
            raise TaskClassError(str(error)) from None
        return cls(
            name=name, repo=repo, commit=commit, path=path,
            control_mode=_control_mode(document.get("control"), origin),
            command=_command(document.get("command"), origin),
            wants=_wants(document.get("wants"), origin),
            limits=_limits(document.get("limits"), origin),
            defaults=MappingProxyType(defaults), vars=MappingProxyType(vars_), bind=bind,
            connect=connect, constraints=parse_constraints(document.get("constraints"), origin),
            properties=MappingProxyType(_properties(document.get("properties"), origin)),
        )


class TaskClassCache:
    """Task classes by (repo, commit, path), each template read and checked once.

    A workflow with 200 hosts loads the same few templates hundreds of times.
    Thread-safe; a commit pins the text, so entries never go stale, except for
    a working-tree checkout ("local"): give each load its own cache for those.
    """

    def __init__(self) -> None:
        self._classes: dict[tuple[str, str, str], TaskClass] = {}
        self._lock = threading.Lock()

    def get(self, repo: str, commit: str, path: str,
            read: Callable[[], TemplateSource]) -> TaskClass:
        key = (repo, commit, path)
        with self._lock:
            cached = self._classes.get(key)
        if cached is not None:
            return cached
        task_class = TaskClass.from_template(read())
        with self._lock:
            return self._classes.setdefault(key, task_class)

    def clear(self) -> None:
        with self._lock:
            self._classes.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._classes)


# ---------------------------------------------------------------- sections

def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _file_stem(path: str) -> str:
    name = PurePosixPath(path).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _mapping(value: Any, origin: str, where: str, *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            raise TaskClassError(f"{origin}: {where} is missing")
        return {}
    if not isinstance(value, dict):
        raise TaskClassError(f"{origin}: {where} must be a mapping, not {type(value).__name__}")
    return value


def _scalar(value: Any, origin: str, where: str) -> str:
    value = plain(value)
    if isinstance(value, (dict, list)):
        raise TaskClassError(f"{origin}: {where} must be a single value, not a "
                             f"{'mapping' if isinstance(value, dict) else 'list'}")
    return _text(value)


def _number(value: Any, origin: str, where: str, *, required: bool) -> float | None:
    text = _scalar(value, origin, where).strip()
    if not text:
        if required:
            raise TaskClassError(f"{origin}: {where} is missing (a number)")
        return None
    if not _NUMBER.fullmatch(text):
        raise TaskClassError(f"{origin}: {where} must be a number, not {text!r}")
    number = float(text)
    if number < 0:
        raise TaskClassError(f"{origin}: {where} must not be negative, not {text}")
    return number


def _control_mode(section: Any, origin: str) -> ControlMode:
    control = _mapping(section, origin, "control")
    text = _scalar(control.get("mode"), origin, "control.mode").strip()
    mode = ControlMode.parse(text)
    if text and str(mode) != text.lower():
        log.warning("%s: control.mode %r is not a control mode; using direct, as AliECS does "
                    "(modes: direct, fairmq, basic, kubectl_direct, kubectl_fairmq, "
                    "kubernetes_direct, kubernetes_fairmq)", origin, text)
    if mode is ControlMode.HOOK:
        raise TaskClassError(f"{origin}: control.mode hook is never written in a template; use "
                             "basic and give the task role a trigger")
    return mode


def parse_port_ranges(expression: str, context: str) -> tuple[PortRange, ...]:
    """`"10000-10010,10020"`: comma-separated ports or inclusive ranges."""
    ranges: list[PortRange] = []
    if not expression.strip():
        return ()
    for part in expression.split(","):
        bounds = [b.strip() for b in part.split("-")]
        if len(bounds) > 2 or not all(_PORT.fullmatch(b) for b in bounds):
            raise TaskClassError(f"{context}: {part.strip()!r} is not a port or a port range "
                                 "such as 10000-10010")
        begin, end = int(bounds[0]), int(bounds[-1])
        if not 0 < begin <= end < 65536:
            raise TaskClassError(f"{context}: port range {part.strip()!r} is out of order or "
                                 "outside 1-65535")
        ranges.append(PortRange(begin, end))
    return tuple(ranges)


def _wants(section: Any, origin: str) -> Wants:
    wants = _mapping(section, origin, "wants", required=True)
    ports = _scalar(wants.get("ports"), origin, "wants.ports").strip()
    cpu = _number(wants.get("cpu"), origin, "wants.cpu", required=True)
    memory = _number(wants.get("memory"), origin, "wants.memory", required=True)
    assert cpu is not None and memory is not None  # required=True
    return Wants(cpu=cpu, memory=memory, ports=ports,
                 port_ranges=parse_port_ranges(ports, f"{origin}: wants.ports"))


def _limits(section: Any, origin: str) -> Limits:
    limits = _mapping(section, origin, "limits")
    return Limits(cpu=_number(limits.get("cpu"), origin, "limits.cpu", required=False),
                  memory=_number(limits.get("memory"), origin, "limits.memory", required=False))


def _string_list(value: Any, origin: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TaskClassError(f"{origin}: {where} must be a list of strings")
    return tuple(_scalar(item, origin, f"{where}[{i}]") for i, item in enumerate(value))


def _bool(value: Any, origin: str, where: str) -> bool:
    text = _scalar(value, origin, where).strip().lower()
    if text in ("", "false"):
        return False
    if text == "true":
        return True
    raise TaskClassError(f"{origin}: {where} must be true or false, not {text!r}")


def _output(value: Any, origin: str, where: str) -> str | None:
    if value is None:
        return None
    text = _scalar(value, origin, where)
    if "{{" not in text and text.strip().lower() not in ("none", "stdout", "all"):
        raise TaskClassError(f"{origin}: {where} must be none, stdout or all, not {text!r}")
    return text


def _command(section: Any, origin: str) -> CommandTemplate:
    command = _mapping(section, origin, "command", required=True)
    unknown = sorted(str(k) for k in command if k not in _COMMAND_KEYS)
    if unknown:
        log.warning("%s: unknown command key(s) %s ignored", origin, ", ".join(unknown))
    value = _scalar(command.get("value"), origin, "command.value")
    if not value.strip():
        raise TaskClassError(f"{origin}: command.value is missing (the executable or shell line)")
    env = _string_list(command.get("env"), origin, "command.env")
    for index, entry in enumerate(env):
        # An entry with a template is checked once rendered (TaskCommand does).
        name, sep, _ = entry.partition("=")
        if "{{" not in entry and not (sep and name.strip()):
            raise TaskClassError(f"{origin}: command.env[{index}] {entry!r} is not NAME=VALUE")
    stdout = _output(command.get("stdout"), origin, "command.stdout")
    if stdout is None and command.get("log") is not None:
        stdout = _output(command.get("log"), origin, "command.log")
    return CommandTemplate(
        value=value,
        arguments=_string_list(command.get("arguments"), origin, "command.arguments"),
        env=env,
        shell=_bool(command.get("shell"), origin, "command.shell"),
        user=_scalar(command.get("user"), origin, "command.user").strip(),
        stdout=stdout,
        stderr=_output(command.get("stderr"), origin, "command.stderr"),
    )


def parse_constraints(section: Any, origin: str) -> tuple[Constraint, ...]:
    """A `constraints:` list of {attribute, value}; `origin` names the file or role."""
    if section is None:
        return ()
    if not isinstance(section, list):
        raise TaskClassError(f"{origin}: constraints must be a list of {{attribute, value}}")
    constraints = []
    for index, entry in enumerate(section):
        where = f"constraints[{index}]"
        if not isinstance(entry, dict):
            raise TaskClassError(f"{origin}: {where} must be a mapping with attribute and value")
        attribute = _scalar(entry.get("attribute"), origin, f"{where}.attribute").strip()
        if not attribute:
            raise TaskClassError(f"{origin}: {where}.attribute is missing")
        constraints.append(Constraint(attribute, _scalar(entry.get("value"), origin,
                                                         f"{where}.value")))
    return tuple(constraints)


def _properties(section: Any, origin: str) -> dict[str, str]:
    properties = _mapping(section, origin, "properties")
    return {str(k): _scalar(v, origin, f"properties.{k}") for k, v in properties.items()}
