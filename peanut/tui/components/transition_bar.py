"""One button per transition of the mode, each showing its key."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid
from textual.reactive import reactive
from textual.widgets import Button

from peanut.modes import PeanutMode, buttons_of
from peanut.tui.bindings import key_of
from peanut.tui.messages import TransitionRequested


def button_id(event: str) -> str:
    return "send-" + event.lower().replace(" ", "-")


class TransitionBar(Grid):
    """Posts TransitionRequested; the buttons are disabled while a transition runs."""

    busy: reactive[bool] = reactive(False)

    def __init__(self, mode: PeanutMode, *, id: str | None = None) -> None:
        super().__init__(id=id, classes=f"-{mode.value}")
        self.mode = mode
        self.events = buttons_of(mode)

    def compose(self) -> ComposeResult:
        for event in self.events:
            yield Button(f"{key_of(self.mode, event)} {event}", id=button_id(event), compact=True)

    def watch_busy(self, busy: bool) -> None:
        for button in self.query(Button):
            button.disabled = busy

    def on_button_pressed(self, pressed: Button.Pressed) -> None:
        pressed.stop()
        for event in self.events:
            if pressed.button.id == button_id(event):
                self.post_message(TransitionRequested(event))
