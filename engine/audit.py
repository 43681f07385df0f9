"""The audit log: who changed what through the core API, and how it ended.

One JSON line per mutating call (and per refused call) in audit.log in the working
directory: time (UTC, ISO 8601), user, role, method, target (environment, workflow,
event, tasks, repository, as the request names them) and outcome (OK or the gRPC status
name, with the error's first words). Lines are appended by one worker thread, so the
event loop never waits on the disk and lines never interleave.

The log rotates by size, in that same thread: when a line would take audit.log past
`AuditRotation.max_bytes`, audit.log becomes audit.log.1 (audit.log.1 becomes .2, and so
on; the file past `keep` is dropped) and the line starts a new audit.log. A line is never
split across files, so a line longer than the limit gets a file of its own.
"""
from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.log"
DETAIL_LIMIT = 300  # characters of an error kept in a line
FILE_MODE = 0o600  # the log names users and what they did: its owner's only


@dataclass(frozen=True)
class AuditRotation:
    """When audit.log is rotated and how many rotated files are kept (nutshell.yaml's
    `security.audit`)."""

    max_bytes: int = 10 << 20  # 10 MiB
    keep: int = 5              # audit.log.1 … audit.log.5; older ones are dropped


@dataclass(frozen=True)
class AuditRecord:
    user: str
    role: str
    method: str
    outcome: str
    target: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def line(self) -> str:
        data = asdict(self)
        data["detail"] = self.detail[:DETAIL_LIMIT]
        return json.dumps(data, sort_keys=True, default=str) + "\n"


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of the log at `path` (audit.log.1, .2, …) that exist, newest
    first."""
    numbered = [(int(suffix), file) for file in path.parent.glob(f"{path.name}.*")
                if (suffix := file.name[len(path.name) + 1:]).isascii() and suffix.isdigit()]
    return [file for _, file in sorted(numbered)]


def read_audit(path: Path) -> list[AuditRecord]:
    """The records of an audit log and its rotated files, oldest first (a reader racing
    a rotation may see a line twice or miss one: read a log nobody writes to for a count)."""
    files = [*reversed(rotated_files(path)), path]
    return [AuditRecord(**json.loads(line)) for file in files if file.exists()
            for line in file.read_text().splitlines() if line]


class AuditLog:
    """Appends records to a file from a thread of its own; `record` waits for the line
    to be written, so a reply is never sent before its line is. `rotation` may be
    replaced at any time (a reload): the next line follows the new one."""

    def __init__(self, path: Path, rotation: AuditRotation | None = None) -> None:
        self.path = path
        self.rotation = rotation or AuditRotation()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")

    async def record(self, record: AuditRecord) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self._append,
                                                         record.line())

    def _append(self, line: str) -> None:
        data = line.encode()
        rotation = self.rotation
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > rotation.max_bytes:
            self._rotate(rotation.keep)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            while data:  # a short write (a full disk) raises on the next try, never splits
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def _rotate(self, keep: int) -> None:
        """audit.log → audit.log.1 → … → audit.log.`keep`; what lies past `keep` (the
        oldest, or files a larger `keep` left) is dropped."""
        def numbered(index: int) -> Path:
            return self.path.with_name(f"{self.path.name}.{index}")
        for old in rotated_files(self.path):
            if int(old.name[len(self.path.name) + 1:]) >= keep:
                old.unlink(missing_ok=True)
        for index in range(keep - 1, 0, -1):
            if numbered(index).exists():
                os.replace(numbered(index), numbered(index + 1))
        os.replace(self.path, numbered(1))

    def close(self) -> None:
        """Write what is queued, then stop the thread (blocking)."""
        self._writer.shutdown(wait=True)
