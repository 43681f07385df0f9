"""The live role tree of one environment: roles (aggregators, iterators' children,
task roles, calls) with their aggregated states, tasks as leaves, critical marks.

Built once from the workflow tree (`Engine.get_workflow_tree`); afterwards nothing
rebuilds it. `apply` relabels only the nodes whose state changed, found through maps
from role path and task id to node, and repaints only those of their lines that are on
screen (Tree.set_label schedules a repaint per node). The `/` filter hides and shows
the existing nodes: it picks the
nodes to show from the records (no widget touched) and the tree's lines are laid out
again without the hidden ones, so a keystroke costs a walk over the records, not a
rebuild of thousands of nodes and labels.

The line layout (`_build`) and the label width follow Textual's Tree (textual 8, pinned
below 9 in pyproject.toml): the hidden nodes are left out, and a label's width is its
text's, without rendering it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Region, Size
from textual.widgets import Tree
from textual.widgets._tree import _TreeLine
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
        self._tasks_of: dict[str, list[str]] = {}  # role path → its own tasks' ids, sorted
        self.filter_text = ""
        self._shown: set[TreeNode[NodeRef]] | None = None  # under a filter: the nodes shown
        self.event_serial = 0  # task-event batches applied so far
        self._event_serial_of: dict[str, int] = {}  # task id → the batch that last set it
        self._relabelled: list[TreeNode[NodeRef]] = []  # since the last repaint
        self._label_widths: dict[TreeNode[NodeRef], tuple[int, int]] = {}  # (revision, width)

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
        for ids in self._tasks_of.values():
            ids.sort()
        self._event_serial_of = {}
        self._label_widths = {}
        self.clear()
        self._role_nodes, self._task_nodes = {}, {}
        self.root.data = NodeRef(NodeKind.ROLE, root.full_path)
        self.root.set_label(self._role_label(root.full_path))
        self._role_nodes[root.full_path] = self.root
        self._add_subtree(self.root, root)
        self.root.expand_all()
        self._shown = self._nodes_shown()
        self._invalidate()

    def _add_subtree(self, node: TreeNode[NodeRef], role: RoleInfo) -> None:
        """Below `node`: `role`'s tasks and child roles, every one of them (the filter
        only hides)."""
        for task_id in self._tasks_of.get(role.full_path, ()):
            self._task_nodes[task_id] = node.add_leaf(self._task_label(task_id),
                                                      NodeRef(NodeKind.TASK, task_id))
        for child in role.roles:
            added = node.add(self._role_label(child.full_path),
                             NodeRef(NodeKind.ROLE, child.full_path))
            self._role_nodes[child.full_path] = added
            self._add_subtree(added, child)

    # --- the filter -------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        """Narrow the tree to the roles and tasks matching `text` (all of it when empty)."""
        text = text.strip()
        if text != self.filter_text:
            self.filter_text = text
            self._refilter()

    def _refilter(self) -> None:
        """Lay the lines out again if the nodes to show are not those shown."""
        shown = self._nodes_shown()
        if shown != self._shown:
            self._shown = shown
            self._invalidate()

    def _nodes_shown(self) -> set[TreeNode[NodeRef]] | None:
        """The nodes the filter lets through: those matching, their ancestors, and the whole
        subtree of a matching role; None when there is no filter (everything shows)."""
        root = self._root_role
        if not self.filter_text or root is None:
            return None
        wanted = self.filter_text.lower()
        shown: set[TreeNode[NodeRef]] = {self.root}
        # post-order over the roles (no recursive closure: see _build): a role shows when
        # it matches, an ancestor matched (`whole`), or something below it shows
        order: list[tuple[RoleInfo, bool, str]] = []  # (role, whole, its parent's path)
        stack = [(root, self._role_matches(root.full_path, wanted), "")]
        while stack:
            role, whole, parent = stack.pop()
            order.append((role, whole, parent))
            stack.extend((child, whole or self._role_matches(child.full_path, wanted),
                          role.full_path) for child in role.roles)
        found: set[str] = set()  # the roles with something shown below them
        for role, whole, parent in reversed(order):  # children before their parent
            below = role.full_path in found
            for task_id in self._tasks_of.get(role.full_path, ()):
                if whole or self._task_matches(self.tasks[task_id], wanted):
                    shown.add(self._task_nodes[task_id])
                    below = True
            if below or whole:
                shown.add(self._role_nodes[role.full_path])
                found.add(parent)
        return shown

    def _role_matches(self, path: str, wanted: str) -> bool:
        return wanted in path.lower() or wanted == self.role_states.get(path, ("", ""))[0].lower()

    @staticmethod
    def _task_matches(task: TaskInfo, wanted: str) -> bool:
        return (wanted in task.task_id.lower() or wanted in task.host.lower()
                or wanted in task.role_path.lower() or wanted == task.state.lower())

    def is_shown(self, ref: NodeRef) -> bool:
        """Whether the filter lets `ref`'s node through (folding aside)."""
        node = self.node_of(ref)
        return node is not None and (self._shown is None or node in self._shown)

    def shown_nodes(self) -> Iterator[TreeNode[NodeRef]]:
        """The nodes the filter lets through, depth first (folded ones included)."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            if self._shown is None or node in self._shown:
                yield node
                stack.extend(reversed(node.children))

    # --- the line layout (Textual's Tree._build, less the hidden nodes) ---------------

    def _build(self) -> None:
        shown = self._shown
        lines: list[_TreeLine[NodeRef]] = []
        for node in self._tree_nodes.values():
            node._line = -1  # hidden (or folded away) until laid out below
        # depth first without a recursive closure: such a closure is a reference cycle that
        # would keep every line of every layout alive until the collector's next pass
        top = [self.root] if self.show_root else [
            node for node in self.root._children if shown is None or node in shown]
        stack: list[tuple[list[TreeNode[NodeRef]], TreeNode[NodeRef], bool]] = [
            ([], node, True) for node in reversed(top)]
        while stack:
            path, node, last = stack.pop()
            child_path = [*path, node]
            node._line = len(lines)
            lines.append(_TreeLine(child_path, last))
            if node._expanded:
                children = node._children if shown is None else [
                    child for child in node._children if child in shown]
                for index in range(len(children) - 1, -1, -1):
                    stack.append((child_path, children[index], index == len(children) - 1))
        self._tree_lines_cached = lines
        guide_depth, show_root = self.guide_depth, self.show_root
        width = max((self.get_label_width(line.node)
                     + line._get_guide_width(guide_depth, show_root) for line in lines),
                    default=self.size.width)
        self.virtual_size = Size(width, len(lines))
        if self.cursor_line != -1:
            cursor = self.cursor_node
            while cursor is not None and cursor._line == -1:  # hidden: its nearest shown
                cursor = cursor.parent  # ancestor takes the cursor
            if cursor is not None:
                self.cursor_line = cursor._line
            if self.cursor_line >= len(lines):
                self.cursor_line = -1

    def get_label_width(self, node: TreeNode[NodeRef]) -> int:
        """The label's width from its text, kept per node revision (Tree renders the label
        to measure it: too slow for thousands of lines laid out per filter keystroke)."""
        revision = node._updates
        known = self._label_widths.get(node)
        if known is not None and known[0] == revision:
            return known[1]
        icon = (self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE) \
            if node.allow_expand else ""
        label = node.label
        width = cell_len(icon) + label.cell_len if isinstance(label, Text) \
            else super().get_label_width(node)
        self._label_widths[node] = (revision, width)
        return width

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

    def _relabel(self, node: TreeNode[NodeRef], label: Text) -> None:
        """TreeNode.set_label without its deferred repaint per node: the node's new
        revision makes the tree render its line anew, and `_repaint` asks for the lines on
        screen only."""
        node._label = label
        node._updates += 1
        self._relabelled.append(node)

    def _repaint(self) -> None:
        """Repaint the lines of the relabelled nodes that are on screen, and no other."""
        nodes, self._relabelled = self._relabelled, []
        if self._tree_lines_cached is None:
            return  # laid out (and painted) anew anyway
        top, height, width = self.scroll_offset.y, self.size.height, self.size.width
        for node in nodes:
            if top <= node._line < top + height:
                self.refresh(Region(0, node._line - top, width, 1))

    # --- live updates -----------------------------------------------------------------

    def apply(self, role_states: Mapping[str, tuple[str, str]],
              tasks: Iterable[TaskInfo], *, read_after: int | None = None) -> set[NodeRef]:
        """Take new role states and task records; relabel only the nodes whose state,
        status or record changed. Returns what changed (shown or filtered out).

        `read_after`: the records were read when `event_serial` was this; a task's state
        and status set by a later event batch are newer than the record's, and kept."""
        changed: set[NodeRef] = set()
        for path, value in role_states.items():
            if self.role_states.get(path) != value and path in self.roles:
                self.role_states[path] = value
                changed.add(NodeRef(NodeKind.ROLE, path))
                node = self._role_nodes.get(path)
                if node is not None:
                    self._relabel(node, self._role_label(path))
        for task in tasks:
            known = self.tasks.get(task.task_id)
            if known is None or known == task:
                continue  # a task not deployed in this tree (recovery adds none) or unchanged
            if read_after is not None and self._event_serial_of.get(task.task_id, -1) > read_after:
                task = replace(task, state=known.state, status=known.status)
                if known == task:
                    continue
            self.tasks[task.task_id] = task
            changed.add(NodeRef(NodeKind.TASK, task.task_id))
            node = self._task_nodes.get(task.task_id)
            if node is not None:
                self._relabel(node, self._task_label(task.task_id))
        if changed:
            self._repaint()
            if self.filter_text:
                self._refilter()  # a state filter: what matches may have changed
        return changed

    def apply_task_states(self, states: Mapping[str, tuple[str, str]]) -> set[NodeRef]:
        """One batch of task events (id → (state, status)), applied before (and without)
        a read of the environment; an empty state or status leaves the known one."""
        self.event_serial += 1
        records = []
        for task_id, (state, status) in states.items():
            known = self.tasks.get(task_id)
            if known is not None:
                self._event_serial_of[task_id] = self.event_serial
                records.append(replace(known, state=state or known.state,
                                       status=status or known.status))
        return self.apply({}, records)

    def node_of(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        nodes = self._role_nodes if ref.kind is NodeKind.ROLE else self._task_nodes
        return nodes.get(ref.key)

    @property
    def selected(self) -> NodeRef | None:
        node = self.cursor_node
        return node.data if node is not None else None
