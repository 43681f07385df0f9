"""The `nutshell` command.

The operator console arrives with the engine; until then `nutshell` opens
peanut on a dummy controlled process that it launches itself, so a fresh
checkout has something real to drive with one command.
"""
from __future__ import annotations

import argparse
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from peanut.cli import main as peanut_main


def _version() -> str:
    try:
        return version("nutshell")
    except PackageNotFoundError:
        return "unknown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nutshell",
        description="Open peanut on a freshly launched dummy controlled process "
                    "(occlib.examples.dummy); quitting stops the process.")
    parser.add_argument("--version", action="version", version=f"nutshell {_version()}")
    parser.add_argument("--port", type=int, default=0,
                        help="control port for the dummy process (default: a free one)")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    port = options.port or _free_port()
    return peanut_main(["-mode", "direct", "-addr", f"127.0.0.1:{port}",
                        "--", sys.executable, "-m", "occlib.examples.dummy", "--o2-role", "demo"])


if __name__ == "__main__":
    sys.exit(main())
