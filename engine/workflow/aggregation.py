"""Role aggregation (reference §1.5): how task states and statuses roll up the role tree.

The products `X` and the folds over critical children are written as AliECS defines
them. `Aggregator` keeps every role's aggregate current as tasks change: both products
are commutative and associative with INVARIANT as identity, so a parent's aggregate
depends only on how many of its counted children are in each state; an update adjusts
those counts on the task's ancestors and stops at the first one that did not change.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from engine.workflow.roles import CallRole, RoleKind, TaskRole, Workflow


class TaskState(IntEnum):
    """Task and role states in AliECS's order; INVARIANT prints as "UNKNOWN" (§1.4)."""

    UNKNOWN = 0
    STANDBY = 1
    CONFIGURED = 2
    RUNNING = 3
    ERROR = 4
    DONE = 5
    MIXED = 6
    INVARIANT = 7

    @property
    def wire(self) -> str:
        return "UNKNOWN" if self > TaskState.MIXED else self.name

    def __str__(self) -> str:
        return self.wire

    @classmethod
    def parse(cls, text: str) -> "TaskState":
        """A wire name (any case); unknown names are UNKNOWN, as in AliECS."""
        return cls.__members__.get(text.strip().upper(), cls.UNKNOWN)


class TaskStatus(IntEnum):
    """Deployment status of tasks and roles (AliECS core/task/status.go)."""

    UNDEFINED = 0
    INACTIVE = 1
    PARTIAL = 2
    ACTIVE = 3
    UNDEPLOYABLE = 4
    INVARIANT = 5

    def __str__(self) -> str:
        return self.name


def state_product(a: TaskState, b: TaskState) -> TaskState:
    """`a X b`: equal stays, ERROR wins, INVARIANT yields to the other side, else MIXED."""
    if a == b:
        return a
    if a is TaskState.ERROR or b is TaskState.ERROR:
        return TaskState.ERROR
    if a is TaskState.INVARIANT:
        return b
    if b is TaskState.INVARIANT:
        return a
    return TaskState.MIXED


_U, _I, _P, _A, _D, _V = (TaskStatus.UNDEFINED, TaskStatus.INACTIVE, TaskStatus.PARTIAL,
                          TaskStatus.ACTIVE, TaskStatus.UNDEPLOYABLE, TaskStatus.INVARIANT)
# Row X column, transcribed from §1.5; columns in the order UNDEFINED … INVARIANT.
STATUS_PRODUCT: dict[TaskStatus, tuple[TaskStatus, ...]] = {
    _U: (_U, _U, _U, _U, _U, _U),
    _I: (_U, _I, _P, _P, _D, _I),
    _P: (_U, _P, _P, _P, _D, _P),
    _A: (_U, _P, _P, _A, _D, _A),
    _D: (_U, _D, _D, _D, _D, _D),
    _V: (_U, _I, _P, _A, _D, _V),
}


def status_product(a: TaskStatus, b: TaskStatus) -> TaskStatus:
    """`a X b` for statuses: the cell of the table."""
    return STATUS_PRODUCT[a][b]


def fold_states(states: Iterable[TaskState]) -> TaskState:
    """Start at INVARIANT and fold X over states."""
    result = TaskState.INVARIANT
    for state in states:
        result = state_product(result, state)
    return result


def fold_statuses(statuses: Iterable[TaskStatus]) -> TaskStatus:
    """Start at INVARIANT and fold X over statuses, stopping at UNDEFINED."""
    result = TaskStatus.INVARIANT
    for status in statuses:
        if result is TaskStatus.UNDEFINED:
            break
        result = status_product(result, status)
    return result


@dataclass(frozen=True)
class ChildValue:
    """What a parent sees of one child: its kind, whether it counts as critical, its values.

    For aggregator and include children, `critical` is whether some child of theirs is.
    """

    kind: RoleKind
    critical: bool
    state: TaskState
    status: TaskStatus


def counts_for_state(child: ChildValue) -> bool:
    """Call roles and non-critical roles do not feed their parent's state."""
    return child.kind is not RoleKind.CALL and child.critical


