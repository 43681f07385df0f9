"""The engine's event stream, handed to the UI in batches.

Thousands of task changes a second must not become thousands of screen updates:
events read from the subscription wait in a buffer, and a batch is posted at most
once per `interval` (100 ms), so the view updates its rows once per batch.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.message import Message

from console.tui.messages import EngineEvents, EngineEventsEnded
from engine import EnvironmentEvent, EventQueue

BATCH_INTERVAL = 0.1


class EventFeed:
    """Reads `subscription` on the caller's loop and posts EngineEvents batches."""

    def __init__(self, subscription: EventQueue, post: Callable[[Message], bool],
                 interval: float = BATCH_INTERVAL) -> None:
        self._subscription = subscription
        self._post = post
        self._interval = interval
        self._buffer: list[EnvironmentEvent] = []
        self._flush: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Until the subscription ends (the engine closed, the core went away): then what is
        buffered, then EngineEventsEnded."""
        async for event in self._subscription:
            self._buffer.append(event)
            if self._flush is None:
                self._flush = asyncio.get_running_loop().call_later(self._interval,
                                                                    self._deliver)
        self._deliver()
        self._post(EngineEventsEnded("event stream ended"))

    def _deliver(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._post(EngineEvents(batch))

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._subscription.close()
