"""State badges: a task's or role's state as a coloured word, the same in every view.

Colours are theme variables where the theme has one ($success, $error…), so a theme
switch recolours every badge; the words stay, for the colour-blind and for tests.
"""
from __future__ import annotations

from rich.text import Text

STATE_STYLES: dict[str, str] = {
    "RUNNING": "bold green",
    "CONFIGURED": "bold cyan",
    "STANDBY": "bold blue",
    "DEPLOYED": "bold blue",
    "ERROR": "bold white on red",
    "DONE": "dim",
    "MIXED": "bold yellow",
    "UNKNOWN": "bold magenta",
}
CRITICAL_MARK = "!"  # before a critical task: its failure puts the environment in ERROR


def state_style(state: str) -> str:
    return STATE_STYLES.get(state.upper(), "bold")


def badge(state: str) -> Text:
    """`state` as a badge: the word in its colour."""
    return Text(state or "UNKNOWN", style=state_style(state or "UNKNOWN"))
