"""One command line, as the REPL and the TUI's `:` line both read it.

A line is split like a shell would, and is then a request to leave (`exit`, `quit`),
a request for help (`help [COMMAND [ACTION]]`), a command the headless parser
accepted (its options, with the handler in `options.run`), or a refusal naming
what is wrong. The front-ends differ only in where the output goes and how a
running command is stopped; what a line means is decided here, once.
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from enum import Enum

from console.shell.parser import HelpShown, LineError, subcommands, summaries

EXIT_WORDS = frozenset({"exit", "quit"})
HELP_WORD = "help"


class LineKind(Enum):
    EMPTY = "empty"  # nothing to do (a blank line, or `-h` already printed its help)
    EXIT = "exit"
    HELP = "help"
    COMMAND = "command"
    REFUSED = "refused"  # the line cannot run: `error` says why


@dataclass
class Line:
    """What one line asks for."""

    kind: LineKind
    words: list[str] = field(default_factory=list)
    options: argparse.Namespace | None = None  # COMMAND: the parsed options
    help_path: list[str] = field(default_factory=list)  # HELP: the command words after `help`
    error: str = ""  # REFUSED: one line for the operator


def read_line(parser: argparse.ArgumentParser, text: str) -> Line:
    """Parse `text` with the headless `parser` (console.shell.parser.build_parser); `-h`
    prints its help on stdout while parsing, as argparse does."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        return Line(LineKind.REFUSED, error=str(error))
    if not words:
        return Line(LineKind.EMPTY)
    if words[0] in EXIT_WORDS:
        return Line(LineKind.EXIT, words)
    if words[0] == HELP_WORD:
        return Line(LineKind.HELP, words, help_path=words[1:])
    try:
        options = parser.parse_args(words)
    except LineError as error:
        return Line(LineKind.REFUSED, words, error=str(error))
    except HelpShown:
        return Line(LineKind.EMPTY, words)
    return Line(LineKind.COMMAND, words, options=options)


def command_name(parser: argparse.ArgumentParser, words: list[str]) -> str:
    """The command words of a line by their full names ("environment create" for `e c`),
    aliases resolved through the parser tree; "" when the first word is no command."""
    for word in words:
        chosen = subcommands(parser).get(word)
        if chosen is None:
            break
        parser = chosen
    return " ".join(parser.prog.split())


def help_lines(parser: argparse.ArgumentParser, path: list[str],
               extra_words: dict[str, str]) -> list[str]:
    """`help` (every command, then the front-end's own `extra_words`) or `help COMMAND
    [ACTION]` (that command's usage and options); LineError names an unknown command."""
    chosen_parser = parser
    for depth, word in enumerate(path):
        chosen = subcommands(chosen_parser).get(word)
        if chosen is None:
            raise LineError(f"help: no command {' '.join(path[:depth + 1])!r}; "
                            "`help` lists them")
        chosen_parser = chosen
    if path:
        return chosen_parser.format_help().splitlines()
    rows = [(s.name + (f" ({', '.join(s.aliases)})" if s.aliases else ""), s.help)
            for s in summaries(parser)]
    rows += list(extra_words.items())
    width = max(len(name) for name, _ in rows)
    return [f"{name.ljust(width)}  {text}" for name, text in rows]
