"""`nutshell run` and `nutshell env create --auto`: the one-shots, each one real `nutshell`
process that creates, starts, holds, stops and destroys, with real executors and dummies.
Whatever happens — success, a failing task, SIGTERM — nothing it created is left.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli_env import NUTSHELL, Home, one_line_error, working_home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Iterator[Home]:
    yield from working_home(tmp_path, monkeypatch, capsys)


def nothing_left(home: Home) -> None:
    """No environment, no task on any executor (asked in this process: quicker)."""
    assert home.json("env", "list")["environments"] == []
    assert home.json("task", "list")["tasks"] == []


def test_a_run_of_one_second_exits_zero_and_leaves_nothing(home: Home) -> None:
    done = home.run("run", home.reference, "--duration", "1s")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any("START_ACTIVITY ok, run 1" in line for line in lines)
    assert any(line.startswith("run 1 of ") and "2 tasks on a1, a2" in line for line in lines)
    assert "held until: duration" in lines and lines[-1] == "result: OK"
    assert done.stderr == ""
    nothing_left(home)


def test_a_failing_run_exits_non_zero_with_its_table_and_still_destroys(home: Home) -> None:
    done = home.run("run", home.reference, "-e", "fail_on=START", "--duration", "1s")
    assert done.returncode == 1
    reason = one_line_error(done.stderr)
    assert "START_ACTIVITY failed" in reason
    out = done.stdout
    assert "START_ACTIVITY failed" in out and "DESTROY ok" in out
    rows = [line for line in out.splitlines() if "cli.host-a" in line]
    assert rows and all(".log" in row for row in rows)
    assert out.endswith("result: FAILED\n")
    nothing_left(home)


def test_a_failing_creation_exits_non_zero_and_leaves_nothing(home: Home) -> None:
    done = home.run("run", home.reference, "-e", "fail_on=CONFIGURE")
    assert done.returncode == 1
    assert "CREATE failed" in one_line_error(done.stderr)
    assert "cli.host-a1.dummy" in done.stdout and "DESTROY" not in done.stdout
    nothing_left(home)


def test_sigterm_during_the_run_destroys_it_and_exits_143(home: Home, tmp_path: Path) -> None:
    output = tmp_path / "run.out"
    with output.open("w") as sink:
        process = subprocess.Popen([str(NUTSHELL), "run", home.reference], stdout=sink,
                                   stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "NUTSHELL_HOME": str(home.root)})
        try:
            deadline = time.monotonic() + 120
            while "START_ACTIVITY ok" not in output.read_text():
                assert process.poll() is None, output.read_text()
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            assert process.wait(120) == 143, output.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = output.read_text()
    assert "held until: SIGTERM" in text and "DESTROY ok" in text
    assert "result: INTERRUPTED (SIGTERM)" in text
    nothing_left(home)


def test_an_auto_environment_runs_until_its_run_ends_then_is_destroyed(home: Home) -> None:
    done = home.run("env", "create", "-w", home.reference, "--auto", "--emulate",
                    "-e", '{"hosts": ["a1"]}', "-e", "auto_stop_enabled=true,auto_stop_timeout=1s")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "START_ACTIVITY ok, run 1" in out and "held until: run ended (CONFIGURED)" in out
    assert "1 tasks on a1" in out
    assert "STOP_ACTIVITY" not in out  # the engine stopped the run itself
    assert "DESTROY ok" in out and out.endswith("result: OK\n")
    nothing_left(home)


def test_the_demo_workflow_runs_emulated_as_a_one_shot(home: Home) -> None:
    """By its name alone: the demo repository is made on first use and is the default one;
    with no variables its hosts are every local agent (here a1 and a2)."""
    done = home.run("run", "demo", "--duration", "1s", "--emulate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "START_ACTIVITY ok, run 1" in done.stdout and done.stdout.endswith("result: OK\n")
    assert "tasks on a1, a2" in done.stdout
    nothing_left(home)