def role_state(children: Iterable[ChildValue]) -> TaskState:
    """An aggregator's state: X folded over its critical non-call children."""
    return fold_states(c.state for c in children if counts_for_state(c))


def role_status(children: Sequence[ChildValue]) -> TaskStatus:
    """An aggregator's status: UNDEFINED without children, else X folded over the critical ones."""
    if not children:
        return TaskStatus.UNDEFINED
    return fold_statuses(c.status for c in children if c.critical)


@dataclass(frozen=True)
class RoleRecord:
    """One role of the tree as aggregation needs it; `critical` matters for task and call roles."""

    path: str
    parent: str | None
    kind: RoleKind
    critical: bool = True


def records_of(workflow: Workflow) -> list[RoleRecord]:
    """The role tree of a loaded workflow as records, in template order."""
    records: list[RoleRecord] = []
    for role in workflow.roles():
        parent = role.parent.path if role.parent is not None else None
        critical = role.critical if isinstance(role, (TaskRole, CallRole)) else True
        records.append(RoleRecord(role.path, parent, role.kind, critical))
    return records


def _aggregate_state(counts: list[int]) -> TaskState:
    """fold_states over a multiset given as counts per state."""
    if counts[TaskState.ERROR]:
        return TaskState.ERROR
    found: TaskState | None = None
    for state in _STATES_BUT_INVARIANT:
        if counts[state]:
            if found is not None:
                return TaskState.MIXED
            found = state
    return TaskState.INVARIANT if found is None else found


def _aggregate_status(counts: list[int]) -> TaskStatus:
    """fold_statuses over a multiset given as counts per status."""
    if counts[TaskStatus.UNDEFINED]:
        return TaskStatus.UNDEFINED
    if counts[TaskStatus.UNDEPLOYABLE]:
        return TaskStatus.UNDEPLOYABLE
    found: TaskStatus | None = None
    for status in (TaskStatus.INACTIVE, TaskStatus.PARTIAL, TaskStatus.ACTIVE):
        if counts[status]:
            if found is not None:
                return TaskStatus.PARTIAL
            found = status
    return TaskStatus.INVARIANT if found is None else found


_STATES_BUT_INVARIANT = tuple(s for s in TaskState if s is not TaskState.INVARIANT)


class _Node:
    __slots__ = ("children", "critical", "feeds_state", "feeds_status", "parent", "record",
                 "state", "state_counts", "status", "status_counts")

    def __init__(self, record: RoleRecord) -> None:
        self.record = record
        self.parent: _Node | None = None
        self.children: list[_Node] = []
        self.critical = record.critical
        self.feeds_state = False
        self.feeds_status = False
        self.state = TaskState.STANDBY
        self.status = TaskStatus.INACTIVE
        self.state_counts = [0] * len(TaskState)
        self.status_counts = [0] * len(TaskStatus)


_LEAVES = (RoleKind.TASK, RoleKind.CALL)


