"""`nutshell shell`: the headless commands, interactively (prompt-toolkit).

One engine for the whole session, the headless parser and handlers for every line,
completion from the parser and the engine, history in the working directory,
coloured tables on a terminal, and `env watch` for a live view.
"""
from __future__ import annotations

import argparse


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`nutshell shell`; its code (prompt-toolkit, rich) loads only when it runs."""
    commands.add_parser(
        "shell", help="the headless commands interactively: completion, history, coloured "
                      "tables, `env watch ID`")
