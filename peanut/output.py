"""What the CLI prints: coloured with rich on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

from rich.console import Console
from rich.markup import escape


def timestamp() -> str:
    """Local wall-clock time to the millisecond, as log lines show it."""
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


class Printer:
    """Lines on stdout, errors on stderr; styles only when the stream is a terminal."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._rich_out = Console(file=self._out, highlight=False) if self._out.isatty() else None
        self._rich_err = Console(file=self._err, highlight=False) if self._err.isatty() else None

    def line(self, text: str, style: str = "") -> None:
        if self._rich_out is not None and style:
            self._rich_out.print(f"[{style}]{escape(text)}[/]")
        elif self._rich_out is not None:
            self._rich_out.print(escape(text))
        else:
            print(text, file=self._out, flush=True)

    def info(self, text: str) -> None:
        """Progress notes for people, on stderr so stdout stays the answer."""
        if self._rich_err is not None:
            self._rich_err.print(f"[dim]{escape(text)}[/]")
        else:
            print(text, file=self._err, flush=True)

    def error(self, text: str) -> None:
        if self._rich_err is not None:
            self._rich_err.print(f"[bold red]peanut:[/] {escape(text)}")
        else:
            print(f"peanut: {text}", file=self._err, flush=True)