class Aggregator:
    """Aggregated state and status of every role, kept current one task change at a time.

    Task roles start STANDBY/INACTIVE, call roles INVARIANT/ACTIVE (§1.5). `update` sets a
    task or call role and refreshes only its ancestors, in O(depth).
    """

    def __init__(self, records: Iterable[RoleRecord]) -> None:
        self._nodes: dict[str, _Node] = {}
        order: list[_Node] = []
        for record in records:
            if record.path in self._nodes:
                raise ValueError(f"role {record.path!r} appears twice in the role tree")
            node = _Node(record)
            self._nodes[record.path] = node
            order.append(node)
        roots = []
        for node in order:
            parent = node.record.parent
            if parent is None:
                roots.append(node)
                continue
            owner = self._nodes.get(parent)
            if owner is None:
                raise ValueError(f"role {node.record.path!r} names parent {parent!r}, "
                                 "which is not in the role tree")
            if owner.record.kind in _LEAVES:
                raise ValueError(f"role {node.record.path!r} has parent {parent!r}, a "
                                 f"{owner.record.kind.value} role, which cannot have children")
            node.parent = owner
            owner.children.append(node)
        if len(roots) != 1:
            names = ", ".join(repr(n.record.path) for n in roots) or "none"
            raise ValueError(f"a role tree has exactly one root (no parent); found {names}")
        self._root = roots[0]
        for node in order:
            if node.record.kind is RoleKind.CALL:
                node.state, node.status = TaskState.INVARIANT, TaskStatus.ACTIVE
        self._settle(self._root)

    @classmethod
    def from_workflow(cls, workflow: Workflow) -> "Aggregator":
        return cls(records_of(workflow))

    def _settle(self, root: _Node) -> None:
        """Criticality, membership, counts and aggregates of every inner role, bottom up."""
        stack: list[tuple[_Node, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node.record.kind in _LEAVES:
                continue
            if not expanded:
                stack.append((node, True))
                stack.extend((child, False) for child in node.children)
                continue
            node.critical = any(child.critical for child in node.children)
            node.state_counts = [0] * len(TaskState)
            node.status_counts = [0] * len(TaskStatus)
            for child in node.children:
                child.feeds_status = child.critical
                child.feeds_state = child.critical and child.record.kind is not RoleKind.CALL
                if child.feeds_state:
                    node.state_counts[child.state] += 1
                if child.feeds_status:
                    node.status_counts[child.status] += 1
            node.state = _aggregate_state(node.state_counts)
            node.status = (_aggregate_status(node.status_counts) if node.children
                           else TaskStatus.UNDEFINED)

    @property
    def root(self) -> str:
        return self._root.record.path

    def __contains__(self, path: str) -> bool:
        return path in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def _node(self, path: str) -> _Node:
        try:
            return self._nodes[path]
        except KeyError:
            raise KeyError(f"no role {path!r} in the role tree") from None

    def state(self, path: str) -> TaskState:
        return self._node(path).state

    def status(self, path: str) -> TaskStatus:
        return self._node(path).status

    def is_critical(self, path: str) -> bool:
        """A task or call role's flag; for other roles, whether some child is critical."""
        return self._node(path).critical

    def values(self) -> dict[str, tuple[TaskState, TaskStatus]]:
        """Every role's (state, status), in tree order."""
        return {path: (node.state, node.status) for path, node in self._nodes.items()}

    def update(self, path: str, state: TaskState | None = None,
               status: TaskStatus | None = None) -> list[str]:
        """Set a task or call role's state and/or status; returns every role whose
        (state, status) changed, the role itself first, then ancestors upwards."""
        node = self._node(path)
        if node.record.kind not in _LEAVES:
            raise ValueError(f"role {path!r} ({node.record.kind.value}) takes its state and "
                             "status from its children; only task and call roles are set")
        new_state = node.state if state is None else TaskState(state)
        new_status = node.status if status is None else TaskStatus(status)
        if new_state == node.state and new_status == node.status:
            return []
        changed = [path]
        old_state, old_status = node.state, node.status
        node.state, node.status = new_state, new_status
        child, parent = node, node.parent
        while parent is not None:
            moved = False
            if child.feeds_state and old_state != child.state:
                parent.state_counts[old_state] -= 1
                parent.state_counts[child.state] += 1
                moved = True
            if child.feeds_status and old_status != child.status:
                parent.status_counts[old_status] -= 1
                parent.status_counts[child.status] += 1
                moved = True
            if not moved:
                break
            old_state, old_status = parent.state, parent.status
            parent.state = _aggregate_state(parent.state_counts)
            parent.status = _aggregate_status(parent.status_counts)
            if parent.state == old_state and parent.status == old_status:
                break
            changed.append(parent.record.path)
            child, parent = parent, parent.parent
        return changed

    def recompute(self) -> dict[str, tuple[TaskState, TaskStatus]]:
        """Every role's values computed afresh with the folds of §1.5 (the reference for tests)."""
        out: dict[str, tuple[TaskState, TaskStatus]] = {}

        def visit(node: _Node) -> ChildValue:
            if node.record.kind in _LEAVES:
                out[node.record.path] = (node.state, node.status)
                return ChildValue(node.record.kind, node.record.critical, node.state, node.status)
            children = [visit(child) for child in node.children]
            value = ChildValue(node.record.kind, any(c.critical for c in children),
                               role_state(children), role_status(children))
            out[node.record.path] = (value.state, value.status)
            return value

        visit(self._root)
        return {path: out[path] for path in self._nodes}
