"""One engine per working directory: the host lock, core.json, a second engine refused."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import (
    USER_ERRORS,
    Engine,
    EngineHostedElsewhere,
    WorkingDirectory,
    find_host,
)
from engine.hosting import CORE_FILE, EngineHost, HostInfo
from tests.conftest import ROOT

HOST = textwrap.dedent("""
    import sys, time
    from engine.hosting import EngineHost
    from engine.workdir import WorkingDirectory

    host = EngineHost.acquire(WorkingDirectory(__import__("pathlib").Path(sys.argv[1])),
                              address="127.0.0.1:47001")
    print("hosting", flush=True)
    time.sleep(60)
""")


def core(workdir: WorkingDirectory) -> HostInfo:
    """What core.json says now."""
    info = HostInfo.read(workdir.root / CORE_FILE)
    assert info is not None, f"no readable {CORE_FILE} in {workdir.root}"
    return info


@pytest.fixture
def workdir(tmp_path: Path) -> WorkingDirectory:
    return WorkingDirectory(tmp_path / "home").ensure()


def test_the_host_writes_core_json_publishes_its_address_and_cleans_up(
        workdir: WorkingDirectory) -> None:
    host = EngineHost.acquire(workdir)
    try:
        written = json.loads((workdir.root / CORE_FILE).read_text())
        assert written["pid"] == os.getpid() and written["address"] == ""
        assert written["user"] and written["process_start"] > 0
        since = datetime.fromisoformat(written["started"])
        assert abs(since - datetime.now(UTC)).total_seconds() < 5
        host.set_address("127.0.0.1:47000")
        assert core(workdir).address == "127.0.0.1:47000"
        assert find_host(workdir) is None  # ourselves: not "another" host
        with pytest.raises(EngineHostedElsewhere, match=f"pid {os.getpid()}.*47000"):
            EngineHost.acquire(workdir, patience=0.1)  # a second host in this very process
    finally:
        host.release()
    assert not (workdir.root / CORE_FILE).exists()
    with pytest.raises(RuntimeError, match="no longer hosting"):
        host.set_address("127.0.0.1:1")
    EngineHost.acquire(workdir).release()  # free again


async def test_a_second_engine_is_refused_naming_the_host(workdir: WorkingDirectory) -> None:
    first, second = Engine(workdir), Engine(workdir)
    try:
        assert await first.list_environments() == []
        assert first.host is not None and first.host.held
        with pytest.raises(EngineHostedElsewhere) as refused:
            await second.list_environments()
        message = str(refused.value)
        assert str(workdir.root) in message and f"pid {os.getpid()}" in message
        assert "serving no gRPC address" in message and "since 20" in message
        assert EngineHostedElsewhere in USER_ERRORS
        assert await second.list_repos() == []  # repositories and templates need no host
    finally:
        await second.close()
        await first.close()
    assert not (workdir.root / CORE_FILE).exists()
    async with Engine(workdir) as third:  # the lock went with the first engine's close
        host = await third.start_hosting()  # as `nutshell core` does before it serves
        assert third.host is host and host.held
        host.set_address("127.0.0.1:47002")
        assert core(workdir).address == "127.0.0.1:47002"
        assert await third.list_environments() == []


async def test_a_stale_core_json_is_ignored(workdir: WorkingDirectory) -> None:
    gone = await asyncio.to_thread(subprocess.run,
                                   [sys.executable, "-c", "import os; print(os.getpid())"],
                                   capture_output=True, text=True, check=True)
    stale = HostInfo(pid=int(gone.stdout), started=datetime.now(UTC), address="127.0.0.1:1",
                     user="ghost", process_start=1)
    (workdir.root / CORE_FILE).write_text(stale.to_json())
    assert find_host(workdir) is None
    async with Engine(workdir) as engine:
        assert await engine.list_environments() == []
        assert core(workdir).pid == os.getpid()


async def test_the_lock_is_freed_when_the_host_process_is_killed(
        workdir: WorkingDirectory) -> None:
    host = await asyncio.create_subprocess_exec(sys.executable, "-c", HOST, str(workdir.root),
                                                cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert host.stdout is not None
        assert (await asyncio.wait_for(host.stdout.readline(), 30)).strip() == b"hosting"
        found = find_host(workdir)
        assert found is not None and found.pid == host.pid and found.alive
        assert found.address == "127.0.0.1:47001"
        engine = Engine(workdir)
        with pytest.raises(EngineHostedElsewhere, match=f"pid {host.pid} .*127.0.0.1:47001"):
            await engine.list_environments()
        host.send_signal(signal.SIGKILL)
        await asyncio.wait_for(host.wait(), 10)
        deadline = time.monotonic() + 5
        while find_host(workdir) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert find_host(workdir) is None
        assert (workdir.root / CORE_FILE).exists()  # left behind by the dead host, and ignored
        assert await engine.list_environments() == []
        assert core(workdir).pid == os.getpid()
        await engine.close()
    finally:
        if host.returncode is None:
            host.kill()
        await asyncio.wait_for(host.wait(), 10)
