"""The console's `:` command line: the REPL's commands, on the console's own engine.

A line means what it means in `nutshell shell` (console.shell.line: the headless
parser, `help`, `exit`), and runs with the same handler and error handling
(headless.run_command) on the app's engine, in-process or a core. What a command
prints (stdout and stderr, read while it runs) goes line by line into the output
above the line, states coloured as in the shell, errors in the theme's error
colour. Tab completes as a shell does (console.tui.tab_completion: the common prefix,
then a cycle through the matches, listed under the line). Commands run in a worker, so
`env watch` follows along while the console stays live; escape or ctrl+c stops the
running command, escape again closes.
A read-only console refuses the commands that change anything (MUTATING_COMMANDS).
"""
from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TextIO

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, RichLog, Static
from textual.worker import Worker

from console.headless import EXIT_FAILED, EXIT_INTERRUPTED, run_command
from console.read_only import MUTATING_COMMANDS
from console.shell.colour import StateHighlighter
from console.shell.completion import CommandCompleter
from console.shell.line import LineKind, command_name, help_lines, read_line
from console.shell.parser import LineError, build_parser
from console.tui.tab_completion import (
    COMPLETION_TIMEOUT,
    CompletionHint,
    TabCompletion,
    find_matches,
)

if TYPE_CHECKING:
    from console.client import AnyEngine

# The line's own words, beside the commands.
CONSOLE_WORDS: dict[str, str] = {
    "help": "list the commands, or one command's help",
    "clear": "empty the output",
    "exit": "close the command line (so do escape and quit)",
}
HISTORY_FILE = "console_history"
HISTORY_LIMIT = 500
OUTPUT_LINES = 2000


class CommandHistory:
    """The lines run, oldest first, kept in the working directory (like the shell's); up and
    down walk it, and the line being typed comes back at the end."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: list[str] = []
        if path is not None and path.is_file():
            self.entries = path.read_text(errors="replace").splitlines()[-HISTORY_LIMIT:]
        self._index = len(self.entries)
        self._draft = ""

    def add(self, line: str) -> None:
        if line.strip() and (not self.entries or self.entries[-1] != line):
            self.entries.append(line)
            self._save()
        self._index, self._draft = len(self.entries), ""

    def older(self, current: str) -> str | None:
        if self._index == 0:
            return None
        if self._index == len(self.entries):
            self._draft = current
        self._index -= 1
        return self.entries[self._index]

    def newer(self) -> str | None:
        if self._index >= len(self.entries):
            return None
        self._index += 1
        return self._draft if self._index == len(self.entries) else self.entries[self._index]

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            if len(self.entries) > HISTORY_LIMIT:
                self.entries = self.entries[-HISTORY_LIMIT:]
                self.path.write_text("".join(f"{entry}\n" for entry in self.entries))
            else:
                with self.path.open("a") as history:
                    history.write(f"{self.entries[-1]}\n")
        except OSError:
            self.path = None  # an unwritable directory: the history lives for this session


class LineSink:
    """A text stream for redirect_stdout/redirect_stderr while a command runs: every complete
    line goes to `emit` (a partial one waits for its end or close()). Writes from other
    threads (an engine thread printing) are not the command's: they go to `elsewhere`."""

    def __init__(self, emit: Callable[[str], None], elsewhere: TextIO) -> None:
        self._emit = emit
        self._elsewhere = elsewhere
        self._thread = threading.get_ident()
        self._pending = ""
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        if threading.get_ident() != self._thread:
            return self._elsewhere.write(text)
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""

    def isatty(self) -> bool:
        return False  # plain lines: `env watch` then prints one line per change


class CommandOutput(RichLog):
    """What the commands printed, the newest at the bottom (the last OUTPUT_LINES lines)."""

    def __init__(self) -> None:
        super().__init__(id="output", max_lines=OUTPUT_LINES, wrap=False, markup=False,
                         highlight=False, auto_scroll=True)
        self._highlight = StateHighlighter()

    def _colour(self, name: str) -> str:
        theme = self.app.current_theme
        return str(getattr(theme, name, None) or "")

    def command(self, line: str) -> None:
        self.write(Text(f": {line}", style=f"bold {self._colour('accent')}".strip()))

    def out(self, line: str) -> None:
        self.write(self._highlight(Text(line)))

    def err(self, line: str) -> None:
        self.write(Text(line, style=f"bold {self._colour('error') or 'red'}"))

    def note(self, line: str) -> None:
        self.write(Text(line, style="dim italic"))

    def plain(self) -> list[str]:
        """The lines shown, as plain text (tests)."""
        return [strip.text.rstrip() for strip in self.lines]


class CommandSuggester(Suggester):
    """The rest of the word being typed, greyed after the cursor: the first of the shell
    completer's matches (commands, actions, flags, environment and task ids, template names,
    events); an engine slower than COMPLETION_TIMEOUT suggests nothing."""

    def __init__(self, completer: CommandCompleter) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.completer = completer

    async def get_suggestion(self, value: str) -> str | None:
        try:
            matches = await find_matches(self.completer, value, len(value), COMPLETION_TIMEOUT)
        except Exception:  # noqa: BLE001 - an engine out of reach or slow: no suggestion
            return None
        return matches.put(matches.words[0])[0] if matches.words else None


