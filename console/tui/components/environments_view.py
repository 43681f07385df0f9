"""The environments view, the console's first screen: every environment, live, and the
keys that act on the selected one.

It shows at once and loads in a worker; the engine's events arrive in batches
(console.tui.event_feed) and change rows in place. Actions run in workers too: the
screen never waits on the engine.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from console.client import current_user
from console.tui.bindings import (
    ENVIRONMENTS_BINDINGS,
    TRANSITION_LABELS,
    ReadOnlyKeys,
)
from console.tui.components.confirm import ConfirmModal
from console.tui.components.environments_table import EnvironmentsTable
from console.tui.components.new_environment import NewEnvironment, NewEnvironmentModal
from console.tui.components.result_modal import ResultModal
from console.tui.event_feed import EventFeed
from console.tui.messages import EngineEvents, EngineEventsEnded
from engine import (
    USER_ERRORS,
    EnvEvent,
    EventKind,
    TransitionFailed,
    TransitionResult,
    UnknownEnvironmentError,
)
from engine.api.errors import RemoteEngineError

if TYPE_CHECKING:
    from console.client import AnyEngine

T = TypeVar("T")
# What the engine (in-process or remote) raises for the operator to read.
ENGINE_ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, RemoteEngineError)
DESTROYED = "destroyed"


def describe(result: TransitionResult) -> str:
    """One line for a notification: what was done to which environment, where it is now."""
    run = f", run {result.run_number}" if result.run_number else ""
    failed = f", {len(result.failed)} task(s) failed" if result.failed else ""
    return f"{result.environment_id}: {result.event} → {result.state}{run}{failed}"


class EnvironmentsView(ReadOnlyKeys, Screen[None]):
    BINDINGS = ENVIRONMENTS_BINDINGS

    def __init__(self, engine: AnyEngine, *, readonly: bool) -> None:
        super().__init__()
        self.engine = engine
        self.readonly = readonly
        self.loaded = False  # the first list has been shown
        self._feed: EventFeed | None = None
        self._gone: set[str] = set()  # destroyed: never shown again (ids are never reused)

    def compose(self) -> ComposeResult:
        yield Header()
        yield EnvironmentsTable(id="environments")
        yield Footer()

    @property
    def table(self) -> EnvironmentsTable:
        return self.query_one(EnvironmentsTable)

    def on_mount(self) -> None:
        where = self.app.sub_title  # the core's address or the working directory
        self.sub_title = f"environments · {where}" + (" (read-only)" if self.readonly else "")
        self.run_worker(self._load(), name="load environments", group="load")
        self.set_interval(1.0, self.table.tick, name="elapsed")

    async def _load(self) -> None:
        """Subscribe first, then list: nothing that happens in between is missed."""
        subscription = await self._engine_call("subscribe", self.engine.subscribe)
        if subscription is not None:
            self._feed = EventFeed(subscription, self.post_message)
            self.run_worker(self._feed.run(), name="engine events", group="events")
        infos = await self._engine_call("list environments", self.engine.list_environments)
        for info in infos or []:
            if info.id not in self._gone:
                self.table.show(info)
        self.loaded = True

    def close_feed(self) -> None:
        """Stop following the engine's events (the app closes the engine next)."""
        if self._feed is not None:
            self._feed.close()
            self._feed = None

    def on_unmount(self) -> None:
        self.close_feed()

    # -- events -------------------------------------------------------------------------

    def on_engine_events(self, message: EngineEvents) -> None:
        """One batch: task counts change here; environments that changed are re-read once."""
        table = self.table
        reread: set[str] = set()
        counted: set[str] = set()
        for event in message.events:
            if event.kind is EventKind.ENVIRONMENT and event.message == DESTROYED:
                self._gone.add(event.environment_id)
                table.drop(event.environment_id)
                reread.discard(event.environment_id)
                continue
            if event.environment_id in self._gone:
                continue  # the last events of a destroyed environment
            row = table.rows_by_id.get(event.environment_id)
            if event.kind is EventKind.TASK and row is not None and row.task_changed(event):
                counted.add(row.id)
            elif event.kind is not EventKind.CALL or row is None:
                reread.add(event.environment_id)
        for environment_id in counted - reread:
            if environment_id in table.rows_by_id:
                table.update(table.rows_by_id[environment_id], "tasks", "hosts")
        if reread:
            self.run_worker(self._reread(reread), group="reread")

    async def _reread(self, environment_ids: set[str]) -> None:
        for environment_id in sorted(environment_ids):
            try:
                info = await self.engine.get_environment(environment_id)
                if environment_id in self._gone:  # destroyed while we asked
                    continue
            except UnknownEnvironmentError:
                self.table.drop(environment_id)
                continue
            except ENGINE_ERRORS as error:
                self.notify(f"reading {environment_id}: {error}", severity="error")
                continue
            self.table.show(info)

    def on_engine_events_ended(self, message: EngineEventsEnded) -> None:
        self.notify(f"{message.reason}; the table no longer updates", severity="error",
                    timeout=30)

    # -- actions ------------------------------------------------------------------------

    def _refused(self, what: str) -> bool:
        """Read-only mode: say no to `what`, with a notification."""
        if self.readonly:
            self.notify(f"read-only console: {what} refused", severity="warning")
        return self.readonly

    def _selected(self) -> str | None:
        selected = self.table.selected
        if selected is None:
            self.notify("no environment selected", severity="warning")
        return selected

    def action_transition(self, event: str) -> None:
        transition = EnvEvent(event)
        environment_id = self._selected()
        if environment_id is None or self._refused(f"{TRANSITION_LABELS[transition]} "
                                                   f"({transition.value}) of {environment_id}"):
            return
        self.run_worker(self._transition(environment_id, transition), group="actions",
                        name=f"{transition.value} {environment_id}")

    async def _transition(self, environment_id: str, event: EnvEvent) -> None:
        row = self.table.rows_by_id.get(environment_id)
        if row is not None:
            row.begin(event.value)
            self.table.update(row, "transition")
        try:
            result = await self._engine_call(
                f"{event.value} of {environment_id}",
                lambda: self.engine.control_environment(environment_id, event, current_user()))
        finally:
            if row is not None:
                row.end()
                if environment_id in self.table.rows_by_id:
                    self.table.update(row, "transition")
        if result is not None:
            self.notify(describe(result), title="transition done",
                        severity="warning" if result.failed else "information")
            if result.failed:  # non-critical tasks failed: the transition went through
                self.app.push_screen(ResultModal(f"{event.value} of {environment_id}",
                                                 describe(result), result))
            await self._reread({environment_id})  # a failure is re-read on its event

    def action_destroy(self) -> None:
        environment_id = self._selected()
        if environment_id is None or self._refused(f"destroying {environment_id}"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._destroy(environment_id), group="actions",
                                name=f"destroy {environment_id}")
        self.app.push_screen(ConfirmModal(f"Destroy environment {environment_id}? "
                                          "Its tasks are stopped and killed.", "Destroy"),
                             answered)

    async def _destroy(self, environment_id: str) -> None:
        row = self.table.rows_by_id.get(environment_id)
        if row is not None:
            row.begin("DESTROY")
            self.table.update(row, "transition")
        result = await self._engine_call(
            f"destroying {environment_id}",
            lambda: self.engine.destroy_environment(environment_id, current_user()))
        if result is None:
            if row is not None and environment_id in self.table.rows_by_id:
                row.end()
                self.table.update(row, "transition")
            return
        self._gone.add(environment_id)
        self.table.drop(environment_id)
        self.notify(f"{environment_id} destroyed", title="destroy done")

    def action_new_environment(self) -> None:
        if self._refused("creating an environment"):
            return
        self.run_worker(self._ask_new(), group="actions", name="workflow templates")

    async def _ask_new(self) -> None:
        templates = await self._engine_call("listing the workflow templates",
                                            self.engine.list_workflow_templates)
        if templates is None:
            return
        # the form's pickers: agents' machine ids for `hosts`, the inventory's detectors
        agents = await self._engine_call("listing the agents", self.engine.list_agents) or []
        detectors = await self._engine_call("listing the detectors",
                                            self.engine.list_detectors) or []
        workdir = getattr(self.app, "workdir", None)

        def answered(request: NewEnvironment | None) -> None:
            if request is not None:
                self.run_worker(self._create(request), group="actions",
                                name=f"create {request.workflow}")
        self.app.push_screen(NewEnvironmentModal(
            templates, hosts=sorted({agent.machine_id for agent in agents}),
            detectors=detectors, root=workdir.root if workdir is not None else None), answered)

    async def _create(self, request: NewEnvironment) -> None:
        self.notify(f"creating {request.workflow}…")
        info = await self._engine_call(
            f"creating {request.workflow}",
            lambda: self.engine.create_environment(request.workflow, request.variables,
                                                   emulate=request.emulate,
                                                   user=current_user()))
        if info is not None and info.id not in self._gone:
            self.table.show(info)
            self.notify(f"{info.id} created: {info.state}", title="environment created")

    @on(EnvironmentsTable.RowSelected)
    def _open_environment(self, message: DataTable.RowSelected) -> None:
        """Enter (or a click on the selected row): the environment's own view."""
        # its module (and the tree's widgets) load on first use
        from console.tui.environment_screen import EnvironmentScreen

        environment_id = message.row_key.value
        if environment_id is not None:
            self.app.push_screen(EnvironmentScreen(self.engine, environment_id,
                                                   readonly=self.readonly))

    # -- talking to the engine ----------------------------------------------------------

    async def _engine_call(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call()`'s result, or None once its failure is shown: a failed transition with
        its table of tasks, anything else as a notification naming what failed."""
        try:
            return await call()
        except TransitionFailed as error:
            message = str(error).splitlines()[0]
            self.notify(message, title=f"{what} failed", severity="error", timeout=10)
            self.app.push_screen(ResultModal(f"{what} failed", message, error.result))
        except ENGINE_ERRORS as error:
            self.notify(str(error), title=f"{what} failed", severity="error", timeout=10)
        except Exception as error:  # noqa: BLE001 - a bug must not take the shift's screen away
            self.log.error(f"{what}: {error!r}")
            self.notify(f"{type(error).__name__}: {error}", title=f"{what}: internal error",
                        severity="error", timeout=30)
        return None
