"""The role tree of a workflow, as AliECS holds it after template processing.

A processed workflow is a tree of roles: aggregators (children only), task
roles (one task of a task class each), call roles (an integration-plugin call
run at a trigger) and include roles (the root of another workflow grafted in
under the include role's name). Iterators are gone by then: each copy they made
is an ordinary role that remembers where it came from (`iterated_from`) and
adds no path segment. Everything here is rendered text except a call's `func`,
which is evaluated at trigger time.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from engine.task import channels as task_channels
from engine.task.channels import Channel, InboundChannel, OutboundChannel
from engine.task.taskclass import Constraint, TaskClass

ChannelT = TypeVar("ChannelT", bound=Channel)
PATH_SEPARATOR = "."


class WorkflowError(Exception):
    """A workflow cannot be loaded; the message names repo/file, role path, field and expression."""


class RoleKind(str, Enum):
    """What a role is, decided by its keys (`task`, `call`, `roles`, `include`)."""

    AGGREGATOR = "aggregator"
    TASK = "task"
    CALL = "call"
    INCLUDE = "include"


_TRIGGER = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<weight>[+-]\d+)?$")


@dataclass(frozen=True)
class Trigger:
    """A hook moment: `<prefix><EVENT|STATE>` plus an ordering weight (`before_CONFIGURE-1`)."""

    name: str
    weight: int = 0

    @classmethod
    def parse(cls, text: str) -> "Trigger":
        """Split at the last sign as AliECS does; a missing weight is +0.

        ValueError with the reason when the text is not `name[±N]`.
        """
        stripped = text.strip()
        match = _TRIGGER.match(stripped)
        if match is None:
            raise ValueError(f"{text!r} is not a trigger: expected <name>[+N|-N], "
                             "e.g. before_CONFIGURE, after_RESET+100, DESTROY-100")
        weight = match.group("weight")
        return cls(match.group("name"), int(weight) if weight else 0)

    def __str__(self) -> str:
        if self.weight == 0:
            return self.name
        return f"{self.name}{self.weight:+d}"


def merge_constraints(parent: Sequence[Constraint],
                      own: Sequence[Constraint]) -> tuple[Constraint, ...]:
    """A child's constraints over its parent's: the child replaces one on the same attribute."""
    if not parent:
        return tuple(own)
    if not own:
        return tuple(parent)
    mine = {c.attribute for c in own}
    return tuple(c for c in parent if c.attribute not in mine) + tuple(own)


def merge_channels(parent: Sequence[ChannelT], own: Sequence[ChannelT]) -> tuple[ChannelT, ...]:
    """Channels a role inherits: its own replace its ancestors' of the same name."""
    if not parent:
        return tuple(own)
    return tuple(task_channels.merge_channels(own, parent))


@dataclass(frozen=True)
class IteratorInfo:
    """Where an iterated role came from: the loop variable, its value and position."""

    var: str
    value: str
    index: int
    range: str  # the `for` block as written: the range expression or "begin..end"


@dataclass(frozen=True)
class RoleNode:
    """`Parent()`, `Up(n)` and `This()` in templates: a role's Name and Path."""

    Name: str
    Path: str


@dataclass(eq=False, kw_only=True)
class Role:
    """One processed role. Layers hold this role's own rendered values; `stack` is
    the consolidated variable stack (§4.5) its children and tasks see."""

    name: str
    path: str
    kind: RoleKind
    origin: str  # the template file the role was written in: "<repo>/<path>@<revision>"
    enabled: bool = True
    defaults: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    user_vars: dict[str, str] = field(default_factory=dict)
    locals: dict[str, str] = field(default_factory=dict)
    own_constraints: tuple[Constraint, ...] = ()
    constraints: tuple[Constraint, ...] = ()  # merged down from the ancestors
    connect: tuple[OutboundChannel, ...] = ()  # own entries, target rendered
    bind: tuple[InboundChannel, ...] = ()  # own entries, global alias rendered
    children: list["Role"] = field(default_factory=list)
    iterated_from: IteratorInfo | None = None
    parent: "Role | None" = field(default=None, repr=False)
    # The consolidated stack at load time, read-only (roles that add nothing share one).
    stack: Mapping[str, str] = field(default_factory=dict, repr=False)

    def walk(self) -> Iterator["Role"]:
        """This role and all its descendants, depth first, in template order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def node(self) -> RoleNode:
        return RoleNode(self.name, self.path)

    def collected_connect(self) -> tuple[OutboundChannel, ...]:
        """Outbound channels of this role and its ancestors (the root's own excluded, as
        AliECS's CollectOutboundChannels), the nearest declaration of a name winning."""
        if self.parent is None:
            return ()
        return merge_channels(self.parent.collected_connect(), self.connect)

    def collected_bind(self) -> tuple[InboundChannel, ...]:
        """Inbound channels of this role and its ancestors, as collected_connect."""
        if self.parent is None:
            return ()
        return merge_channels(self.parent.collected_bind(), self.bind)

    def to_dict(self) -> dict[str, Any]:
        """The `nutshell template render -o json` shape of this subtree."""
        out: dict[str, Any] = {"name": self.name, "path": self.path, "kind": self.kind.value}
        out.update(self._kind_dict())
        out["constraints"] = [{"attribute": c.attribute, "value": c.value}
                              for c in self.constraints]
        if self.children or self.kind in (RoleKind.AGGREGATOR, RoleKind.INCLUDE):
            out["roles"] = [child.to_dict() for child in self.children]
        return out

    def _kind_dict(self) -> dict[str, Any]:
        return {}


@dataclass(eq=False, kw_only=True)
class AggregatorRole(Role):
    """Children only (the root of every workflow is one)."""

    kind: RoleKind = RoleKind.AGGREGATOR


@dataclass(eq=False, kw_only=True)
class IncludeRole(Role):
    """Another workflow's root grafted in: keeps this role's name; its layers are the
    include role's own with the included root's over them."""

    kind: RoleKind = RoleKind.INCLUDE
    include: str = ""  # the rendered reference, e.g. "jit-<sha1>" or "qc-daq"
    included_origin: str = ""  # the file that was loaded

    def _kind_dict(self) -> dict[str, Any]:
        return {"include": self.include, "included": self.included_origin}


@dataclass(eq=False, kw_only=True)
class TaskRole(Role):
    """One task of a task class. With a trigger it is a hook task run at that moment."""

    kind: RoleKind = RoleKind.TASK
    load: str = ""  # the `load` text as rendered
    task_class: TaskClass | None = None
    class_identifier: str = ""  # <repo>/tasks/<name>@<commit>
    class_display: str = ""  # <repo>/tasks/<name>@<revision>, for people
    critical: bool = True
    trigger: Trigger | None = None
    await_: Trigger | None = None
    timeout: str = "0s"

    def _kind_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.class_display or self.load,
                               "critical": self.critical, "timeout": self.timeout}
        if self.trigger is not None:
            out["trigger"] = str(self.trigger)
            out["await"] = str(self.await_) if self.await_ else str(self.trigger)
        return out


