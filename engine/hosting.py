"""One engine per working directory: the host lock and core.json.

Whoever hosts the engine holds an exclusive lock on `$NUTSHELL_HOME/engine.lock`
for as long as it lives; the kernel drops it when the process exits or dies, so a
crashed host never blocks the next one. Beside it, `core.json` says who hosts:
pid, the process's start (a reused pid is not mistaken for the host), since when,
the gRPC address front-ends attach to ("" when the host serves none) and the user.
A core.json whose lock nobody holds is stale and ignored.

The lock is an flock(2) on a file description of its own, so a second engine in the
same process is refused too, and no child process inherits it (Python opens files
non-inheritable).
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.workdir import WorkingDirectory
from executor.agent_server import process_start

LOCK_FILE = "engine.lock"
CORE_FILE = "core.json"
ACQUIRE_PATIENCE = 1.0  # seconds to wait for a holder that has not written core.json yet
_RETRY = 0.05


@dataclass(frozen=True)
class HostInfo:
    """The process hosting a working directory's engine, as its core.json says."""

    pid: int
    started: datetime
    address: str  # gRPC "host:port" front-ends attach to; "" when the host serves none
    user: str
    process_start: int  # clock ticks since boot (/proc/PID/stat): tells a reused pid apart

    @property
    def alive(self) -> bool:
        return self.pid > 0 and process_start(self.pid) == self.process_start

    def describe(self) -> str:
        where = f"serving {self.address}" if self.address else "serving no gRPC address"
        return (f"pid {self.pid} (user {self.user or 'unknown'}), {where}, since "
                f"{self.started.isoformat(timespec='seconds')}")

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "started": self.started.isoformat(),
                           "address": self.address, "user": self.user,
                           "process_start": self.process_start}, indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> HostInfo | None:
        """The record in `path`, or None when it is missing or damaged."""
        try:
            data = json.loads(path.read_text())
            started = datetime.fromisoformat(str(data["started"]))
            return cls(pid=int(data["pid"]), address=str(data.get("address", "")),
                       started=started if started.tzinfo else started.replace(tzinfo=UTC),
                       user=str(data.get("user", "")),
                       process_start=int(data.get("process_start", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None


class EngineHostedElsewhere(RuntimeError):
    """Another live process hosts this working directory's engine: attach to it instead."""

    def __init__(self, root: Path, host: HostInfo | None) -> None:
        self.root = root
        self.host = host
        if host is None:
            detail = "a process holds its lock but has not said who it is (no core.json yet)"
        else:
            detail = host.describe()
        super().__init__(f"the engine of working directory {root} is hosted by another "
                         f"process: {detail}; attach to it or stop it first")


def local_user() -> str:
    """Who runs this process: the host's user in core.json, the requesting user of commands."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _try_lock(path: Path) -> int | None:
    """An fd holding the exclusive lock on `path`, or None when someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.chmod(0o644)
    partial.replace(path)


class EngineHost:
    """This process hosting a working directory's engine: the lock held, core.json written.

    Blocking (file locks, a short wait); call from a worker thread in async code.
    """

    def __init__(self, workdir: WorkingDirectory, fd: int, info: HostInfo) -> None:
        self.workdir = workdir
        self._fd: int | None = fd
        self.info = info

    @classmethod
    def acquire(cls, workdir: WorkingDirectory, *, address: str = "",
                patience: float = ACQUIRE_PATIENCE) -> EngineHost:
        """Take the host lock and write core.json; EngineHostedElsewhere if a live host has it.

        A holder that is not (yet) a live host in core.json — a host starting, or a
        `find_host` probe — is waited for up to `patience` seconds.
        """
        root = workdir.ensure().root
        deadline = time.monotonic() + patience
        while True:
            fd = _try_lock(root / LOCK_FILE)
            if fd is not None:
                break
            holder = HostInfo.read(root / CORE_FILE)
            if (holder is not None and holder.alive) or time.monotonic() >= deadline:
                raise EngineHostedElsewhere(root, holder if holder and holder.alive else None)
            time.sleep(_RETRY)
        pid = os.getpid()
        info = HostInfo(pid=pid, started=datetime.now(UTC), address=address, user=local_user(),
                        process_start=process_start(pid) or 0)
        host = cls(workdir, fd, info)
        try:
            host._write()
        except BaseException:
            host.release()
            raise
        return host

    @property
    def core_file(self) -> Path:
        return self.workdir.root / CORE_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _write(self) -> None:
        _write_atomically(self.core_file, self.info.to_json())

    def set_address(self, address: str) -> None:
        """Publish the gRPC address front-ends attach to (after `nutshell core` bound it)."""
        if self._fd is None:
            raise RuntimeError(f"{self.workdir.root}: no longer hosting; cannot publish "
                               f"address {address}")
        self.info = HostInfo(self.info.pid, self.info.started, address, self.info.user,
                             self.info.process_start)
        self._write()

    def release(self) -> None:
        """Remove core.json and drop the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            current = HostInfo.read(self.core_file)
            if current is not None and current.pid == self.info.pid:
                with contextlib.suppress(FileNotFoundError):
                    self.core_file.unlink()
        finally:
            os.close(fd)  # closing the only description of the lock releases it


def find_host(workdir: WorkingDirectory) -> HostInfo | None:
    """The live process hosting this working directory's engine, unless it is this one.

    None when nobody holds the lock (a core.json left by a dead host is ignored) or
    when the holder has not written a live core.json yet.
    """
    root = workdir.root
    if not root.is_dir():
        return None
    info = HostInfo.read(root / CORE_FILE)
    if info is not None and info.pid == os.getpid():
        return None
    fd = _try_lock(root / LOCK_FILE)
    if fd is not None:
        os.close(fd)  # free: nobody hosts
        return None
    return info if info is not None and info.alive else None
