"""The process peanut was asked to launch (`peanut -- CMD …`): started, echoed, stopped.

It runs through the executor's launcher, so it leads its own process group and
dies with peanut; its output lines reach the log pane through the launcher's
forwarding to the `executor` logger.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from textual.message import Message

from executor.command import OutputMode, TaskCommand
from executor.controlmode import ControlMode
from executor.launcher import LaunchError, TaskProcess, launch
from peanut.modes import PeanutMode
from peanut.tui.messages import LogLine

_LAUNCHER_LOG = logging.getLogger("executor")


class _OutputLines(logging.Handler):
    """Forwarded output lines of one pid ("task %d %s: %s") as log pane lines."""

    def __init__(self, pid: int, post: Callable[[Message], object]) -> None:
        super().__init__(logging.INFO)
        self.pid = pid
        self._post = post

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and args[0] == self.pid:
            self._post(LogLine(f"[{self.pid}] {args[2]}", "dim" if args[1] == "stdout" else "magenta"))


class LaunchedTask:
    def __init__(self, argv: Sequence[str], port: int, mode: PeanutMode,
                 post: Callable[[Message], object]) -> None:
        self.command = TaskCommand(
            value=argv[0], arguments=tuple(argv[1:]), env=(f"OCC_CONTROL_PORT={port}",),
            stdout=OutputMode.STDOUT, stderr=OutputMode.STDOUT, control_port=port,
            control_mode=ControlMode.FAIRMQ if mode.json else ControlMode.DIRECT)
        self._post = post
        self.process: TaskProcess | None = None
        self._handler: _OutputLines | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Launch the command; False (and a log line) when it cannot start."""
        try:
            self.process = await launch(self.command)
        except LaunchError as err:
            self._post(LogLine(f"launch failed: {err}", "red"))
            return False
        self._handler = _OutputLines(self.process.pid, self._post)
        _LAUNCHER_LOG.addHandler(self._handler)
        if _LAUNCHER_LOG.getEffectiveLevel() > logging.INFO:
            _LAUNCHER_LOG.setLevel(logging.INFO)
        self._post(LogLine(f"launched pid {self.process.pid}: {self.command.describe()} "
                           f"(OCC_CONTROL_PORT={self.command.control_port})", "bold"))
        self._watch = asyncio.create_task(self._wait(self.process))
        return True

    async def _wait(self, process: TaskProcess) -> None:
        code = await process.wait()
        self._post(LogLine(f"process {process.pid} exited with code {code}",
                           "green" if code == 0 else "red"))

    async def stop(self) -> int | None:
        """Terminate the whole group and reap it; its exit code, None if it never started."""
        if self.process is None:
            return None
        code = await self.process.terminate()
        if self._watch is not None:
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._handler is not None:
            _LAUNCHER_LOG.removeHandler(self._handler)
            self._handler = None
        return code
