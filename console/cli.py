"""The `nutshell` command.

`nutshell` alone opens peanut on a dummy controlled process that it launches
itself, until the operator console arrives with the engine's environments.
`nutshell env|task|role|template|repo …` and `nutshell run` are the headless
commands, with coconut's names; `nutshell shell` runs them interactively;
`nutshell core` hosts the engine and serves it over gRPC.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from console import core, headless, shell


def _version() -> str:
    try:
        return version("nutshell")
    except PackageNotFoundError:
        return "unknown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demo(options: argparse.Namespace) -> int:
    from peanut.cli import main as peanut_main  # Textual loads only for the TUI

    port = options.port or _free_port()
    return peanut_main(["-mode", "direct", "-addr", f"127.0.0.1:{port}",
                        "--", sys.executable, "-m", "occlib.examples.dummy", "--o2-role", "demo"])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="nutshell",
        description="nutshell experiment control. Without a command: peanut on a freshly "
                    "launched dummy controlled process (quitting stops it).")
    top.add_argument("--version", action="version", version=f"nutshell {_version()}")
    top.add_argument("--port", type=int, default=0,
                     help="control port of the demo's dummy process (default: a free one)")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    headless.add_commands(commands)
    core.add_command(commands)
    shell.add_command(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if options.command is None:
        return _demo(options)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if options.command == "core":
        return core.run(options)
    if options.command == "shell":
        from console.shell import app  # prompt-toolkit loads only for the shell

        return app.run(options)
    try:
        return headless.run(options)
    except BrokenPipeError:
        # `nutshell … | head`: the reader left; stop quietly as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
