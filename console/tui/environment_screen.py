"""The environment view: one environment's live role tree, the selection's details, the
last transition's result table, its transitions on single keys and `l` for a task's log.

Engine events come in batches at most every 100 ms (the console's EventFeed) and are
collapsed per task in an EventBatch. A batch's task states and statuses go straight onto
the tree's nodes (no read: the events tell them). What the events cannot tell (the
roles' aggregated states, the run, the result table) comes from a read of the
environment, at most one under way and at most one every READ_INTERVAL while task
events flow (an environment event asks for one at once); the task records in the read
(pid, host, port) are compared only after an environment event, or every
FULL_READ_INTERVAL, since the events keep their state current. A transition runs in a
worker; its table replaces the last one.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Static, Tree

from console.client import current_user
from console.tui import long_lived
from console.tui.bindings import (
    TRANSITION_KEYS,
    TRANSITION_LABELS,
    ReadOnlyKeys,
)
from console.tui.detail_pane import DetailPane
from console.tui.event_batch import EventBatch
from console.tui.event_feed import EventFeed
from console.tui.log_screen import LogScreen
from console.tui.messages import EngineEvents, EngineEventsEnded
from console.tui.result_table import ResultTable
from console.tui.role_tree import NodeKind, NodeRef, RoleTree
from console.tui.stable_footer import StableFooter
from console.tui.state_badge import badge
from engine import USER_ERRORS, EnvEvent, EnvironmentInfo, TransitionFailed

if TYPE_CHECKING:
    from console.client import AnyEngine

# What an engine call can fail with that the operator reads: the engine's user errors, and
# RuntimeError for an engine out of reach (RemoteEngineError: a core that stopped; a
# ThreadedEngine already closed).
ENGINE_ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, RuntimeError)

READ_INTERVAL = 0.25  # s: the least time between two reads of the environment
FULL_READ_INTERVAL = 2.0  # s: the task records of a read compared at least this often

ENVIRONMENT_BINDINGS: list[Binding] = [
    *(Binding(key, f"transition({event.value!r})", TRANSITION_LABELS[event])
      for key, event in TRANSITION_KEYS.items()),
    Binding("l", "task_log", "Log"),
    Binding("slash", "filter", "Filter", key_display="/"),
    Binding("escape", "back", "Back"),
]


class EnvironmentScreen(ReadOnlyKeys, Screen[None]):
    CSS_PATH = "environment_screen.tcss"
    BINDINGS = ENVIRONMENT_BINDINGS

    def __init__(self, engine: AnyEngine, environment_id: str, *, readonly: bool = False) -> None:
        super().__init__()
        self.engine = engine
        self.environment_id = environment_id
        self.readonly = readonly
        self.info: EnvironmentInfo | None = None
        self.batch = EventBatch(environment_id)
        self.updates = 0  # event batches applied, for the status line and tests
        self.reads = 0  # reads of the environment applied, for tests
        self._feed: EventFeed | None = None
        self._reading = False  # a read of the environment is under way
        self._read_again = False  # …and another is wanted after it
        self._full_wanted = False  # the next read compares the task records too
        self._read_timer: Timer | None = None
        self._last_read = self._last_full = 0.0
        self._summary = Text()
        self._frozen = False  # the objects alive at load time are out of the collector's way
        self._transition = ""  # the one under way, if any
        self._left = False  # unmounted: a subscription still arriving is closed at once

    def compose(self) -> ComposeResult:
        yield Static(f"environment {self.environment_id}: loading…", id="summary")
        with Horizontal(id="panes"):
            yield RoleTree(id="roles")
            with VerticalScroll(id="detail-scroll"):
                yield DetailPane(id="detail")
        yield ResultTable(id="result")
        yield Input(placeholder="filter by role path, task id, host or state (enter: keep, "
                                "escape: clear)", id="filter")
        yield StableFooter()

    async def on_mount(self) -> None:
        self.query_one(RoleTree).border_title = "roles and tasks"
        self.query_one("#detail-scroll").border_title = "details"
        self.query_one(RoleTree).focus()
        self.run_worker(self._load(), group="load", exit_on_error=False)

    async def on_unmount(self) -> None:
        self._left = True
        if self._frozen:
            self._frozen = False
            long_lived.release()
        if self._feed is not None:
            self._feed.close()

    # --- loading and live updates -------------------------------------------------------

    async def _load(self) -> None:
        """Subscribe first (no change is missed), then read the environment and its tree."""
        subscription = await self.engine.subscribe()
        if self._left:
            subscription.close()
            return
        self._feed = EventFeed(subscription, self.post_message)
        try:
            info, root = await asyncio.gather(self.engine.get_environment(self.environment_id),
                                              self.engine.get_workflow_tree(self.environment_id))
        except ENGINE_ERRORS as error:
            self._gone(str(error))
            return
        tree = self.query_one(RoleTree)
        tree.load(root, info.tasks, info.roles)
        self._show_environment(info)
        self._show_selection()
        if not self._left:
            long_lived.hold()  # thousands of nodes and records: out of the collector's way
            self._frozen = True
        self.run_worker(self._feed.run(), group="events", exit_on_error=False)

    def on_engine_events(self, message: EngineEvents) -> None:
        for event in message.events:
            self.batch.add(event)
        self._flush()

    def on_engine_events_ended(self, message: EngineEventsEnded) -> None:
        if not self._left:
            self._gone(f"no live updates: {message.reason}")

    def _flush(self) -> None:
        """Apply what came: the task states at once, a read for the rest."""
        if not self.batch:
            return
        batch = self.batch.take()
        tree = self.query_one(RoleTree)
        if batch.tasks:
            changed = tree.apply_task_states(batch.tasks)
            if tree.selected in changed:
                self._show_selection()
        self.updates += 1
        self._request_read(full=batch.environment)

    def _request_read(self, *, full: bool = False) -> None:
        """Read the environment now, or once READ_INTERVAL has passed since the last read
        (`full`: at once), or right after the read under way."""
        self._full_wanted |= full
        if self._reading:
            self._read_again = True
            return
        wait = 0.0 if self._full_wanted else self._last_read + READ_INTERVAL - time.monotonic()
        if wait > 0:
            if self._read_timer is None:
                self._read_timer = self.set_timer(wait, self._timed_read)
            return
        if self._read_timer is not None:
            self._read_timer.stop()
            self._read_timer = None
        self._reading = True
        self.run_worker(self._read(), group="read", exit_on_error=False)

    def _timed_read(self) -> None:
        self._read_timer = None
        self._request_read()

    async def _read(self) -> None:
        tree = self.query_one(RoleTree)
        try:
            now = time.monotonic()
            full = self._full_wanted or now - self._last_full >= FULL_READ_INTERVAL
            self._full_wanted = False
            self._last_read = now
            serial = tree.event_serial
            try:
                info = await self.engine.get_environment(self.environment_id)
            except ENGINE_ERRORS as error:
                self._gone(str(error))
                return
            changed = tree.apply(info.roles, info.tasks if full else (), read_after=serial)
            if full:
                self._last_full = now
            self._show_environment(info)
            if tree.selected in changed:
                self._show_selection()
            self.reads += 1
        finally:
            self._reading = False
            if self._read_again and not self._left:
                self._read_again = False
                self.call_later(self._request_read)

    def _gone(self, why: str) -> None:
        self._summary = Text()
        self.query_one("#summary", Static).update(Text(f"environment {self.environment_id}: "
                                                       f"{why}", style="bold red"))

    def _show_environment(self, info: EnvironmentInfo) -> None:
        self.info = info
        summary = Text(f"environment {info.id}  ", style="bold")
        summary.append_text(badge(info.state))
        summary.append(f"  run {info.current_run_number or '-'}  workflow {info.workflow}  "
                       f"tasks {len(info.tasks)}  by {info.created_by or '-'}")
        if self._transition:
            summary.append(f"  {self._transition}…", style="bold yellow")
        if self.readonly:
            summary.append("  read-only", style="reverse")
        shown = self.query_one("#summary", Static)
        if summary != self._summary:  # one line high: no layout
            self._summary = summary
            shown.update(summary, layout=False)
        self.query_one(ResultTable).show(info.last_transition, info.last_result)

    def _show_selection(self) -> None:
        tree, pane = self.query_one(RoleTree), self.query_one(DetailPane)
        selected = tree.selected
        if selected is None:
            return
        if selected.kind is NodeKind.TASK:
            pane.show_task(tree.tasks[selected.key])
        elif selected.key in tree.roles:
            state, status = tree.role_states.get(selected.key, ("UNKNOWN", ""))
            pane.show_role(tree.roles[selected.key], state, status)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, _message: Tree.NodeHighlighted[NodeRef]) -> None:
        self._show_selection()

    # --- filter -------------------------------------------------------------------------

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("shown")
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, message: Input.Changed) -> None:
        self.query_one(RoleTree).set_filter(message.value)

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, _message: Input.Submitted) -> None:
        self.query_one(RoleTree).focus()

    # --- keys ---------------------------------------------------------------------------

    def action_back(self) -> None:
        """escape: out of the filter (clearing it) first, else back to where we came from."""
        field = self.query_one("#filter", Input)
        if field.has_class("shown"):
            field.value = ""
            field.remove_class("shown")
            self.query_one(RoleTree).set_filter("")
            self.query_one(RoleTree).focus()
            return
        self.app.pop_screen()

    def action_task_log(self) -> None:
        """The log of the task selected in the result table (when it has the focus) or in
        the tree."""
        table, tree = self.query_one(ResultTable), self.query_one(RoleTree)
        if table.has_focus and table.rows_shown:
            row = table.rows_shown[table.cursor_row]
            if row.task_id:
                self.app.push_screen(LogScreen(self.engine, row.task_id, row.log_path))
                return
        selected = tree.selected
        if selected is None or selected.kind is not NodeKind.TASK:
            self.notify("select a task (in the tree or the result table) for its log",
                        severity="warning")
            return
        self.app.push_screen(LogScreen(self.engine, selected.key,
                                       tree.tasks[selected.key].log_path))

    def action_transition(self, event: str) -> None:
        if self.readonly:
            self.notify(f"read-only console: {event} of {self.environment_id} refused",
                        severity="error")
            return
        self.run_worker(self._control(EnvEvent(event)), group="control", exit_on_error=False)

    async def _control(self, event: EnvEvent) -> None:
        self._transition = str(event)
        if self.info is not None:
            self._show_environment(self.info)
        table = self.query_one(ResultTable)
        try:
            result = await self.engine.control_environment(self.environment_id, event,
                                                           current_user())
        except TransitionFailed as failed:
            table.show(str(event), failed.result.rows)
            self.notify(f"{event} of {self.environment_id} failed: "
                        f"{len(failed.result.failed)} task(s) failed", severity="error",
                        timeout=8)
        except ENGINE_ERRORS as error:
            self.notify(f"{event} of {self.environment_id}: {error}", severity="error",
                        timeout=8)
        else:
            table.show(result.event, result.rows)
            self.notify(f"{event} of {self.environment_id}: {result.state}")
        finally:
            self._transition = ""
            self.batch.add_environment_change()
            self._flush()
