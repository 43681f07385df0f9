"""Messages the console's screens and widgets post; the app and views react to them."""
from __future__ import annotations

from textual.message import Message

from engine import EnvironmentEvent


class EngineEvents(Message):
    """A batch of the engine's events, at most one batch per tick of the EventBatcher."""

    def __init__(self, events: list[EnvironmentEvent]) -> None:
        super().__init__()
        self.events = events


class EngineEventsEnded(Message):
    """The engine's event stream ended (the engine closed or the core went away)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
