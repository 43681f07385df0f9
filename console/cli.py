"""The `nutshell` command.

`nutshell` alone (or `nutshell console`) opens the operator console on the
working directory's engine (`--core HOST:PORT`: a `nutshell core`'s;
`--readonly`: look, never act); `nutshell peanut-demo` opens peanut on a dummy
controlled process that it launches itself.
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
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

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


def _console(options: argparse.Namespace) -> int:
    from console.tui.app import run  # Textual loads only for the TUI

    return run(core=options.core, readonly=options.readonly)


def _console_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--core and --readonly, on `nutshell` and on `nutshell console`; `suppress` (the
    command's): no defaults there, so they never overwrite what was given before it."""
    parser.add_argument("--core", metavar="HOST:PORT",
                        default=argparse.SUPPRESS if suppress else "",
                        help="attach to the `nutshell core` at HOST:PORT instead of the working "
                             "directory's engine")
    parser.add_argument("--readonly", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="observe only: every action is refused")


def _demo(options: argparse.Namespace) -> int:
    from peanut.cli import main as peanut_main  # Textual loads only for the TUI

    port = options.port or _free_port()
    return peanut_main(["-mode", "direct", "-addr", f"127.0.0.1:{port}",
                        "--", sys.executable, "-m", "occlib.examples.dummy", "--o2-role", "demo"])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="nutshell",
        description="nutshell experiment control. Without a command: the operator console.")
    top.add_argument("--version", action="version", version=f"nutshell {_version()}")
    _console_options(top, suppress=False)
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    console = commands.add_parser("console", help="the operator console (the default command)")
    _console_options(console, suppress=True)
    demo = commands.add_parser("peanut-demo", help="peanut on a freshly launched dummy "
                                                   "controlled process (quitting stops it)")
    demo.add_argument("--port", type=int, default=0,
                      help="control port of the dummy process (default: a free one)")
    headless.add_commands(commands)
    core.add_command(commands)
    shell.add_command(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    options = top.parse_args(sys.argv[1:] if argv is None else argv)
    if options.command not in (None, "console") and (options.core or options.readonly):
        top.error("--core and --readonly are the console's: `nutshell [console] --core …`")
    if options.command in (None, "console"):
        return _console(options)
    if options.command == "peanut-demo":
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
