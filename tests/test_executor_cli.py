"""`nutshell-executor run-task` over a real dummy process: the messages the core would get."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, free_port

EXECUTOR = [sys.executable, "-m", "executor.cli"]


def task_file(tmp_path: Path, port: int, *extra: str) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps({
        "value": sys.executable, "arguments": ["-m", "occlib.examples.dummy", *extra],
        "controlPort": port, "controlMode": "direct", "shell": False, "stdout": "none"}))
    return path


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXECUTOR, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def messages(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_a_task_is_driven_and_taken_down(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    done = run("run-task", str(task_file(tmp_path, free_port())), "--task-id", "t1",
               "--environment-id", "env1", "--then", "CONFIGURE", "START", "STOP", "RESET",
               "--arg", "runNumber=12", "--log", str(log))
    assert done.returncode == 0, done.stderr
    bodies = messages(done.stdout)
    statuses = [b["state"] for b in bodies if b["_messageType"] == "StatusUpdate"]
    assert statuses == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    responses = [b for b in bodies if b["_messageType"] == "MesosCommandResponse"]
    assert [r["state"] for r in responses] == ["CONFIGURED", "RUNNING", "CONFIGURED", "STANDBY"]
    assert all(r["error"] == "" and r["taskId"] == "t1" and r["environmentId"] == "env1" for r in responses)
    assert any(b["_messageType"] == "AnnounceTaskPIDEvent" and b["pid"] > 0 for b in bodies)
    assert "START run=12" in log.read_text()


def test_a_failing_transition_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    done = run("run-task", str(task_file(tmp_path, free_port(), "--fail-on", "START")),
               "--then", "CONFIGURE", "START", "STOP")
    assert done.returncode == 1
    responses = [b for b in messages(done.stdout) if b["_messageType"] == "MesosCommandResponse"]
    assert [r["state"] for r in responses] == ["CONFIGURED", "ERROR"]
    assert "transition unsuccessful" in responses[1]["error"]
    assert "error: transition unsuccessful" in done.stderr


def test_bad_task_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"value": "x", "stdout": "loud"}))
    done = run("run-task", str(bad))
    assert done.returncode == 2
    assert str(bad) in done.stderr and "stdout" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run("run-task", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json: No such file or directory" in missing.stderr


def test_hold_keeps_the_task_until_sigterm_then_takes_it_down(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*EXECUTOR, "run-task", str(task_file(tmp_path, port)), "--hold",
                             "--then", "CONFIGURE"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # held once CONFIGURE was answered
            seen.append(line)
            if json.loads(line).get("state") == "CONFIGURED":
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        out = "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    statuses = [b["state"] for b in messages(out) if b["_messageType"] == "StatusUpdate"]
    assert statuses[-1] == "TASK_FINISHED"
