"""Messages the session driver posts to the app; widgets only ever see their results."""
from __future__ import annotations

from textual.message import Message

from peanut.connection import LinkState
from peanut.session import DeviceStatus


class LinkChanged(Message):
    """The link to the task changed state; `detail` says why, for the log."""

    def __init__(self, link: LinkState, detail: str = "") -> None:
        super().__init__()
        self.link = link
        self.detail = detail


class StatusChanged(Message):
    def __init__(self, status: DeviceStatus) -> None:
        super().__init__()
        self.status = status


class LogLine(Message):
    """A line for the log pane; `style` is a Rich style such as "red"."""

    def __init__(self, text: str, style: str = "") -> None:
        super().__init__()
        self.text = text
        self.style = style


class ConfigChanged(Message):
    """The loaded config (flattened keys) and whether it has reached the task."""

    def __init__(self, path: str, keys: dict[str, str], pushed: bool) -> None:
        super().__init__()
        self.path = path
        self.keys = keys
        self.pushed = pushed


class BusyChanged(Message):
    """A transition started (True) or finished (False)."""

    def __init__(self, busy: bool) -> None:
        super().__init__()
        self.busy = busy


class TransitionRequested(Message):
    """A transition button was pressed."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self.event = event
