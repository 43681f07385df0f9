"""Environment and task state changes, fanned out to whoever subscribed.

Each subscriber gets its own queue, so a slow reader never holds up the engine
or the other readers; a reader that stops reading just stops receiving once its
queue is full (the events it missed are counted, never blocking a transition).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Self

QUEUE_SIZE = 10_000


class EventKind(str, Enum):
    ENVIRONMENT = "environment"  # an environment changed state (or was created / destroyed)
    TASK = "task"  # a task changed state or status


@dataclass(frozen=True)
class EnvironmentEvent:
    """One change: the environment's state, or one task's state and status."""

    kind: EventKind
    environment_id: str
    state: str
    user: str = ""
    task_id: str = ""
    role_path: str = ""
    status: str = ""
    message: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class Subscription:
    """An async iterator of events; `close()` (or leaving `async with`) ends it."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[EnvironmentEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def __aiter__(self) -> AsyncIterator[EnvironmentEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[EnvironmentEvent]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event

    async def get(self, timeout: float | None = None) -> EnvironmentEvent | None:
        """The next event (None once closed); TimeoutError after `timeout` s."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        self._hub.remove(self)
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Publishes events to every subscription; never blocks the publisher."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: EnvironmentEvent) -> None:
        for subscription in list(self._subscriptions):
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscription.dropped += 1

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
