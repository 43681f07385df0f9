"""Which engine a front-end talks to: the one already hosted, or one of its own.

One engine per working directory (DESIGN "One engine per working directory"):
when a live process hosts it and serves gRPC (`nutshell core`), front-ends
attach to it with RemoteEngine, which has the facade's methods, records and
errors; otherwise the command hosts the engine in-process for its lifetime.
A host that serves no gRPC address (a console hosting in-process) cannot be
attached to: the in-process Engine then refuses with EngineHostedElsewhere,
whose message says who hosts. The TUI and the REPL host it on a thread of its own
(ThreadedEngine), so their event loop never waits on the engine's work.
"""
from __future__ import annotations

import asyncio
import getpass
import os
from typing import TYPE_CHECKING, Union

from console.engine_thread import ThreadedEngine
from engine import Engine, WorkingDirectory, find_host

if TYPE_CHECKING:
    from engine.api.client import RemoteEngine

AnyEngine = Union[Engine, "RemoteEngine", ThreadedEngine]


async def open_engine(workdir: WorkingDirectory | None = None, *,
                      threaded: bool = False) -> AnyEngine:
    """The engine of `workdir` ($NUTSHELL_HOME by default): attached when hosted, else ours;
    `threaded`: ours runs on a thread and event loop of its own (ThreadedEngine)."""
    workdir = workdir or WorkingDirectory.from_environment()
    host = await asyncio.to_thread(find_host, workdir)
    if host is not None and host.address:
        from engine.api.client import RemoteEngine  # gRPC client code, only when attaching

        return RemoteEngine(host.address)
    if threaded:
        return ThreadedEngine(workdir, demo=True)
    return Engine(workdir, demo=True)


def current_user() -> str:
    """The requesting user every transition records: who runs this command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
