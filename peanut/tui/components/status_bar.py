"""The top line: where peanut points, how the link stands, the task's state and pid."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label

from peanut.connection import LinkState
from peanut.modes import PeanutMode


def _css_name(text: str) -> str:
    """A CSS class fragment: the first word, lower case ("READY (OCC CONFIGURED)" → "ready")."""
    words = text.split()
    return words[0].lower() if words else "unknown"


class StatusBar(Horizontal):
    link: reactive[LinkState] = reactive(LinkState.CONNECTING)
    state: reactive[str] = reactive("")
    pid: reactive[int | None] = reactive(None)

    def __init__(self, address: str, mode: PeanutMode, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.address = address
        self.mode = mode

    def compose(self) -> ComposeResult:
        yield Label(self.address, id="address")
        yield Label(f"{self.mode} ({self.mode.codec})", id="mode")
        yield Label(id="link")
        yield Label(id="state")
        yield Label(id="pid")

    def watch_link(self, old: LinkState, new: LinkState) -> None:
        label = self.query_one("#link", Label)
        label.update(str(new))
        label.remove_class(f"-link-{old.name.lower().replace('_', '-')}")
        label.add_class(f"-link-{new.name.lower().replace('_', '-')}")

    def watch_state(self, old: str, new: str) -> None:
        label = self.query_one("#state", Label)
        label.update(f"state {new or '?'}")
        label.remove_class(f"-state-{_css_name(old)}")
        label.add_class(f"-state-{_css_name(new)}")

    def watch_pid(self, pid: int | None) -> None:
        self.query_one("#pid", Label).update(f"pid {pid if pid is not None else '?'}")
