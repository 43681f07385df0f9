"""The log pane: timestamped lines of events, states, transition steps and process output."""
from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import RichLog

from peanut.output import timestamp

KEPT_LINES = 5000


class LogPane(RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=KEPT_LINES, min_width=20, wrap=True, markup=False, id=id)
        self.history: deque[str] = deque(maxlen=KEPT_LINES)  # the plain text, for search and tests

    def on_mount(self) -> None:
        self.border_title = "log"

    def add(self, text: str, style: str = "") -> None:
        stamp = timestamp()
        self.history.append(f"{stamp} {text}")
        line = Text(stamp + " ", style="dim")
        line.append(text, style=style)
        self.write(line)

    def contains(self, fragment: str) -> bool:
        return any(fragment in line for line in self.history)
