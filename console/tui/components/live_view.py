"""The base of the console's list views (tasks, hosts, templates): a screen whose tables
are read from the engine at once, again on the engine's batched events and on ctrl+r.

At most one read is under way; events arriving meanwhile ask for exactly one more, so
a storm of events costs one read per batch at most, never one per event.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen

from console.tui import long_lived
from console.tui.bindings import ReadOnlyKeys
from console.tui.components.environments_view import ENGINE_ERRORS
from console.tui.event_feed import EventFeed
from console.tui.messages import EngineEvents, EngineEventsEnded
from engine import EnvironmentEvent

if TYPE_CHECKING:
    from console.client import AnyEngine

T = TypeVar("T")


def show_view(app: App[object], view: type[LiveView] | None) -> None:
    """Back to the environments view (the app's first screen of ours: what is above it goes,
    environment and log screens included), then `view` on top unless it is None.
    Not while a modal asks something: its answer would be lost."""
    if isinstance(app.screen, ModalScreen) or len(app.screen_stack) < 2:
        return
    if view is not None and type(app.screen) is view:
        return
    while len(app.screen_stack) > 2:
        app.pop_screen()
    if view is not None:
        engine = getattr(app, "engine", None)
        if engine is not None:
            app.push_screen(view(engine, readonly=bool(getattr(app, "readonly", False))))


class LiveView(ReadOnlyKeys, Screen[None]):
    """Subclasses give `reload` (read the engine, update the tables in place) and may
    narrow `wants` (which events call for a read) or handle events themselves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]
    FOLLOWS_EVENTS: ClassVar[bool] = True  # subscribe to the engine's events
    VIEW_NAME: ClassVar[str] = ""
    reload: Callable[[], Awaitable[None]]

    def __init__(self, engine: AnyEngine, *, readonly: bool = False) -> None:
        super().__init__()
        self.engine = engine
        self.readonly = readonly
        self.loaded = False  # the first read is shown
        self.reads = 0  # reads done, for tests
        self._feed: EventFeed | None = None
        self._reading = False
        self._again = False
        self._left = False
        self._held = False  # what the first read loaded is out of the collector's way

    def on_mount(self) -> None:
        where = self.app.sub_title
        self.sub_title = f"{self.VIEW_NAME} · {where}" + (" (read-only)" if self.readonly else "")
        self.run_worker(self._start(), group="load", exit_on_error=False)

    async def _start(self) -> None:
        """Subscribe first, then read: nothing that happens in between is missed."""
        if self.FOLLOWS_EVENTS:
            subscription = await self.engine_call("subscribing to events", self.engine.subscribe)
            if subscription is not None:
                if self._left:
                    subscription.close()
                    return
                self._feed = EventFeed(subscription, self.post_message)
                self.run_worker(self._feed.run(), group="events", exit_on_error=False)
        await self._read()

    def request_reload(self) -> None:
        """Read again now, or right after the read under way."""
        if self._reading:
            self._again = True
            return
        self.run_worker(self._read(), group="reload", exit_on_error=False)

    async def _read(self) -> None:
        self._reading = True
        try:
            while not self._left:
                self._again = False
                await self.engine_call(f"reading the {self.VIEW_NAME}", self.reload)
                self.reads += 1
                self.loaded = True
                if not self._held and not self._left:
                    self._held = True
                    long_lived.hold()
                if not self._again:
                    break
        finally:
            self._reading = False

    def action_reload(self) -> None:
        self.request_reload()

    def action_back(self) -> None:
        show_view(self.app, None)

    # -- events -------------------------------------------------------------------------

    def wants(self, events: list[EnvironmentEvent]) -> bool:
        """Whether a batch of events calls for a read."""
        return bool(events)

    def on_engine_events(self, message: EngineEvents) -> None:
        if self.wants(message.events):
            self.request_reload()

    def on_engine_events_ended(self, message: EngineEventsEnded) -> None:
        if not self._left:
            self.notify(f"{message.reason}; the {self.VIEW_NAME} no longer update "
                        "(ctrl+r reads again)", severity="error", timeout=30)

    def close_feed(self) -> None:
        """Stop following the engine's events (leaving, or the app closes the engine)."""
        self._left = True
        if self._feed is not None:
            self._feed.close()
            self._feed = None

    def on_unmount(self) -> None:
        self.close_feed()
        if self._held:
            self._held = False
            long_lived.release()

    # -- talking to the engine ----------------------------------------------------------

    def refused(self, what: str) -> bool:
        """Read-only mode: say no to `what`, with a notification."""
        if self.readonly:
            self.notify(f"read-only console: {what} refused", severity="warning")
        return self.readonly

    async def engine_call(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call()`'s result, or None once its failure is shown as a notification."""
        try:
            return await call()
        except ENGINE_ERRORS as error:
            self.notify(str(error), title=f"{what} failed", severity="error", timeout=10)
        except RuntimeError as error:  # an engine out of reach (closed thread, core gone)
            if not self._left:
                self.notify(str(error), title=f"{what} failed", severity="error", timeout=10)
        return None
