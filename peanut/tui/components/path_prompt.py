"""The prompt for a config file path, as a modal screen that returns the path or None."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PathPrompt(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, initial: str = "") -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            yield Label("Config file to load (YAML or JSON), Enter to load, Esc to cancel:")
            yield Input(value=self.initial, placeholder="path/to/config.yaml", id="path")

    def on_input_submitted(self, submitted: Input.Submitted) -> None:
        submitted.stop()
        self.dismiss(submitted.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
