"""The operator console (`nutshell`): the working directory's engine on a full screen.

The app opens the engine (in-process on its own thread, or a `nutshell core` with
--core), holds the theme and the read-only switch, and shows the environments
view. It asks the engine who it takes the operator for: an observer gets the read-only
console (as --readonly), and the header names the user and role; the views do the rest (console.tui.components). Over any view, `:` opens the
command line (console.tui.command_line) and `e` the events pane
(console.tui.events_pane). Closing the console closes the engine; executors and
tasks keep running.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.screen import Screen

from console.client import attach, open_engine
from console.tui.bindings import APP_BINDINGS
from console.tui.command_line import HISTORY_FILE, CommandScreen
from console.tui.components.environments_table import EnvironmentsTable
from console.tui.components.environments_view import EnvironmentsView
from console.tui.components.live_view import LiveView, show_view
from console.tui.events_pane import EventLog
from console.tui.preferences import THEME_NAMES, Preferences, next_theme
from console.tui.views import VIEW_HELP, VIEWS
from engine import CallerIdentity, WorkingDirectory
from engine.api import RemoteEngineError
from themes import use_themes

if TYPE_CHECKING:
    from console.client import AnyEngine

IDENTITY_TIMEOUT = 5.0  # seconds to learn who we are before showing the console anyway


class ConsoleApp(App[int]):
    CSS_PATH = "app.tcss"
    BINDINGS = APP_BINDINGS
    TITLE = "nutshell"

    def __init__(self, workdir: WorkingDirectory | None = None, *, core: str = "",
                 readonly: bool = False, engine: AnyEngine | None = None) -> None:
        """`engine`: one the caller opened (tests, embedding), used instead of opening the
        working directory's; the console closes it when it ends, as its own."""
        super().__init__()
        self._given_engine = engine
        self.workdir = workdir or WorkingDirectory.from_environment()
        self.core = core
        self.readonly = readonly
        self.identity: CallerIdentity | None = None  # who the engine takes us for, once known
        self.engine: AnyEngine | None = None
        self.preferences = Preferences.load(self.workdir.root)
        self.event_log = EventLog(self)
        self._command_screen: CommandScreen | None = None
        self._closed = False

    async def on_mount(self) -> None:
        use_themes(self, self.preferences.theme)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.screen_change_signal.subscribe(self, self.event_log.place)
        self.sub_title = self.core or str(self.workdir.root)
        self.engine = self._given_engine or await self._open()
        await self._learn_identity(self.engine)
        await self.push_screen(EnvironmentsView(self.engine, readonly=self.readonly))

    async def _open(self) -> AnyEngine:
        """The engine object only: it connects and starts hosting on first use, in the view's
        worker, so the screen shows at once."""
        if self.core:
            return await attach(self.core, self.workdir)
        return await open_engine(self.workdir, threaded=True)

    async def _learn_identity(self, engine: AnyEngine) -> None:
        """An observer may only look: the console turns read-only rather than offer what the
        core would refuse. An engine that cannot say (unreachable, refusing us) leaves the
        console as asked; its views show why it fails."""
        try:
            self.identity = await asyncio.wait_for(engine.who_am_i(), IDENTITY_TIMEOUT)
        except (RemoteEngineError, TimeoutError) as error:
            self.log.warning(f"who am I: {error}")
            return
        if self.identity.read_only:
            self.readonly = True
        if described := self.identity.describe():
            self.sub_title = f"{self.sub_title} · {described}"

    # -- themes -------------------------------------------------------------------------

    def action_next_theme(self) -> None:
        self.theme = next_theme(self.theme)

    def _theme_changed(self, _theme: object) -> None:
        """Remember the choice (ours only) and recolour what shows states."""
        if self.theme in THEME_NAMES and self.theme != self.preferences.theme:
            self.preferences.theme = self.theme
            try:
                self.preferences.save(self.workdir.root)
            except OSError as error:
                self.notify(f"theme not remembered: {error}", severity="warning")
        for screen in self.screen_stack:
            for table in screen.query(EnvironmentsTable):
                table.repaint_states()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in THEME_NAMES:
            yield SystemCommand(f"Theme: {name}", f"Switch to the {name} theme (remembered)",
                                lambda name=name: setattr(self, "theme", name))
        for view in VIEWS:
            yield SystemCommand(f"View: {view}", VIEW_HELP[view],
                                lambda view=view: self.action_view(view))
        yield SystemCommand("Command line", "Run a command of `nutshell shell` (key :)",
                            self.action_command_line)
        yield SystemCommand("Events pane", "Show or hide the live events of every "
                            "environment (key e)", self.action_toggle_events)

    # -- views --------------------------------------------------------------------------

    def action_view(self, name: str) -> None:
        """Keys 1-4 and the palette: the environments, tasks, hosts or templates view."""
        show_view(self, VIEWS[name])

    # -- the command line, the events pane ----------------------------------------------

    def action_command_line(self) -> None:
        """`:` over any view: the line and its output, as they were left."""
        if self.engine is None or isinstance(self.screen, CommandScreen):
            return
        if self._command_screen is None:
            self._command_screen = CommandScreen(self.engine, readonly=self.readonly,
                                                 history=self.workdir.root / HISTORY_FILE)
            self.install_screen(self._command_screen, name="command-line")
        self.push_screen("command-line")

    def action_toggle_events(self) -> None:
        self.event_log.toggle(self.engine)

    # -- help, quit ---------------------------------------------------------------------

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def action_quit(self) -> None:
        await self._close_engine()
        self.exit(0)

    async def on_unmount(self) -> None:
        await self._close_engine()

    async def _close_engine(self) -> None:
        """Stop reading events, then close the engine; executors and tasks keep running."""
        if self._closed:
            return
        self._closed = True
        self.event_log.close()
        for screen in self.screen_stack:
            if isinstance(screen, (EnvironmentsView, LiveView)):
                screen.close_feed()
        if self.engine is not None:
            await self.engine.close()


def run(workdir: WorkingDirectory | None = None, *, core: str = "", readonly: bool = False) -> int:
    """Run the console until the operator quits; the exit code."""
    return ConsoleApp(workdir, core=core, readonly=readonly).run() or 0
