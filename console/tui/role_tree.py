"""The live role tree of one environment: roles (aggregators, iterators' children,
task roles, calls) with their aggregated states, tasks as leaves, critical marks.

Built once from the workflow tree (`Engine.get_workflow_tree`); afterwards
`apply` relabels only the nodes whose state changed, found through maps from
role path and task id to node, so a burst of task events never rebuilds the tree.
Only a new filter rebuilds it (a keypress, not an event).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from console.tui.state_badge import CRITICAL_MARK, badge
from engine import RoleInfo, TaskInfo


class NodeKind(str, Enum):
    ROLE = "role"
    TASK = "task"


@dataclass(frozen=True)
class NodeRef:
    """What a tree node shows: a role (by path) or a task (by id)."""

    kind: NodeKind
    key: str


class RoleTree(Tree[NodeRef]):
    """The environment's roles and tasks; `filter_text` narrows it to what matches by path,
    task id, host or state (with the ancestors, for context)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("workflow", id=id)
        self.guide_depth = 3
        self.roles: dict[str, RoleInfo] = {}
        self.role_states: dict[str, tuple[str, str]] = {}
        self.tasks: dict[str, TaskInfo] = {}
        self._root_role: RoleInfo | None = None
        self._role_nodes: dict[str, TreeNode[NodeRef]] = {}
        self._task_nodes: dict[str, TreeNode[NodeRef]] = {}
        self._tasks_of: dict[str, list[str]] = {}  # role path → its own tasks' ids
        self.filter_text = ""

    # --- building ---------------------------------------------------------------------

    def load(self, root: RoleInfo, tasks: Iterable[TaskInfo],
             role_states: Mapping[str, tuple[str, str]]) -> None:
        """Show `root`'s tree with its tasks; the current states from `role_states`."""
        self._root_role = root
        self.roles = {}
        stack = [root]
        while stack:
            role = stack.pop()
            self.roles[role.full_path] = role
            stack.extend(role.roles)
        self.tasks = {task.task_id: task for task in tasks}
        self.role_states = {path: (role.state, role.status) for path, role in self.roles.items()}
        self.role_states.update(role_states)
        self._tasks_of = {}
        for task in self.tasks.values():
            self._tasks_of.setdefault(task.role_path, []).append(task.task_id)
        self._rebuild()

    def set_filter(self, text: str) -> None:
        """Narrow the tree to the roles and tasks matching `text` (all of it when empty)."""
        text = text.strip()
        if text != self.filter_text:
            self.filter_text = text
            self._rebuild()

    def _rebuild(self) -> None:
        self.clear()
        self._role_nodes, self._task_nodes = {}, {}
        root = self._root_role
        if root is None:
            return
        self.root.data = NodeRef(NodeKind.ROLE, root.full_path)
        self.root.set_label(self._role_label(root.full_path))
        self._role_nodes[root.full_path] = self.root
        self._add_subtree(self.root, root, self._matches_role(root.full_path))
        self.root.expand_all()

    def _add_subtree(self, node: TreeNode[NodeRef], role: RoleInfo, shown: bool) -> None:
        """Below `node`: `role`'s tasks and child roles; `shown`: an ancestor matched, so
        the whole subtree shows."""
        for task_id in sorted(self._tasks_of.get(role.full_path, ())):
            if shown or self._matches_task(self.tasks[task_id]):
                self._task_nodes[task_id] = node.add_leaf(self._task_label(task_id),
                                                          NodeRef(NodeKind.TASK, task_id))
        for child in role.roles:
            child_shown = shown or self._matches_role(child.full_path)
            if child_shown or self._subtree_matches(child):
                added = node.add(self._role_label(child.full_path),
                                 NodeRef(NodeKind.ROLE, child.full_path))
                self._role_nodes[child.full_path] = added
                self._add_subtree(added, child, child_shown)

    def _matches_role(self, path: str) -> bool:
        if not self.filter_text:
            return True
        wanted = self.filter_text.lower()
        return wanted in path.lower() or wanted == self.role_states.get(path, ("", ""))[0].lower()

    def _matches_task(self, task: TaskInfo) -> bool:
        wanted = self.filter_text.lower()
        return (not wanted or wanted in task.task_id.lower() or wanted in task.host.lower()
                or wanted in task.role_path.lower() or wanted == task.state.lower())

    def _subtree_matches(self, role: RoleInfo) -> bool:
        if self._matches_role(role.full_path):
            return True
        if any(self._matches_task(self.tasks[t]) for t in self._tasks_of.get(role.full_path, ())):
            return True
        return any(self._subtree_matches(child) for child in role.roles)

    # --- labels -----------------------------------------------------------------------

    def _role_label(self, path: str) -> Text:
        role = self.roles[path]
        state, _status = self.role_states.get(path, ("UNKNOWN", ""))
        label = Text(role.name or path, style="bold" if role.kind != "task" else "")
        if role.kind == "call":
            label.append(" (call)", style="dim")
        label.append("  ")
        label.append_text(badge(state))
        return label

    def _task_label(self, task_id: str) -> Text:
        task = self.tasks[task_id]
        label = Text()
        label.append(f"{CRITICAL_MARK} " if task.critical else "  ", style="bold red")
        label.append(task.task_id)
        label.append(f" @{task.host}", style="dim")
        label.append("  ")
        label.append_text(badge(task.state))
        return label

    # --- live updates -----------------------------------------------------------------

    def apply(self, role_states: Mapping[str, tuple[str, str]],
              tasks: Iterable[TaskInfo]) -> set[NodeRef]:
        """Take new role states and task records; relabel only the nodes whose state,
        status or record changed. Returns what changed (shown or filtered out)."""
        changed: set[NodeRef] = set()
        for path, value in role_states.items():
            if path in self.roles and self.role_states.get(path) != value:
                self.role_states[path] = value
                changed.add(NodeRef(NodeKind.ROLE, path))
                node = self._role_nodes.get(path)
                if node is not None:
                    node.set_label(self._role_label(path))
        for task in tasks:
            known = self.tasks.get(task.task_id)
            if known is None or known == task:
                continue  # a task not deployed in this tree (recovery adds none) or unchanged
            self.tasks[task.task_id] = task
            changed.add(NodeRef(NodeKind.TASK, task.task_id))
            node = self._task_nodes.get(task.task_id)
            if node is not None:
                node.set_label(self._task_label(task.task_id))
        return changed

    def apply_task_states(self, states: Mapping[str, tuple[str, str]]) -> set[NodeRef]:
        """Task events (id → (state, status)) applied before the environment is re-read."""
        return self.apply({}, [replace(self.tasks[task_id], state=state, status=status)
                               for task_id, (state, status) in states.items()
                               if task_id in self.tasks])

    def node_of(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        nodes = self._role_nodes if ref.kind is NodeKind.ROLE else self._task_nodes
        return nodes.get(ref.key)

    @property
    def selected(self) -> NodeRef | None:
        node = self.cursor_node
        return node.data if node is not None else None
