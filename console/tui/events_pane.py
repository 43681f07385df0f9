"""The events pane: the engine's live event stream, every environment, newest at the bottom.

`e` shows or hides it at the bottom of whichever view is showing. The app follows
the engine's events from the first time the pane is shown (one subscription, read
in 100 ms batches by EventFeed) and keeps the last EVENT_LINES of them; the pane
draws only the lines in view (Textual's line API), so hundreds of events a second
cost a deque append each and one repaint per batch, never a re-render of the rest.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rich.text import Text
from textual.geometry import Size
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.tui.event_feed import EventFeed
from console.tui.messages import EngineEvents, EngineEventsEnded
from console.tui.state_badge import state_style
from engine import USER_ERRORS, EnvironmentEvent, EventKind
from engine.api import RemoteEngineError

if TYPE_CHECKING:
    from textual.app import App

    from console.client import AnyEngine

EVENT_LINES = 1000
KIND_STYLES: dict[EventKind, str] = {
    EventKind.ENVIRONMENT: "bold", EventKind.TASK: "", EventKind.CALL: "magenta",
}
KIND_WORDS: dict[EventKind, str] = {
    EventKind.ENVIRONMENT: "env ", EventKind.TASK: "task", EventKind.CALL: "call",
}


def event_text(event: EnvironmentEvent) -> Text:
    """One event as a line: local time, environment, kind, task or role, state (coloured),
    status, user, message; a call's function and outcome instead of a state."""
    text = Text(no_wrap=True, end="")
    stamp = event.time.astimezone()
    text.append(f"{stamp:%H:%M:%S}.{stamp.microsecond // 1000:03d}", style="dim")
    text.append(f"  {event.environment_id}  ", style="bold")
    text.append(KIND_WORDS[event.kind], style=KIND_STYLES[event.kind])
    subject = event.task_id or event.role_path
    if event.kind is EventKind.CALL:
        subject = f"{event.role_path} {event.func}".strip()
    if subject:
        text.append(f"  {subject}")
    if event.kind is EventKind.CALL:
        outcome = event.call_status or event.state
        text.append(f"  {outcome}", style="bold red" if "ERROR" in outcome or "TIMEOUT"
                    in outcome else "")
    elif event.state:
        text.append("  ")
        text.append(event.state, style=state_style(event.state))
    if event.status:
        text.append(f"  {event.status}")
    if event.user:
        text.append(f"  {event.user}", style="dim")
    message = event.error or event.message
    if message:
        text.append(f"  {message}", style="red" if event.error else "italic")
    return text


class EventsPane(ScrollView, can_focus=False):
    """The last events of `events` (shared with the EventLog that fills it), docked at
    the bottom of a view above its footer; it follows the newest unless scrolled up."""

    DEFAULT_CSS = """
    EventsPane {
        dock: bottom;
        height: 12;
        margin-bottom: 1;
        overflow-x: hidden;
        border-top: solid $primary;
        border-title-color: $primary;
        background: $surface;
    }
    """

    def __init__(self, events: deque[EnvironmentEvent], note: str = "") -> None:
        super().__init__(id="events-pane")
        self.events = events
        self.border_title = "events · every environment (e hides)"
        self.note = note  # why the stream is not (or no longer) followed, if so

    def on_mount(self) -> None:
        self.anchor()  # at the newest, until the operator scrolls up (and again at the end)
        self.appended()

    def appended(self) -> None:
        """Events came (or went off the front of the deque): one repaint."""
        self.virtual_size = Size(self.scrollable_content_region.width,
                                 len(self.events) + bool(self.note))
        self.refresh()

    def lines(self) -> list[str]:
        """What the pane shows now, as plain text (tests and screen readers)."""
        return [self.render_line(y).text.rstrip() for y in range(self.scrollable_content_region
                                                                  .height)]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index < len(self.events):
            text = event_text(self.events[index])
        elif index == len(self.events) and self.note:
            text = Text(self.note, style="bold red", no_wrap=True, end="")
        else:
            return Strip.blank(width, self.rich_style)
        return Strip(list(text.render(self.app.console))).crop_extend(scroll_x, scroll_x + width, self.rich_style)


class EventLog:
    """The app's own follow of the engine's events for the pane: started the first time
    the pane shows, kept (and the last EVENT_LINES events with it) until the app closes."""

    def __init__(self, app: App[object]) -> None:
        self.app = app
        self.events: deque[EnvironmentEvent] = deque(maxlen=EVENT_LINES)
        self.shown = False
        self.received = 0  # events taken in, for the tests
        self.note = ""
        self._feed: EventFeed | None = None
        self._following = False
        self._pane: EventsPane | None = None

    @property
    def pane(self) -> EventsPane | None:
        pane = self._pane
        return pane if pane is not None and pane.is_attached else None

    def toggle(self, engine: AnyEngine | None) -> None:
        self.shown = not self.shown
        if not self.shown:
            pane, self._pane = self.pane, None
            if pane is not None:
                pane.remove()
            return
        if not self._following and engine is not None:
            self._following = True
            self.app.run_worker(self._follow(engine), name="events pane", group="events-pane",
                                exit_on_error=False)
        self.place(self.app.screen)

    def place(self, screen: Screen[object]) -> None:
        """The pane goes with the operator to the view now showing (not into a dialog:
        it stays under it, on the view the dialog covers)."""
        if not self.shown or isinstance(screen, ModalScreen):
            return
        pane = self.pane
        if pane is not None and pane.screen is screen:
            return
        if pane is not None:
            pane.remove()
        self._pane = EventsPane(self.events, self.note)
        screen.mount(self._pane)

    async def _follow(self, engine: AnyEngine) -> None:
        try:
            subscription = await engine.subscribe()
        except (*USER_ERRORS, RemoteEngineError, RuntimeError) as error:
            self._following = False
            self._ended(f"cannot follow the engine's events: {error} (e twice tries again)")
            return
        self.note = ""
        self._feed = EventFeed(subscription, self._receive)
        await self._feed.run()

    def _receive(self, message: Message) -> bool:
        """EventFeed's batches, on the app's loop: kept, and shown once per batch."""
        if isinstance(message, EngineEvents):
            self.events.extend(message.events)
            self.received += len(message.events)
            pane = self.pane
            if pane is not None:
                pane.appended()
        elif isinstance(message, EngineEventsEnded):
            self._feed, self._following = None, False
            self._ended(f"{message.reason}; e twice follows again")
        return True

    def _ended(self, note: str) -> None:
        self.note = note
        pane = self.pane
        if pane is not None:
            pane.note = note
            pane.appended()

    def close(self) -> None:
        """Stop following (the app closes the engine next)."""
        if self._feed is not None:
            self._feed.close()
            self._feed = None