class CommandScreen(ModalScreen[None]):
    """The line at the bottom of the screen and the output above it, over the view."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "escape", "Stop / close"),
        Binding("ctrl+c", "stop", "Stop", priority=True),
        Binding("up", "history(-1)", "Older", show=False),
        Binding("down", "history(1)", "Newer", show=False),
        Binding("tab", "complete(1)", "Complete", show=False),
        Binding("shift+tab", "complete(-1)", "Complete, back", show=False),
        Binding("pageup", "scroll_output(-1)", show=False),
        Binding("pagedown", "scroll_output(1)", show=False),
    ]

    def __init__(self, engine: AnyEngine, *, readonly: bool, history: Path | None) -> None:
        super().__init__()
        self.engine = engine
        self.readonly = readonly
        self.parser = build_parser()
        self.completer = CommandCompleter(self.parser, engine)
        self.history = CommandHistory(history)
        self.codes: list[int] = []  # every command's exit code, for the tests
        self._worker: Worker[None] | None = None
        self.tab: TabCompletion | None = None  # once composed

    def compose(self) -> ComposeResult:
        with Vertical(id="command-panel") as panel:
            panel.border_title = ("command line · enter runs · ↑↓ history · "
                                  "tab, shift+tab complete · esc stops, then closes")
            yield CommandOutput()
            with Horizontal(id="prompt-row"):
                yield Static(":", id="prompt")
                yield Input(id="line", placeholder="help lists the commands",
                            suggester=CommandSuggester(self.completer))
            yield CompletionHint()

    @property
    def output(self) -> CommandOutput:
        return self.query_one(CommandOutput)

    @property
    def line(self) -> Input:
        return self.query_one("#line", Input)

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.is_finished

    @property
    def hint(self) -> CompletionHint:
        return self.query_one(CompletionHint)

    def on_mount(self) -> None:
        self.tab = TabCompletion(self.completer, self.line, self.hint)
        self.output.note("the commands of `nutshell shell`" +
                         (" (read-only: commands that change things are refused)"
                          if self.readonly else "") + "; `help` lists them")

    def on_screen_resume(self) -> None:
        self.line.focus()

    # -- keys ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.running  # else ctrl+c is the input's (copy)
        return True

    def action_escape(self) -> None:
        if self.running:
            self.action_stop()
        else:
            self.app.pop_screen()

    def action_stop(self) -> None:
        if self._worker is not None and not self._worker.is_finished:
            self._worker.cancel()
            self._worker = None
            self.output.err("error: interrupted")
            self.codes.append(EXIT_INTERRUPTED)

    def action_history(self, step: int) -> None:
        entry = self.history.older(self.line.value) if step < 0 else self.history.newer()
        if entry is not None:
            self.line.value = entry
            self.line.cursor_position = len(entry)

    def action_complete(self, step: int) -> None:
        """Tab (1), shift+tab (-1): in a worker, the engine may be slow to name things."""
        if self.tab is not None:
            self.run_worker(self.tab.complete(step), name="tab completion", group="completion",
                            exclusive=True, exit_on_error=False)

    def action_scroll_output(self, pages: int) -> None:
        if pages < 0:
            self.output.scroll_page_up()
        else:
            self.output.scroll_page_down()

    def on_input_changed(self, message: Input.Changed) -> None:
        if self.tab is not None:
            self.tab.changed()

    # -- running a line -----------------------------------------------------------------

    def on_input_submitted(self, message: Input.Submitted) -> None:
        text = message.value
        if self.running:
            self.notify("a command is running: escape or ctrl+c stops it", severity="warning")
            return
        self.line.value = ""
        self.history.add(text)
        if not text.strip():
            return
        self.output.command(text)
        if text.split()[0] == "clear":
            self.output.clear()
            self.codes.append(0)
            return
        self._worker = self.run_worker(self._execute(text), name=f": {text}", group="command",
                                       exit_on_error=False)

    async def _execute(self, text: str) -> None:
        """One line, what it prints shown as it comes; then its exit code if not 0."""
        out = LineSink(self.output.out, sys.stdout)
        err = LineSink(self.output.err, sys.stderr)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
                code = await self._run(text)
        except Exception as error:  # noqa: BLE001 - a bug must not take the shift's screen away
            self.log.error(f"{text}: {error!r}")
            self.output.err(f"internal error: {type(error).__name__}: {error}")
            code = EXIT_FAILED
        finally:
            out.close()
            err.close()
        self.codes.append(code)
        if code:
            self.output.err(f"✗ exit code {code}")

    async def _run(self, text: str) -> int:
        read = read_line(self.parser, text)
        if read.kind is LineKind.EXIT:
            self.app.pop_screen()
            return 0
        if read.kind is LineKind.REFUSED:
            print(f"error: {read.error}", file=sys.stderr)
            return EXIT_FAILED
        if read.kind is LineKind.HELP:
            return self._help(read.help_path)
        if read.kind is LineKind.EMPTY:
            return 0
        options = read.options
        assert options is not None
        name = command_name(self.parser, read.words)
        if self.readonly and name in MUTATING_COMMANDS:
            print(f"error: read-only console: `{name}` changes things and is refused",
                  file=sys.stderr)
            return EXIT_FAILED
        return await run_command(self.engine, options.run, options)

    def _help(self, path: list[str]) -> int:
        try:
            lines = help_lines(self.parser, path, CONSOLE_WORDS)
        except LineError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
        for line in lines:
            print(line)
        if not path:
            print("`help COMMAND [ACTION]` shows a command's options; tab completes, "
                  "↑↓ walk the history.")
        return 0

