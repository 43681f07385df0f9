"""Environment and task state changes and calls, fanned out to whoever subscribed.

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
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from engine.integration import CallEvent

QUEUE_SIZE = 10_000


class EventKind(str, Enum):
    ENVIRONMENT = "environment"  # an environment changed state (or was created / destroyed)
    TASK = "task"  # a task changed state or status
    CALL = "call"  # a call role's call started or ended (events.proto Ev_CallEvent)


@dataclass(frozen=True)
class Traits:
    """A hook's traits (events.proto Traits): when it starts, is collected, times out."""

    trigger: str = ""
    await_: str = ""
    timeout: str = ""
    critical: bool = False


@dataclass(frozen=True)
class EnvironmentEvent:
    """One change: the environment's state, one task's state and status, or a call.

    `user` is who asked for the change: the requesting user, or `core` / `TIMER` for what
    the engine does by itself (runend.py). A CALL event mirrors Ev_CallEvent: `func`,
    `call_status` (OpStatus name: STARTED, DONE_OK, DONE_ERROR, DONE_TIMEOUT), `return_var`
    (Ev_CallEvent.return, the variable its output goes to), `output`, `error`, `traits`,
    and the call role's path in `role_path` (Ev_CallEvent.path)."""

    kind: EventKind
    environment_id: str
    state: str
    user: str = ""
    task_id: str = ""
    role_path: str = ""
    status: str = ""
    message: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    func: str = ""
    call_status: str = ""
    return_var: str = ""
    output: str = ""
    error: str = ""
    traits: Traits | None = None


def call_event(environment_id: str, state: str, user: str, call: CallEvent) -> EnvironmentEvent:
    """A call's start or end (engine.integration.CallEvent) as an event of its environment."""
    return EnvironmentEvent(
        EventKind.CALL, environment_id, state, user=user, role_path=call.path,
        message=f"{call.func} {call.status.name}", func=call.func,
        call_status=call.status.name, return_var=call.return_var, output=call.output,
        error=call.error, traits=Traits(call.trigger, call.await_, call.timeout, call.critical))


class EventQueue:
    """The reading side every event stream shares: async iteration, `get(timeout)`,
    `close()` and `async with`. A full queue drops (and counts) what does not fit, so a
    slow reader never holds up the writer."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EnvironmentEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def put(self, event: EnvironmentEvent | None) -> None:
        """Queue `event` (None ends the iteration) without waiting."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            if event is not None:
                self.dropped += 1

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
        self.put(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Subscription(EventQueue):
    """The events of one engine from now on; `close()` (or leaving `async with`) ends it."""

    def __init__(self, hub: EventHub) -> None:
        super().__init__()
        self._hub = hub

    def close(self) -> None:
        self._hub.remove(self)
        super().close()


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
            subscription.put(event)

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
