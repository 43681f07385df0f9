"""The peanut TUI: one task's OCC endpoint, its state and events, a button per transition.

The app wires widgets to the session driver and little else: the driver does
the talking (peanut.tui.driver), the widgets show (peanut.tui.components), the
keys are declared in peanut.tui.bindings.
"""
from __future__ import annotations

from collections.abc import Sequence

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer

from peanut.flags import port_of
from peanut.modes import PeanutMode
from peanut.tui.bindings import APP_BINDINGS, action_allowed
from peanut.tui.components.config_table import ConfigTable
from peanut.tui.components.log_pane import LogPane
from peanut.tui.components.path_prompt import PathPrompt
from peanut.tui.components.status_bar import StatusBar
from peanut.tui.components.transition_bar import TransitionBar
from peanut.tui.driver import SessionDriver
from peanut.tui.launched import LaunchedTask
from peanut.tui.messages import (BusyChanged, ConfigChanged, LinkChanged, LogLine,
                                 StatusChanged, TransitionRequested)
from themes import use_themes

_LINK_STYLES = {"CONNECTED": "green", "CONNECTING": "yellow"}


class PeanutApp(App[None]):
    CSS_PATH = "app.tcss"
    BINDINGS = APP_BINDINGS
    TITLE = "peanut"

    def __init__(self, *, address: str, mode: PeanutMode, timeout: float,
                 launch: Sequence[str] = (), config_path: str | None = None,
                 config: dict[str, str] | None = None, token: str = "") -> None:
        """`token`: the task's OCC_CONTROL_TOKEN; a launched process gets `token`, or a fresh one."""
        super().__init__()
        self.address = address
        self.mode = mode
        self.sub_title = f"{address} ({mode})"
        self.launched = (LaunchedTask(launch, port_of(address), mode, self.post_message, token)
                         if launch else None)
        if self.launched is not None:
            token = self.launched.token
        self.driver = SessionDriver(address, mode, timeout, self.post_message, token)
        self._initial_config = (config_path, config) if config_path and config is not None else None
        self._shut_down = False

    def compose(self) -> ComposeResult:
        yield StatusBar(self.address, self.mode, id="status")
        yield TransitionBar(self.mode, id="transitions")
        with Horizontal(id="panes"):
            yield LogPane(id="log")
            yield ConfigTable(id="config")
        yield Footer()

    async def on_mount(self) -> None:
        use_themes(self)
        if self.launched is not None:
            await self.launched.start()
        if self._initial_config is not None:
            self.driver.use_config(*self._initial_config)
        await self.driver.connect()

    # -- what the driver reports ---------------------------------------------

    def on_link_changed(self, message: LinkChanged) -> None:
        self.query_one(StatusBar).link = message.link
        if message.detail:
            self.query_one(LogPane).add(message.detail, _LINK_STYLES.get(message.link.value, "red"))

    def on_status_changed(self, message: StatusChanged) -> None:
        status = self.query_one(StatusBar)
        status.state = message.status.describe()
        status.pid = message.status.pid

    def on_log_line(self, message: LogLine) -> None:
        self.query_one(LogPane).add(message.text, message.style)

    def on_config_changed(self, message: ConfigChanged) -> None:
        self.query_one(ConfigTable).show(message.path, message.keys, message.pushed)

    def on_busy_changed(self, message: BusyChanged) -> None:
        self.query_one(TransitionBar).busy = message.busy

    def on_transition_requested(self, message: TransitionRequested) -> None:
        self._send(message.event)

    # -- actions (keys in peanut.tui.bindings) --------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action_allowed(self.mode, action)

    def action_send_occ(self, event: str) -> None:
        self._send(event)

    def action_send_step(self, event: str) -> None:
        self._send(event)

    def _send(self, event: str) -> None:
        self.run_worker(self.driver.send(event), group="send", name=f"send {event}")

    def action_load_config(self) -> None:
        self.push_screen(PathPrompt(self.driver.config_path), self._load_config)

    def _load_config(self, path: str | None) -> None:
        if path:
            self.run_worker(self.driver.load_config(path), group="config", name=f"load {path}")

    def action_reconnect(self) -> None:
        self.run_worker(self.driver.connect(), group="link", exclusive=True, name="reconnect")

    async def action_quit(self) -> None:
        """Leave without sending any transition; a launched process is terminated and reaped."""
        await self._shut_down_links()
        self.exit()

    async def on_unmount(self) -> None:
        await self._shut_down_links()

    async def _shut_down_links(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        await self.driver.close()
        if self.launched is not None:
            await self.launched.stop()
