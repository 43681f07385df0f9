"""The process peanut was asked to launch (`peanut -- CMD …`): started, echoed, stopped.

It runs through the executor's launcher, so it leads its own process group and
dies with peanut; its output lines reach the log pane through the launcher's
line callback.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from textual.message import Message

from executor.command import OutputMode, TaskCommand
from executor.controlmode import ControlMode
from executor.launcher import LaunchError, TaskProcess, launch
from occlib.owner import TOKEN_ENV, new_token
from peanut.modes import PeanutMode
from peanut.tui.messages import LogLine


class LaunchedTask:
    def __init__(self, argv: Sequence[str], port: int, mode: PeanutMode,
                 post: Callable[[Message], object], token: str = "") -> None:
        self.command = TaskCommand(
            value=argv[0], arguments=tuple(argv[1:]), env=(f"OCC_CONTROL_PORT={port}",),
            stdout=OutputMode.NONE, stderr=OutputMode.NONE, control_port=port,
            control_mode=ControlMode.FAIRMQ if mode.json else ControlMode.DIRECT)
        self._post = post
        # peanut launched it, so peanut owns it: its token goes in its environment only.
        self.token = token or new_token()
        self.process: TaskProcess | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Launch the command; False (and a log line) when it cannot start."""
        try:
            self.process = await launch(self.command, on_line=self._line,
                                        extra_env={TOKEN_ENV: self.token})
        except LaunchError as err:
            self._post(LogLine(f"launch failed: {err}", "red"))
            return False
        self._post(LogLine(f"launched pid {self.process.pid}: {self.command.describe()} "
                           f"(OCC_CONTROL_PORT={self.command.control_port})", "bold"))
        self._watch = asyncio.create_task(self._wait(self.process))
        return True

    def _line(self, stream: str, text: str) -> None:
        pid = self.process.pid if self.process is not None else "?"
        self._post(LogLine(f"[{pid}] {text}", "dim" if stream == "stdout" else "magenta"))

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
        return code
