"""Fan-out of state changes and device events to every open stream.

Each gRPC stream handler owns one subscription; publishing never blocks the
state machine, and closing ends every stream (at DONE).
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

_CLOSED = object()


class Subscription(Generic[T]):
    def __init__(self, owner: "Broadcast[T]") -> None:
        self._owner = owner
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def put(self, item: object) -> None:
        self._queue.put(item)

    def items(self, poll: float, keep_going: Callable[[], bool]) -> Iterator[T]:
        """Yield items until the broadcast closes or `keep_going()` turns false."""
        try:
            while keep_going():
                try:
                    item = self._queue.get(timeout=poll)
                except queue.Empty:
                    continue
                if item is _CLOSED:
                    return
                yield item  # type: ignore[misc]
        finally:
            self._owner.unsubscribe(self)


class Broadcast(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription[T]] = []
        self._closed = False

    def subscribe(self) -> Subscription[T]:
        subscription: Subscription[T] = Subscription(self)
        with self._lock:
            if self._closed:
                subscription.put(_CLOSED)
            else:
                self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def publish(self, item: T) -> None:
        with self._lock:
            for subscription in self._subscriptions:
                subscription.put(item)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for subscription in self._subscriptions:
                subscription.put(_CLOSED)
            self._subscriptions.clear()
