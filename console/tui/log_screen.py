"""One task's live log: the last lines of its captured output, re-read every second."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from engine import USER_ERRORS

if TYPE_CHECKING:
    from console.client import AnyEngine

LOG_LINES = 500
REFRESH_SECONDS = 1.0


class LogScreen(Screen[None]):
    CSS_PATH = "log_screen.tcss"
    BINDINGS: ClassVar[list[Binding]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, engine: AnyEngine, task_id: str, log_path: str = "") -> None:
        super().__init__()
        self.engine = engine
        self.task_id = task_id
        self.log_path = log_path
        self.text = ""  # what the Log shows, for the tests
        self.reads = 0

    def compose(self) -> ComposeResult:
        where = f" — {self.log_path}" if self.log_path else ""
        yield Static(f"log of task {self.task_id}{where} (last {LOG_LINES} lines, live)",
                     id="log-title")
        yield Log(id="log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self._read()
        self.set_interval(REFRESH_SECONDS, self._read)

    def _read(self) -> None:
        self.run_worker(self._reload(), group="log", exclusive=True, exit_on_error=False)

    async def _reload(self) -> None:
        try:
            text = await self.engine.task_log(self.task_id, LOG_LINES)
        except USER_ERRORS as error:
            text = f"{error}\n"
        self.reads += 1
        if text == self.text:
            return
        log = self.query_one(Log)
        if self.text and text.startswith(self.text):
            log.write(text[len(self.text):])  # only what the task wrote since
        else:
            log.clear()
            log.write(text)
        self.text = text
