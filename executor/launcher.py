"""Starting a task's process and taking it down again, with everything it spawned.

Each process leads its own session (so its own process group): signals go to
the whole group, so a `sh -c` line and the children it forked die together.
The process also gets PR_SET_PDEATHSIG=SIGKILL, so it dies if the executor
dies without cleaning up.

PR_SET_PDEATHSIG follows the *thread* that forked the child, not the process:
the signal fires when that thread exits. asyncio forks from the thread that
runs the event loop, so the loop must live as long as the tasks it launched
(run it in the main thread, or keep its thread until the tasks are gone).
Only the direct child carries the setting; its own children are covered by
the group signals of terminate()/kill(), not by the kernel.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import pwd
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from executor.command import TaskCommand
from executor.redaction import without_secrets

log = logging.getLogger("executor")

# Called with the stream's name ("stdout" or "stderr") and one line of output.
LineCallback = Callable[[str, str], None]

MIB = 1 << 20
TRUNCATED = "[truncated]"
# Pipe readers give up this long after the leader exited: a grandchild that
# escaped the group kills could otherwise hold the pipe open forever.
DRAIN_GRACE = 1.0
# How long SIGKILLed group members get to disappear before we stop watching.
KILL_WAIT = 5.0
_READ_CHUNK = 64 * 1024
_LONGEST_LINE = 64 * 1024

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int


def describe_returncode(code: int | None) -> str:
    """How a process ended, in words: "exited with code 3", "was killed by SIGKILL"."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class LaunchError(RuntimeError):
    """A task's process could not be started; the message names the command and why."""


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """The preexec hook: die with the forking thread, and close the fork/prctl race.

    Runs in the child after the user switch (a credential change clears the
    setting, so it must come after). Only prepared ctypes calls: the child of a
    threaded parent must not take locks another thread may have held at fork.
    """
    def setup() -> None:
        if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
    return setup


def _credentials(command: TaskCommand) -> dict[str, Any]:
    """subprocess keyword arguments that switch to `command.user`; none if we already are it."""
    if not command.user:
        return {}
    try:
        entry = pwd.getpwnam(command.user)
    except KeyError:
        raise LaunchError(f"cannot run {command.describe()!r} as user {command.user!r}: "
                          f"no such user") from None
    if entry.pw_uid == os.geteuid():
        return {}
    if os.geteuid() != 0:
        raise LaunchError(f"cannot run {command.describe()!r} as user {command.user!r}: the executor "
                          f"runs as uid {os.geteuid()} and may not switch users (needs root)")
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid)}


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in group `pgid`; reads /proc, so run it off the loop."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass  # someone else's process holds the group id: look closer
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


class _Output:
    """Where one output stream goes: log file, the `executor` logger, a capture, a tail,
    a line callback."""

    def __init__(self, name: str, pid: int, log_fd: int | None, forward: bool,
                 capture_limit: int | None, tail: deque[str] | None,
                 on_line: LineCallback | None) -> None:
        self.name = name
        self.pid = pid
        self.log_fd = log_fd
        self.forward = forward
        self.capture: bytearray | None = bytearray() if capture_limit is not None else None
        self.capture_limit = capture_limit or 0
        self.truncated = False
        self.tail = tail
        self.on_line = on_line
        self._partial = b""

    @property
    def wants_lines(self) -> bool:
        return self.forward or self.tail is not None or self.on_line is not None

    def feed(self, chunk: bytes) -> None:
        if self.log_fd is not None:
            self._write_log(chunk)
        if self.capture is not None:
            room = self.capture_limit - len(self.capture)
            if len(chunk) > room:
                self.truncated = True
            self.capture += chunk[:max(room, 0)]
        if self.wants_lines:
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > _LONGEST_LINE:
                lines.append(self._partial)
                self._partial = b""
            for line in lines:
                self._line(line)

    def _write_log(self, chunk: bytes) -> None:
        """Append to the log file. A regular file opened O_APPEND: the write lands in
        the page cache at once, so it is done inline rather than shipped to a thread.
        A failing log (disk full) must not stop the reading, or the task would block
        on a full pipe: the log is given up instead."""
        assert self.log_fd is not None
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self.log_fd, view):]
        except OSError as error:
            log.warning("task %d: cannot write its %s to the log any more: %s", self.pid,
                        self.name, error.strerror or error)
            self.log_fd = None

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if self.forward:
            log.info("task %d %s: %s", self.pid, self.name, text)
        if self.tail is not None:
            self.tail.append(text)
        if self.on_line is not None:
            self.on_line(self.name, text)

    def captured(self) -> str | None:
        if self.capture is None:
            return None
        text = self.capture.decode("utf-8", errors="replace")
        return f"{text}\n{TRUNCATED}" if self.truncated else text


