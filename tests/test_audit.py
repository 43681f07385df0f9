"""The audit log's rotation by size: lines in order across files, none split or lost but
the oldest files', every file 0600, the disk work on the audit thread."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from engine.audit import AUDIT_FILE, AuditLog, AuditRecord, AuditRotation, read_audit, rotated_files

TIME = "2026-01-01T00:00:00+00:00"  # a fixed time: every line of a test has one length


def numbered(index: int) -> AuditRecord:
    return AuditRecord(user="ada", role="admin", method=f"m{index:03d}", outcome="OK",
                       target={"environment": "2abc"}, time=TIME)


def methods(file: Path) -> list[str]:
    """The methods of one file's lines (read_audit reads a log's rotated files too)."""
    return [json.loads(line)["method"] for line in file.read_text().splitlines()]


async def write(log: AuditLog, indices: range) -> None:
    for index in indices:
        await log.record(numbered(index))


async def test_lines_rotate_in_order_and_the_oldest_files_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    line = len(numbered(0).line().encode())
    log = AuditLog(path, AuditRotation(max_bytes=3 * line, keep=2))  # 3 lines a file
    try:
        await write(log, range(1, 21))
    finally:
        await asyncio.to_thread(log.close)
    # lines 1-18 filled six files of 3; 19 and 20 start the seventh; .1 and .2 are kept
    assert rotated_files(path) == [tmp_path / f"{AUDIT_FILE}.1", tmp_path / f"{AUDIT_FILE}.2"]
    assert methods(tmp_path / f"{AUDIT_FILE}.2") == ["m013", "m014", "m015"]
    assert methods(tmp_path / f"{AUDIT_FILE}.1") == ["m016", "m017", "m018"]
    assert [r.method for r in read_audit(path)] == [f"m{i:03d}" for i in range(13, 21)]
    for file in (path, *rotated_files(path)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert file.stat().st_size <= 3 * line


async def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    log = AuditLog(path, AuditRotation(max_bytes=200, keep=5))
    long = AuditRecord(user="ada", role="admin", method="long", outcome="UNKNOWN",
                       detail="x" * 280, time=TIME)
    try:
        await log.record(numbered(1))
        await log.record(long)
        await log.record(numbered(2))
    finally:
        await asyncio.to_thread(log.close)
    assert [methods(file) for file in (*reversed(rotated_files(path)), path)] == [
        ["m001"], ["long"], ["m002"]]
    assert read_audit(path)[1] == long


async def test_a_smaller_keep_drops_the_files_past_it_at_the_next_rotation(
        tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    line = len(numbered(0).line().encode())
    log = AuditLog(path, AuditRotation(max_bytes=line, keep=4))  # a line a file
    try:
        await write(log, range(1, 6))
        assert len(rotated_files(path)) == 4
        log.rotation = AuditRotation(max_bytes=line, keep=1)  # as a reload does
        await log.record(numbered(6))
    finally:
        await asyncio.to_thread(log.close)
    assert rotated_files(path) == [tmp_path / f"{AUDIT_FILE}.1"]
    assert methods(path) == ["m006"] and read_audit(path) == [numbered(5), numbered(6)]


async def test_concurrent_records_are_all_written_whole_and_rotation_is_on_the_audit_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / AUDIT_FILE
    line = len(numbered(0).line().encode())
    threads: set[str] = set()
    replace = os.replace

    def spied(source: Path, destination: Path) -> None:
        threads.add(threading.current_thread().name)
        replace(source, destination)
    monkeypatch.setattr("engine.audit.os.replace", spied)
    log = AuditLog(path, AuditRotation(max_bytes=10 * line, keep=100))
    try:
        await asyncio.gather(*(log.record(numbered(index)) for index in range(200)))
    finally:
        await asyncio.to_thread(log.close)
    assert sorted(r.method for r in read_audit(path)) == [f"m{i:03d}" for i in range(200)]
    assert len(rotated_files(path)) == 19
    assert threads and all(name.startswith("audit") for name in threads)
