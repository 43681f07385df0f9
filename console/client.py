"""Which engine a front-end talks to: the one already hosted, or one of its own.

One engine per working directory (DESIGN "One engine per working directory"):
when a live process hosts it and serves gRPC (`nutshell core`), front-ends
attach to it with RemoteEngine, which has the facade's methods, records and
errors; otherwise the command hosts the engine in-process for its lifetime.
A host that serves no gRPC address (a console hosting in-process) cannot be
attached to: the in-process Engine then refuses with EngineHostedElsewhere,
whose message says who hosts. Attaching presents the credentials of nutshell.yaml's
`client:` section and $NUTSHELL_TOKEN (engine.api.security). The TUI and the REPL
host it on a thread of its own (ThreadedEngine), so their event loop never waits on
the engine's work.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Union

from console.engine_thread import ThreadedEngine
from engine import Engine, WorkingDirectory, find_host, local_user

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
        return await attach(host.address, workdir)
    if threaded:
        return ThreadedEngine(workdir, demo=True)
    return Engine(workdir, demo=True)


async def attach(address: str, workdir: WorkingDirectory | None = None) -> RemoteEngine:
    """The core at `address`, reached with the credentials `workdir`'s configuration gives
    (SecuritySettingsError, a ConfigurationError, naming file and field when they are wrong)."""
    from engine.api import RemoteEngine, load_client_credentials  # gRPC: only when attaching

    workdir = workdir or WorkingDirectory.from_environment()
    credentials = await asyncio.to_thread(load_client_credentials, workdir.settings_file)
    return RemoteEngine(address, credentials)


def current_user() -> str:
    """The requesting user every transition records: who runs this command."""
    return local_user()
