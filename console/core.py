"""`nutshell core`: host the working directory's engine and serve it over gRPC.

It runs in the foreground until SIGTERM or SIGINT, as daemons under systemd do:
it takes the working directory's host lock (recovering what a previous host left),
listens on `--listen` (o2control.Control, nutshell.ControlExt, health, reflection),
publishes the address in core.json so front-ends attach to it, and on a signal stops
serving and closes the engine. Executors and their tasks keep running; the next
host re-adopts them.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from engine import USER_ERRORS, Engine, WorkingDirectory
from engine.api import DEFAULT_ADDRESS, AddressInUse, CoreServer

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
    core.set_defaults(run_core=run)


def run(options: argparse.Namespace) -> int:
    return asyncio.run(serve(WorkingDirectory.from_environment(), options.listen,
                             mesos=options.mesos))


async def serve(workdir: WorkingDirectory, listen: str, *, mesos: str = "") -> int:
    """Host and serve until a signal; the exit code (1 with one line on stderr when the
    address is taken or another process hosts the working directory)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = Engine(workdir, demo=True, mesos=mesos)
    server = CoreServer(engine)
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
        await stop.wait()
        log.info("stopping: a signal came")
        await server.stop(STOP_GRACE)
        return 0
    finally:
        await engine.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
