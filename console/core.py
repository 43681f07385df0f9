"""`nutshell core`: host the working directory's engine and serve it over gRPC.

It runs in the foreground until SIGTERM or SIGINT, as daemons under systemd do:
it takes the working directory's host lock (recovering what a previous host left),
listens on `--listen` (o2control.Control, nutshell.ControlExt, health, reflection),
publishes the address in core.json so front-ends attach to it, and on a signal stops
serving and closes the engine. Executors and their tasks keep running; the next
host re-adopts them.

Access: nutshell.yaml's `security:` section (engine.api.security) turns on TLS, mutual
TLS and bearer tokens. Without it the core checks nobody, so it listens on a loopback
address only (saying so once on stderr), unless `--insecure` says the network is trusted.
SIGHUP reads the section again (CoreServer.reload_security): users, tokens, roles and
certificates change without a restart, and stderr says what came of it.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from engine import USER_ERRORS, Engine, WorkingDirectory
from engine.api import (
    DEFAULT_ADDRESS,
    AddressInUse,
    CoreServer,
    SecuritySettings,
    is_loopback,
    load_security,
)

EXIT_FAILED = 1
STOP_GRACE = 2.0  # seconds calls under way get to finish once a signal came

log = logging.getLogger("console.core")


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    core = commands.add_parser(
        "core", help="host the engine of the working directory and serve it over gRPC "
                     "until SIGTERM/SIGINT")
    core.add_argument("--listen", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                      help=f"address to serve o2control.Control on (default {DEFAULT_ADDRESS}; "
                           "port 0 picks a free one)")
    core.add_argument("--mesos", default="", metavar="http://HOST:5050",
                      help="schedule on the Mesos cluster of this master instead of the local "
                           "agents (or set `backend: mesos` in nutshell.yaml)")
    core.add_argument("--insecure", action="store_true",
                      help="serve without authentication on a non-loopback address (a "
                           "trusted network only; see README 'Access control')")
    core.set_defaults(run_core=run)


def run(options: argparse.Namespace) -> int:
    return asyncio.run(serve(WorkingDirectory.from_environment(), options.listen,
                             mesos=options.mesos, insecure=options.insecure))


async def reload_security(server: CoreServer) -> None:
    """SIGHUP: the security settings read again; one line on stderr says what came of it."""
    try:
        reload = await server.reload_security()
    except Exception:  # a signal's task: nobody else would hear of it
        log.exception("reloading the security settings failed; those in force are kept")
        return
    if reload.applied:
        print(f"nutshell core: {reload.message}", file=sys.stderr, flush=True)
    else:
        log.error("%s", reload.message)


def access_notice(listen: str, security: SecuritySettings | None, insecure: bool) -> str:
    """The one line `nutshell core` prints on stderr about access ("" for none); ValueError
    when it must not listen there as configured."""
    if security is None:
        if is_loopback(listen):
            return ("nutshell core: no `security:` in nutshell.yaml: unauthenticated, "
                    "loopback only")
        if not insecure:
            raise ValueError(
                f"refusing to listen on {listen} without authentication: add a `security:` "
                "section (TLS and users) to nutshell.yaml, or pass --insecure on a trusted "
                "network")
        return (f"nutshell core: --insecure: unauthenticated on {listen}; anyone who reaches "
                "it may control environments")
    if security.tls is None and not is_loopback(listen):
        raise ValueError(f"refusing to listen on {listen} without `security.tls` in "
                         "nutshell.yaml: bearer tokens would cross the network in clear")
    return ""


async def serve(workdir: WorkingDirectory, listen: str, *, mesos: str = "",
                insecure: bool = False) -> int:
    """Host and serve until a signal; the exit code (1 with one line on stderr when the
    address is taken, another process hosts the working directory, or the security
    settings are wrong or missing for the address)."""
    try:
        security = await asyncio.to_thread(load_security, workdir.settings_file)
        notice = access_notice(listen, security, insecure)
    except ValueError as error:  # SecuritySettingsError is one too
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = Engine(workdir, demo=True, mesos=mesos)
    server = CoreServer(engine, security=security)
    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = loop.create_task(reload_security(server))
        reloads.add(task)
        task.add_done_callback(reloads.discard)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        try:
            address = await server.start(listen)
        except AddressInUse as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
        try:
            host = await engine.start_hosting()
            await asyncio.to_thread(host.set_address, address)
        except USER_ERRORS as error:  # another host, or a store or recovery it cannot read
            await server.stop(0)
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(f"nutshell core: serving {workdir.root} on {address} (pid {os.getpid()})",
              flush=True)
        if notice:  # once serving: a core that could not start says only why
            print(notice, file=sys.stderr, flush=True)
        await stop.wait()
        log.info("stopping: a signal came")
        loop.remove_signal_handler(signal.SIGHUP)
        await asyncio.gather(*reloads)  # their audit lines, before the log closes
        await server.stop(STOP_GRACE)
        return 0
    finally:
        await engine.close()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
