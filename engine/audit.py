"""The audit log: who changed what through the core API, and how it ended.

One JSON line per mutating call (and per refused call) in audit.log in the working
directory: time (UTC, ISO 8601), user, role, method, target (environment, workflow,
event, tasks, repository, as the request names them) and outcome (OK or the gRPC status
name, with the error's first words). Lines are appended by one worker thread, so the
event loop never waits on the disk and lines never interleave.
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


def read_audit(path: Path) -> list[AuditRecord]:
    """The records of an audit log, oldest first."""
    return [AuditRecord(**json.loads(line)) for line in path.read_text().splitlines() if line]


class AuditLog:
    """Appends records to a file from a thread of its own; `record` waits for the line
    to be written, so a reply is never sent before its line is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")

    async def record(self, record: AuditRecord) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self._append,
                                                         record.line())

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def close(self) -> None:
        """Write what is queued, then stop the thread (blocking)."""
        self._writer.shutdown(wait=True)
