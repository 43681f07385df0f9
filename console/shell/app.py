"""The shell session: read a line, run it as the headless command would, repeat.

One engine for the session (console/client.py: attached to `nutshell core` when
one hosts the working directory, else in-process), closed at exit. Each line is
parsed by the headless parser (console/shell/parser.py) and run by the same
handler and error handling (headless.run_command): a bad line or a failed
command prints its one-line reason and the prompt comes back. Ctrl+C stops the
running command (the prompt comes back); `exit`, `quit` or Ctrl+D leave. The session
asks the engine who it takes the user for: an observer's commands that would change
something (console.read_only) are refused here, before the core is asked.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.history import FileHistory

from console.client import AnyEngine, open_engine
from console.headless import EXIT_FAILED, EXIT_INTERRUPTED, run_command
from console.read_only import MUTATING_COMMANDS
from console.shell.colour import ColouredStream, terminal_console
from console.shell.completion import SHELL_WORDS, CommandCompleter
from console.shell.line import LineKind, command_name, help_lines, read_line
from console.shell.parser import LineError, build_parser
from console.shell.watch import watch_environment
from engine import USER_ERRORS, CallerIdentity, WorkingDirectory
from engine.api import RemoteEngineError

PROMPT = "nutshell> "
HISTORY_FILE = "shell_history"


def history_path(workdir: WorkingDirectory) -> Path:
    """The shell's history: one per working directory, beside its store."""
    return workdir.root / HISTORY_FILE


class Shell:
    """A session on one open engine; create it inside the prompt-toolkit app session whose
    input and output it should use."""

    def __init__(self, engine: AnyEngine, workdir: WorkingDirectory) -> None:
        self.engine = engine
        self.parser = build_parser()
        self.completer = CommandCompleter(self.parser, engine)
        workdir.root.mkdir(parents=True, exist_ok=True)
        self.session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history_path(workdir))), completer=self.completer,
            auto_suggest=AutoSuggestFromHistory(), complete_while_typing=False)
        self.last_code = 0
        self._command: asyncio.Task[int] | None = None
        self._interrupted = False
        self.identity: CallerIdentity | None = None  # who the engine takes us for, once known

    async def identify(self) -> None:
        """Learn who the engine takes us for; one that cannot say (unreachable, refusing us)
        leaves every command to the engine, whose errors say why."""
        try:
            self.identity = await self.engine.who_am_i()
        except RemoteEngineError:
            self.identity = None

    async def loop(self) -> int:
        """Prompt until exit/quit/Ctrl+D; Ctrl+C at the prompt only clears the line."""
        await self.identify()
        while True:
            try:
                line = await self.session.prompt_async(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            if not await self.execute(line):
                return 0

    async def execute(self, line: str) -> bool:
        """Run one line; False when the line asks to leave."""
        read = read_line(self.parser, line)
        if read.kind is LineKind.EXIT:
            return False
        if read.kind is LineKind.REFUSED:
            self._error(read.error)
        elif read.kind is LineKind.HELP:
            self._help(read.help_path)
        elif read.kind is LineKind.COMMAND:
            assert read.options is not None
            if (refusal := self._refusal(command_name(self.parser, read.words))) is not None:
                self._error(refusal)
            else:
                self.last_code = await self._run(read.options)
        return True

    def _refusal(self, name: str) -> str | None:
        """Why an observer may not run command `name`; None when it may."""
        identity = self.identity
        if identity is None or not identity.read_only or name not in MUTATING_COMMANDS:
            return None
        return (f"read-only: {identity.user} is an {identity.role}; `{name}` changes things "
                "and is refused")

    def interrupt(self) -> None:
        """Ctrl+C while a command runs: stop it, back to the prompt."""
        if self._command is not None:
            self._interrupted = True
            self._command.cancel()

    async def _run(self, options: argparse.Namespace) -> int:
        self._command, self._interrupted = asyncio.ensure_future(self._coloured(options)), False
        try:
            with self._interruptible():
                return await self._command
        except asyncio.CancelledError:
            if not self._interrupted:
                raise  # the shell itself is being cancelled
            _print_error("interrupted")
            return EXIT_INTERRUPTED
        finally:
            self._command = None

    async def _coloured(self, options: argparse.Namespace) -> int:
        """The command, its output coloured on a terminal (`env watch` draws its own)."""
        stdout = terminal_console(sys.stdout) if options.run is not watch_environment else None
        if stdout is None:
            return await run_command(self.engine, options.run, options)
        out, err = ColouredStream(stdout), ColouredStream(terminal_console(sys.stderr)
                                                         or stdout)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
                return await run_command(self.engine, options.run, options)
        finally:
            out.close()
            err.close()

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
        except (NotImplementedError, RuntimeError, ValueError):
            yield  # not the main thread: no signal handling here
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    def _help(self, path: list[str]) -> None:
        try:
            lines = help_lines(self.parser, path, SHELL_WORDS)
        except LineError as error:
            self._error(str(error))
            return
        for line in lines:
            print(line)
        if not path:
            print("`help COMMAND [ACTION]` shows a command's options; Tab completes.")

    def _error(self, message: str) -> None:
        self.last_code = EXIT_FAILED
        _print_error(message)


def _print_error(message: str) -> None:
    """One `error:` line on stderr, red on a terminal like the commands' own."""
    console = terminal_console(sys.stderr)
    if console is None:
        print(f"error: {message}", file=sys.stderr)
    else:
        console.print(f"error: {message}", style="red", soft_wrap=True, highlight=False,
                      markup=False)


def run(options: argparse.Namespace) -> int:
    """`nutshell shell`: the session on the working directory's engine."""
    try:
        return asyncio.run(_session())
    except KeyboardInterrupt:  # Ctrl+C between two commands, outside the prompt
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


async def _session() -> int:
    workdir = WorkingDirectory.from_environment()
    try:
        engine = await open_engine(workdir)
    except (*USER_ERRORS, RemoteEngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return await Shell(engine, workdir).loop()
    finally:
        await engine.close()
