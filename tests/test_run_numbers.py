"""RunNumberCounter on real sqlite files: monotonic, never repeated, not across SIGKILL,
not between processes allocating at once."""
from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.store import (
    RUN_NUMBER_MAX,
    Database,
    RunNumberCounter,
    RunNumberOverflowError,
    StoreError,
)
from tests.conftest import ROOT

# A child allocating run numbers for ever, printing each once it is returned. With a go
# file it first waits for it, so that several children start allocating together.
ALLOCATOR = """
import os, sys, time
from pathlib import Path
from engine.store.database import Database
from engine.store.run_numbers import RunNumberCounter
counter = RunNumberCounter(Database(Path(sys.argv[1])))
count = int(sys.argv[2])
go = Path(sys.argv[3]) if len(sys.argv) > 3 else None
print("ready", flush=True)
while go is not None and not go.exists():
    time.sleep(0.005)
allocated = 0
while count < 0 or allocated < count:
    number = counter.next()
    os.write(1, f"{number}\\n".encode())
    allocated += 1
"""


def start_allocator(store: Path, output: Path, count: int = -1,
                    go: Path | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    argv = [sys.executable, "-c", ALLOCATOR, str(store), str(count)]
    if go is not None:
        argv.append(str(go))
    with output.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, output


def numbers_in(output: Path) -> list[int]:
    """The numbers a child printed; a line cut by SIGKILL (no newline) is not one."""
    text = output.read_text()
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete or empty
    assert lines and lines[0] == "ready", f"{output}: {text[:2000]}"
    return [int(line) for line in lines[1:]]


def wait_for_numbers(outputs: list[Path], procs: list[subprocess.Popen[bytes]],
                     timeout: float = 20.0) -> None:
    """Until every child is ready and numbers flow (one child may still be waiting for
    the write lock: tight loops on one file starve each other, which is fine here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, output in zip(procs, outputs):
            assert proc.poll() is None, f"allocator died: {output.read_text()[:2000]}"
        texts = [output.read_text() for output in outputs]
        if all(text.startswith("ready\n") for text in texts) and \
                sum(text.count("\n") - 1 for text in texts) >= 3:
            return
        time.sleep(0.01)
    raise TimeoutError("the allocators printed no run number")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite"
    Database(path).close()  # created and migrated once, before children race on it
    return path


def test_counts_from_one_and_peek_does_not_allocate(store: Path) -> None:
    with Database(store) as db:
        counter = RunNumberCounter(db)
        assert counter.peek() == 0
        assert [counter.next() for _ in range(3)] == [1, 2, 3]
        assert counter.peek() == 3
        assert counter.peek() == 3
    with Database(store) as db:  # reopened: the counter carries on
        counter = RunNumberCounter(db)
        assert counter.peek() == 3
        assert counter.next() == 4


def test_overflow_past_uint32_is_a_clear_error(store: Path) -> None:
    with Database(store) as db:
        with db.transaction() as conn:
            conn.execute("UPDATE run_counter SET last = ?", (RUN_NUMBER_MAX - 1,))
        counter = RunNumberCounter(db)
        assert counter.next() == 2**32 - 1
        with pytest.raises(RunNumberOverflowError, match=r"4294967295.*largest uint32") as error:
            counter.next()
        assert str(store) in str(error.value)
        assert counter.peek() == RUN_NUMBER_MAX


def test_refused_inside_a_transaction(store: Path) -> None:
    """A rollback of the caller's transaction would give the number out again."""
    with Database(store) as db:
        counter = RunNumberCounter(db)
        with pytest.raises(StoreError, match="outside a transaction"), db.transaction():
            counter.next()
        assert counter.peek() == 0
        assert counter.next() == 1


def test_threads_sharing_one_store_and_separate_connections(store: Path) -> None:
    shared = Database(store)
    other = Database(store)
    seen: list[list[int]] = []
    errors: list[BaseException] = []

    def allocate(db: Database) -> None:
        counter = RunNumberCounter(db)
        mine = []
        try:
            for _ in range(50):
                mine.append(counter.next())
        except StoreError as error:  # reported below
            errors.append(error)
        seen.append(mine)

    threads = [threading.Thread(target=allocate, args=(shared if i % 2 else other,))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    other.close()
    assert not errors
    for mine in seen:
        assert mine == sorted(mine)
    assert sorted(n for mine in seen for n in mine) == list(range(1, 401))


def test_processes_allocating_at_once_never_share_a_number(store: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [start_allocator(store, tmp_path / f"out-{i}.txt", count=100, go=go)
                for i in range(4)]
    deadline = time.monotonic() + 20
    while not all(out.read_text().startswith("ready") for _, out in children):
        assert time.monotonic() < deadline, "allocators did not start"
        time.sleep(0.01)
    go.touch()
    for proc, output in children:
        assert proc.wait(timeout=30) == 0, output.read_text()[:2000]
    per_child = [numbers_in(output) for _, output in children]
    for numbers in per_child:
        assert len(numbers) == 100
        assert numbers == sorted(set(numbers)), "a child saw its numbers out of order"
    everything = sorted(n for numbers in per_child for n in numbers)
    assert everything == list(range(1, 401)), "duplicates or gaps without a crash"


def test_sigkill_at_random_moments_never_repeats_a_number(store: Path, tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    rounds: list[list[int]] = []
    for round_ in range(4):
        children = [start_allocator(store, tmp_path / f"round{round_}-{i}.txt") for i in range(3)]
        procs = [proc for proc, _ in children]
        outputs = [output for _, output in children]
        try:
            wait_for_numbers(outputs, procs)
            for proc in procs:  # each at its own random moment, mid-allocation
                time.sleep(rng.uniform(0.0, 0.1))
                proc.send_signal(signal.SIGKILL)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
        assert all(proc.returncode == -signal.SIGKILL for proc in procs)
        seen = []
        for output in outputs:
            numbers = numbers_in(output)
            assert all(a < b for a, b in itertools.pairwise(numbers)), f"seed {seed}: {output}"
            seen.extend(numbers)
        assert seen, f"seed {seed}: round {round_} allocated nothing"
        assert len(seen) == len(set(seen)), f"seed {seed}: a number was given twice in round {round_}"
        if rounds:
            assert min(seen) > max(rounds[-1]), (
                f"seed {seed}: round {round_} reused a number of the round before")
        rounds.append(seen)
    with Database(store) as db:
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"
        counter = RunNumberCounter(db)
        last_seen = max(rounds[-1])
        # Everything printed was committed first; at most the numbers in flight are lost.
        assert counter.peek() >= last_seen
        assert counter.next() > last_seen