async def _pump(stream: asyncio.StreamReader, output: _Output) -> None:
    """Copy one pipe to its sinks in chunks; never waits for a newline that may not come."""
    try:
        while chunk := await stream.read(_READ_CHUNK):
            output.feed(chunk)
    finally:
        output.finish()


class TaskProcess:
    """A running task process, leader of its own process group (pgid == pid)."""

    def __init__(self, command: TaskCommand, proc: asyncio.subprocess.Process,
                 outputs: dict[str, _Output], readers: list[asyncio.Task[None]],
                 log_fd: int | None, tail: deque[str] | None, log_path: Path | None) -> None:
        self.command = command
        self.pid = proc.pid
        self.pgid = proc.pid
        self.log_path = log_path
        self._proc = proc
        self._outputs = outputs
        self._readers = readers
        self._log_fd = log_fd
        self._tail = tail
        self._drained: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[int] | None = None

    @property
    def returncode(self) -> int | None:
        """The leader's exit status, negative for a signal (-9: SIGKILL); None while it runs."""
        return self._proc.returncode

    @property
    def stdout(self) -> str | None:
        """Captured stdout (capped, ending in "[truncated]" if cut); None unless captured."""
        return self._outputs["stdout"].captured() if "stdout" in self._outputs else None

    @property
    def stderr(self) -> str | None:
        return self._outputs["stderr"].captured() if "stderr" in self._outputs else None

    def tail(self) -> list[str]:
        """The last lines of output seen (both streams), if a tail was asked for."""
        return list(self._tail or ())

    async def wait(self) -> int:
        """Wait for the leader to exit and its output to be read; its exit status."""
        code = await self._proc.wait()
        await asyncio.shield(self._drain())  # a cancelled waiter must not stop the reading
        return code

    async def members(self) -> list[int]:
        """Live processes left in the group (the leader included while it runs)."""
        return await asyncio.to_thread(_group_members, self.pgid)

    def signal_group(self, sig: signal.Signals) -> bool:
        """Send `sig` to every process in the group; False if the group is gone."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        return True

    async def terminate(self, term_grace: float = 2.0, int_grace: float = 3.0) -> int:
        """SIGTERM the group, SIGINT after `term_grace`, SIGKILL `int_grace` later.

        Each step is skipped once the group is empty; members left behind by a
        leader that already exited are signalled too. Returns once the leader
        is reaped. Safe to call again or concurrently: all calls share one ladder.
        """
        return await self._stop(((signal.SIGTERM, term_grace), (signal.SIGINT, int_grace)))

    async def kill(self) -> int:
        """SIGKILL the whole group at once; returns once the leader is reaped."""
        return await self._stop(())

    async def _stop(self, ladder: tuple[tuple[signal.Signals, float], ...]) -> int:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._run_ladder(ladder))
        # Shielded: a caller giving up must not leave the group half-killed.
        return await asyncio.shield(self._stopping)

    async def _run_ladder(self, ladder: tuple[tuple[signal.Signals, float], ...]) -> int:
        for sig, grace in (*ladder, (signal.SIGKILL, KILL_WAIT)):
            if not await self.members():
                break
            log.debug("task %d: sending %s to its process group", self.pid, sig.name)
            if not self.signal_group(sig):
                break
            if not await self._until_empty(grace) and sig is signal.SIGKILL:
                log.warning("task %d: processes %s of its group survive SIGKILL",
                            self.pid, await self.members())
        return await self.wait()

    async def _until_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pause = 0.005
        while await self.members():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
        return True

    def _drain(self) -> asyncio.Task[None]:
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._finish_readers())
        return self._drained

    async def _finish_readers(self) -> None:
        try:
            if self._readers:
                _, pending = await asyncio.wait(self._readers, timeout=DRAIN_GRACE)
                if pending:
                    log.warning("task %d exited but a process it left behind keeps its output "
                                "open; no longer reading it", self.pid)
                for reader in pending:
                    reader.cancel()
                await asyncio.gather(*self._readers, return_exceptions=True)
        finally:
            if self._log_fd is not None:
                os.close(self._log_fd)
                self._log_fd = None

    def __repr__(self) -> str:
        return f"TaskProcess(pid={self.pid}, returncode={self.returncode}, {self.command.describe()!r})"


async def launch(command: TaskCommand, *, log_path: Path | None = None,
                 extra_env: Mapping[str, str] | None = None, capture: bool = False,
                 capture_limit: int = MIB, tail_lines: int = 0,
                 on_line: LineCallback | None = None) -> TaskProcess:
    """Start `command` in a new session (own process group), as its user if one is set.

    Environment: ours without secret-named variables (redaction.py: the executor's or
    engine's credentials are not the task's), then the command's env entries, then
    `extra_env` (where a task's own secrets, such as its OCC token, go).
    Output (stdout and stderr) is appended to `log_path` if given, otherwise
    discarded, and forwarded line by line to the `executor` logger where the
    command's stdout/stderr mode is not "none". `capture` keeps each stream
    (up to `capture_limit` bytes, see .stdout/.stderr); `tail_lines` keeps the
    last lines of both for diagnostics (see .tail()); `on_line` receives every
    line of both, on the event loop (keep it cheap).
    """
    argv = command.argv()
    credentials = _credentials(command)
    env = {**without_secrets(os.environ), **command.environment, **(extra_env or {})}
    tail: deque[str] | None = deque(maxlen=tail_lines) if tail_lines > 0 else None
    log_fd: int | None = None
    if log_path is not None:
        try:
            log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise LaunchError(f"cannot open log file {str(log_path)!r} for {command.describe()!r}: "
                              f"{error.strerror}") from None

    modes = {"stdout": command.stdout, "stderr": command.stderr}
    wants_lines = capture or tail is not None or on_line is not None
    piped = {name: mode.forwards or wants_lines for name, mode in modes.items()}

    def target(name: str) -> int:
        if piped[name]:
            return subprocess.PIPE
        return log_fd if log_fd is not None else subprocess.DEVNULL

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=target("stdout"), stderr=target("stderr"),
            env=env, start_new_session=True, preexec_fn=_child_setup(os.getpid()), **credentials)
    except FileNotFoundError:
        _close(log_fd)
        raise LaunchError(f"cannot start {command.describe()!r}: executable {argv[0]!r} "
                          f"not found") from None
    except PermissionError as error:
        _close(log_fd)
        who = f" as user {command.user!r}" if command.user else ""
        raise LaunchError(f"cannot start {command.describe()!r}{who}: permission denied "
                          f"({error.strerror or error})") from None
    except (OSError, subprocess.SubprocessError) as error:
        _close(log_fd)
        raise LaunchError(f"cannot start {command.describe()!r}: {error}") from None

    outputs: dict[str, _Output] = {}
    readers: list[asyncio.Task[None]] = []
    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if stream is None:
            continue
        output = _Output(name, proc.pid, log_fd, modes[name].forwards,
                         capture_limit if capture else None, tail, on_line)
        outputs[name] = output
        readers.append(asyncio.ensure_future(_pump(stream, output)))
    if not readers:
        _close(log_fd)  # the child holds its own copy
        log_fd = None
    log.debug("task %d started: %s", proc.pid, argv)
    return TaskProcess(command, proc, outputs, readers, log_fd, tail, log_path)


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
