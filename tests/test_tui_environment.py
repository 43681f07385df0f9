"""The console's environment view under Textual's Pilot, against a real engine (on its
own thread, as the console runs it) with real executors and dummy tasks; plus, at the
2000-task scale, the tree's batched updates and filter, and the screen over a synthetic
engine (events applied in place, roles from the engine's reads)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from console.client import AnyEngine, open_engine
from console.tui.detail_pane import DetailPane
from console.tui.environment_screen import EnvironmentScreen
from console.tui.event_batch import EventBatch
from console.tui.log_screen import LogScreen
from console.tui.result_table import ResultTable, failures_first
from console.tui.role_tree import NodeKind, NodeRef, RoleTree
from engine import (
    EnvironmentEvent,
    EnvironmentInfo,
    EventKind,
    EventQueue,
    RoleInfo,
    TaskInfo,
    TaskRow,
    WorkingDirectory,
)
from tests.test_cli_env import Home, working_home
from tests.test_core_api import start_core

SIZE = (140, 40)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Iterator[Home]:
    yield from working_home(tmp_path, monkeypatch, capsys)


class ScreenHost(App[None]):
    """The smallest app that shows an EnvironmentScreen (the console's app pushes it the same);
    it keeps the notifications it showed."""

    def __init__(self, screen: EnvironmentScreen) -> None:
        super().__init__()
        self.environment_screen = screen
        self.notified: list[str] = []

    def notify(self, message: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.notified.append(message)
        super().notify(message, **kwargs)

    def on_mount(self) -> None:
        self.push_screen(self.environment_screen)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str,
                limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        await pilot.pause(0.05)


def tree_of(pilot: Pilot[None]) -> RoleTree:
    return pilot.app.screen.query_one(RoleTree)


def labels(tree: RoleTree) -> list[str]:
    """The label of every node the filter lets through, depth first."""
    return [node.label.plain for node in tree.shown_nodes()]


def task_states(tree: RoleTree) -> set[str]:
    return {task.state for task in tree.tasks.values()}


@asynccontextmanager
async def engine_of(home: Home, variables: dict[str, str] | None = None, *,
                    remote: bool = False) -> AsyncIterator[tuple[AnyEngine, str]]:
    """The engine the console would open (on its own thread, or attached to a `nutshell
    core` when `remote`) with a new environment of the `cli` workflow; at the end the
    executors are stopped and the core with them."""
    workdir = WorkingDirectory(home.root)
    core = await start_core(workdir) if remote else None
    try:
        engine = await open_engine(workdir, threaded=True)
        assert (type(engine).__name__ == "RemoteEngine") == remote
        try:
            info = await engine.create_environment(home.reference, variables)
            yield engine, info.id
        finally:
            await engine.shutdown_agents()
            await engine.close()
    finally:
        if core is not None:
            core.stop()


async def select_task(pilot: Pilot[None], task_id: str) -> None:
    tree = tree_of(pilot)
    node = tree.node_of(NodeRef(NodeKind.TASK, task_id))
    assert node is not None
    tree.move_cursor(node)
    await until(pilot, lambda: pilot.app.screen.query_one(DetailPane).shown == task_id,
                f"the details of {task_id}")


async def test_tree_start_log_and_filter(home: Home) -> None:
    async with engine_of(home) as (engine, env_id):
        screen = EnvironmentScreen(engine, env_id)
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(tree_of(pilot).tasks) == 2, "the two tasks")
            tree = tree_of(pilot)
            shown = labels(tree)
            assert shown[0] == "cli  CONFIGURED"
            assert "host-a1  CONFIGURED" in shown and "host-a2  CONFIGURED" in shown
            assert sum(label.endswith("CONFIGURED") and "@a" in label for label in shown) == 2
            assert all(label.startswith("!") for label in shown if "@a" in label)  # critical

            await pilot.press("s")  # START_ACTIVITY
            await until(pilot, lambda: task_states(tree) == {"RUNNING"}
                        and tree.role_states["cli"][0] == "RUNNING", "RUNNING badges")
            await until(pilot, lambda: any(label == "cli  RUNNING" for label in labels(tree)),
                        "the root's badge RUNNING")
            await until(pilot, lambda: "run 1" in str(screen.query_one("#summary").render()),
                        "run 1 in the summary")
            table = screen.query_one(ResultTable)
            await until(pilot, lambda: table.transition == "START_ACTIVITY"
                        and table.row_count == 2, "START's result table")
            # the badges may come first from the transition's own refresh; the events follow
            await until(pilot, lambda: screen.updates >= 1 and screen.batch.events >= 2,
                        "the task events applied in a batch")
            assert all(row.before == "CONFIGURED" and row.after == "RUNNING" and not row.failed
                       for row in table.rows_shown)

            task = min(tree.tasks.values(), key=lambda t: t.host)
            await select_task(pilot, task.task_id)
            pane = screen.query_one(DetailPane)
            details = pane.plain()
            assert details["task"] == task.task_id and details["pid"] == str(task.pid)
            assert details["log"] == task.log_path and details["critical"] == "yes"
            assert details["state"] == "RUNNING / ACTIVE" and details["host"].startswith("a1")
            assert details["control port"] == str(task.control_port)
            tree.move_cursor(tree.root)
            await until(pilot, lambda: pane.shown == "cli", "the root role's details")
            assert pane.plain()["state"].startswith("RUNNING") and "  fail_on" in pane.plain()
            host_role = tree.node_of(NodeRef(NodeKind.ROLE, "cli.host-a1"))
            assert host_role is not None and host_role.is_expanded
            tree.move_cursor(host_role)
            await pilot.press("space")  # folding
            assert not host_role.is_expanded
            await pilot.press("space")
            assert host_role.is_expanded
            await select_task(pilot, task.task_id)
            await pilot.press("l")
            await until(pilot, lambda: isinstance(pilot.app.screen, LogScreen)
                        and "START run=1" in pilot.app.screen.text, "START in the task's log")
            await pilot.press("escape")
            await until(pilot, lambda: pilot.app.screen is screen, "back on the environment")

            await pilot.press("slash")
            await until(pilot, lambda: isinstance(pilot.app.focused, Input), "the filter field")
            await pilot.press(*"host-a2")  # s and t go to the field, not to START and STOP
            await until(pilot, lambda: tree.filter_text == "host-a2", "the filter host-a2")
            narrowed = labels(tree)
            assert "host-a2  RUNNING" in narrowed and not any("host-a1" in x for x in narrowed)
            assert sum("@a2" in label for label in narrowed) == 1
            assert not any("@a1" in label for label in narrowed)
            await pilot.press("enter")  # keeps the filter, back to the tree
            assert tree.has_focus and tree.filter_text == "host-a2"
            await pilot.press("escape")  # clears the filter
            assert tree.filter_text == "" and len(labels(tree)) == len(shown)
            assert screen.query_one(ResultTable).transition == "START_ACTIVITY"  # no STOP sent
            await pilot.press("escape")  # back: the host app's default screen
            await until(pilot, lambda: pilot.app.screen is not screen, "the screen left")


@pytest.mark.parametrize("remote", [False, True], ids=["threaded", "remote"])
async def test_failing_start_shows_failed_rows_with_their_logs(home: Home, remote: bool) -> None:
    async with engine_of(home, {"fail_on": "START"}, remote=remote) as (engine, env_id):
        screen = EnvironmentScreen(engine, env_id)
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(tree_of(pilot).tasks) == 2, "the two tasks")
            await pilot.press("s")
            table = screen.query_one(ResultTable)
            await until(pilot, lambda: table.transition == "START_ACTIVITY"
                        and table.row_count == 2, "START's result table")
            rows = table.rows_shown
            assert all(row.failed and row.after == "ERROR" and "START" in row.reason
                       and row.log_path.endswith(".log") for row in rows)
            assert "2 failed" in str(table.border_title)
            shown = [str(cell) for cell in table.get_row_at(0)]
            assert rows[0].task_id in shown and rows[0].log_path in shown
            await until(pilot, lambda: tree_of(pilot).role_states["cli"][0] == "ERROR",
                        "the root in ERROR")
            table.focus()
            await pilot.press("down")  # the second failed row
            await pilot.press("l")
            await until(pilot, lambda: isinstance(pilot.app.screen, LogScreen)
                        and pilot.app.screen.task_id == rows[1].task_id
                        and "START" in pilot.app.screen.text, "the failed task's log")
            await pilot.press("escape")
            await until(pilot, lambda: pilot.app.screen is screen, "back on the environment")
            await pilot.press("R")  # RECOVER: ERROR → DEPLOYED
            await until(pilot, lambda: screen.info is not None and screen.info.state == "DEPLOYED",
                        "DEPLOYED after RECOVER")


async def test_readonly_refuses_transitions(home: Home) -> None:
    async with engine_of(home) as (engine, env_id):
        screen = EnvironmentScreen(engine, env_id, readonly=True)
        async with ScreenHost(screen).run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(tree_of(pilot).tasks) == 2, "the two tasks")
            await pilot.press("s")
            app = pilot.app
            assert isinstance(app, ScreenHost)
            await until(pilot, lambda: any(f"read-only console: START_ACTIVITY of {env_id} "
                                           "refused" in text for text in app.notified), "a refusal")
            await pilot.pause(0.5)
            assert (await engine.get_environment(env_id)).state == "CONFIGURED"
            assert task_states(tree_of(pilot)) == {"CONFIGURED"}


# ---------------------------------------------------------------- synthetic: 2000 tasks

HOSTS = 20
PER_HOST = 100


def synthetic() -> tuple[RoleInfo, list[TaskInfo]]:
    """A root with 20 host roles of 100 task roles each, a task per task role."""
    def role(name: str, path: str, kind: str, children: tuple[RoleInfo, ...] = (),
             tasks: tuple[str, ...] = ()) -> RoleInfo:
        return RoleInfo(name=name, full_path=path, kind=kind, state="CONFIGURED",
                        status="ACTIVE", task_ids=tasks, roles=children, defaults={}, vars={},
                        user_vars={}, consolidated_stack={})
    tasks: list[TaskInfo] = []
    hosts = []
    for h in range(HOSTS):
        leaves = []
        for t in range(PER_HOST):
            path = f"big.h{h}.t{t}"
            task = TaskInfo(task_id=f"task-{h}-{t}", role_path=path, class_name="dummy",
                            host=f"h{h}", agent=f"h{h}", state="CONFIGURED", status="ACTIVE",
                            pid=1000 + h * PER_HOST + t, control_port=None,
                            critical=True, log_path="")
            tasks.append(task)
            leaves.append(role(f"t{t}", path, "task", tasks=(task.task_id,)))
        hosts.append(role(f"h{h}", f"big.h{h}", "aggregator", tuple(leaves)))
    return role("big", "big", "aggregator", tuple(hosts)), tasks


class TreeHost(App[None]):
    def compose(self):  # type: ignore[no-untyped-def]
        yield RoleTree(id="roles")


async def test_2000_task_events_touch_only_the_affected_nodes() -> None:
    root, tasks = synthetic()
    async with TreeHost().run_test(size=SIZE) as pilot:
        tree = pilot.app.query_one(RoleTree)
        tree.load(root, tasks, {})
        await pilot.pause()
        refs = [NodeRef(NodeKind.TASK, t.task_id) for t in tasks] + \
            [NodeRef(NodeKind.ROLE, path) for path in tree.roles]
        nodes = {(ref.kind.value, ref.key): tree.node_of(ref) for ref in refs}
        assert None not in nodes.values()
        assert len(nodes) == 2000 + 2000 + HOSTS + 1
        batch = EventBatch("big")
        # 2000 events in 10 batches of 200: each batch, the first 50 tasks of one host, four
        # changes each (the last wins); an event of another environment is ignored
        for round_ in range(10):
            host = round_ % HOSTS
            for change in ("STANDBY", "CONFIGURED", "ERROR", "RUNNING"):
                for t in range(50):
                    batch.add(EnvironmentEvent(EventKind.TASK, "big", change,
                                               task_id=f"task-{host}-{t}", status="ACTIVE"))
            batch.add(EnvironmentEvent(EventKind.TASK, "other", "ERROR", task_id="task-0-99"))
            taken = batch.take()
            assert len(taken.tasks) == 50 and not taken.environment and not batch
            before = {key: node._updates for key, node in nodes.items()}
            changed = tree.apply_task_states(taken.tasks)
            changed |= tree.apply({f"big.h{host}": ("MIXED", "ACTIVE")}, [])
            expected = {NodeRef(NodeKind.TASK, f"task-{host}-{t}") for t in range(50)}
            assert changed == expected | {NodeRef(NodeKind.ROLE, f"big.h{host}")}
            touched = {key for key, node in nodes.items() if node._updates != before[key]}
            assert touched == {("task", f"task-{host}-{t}") for t in range(50)} \
                | {("role", f"big.h{host}")}
            assert tree.apply_task_states(taken.tasks) == set()  # the same again: nothing
        assert batch.events == 2000 + 0  # the other environment's were not counted
        await pilot.pause()
        def node(task_id: str) -> Any:
            return tree.node_of(NodeRef(NodeKind.TASK, task_id))
        assert node("task-3-7") is nodes[("task", "task-3-7")]  # never rebuilt
        assert node("task-3-7").label.plain.endswith("RUNNING")
        assert node("task-3-70").label.plain.endswith("CONFIGURED")


async def test_filter_narrows_by_state_and_keeps_ancestors() -> None:
    root, tasks = synthetic()
    tasks = [replace(t, state="ERROR") if t.task_id == "task-5-5" else t for t in tasks]
    async with TreeHost().run_test(size=SIZE) as pilot:
        tree = pilot.app.query_one(RoleTree)
        tree.load(root, tasks, {})
        tree.set_filter("error")
        assert labels(tree) == ["big  CONFIGURED", "h5  CONFIGURED", "t5  CONFIGURED",
                                "! task-5-5 @h5  ERROR"]
        tree.set_filter("big.h7")  # a role path: its whole subtree
        assert len(labels(tree)) == 2 + 2 * PER_HOST
        tree.set_filter("")
        assert len(labels(tree)) == 1 + HOSTS + 2 * HOSTS * PER_HOST


def test_failed_rows_come_first_in_the_engine_order() -> None:
    rows = [TaskRow("t1", "r.a", "a1", "CONFIGURED", "RUNNING"),
            TaskRow("t2", "r.b", "a1", "CONFIGURED", "ERROR", "died", 1, "/l/t2.log"),
            TaskRow("t3", "r.c", "a2", "CONFIGURED", "RUNNING"),
            TaskRow("t4", "r.d", "a2", "CONFIGURED", "ERROR", "timeout")]
    assert [row.task_id for row in failures_first(rows)] == ["t2", "t4", "t1", "t3"]


async def test_filter_hides_and_shows_the_same_nodes() -> None:
    root, tasks = synthetic()
    async with TreeHost().run_test(size=SIZE) as pilot:
        tree = pilot.app.query_one(RoleTree)
        tree.load(root, tasks, {})
        await pilot.pause()
        everything = 1 + HOSTS + 2 * HOSTS * PER_HOST
        assert tree.last_line + 1 == everything
        refs = [NodeRef(NodeKind.TASK, t.task_id) for t in tasks] + \
            [NodeRef(NodeKind.ROLE, path) for path in tree.roles]
        nodes = {ref: tree.node_of(ref) for ref in refs}
        hidden_task = NodeRef(NodeKind.TASK, "task-3-5")
        tree.move_cursor(nodes[hidden_task])
        await pilot.pause()

        tree.set_filter("big.h7")  # a role path: that role, its subtree and the root
        assert tree.last_line + 1 == 2 + 2 * PER_HOST
        assert tree.is_shown(NodeRef(NodeKind.ROLE, "big.h7"))
        assert tree.is_shown(NodeRef(NodeKind.TASK, "task-7-99"))
        assert not tree.is_shown(hidden_task) and nodes[hidden_task].line == -1
        assert tree.cursor_node is tree.root  # the cursor's task hidden: its shown ancestor
        tree.set_filter("h7 ")  # the same after stripping: nothing laid out again
        assert tree.last_line + 1 == 2 + 2 * PER_HOST

        tree.set_filter("")
        assert tree.last_line + 1 == everything
        assert all(tree.node_of(ref) is node for ref, node in nodes.items())  # never rebuilt
        assert nodes[hidden_task].line > 0

        tree.set_filter("error")  # a state filter follows the states as they change
        assert labels(tree) == ["big  CONFIGURED"]
        tree.apply_task_states({"task-9-9": ("ERROR", "ACTIVE")})
        assert labels(tree) == ["big  CONFIGURED", "h9  CONFIGURED", "t9  CONFIGURED",
                                "! task-9-9 @h9  ERROR"]
        assert tree.last_line + 1 == 4
        tree.apply_task_states({"task-9-9": ("RUNNING", "")})  # an empty status keeps it
        assert labels(tree) == ["big  CONFIGURED"]
        assert tree.tasks["task-9-9"].status == "ACTIVE"


class SyntheticEngine:
    """The engine calls EnvironmentScreen makes, over the 2000 synthetic tasks: what a
    real 2000-task environment would answer, without 2000 processes. `gate` holds every
    read of the environment after the first until it is set."""

    def __init__(self) -> None:
        self.root, tasks = synthetic()
        self.tasks = {task.task_id: task for task in tasks}
        self.roles: dict[str, tuple[str, str]] = {}
        stack = [self.root]
        while stack:
            role = stack.pop()
            self.roles[role.full_path] = (role.state, role.status)
            stack.extend(role.roles)
        self.subscriptions: list[Any] = []
        self.gate = asyncio.Event()
        self.reads = 0

    async def subscribe(self) -> Any:
        queue = EventQueue()
        self.subscriptions.append(queue)
        return queue

    async def get_environment(self, environment_id: str) -> EnvironmentInfo:
        self.reads += 1
        if self.reads > 1:
            await self.gate.wait()
        return EnvironmentInfo(
            id=environment_id, state="RUNNING", workflow="synthetic", created_by="test",
            created=datetime.now(UTC), current_run_number=1, last_run_number=1,
            tasks=tuple(self.tasks.values()), last_transition="", last_result=(),
            roles=dict(self.roles))

    async def get_workflow_tree(self, environment_id: str) -> RoleInfo:
        return self.root

    def change(self, task_id: str, state: str) -> None:
        """A task changes state, its task role and the roles above it aggregate (as §1.5
        would for these: one host MIXED, the root MIXED), one TASK event."""
        task = self.tasks[task_id] = replace(self.tasks[task_id], state=state)
        host = task.role_path.rpartition(".")[0]
        self.roles.update({task.role_path: (state, "ACTIVE"), host: ("MIXED", "ACTIVE"),
                           "big": ("MIXED", "ACTIVE")})
        for queue in self.subscriptions:
            queue.put(EnvironmentEvent(EventKind.TASK, "big", state, task_id=task_id,
                                       role_path=task.role_path, status="ACTIVE"))


async def test_2000_task_screen_applies_event_batches_in_place() -> None:
    engine = SyntheticEngine()
    screen = EnvironmentScreen(engine, "big")  # type: ignore[arg-type]  # the synthetic engine
    async with ScreenHost(screen).run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(tree_of(pilot).tasks) == 2000, "the 2000 tasks")
        tree = tree_of(pilot)
        refs = [NodeRef(NodeKind.TASK, t) for t in engine.tasks] + \
            [NodeRef(NodeKind.ROLE, path) for path in tree.roles]
        nodes = {ref: tree.node_of(ref) for ref in refs}
        await select_task(pilot, "task-4-7")
        pane = screen.query_one(DetailPane)
        assert pane.plain()["state"] == "CONFIGURED / ACTIVE"
        before = {ref: node._updates for ref, node in nodes.items()}  # type: ignore[union-attr]

        for t in range(50):  # half of host 4's tasks start; the reads of the engine wait
            engine.change(f"task-4-{t}", "RUNNING")
        task_node = nodes[NodeRef(NodeKind.TASK, "task-4-7")]
        assert task_node is not None
        await until(pilot, lambda: all(tree.tasks[f"task-4-{t}"].state == "RUNNING"
                                       for t in range(50)), "the events' states on the tree")
        await until(pilot, lambda: task_node.label.plain.endswith("RUNNING")
                    and pane.plain()["state"] == "RUNNING / ACTIVE",
                    "the selected task's badge and details from the events alone")
        assert engine.reads == 2  # the load, and one read held at the gate
        assert tree.role_states["big.h4"] == ("CONFIGURED", "ACTIVE")  # roles: from reads

        engine.gate.set()
        host = nodes[NodeRef(NodeKind.ROLE, "big.h4")]
        assert host is not None
        await until(pilot, lambda: host.label.plain == "h4  MIXED"
                    and tree.root.label.plain == "big  MIXED", "the roles above aggregated")
        await until(pilot, lambda: tree.role_states["big.h4.t49"][0] == "RUNNING",
                    "the task roles")
        tree.move_cursor(host)
        await until(pilot, lambda: pane.shown == "big.h4"
                    and pane.plain()["state"] == "MIXED / ACTIVE", "the host role's details")
        touched = {ref for ref, node in nodes.items()
                   if node is not None and node._updates != before[ref]}
        changed = {NodeRef(NodeKind.TASK, f"task-4-{t}") for t in range(50)} \
            | {NodeRef(NodeKind.ROLE, f"big.h4.t{t}") for t in range(50)} \
            | {NodeRef(NodeKind.ROLE, "big.h4"), NodeRef(NodeKind.ROLE, "big")}
        # the changed tasks, their roles and the roles above; the cursor's old and new lines
        assert changed <= touched <= changed | {NodeRef(NodeKind.TASK, "task-4-7")}
        assert all(tree.node_of(ref) is node for ref, node in nodes.items())  # never rebuilt