@dataclass(eq=False, kw_only=True)
class CallRole(Role):
    """An integration-plugin call; `func` stays an unevaluated expression until its trigger."""

    kind: RoleKind = RoleKind.CALL
    func: str = ""
    return_var: str = ""
    critical: bool = True
    trigger: Trigger | None = None
    await_: Trigger | None = None
    timeout: str = "0s"

    def _kind_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"func": self.func,
                               "trigger": str(self.trigger) if self.trigger else "",
                               "await": str(self.await_) if self.await_ else "",
                               "timeout": self.timeout, "critical": self.critical}
        if self.return_var:
            out["return"] = self.return_var
        return out


_BOOLS = {"true": True, "yes": True, "on": True, "y": True,
          "false": False, "no": False, "off": False, "n": False}


def parse_yaml_bool(text: str) -> bool:
    """A YAML boolean as Go's yaml decoder takes it; ValueError otherwise."""
    value = _BOOLS.get(text.strip().lower())
    if value is None:
        raise ValueError(f"{text!r} is not a boolean (true or false)")
    return value


@dataclass(eq=False)
class Workflow:
    """A loaded workflow: the processed role tree and what it was loaded from."""

    root: Role
    name: str
    origin: str  # the workflow file: "<repo>/<path>@<revision>"
    description: str = ""
    public: bool = False
    environment_id: str = ""
    # The environment's layers under the root (§4.5): configuration defaults (+ detectors),
    # configuration vars, the request's variables (+ environment_id).
    global_defaults: dict[str, str] = field(default_factory=dict)
    global_vars: dict[str, str] = field(default_factory=dict)
    env_user_vars: dict[str, str] = field(default_factory=dict)
    commit: str = ""  # the commit the workflow file's revision resolved to (recovery reloads it)

    def roles(self) -> Iterator[Role]:
        """Every role, depth first, in template order."""
        return self.root.walk()

    def task_roles(self) -> list[TaskRole]:
        return [r for r in self.root.walk() if isinstance(r, TaskRole)]

    def call_roles(self) -> list[CallRole]:
        return [r for r in self.root.walk() if isinstance(r, CallRole)]

    def find(self, path: str) -> Role | None:
        """The role at a dotted path, or None."""
        for role in self.root.walk():
            if role.path == path:
                return role
        return None

    def task_classes(self) -> dict[str, TaskClass]:
        """The task classes the workflow needs, by class identifier."""
        return {r.class_identifier: r.task_class for r in self.task_roles()
                if r.task_class is not None}

    def hosts(self) -> list[str]:
        """The hosts task roles are pinned to (machine_id constraints), in first-seen order,
        as AliECS's GetFLPs."""
        seen: dict[str, None] = {}
        for role in self.task_roles():
            for constraint in role.constraints:
                if constraint.attribute == "machine_id" and constraint.value:
                    seen.setdefault(constraint.value, None)
        return list(seen)

    def stack_of(self, role: Role) -> dict[str, str]:
        """A role's consolidated stack computed afresh from the layers (§4.5): user vars over
        vars over defaults, each flattened root → leaf over the environment's layer.

        Equal to `role.stack` right after loading; after runtime variables change a role's
        or the environment's layers (run_number on the root's vars, a call's return value
        in a role's user vars), this is the stack to use.
        """
        chain: list[Role] = []
        node: Role | None = role
        while node is not None:
            chain.append(node)
            node = node.parent
        chain.reverse()
        defaults = dict(self.global_defaults)
        vars_ = dict(self.global_vars)
        user = dict(self.env_user_vars)
        for link in chain:
            defaults.update(link.defaults)
            vars_.update(link.vars)
            user.update(link.user_vars)
        return {**defaults, **vars_, **user}

    def to_dict(self) -> dict[str, Any]:
        """`nutshell template render -o json`: the root role with its subtree."""
        return self.root.to_dict()
