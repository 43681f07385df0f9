"""Colour for people at a terminal: the headless commands' text, states coloured.

The handlers print plain aligned tables (scripts read them); in the shell, on a
terminal, what they print goes through a rich console line by line: state words
take their colour, table headers are bold, error lines red. Alignment is kept,
since colour adds no width.
"""
from __future__ import annotations

import re
from typing import TextIO

from rich.console import Console
from rich.highlighter import Highlighter
from rich.text import Text

# Environment, task and role states (and task statuses) as the console shows them.
STATE_STYLES: dict[str, str] = {
    "RUNNING": "bold green", "ACTIVE": "green",
    "CONFIGURED": "bold blue", "DEPLOYED": "cyan", "STANDBY": "cyan", "STANDBY_IDLE": "cyan",
    "ERROR": "bold red", "DONE": "dim", "INACTIVE": "dim",
    "MIXED": "yellow", "PARTIAL": "yellow", "UNKNOWN": "magenta", "INVARIANT": "yellow",
}
_STATE_WORD = re.compile(r"\b(" + "|".join(STATE_STYLES) + r")\b")
_HEADER = re.compile(r"[A-Z][A-Z_]*(?: +(?:→ +)?[A-Z][A-Z_]*)+ *")


def state_style(state: str) -> str:
    return STATE_STYLES.get(state, "")


class StateHighlighter(Highlighter):
    """Colours the state words of one line of command output; a table header in bold."""

    def highlight(self, text: Text) -> None:
        if _HEADER.fullmatch(text.plain):
            text.stylize("bold")
            return
        if text.plain.startswith("error: "):
            text.stylize("red")
            return
        for match in _STATE_WORD.finditer(text.plain):
            text.stylize(STATE_STYLES[match.group(1)], match.start(), match.end())


class ColouredStream:
    """A text stream for `redirect_stdout`: each complete line is printed through `console`
    with the state highlighter; a partial line waits for its end (or close())."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._highlight = StateHighlighter()
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self.console.print(self._highlight(line), soft_wrap=True, highlight=False)
        return len(text)

    def flush(self) -> None:
        self.console.file.flush()

    def close(self) -> None:
        if self._pending:
            self.console.print(self._highlight(self._pending), soft_wrap=True, end="",
                               highlight=False)
            self._pending = ""
        self.flush()

    def isatty(self) -> bool:
        return self.console.is_terminal


def terminal_console(stream: TextIO) -> Console | None:
    """A rich console on `stream` when it is a terminal, else None (plain text stays plain)."""
    console = Console(file=stream)
    return console if console.is_terminal else None
