"""`ThreadedEngine`: the in-process engine on a thread and event loop of its own.

DESIGN "EngineClient": the embedded engine must never stall the UI. Its work
(deployments, transitions, sqlite, git) runs on the engine's loop in a thread of
its own; the UI's loop only awaits the results. The coroutines are those of
`engine.Engine`, generated from it, so a front-end cannot tell this apart from an
Engine or a RemoteEngine: same arguments, records and exceptions (raised as
themselves on the caller's loop).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Self, TypeVar

from engine import Engine, EnvironmentEvent, EventQueue, Subscription, WorkingDirectory

T = TypeVar("T")

if TYPE_CHECKING:
    from engine.hosting import EngineHost

    _EngineMethods = Engine  # type checkers see Engine's coroutines, made below at run time
else:
    _EngineMethods = object


class ThreadedSubscription(EventQueue):
    """An engine `Subscription` read on the caller's loop.

    A task on the engine's loop drains the engine-side subscription and hands what it
    read across in batches (one wake-up of the caller's loop per batch, never a wait on
    the engine's side); a reader too slow for QUEUE_SIZE events drops and counts them."""

    def __init__(self, engine_loop: asyncio.AbstractEventLoop,
                 caller_loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._engine_loop = engine_loop
        self._caller_loop = caller_loop
        self._source: Subscription | None = None
        self._forwarder: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self._closed = False

    async def _forward(self, source: Subscription) -> None:
        """On the engine's loop: until the engine-side subscription ends."""
        ended = False
        while not ended:
            batch: list[EnvironmentEvent | None] = [await source.queue.get()]
            while not source.queue.empty():
                batch.append(source.queue.get_nowait())
            ended = None in batch
            try:
                self._caller_loop.call_soon_threadsafe(self._deliver, batch)
            except RuntimeError:
                return  # the caller's loop is gone: nobody reads any more

    def _deliver(self, batch: list[EnvironmentEvent | None]) -> None:
        """On the caller's loop."""
        if self._closed:
            return
        for event in batch:
            self.put(event)
            if event is None:
                self._closed = True
                return

    def close(self) -> None:
        """End the iteration here and the engine-side subscription there."""
        if not self._closed:
            self._closed = True
            super().close()
        source = self._source
        if source is not None and not self._engine_loop.is_closed():
            try:
                self._engine_loop.call_soon_threadsafe(source.close)
            except RuntimeError:
                pass  # the engine's loop stopped meanwhile: its subscriptions ended with it


class ThreadedEngine(_EngineMethods):
    """An `Engine` hosted in this process, running on its own thread and event loop.

    Every coroutine of Engine is here with the same signature (generated below); each
    call is submitted to the engine's loop and awaited without blocking the caller's.
    Cancelling a call on the caller's side cancels it on the engine's. `close()` closes
    the engine and ends the thread; executors and tasks keep running, as with Engine."""

    def __init__(self, workdir: WorkingDirectory | None = None, *, demo: bool = False) -> None:
        self._engine = Engine(workdir, demo=demo)
        self.workdir = self._engine.workdir
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"nutshell engine {self.workdir.root}")
        self._closing = False
        self._thread.start()

    def _serve(self) -> None:
        """The engine thread: its loop until `close()`, then a clean end of what is left."""
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            leftover = asyncio.all_tasks(loop)
            for task in leftover:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    @property
    def host(self) -> EngineHost | None:
        """The engine's hold on the working directory, once it hosts it."""
        return self._engine.host

    @property
    def thread(self) -> threading.Thread:
        """The engine's thread (alive until `close()` returns)."""
        return self._thread

    async def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the engine's loop; its result or exception comes back here."""
        if self._closing:
            coroutine.close()
            raise RuntimeError(f"the engine of {self.workdir.root} is closed")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    async def subscribe(self) -> ThreadedSubscription:
        """Environment and task state changes from now on, read on this loop; close() the
        subscription when done."""
        subscription = ThreadedSubscription(self._loop, asyncio.get_running_loop())

        async def opened() -> None:
            source = await self._engine.subscribe()
            subscription._source = source  # close() reaches it even before the task runs
            subscription._forwarder = asyncio.create_task(subscription._forward(source))

        await self._call(opened())
        return subscription

    async def close(self) -> None:
        """Close the engine, then stop its loop and wait for its thread to end."""
        if self._closing:
            return
        self._closing = True  # no further call is taken
        closing = asyncio.run_coroutine_threadsafe(self._engine.close(), self._loop)
        try:
            await asyncio.wrap_future(closing)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _proxy(method: Callable[..., Coroutine[Any, Any, Any]]
           ) -> Callable[..., Coroutine[Any, Any, Any]]:
    """`method` of Engine, run on the engine's loop; the signature and doc are Engine's."""
    @functools.wraps(method)
    async def call(self: ThreadedEngine, *args: Any, **kwargs: Any) -> Any:
        return await self._call(method(self._engine, *args, **kwargs))
    return call


def _proxied() -> list[str]:
    """Engine's public coroutines that ThreadedEngine does not define itself."""
    return [name for name, _ in inspect.getmembers(Engine, inspect.iscoroutinefunction)
            if not name.startswith("_") and name not in vars(ThreadedEngine)]


for _name in _proxied():
    setattr(ThreadedEngine, _name, _proxy(getattr(Engine, _name)))
