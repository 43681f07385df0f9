"""executor.launcher: real processes, their groups, their output, their death."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from executor.command import CommandError, OutputMode, TaskCommand, uses_occlite_json
from executor.controlmode import ControlMode
from executor.launcher import TRUNCATED, LaunchError, TaskProcess, launch
from tests.conftest import ROOT


@pytest.fixture
async def started() -> AsyncIterator[list[TaskProcess]]:
    """Processes a test launched; whatever is left of them is killed at teardown."""
    processes: list[TaskProcess] = []
    yield processes
    for process in processes:
        await process.kill()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_terminate_kills_the_whole_group(started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("sleep 100 & sleep 100", shell=True))
    started.append(process)
    assert process.pgid == process.pid == os.getpgid(process.pid)
    await until(lambda: len(psutil.Process(process.pid).children()) >= 1)
    members = await process.members()
    assert process.pid in members and len(members) >= 2  # the shell and at least one sleep

    code = await process.terminate(term_grace=1.0, int_grace=1.0)

    assert code == -signal.SIGTERM
    assert process.returncode == code
    assert await process.members() == []
    assert all(gone(pid) for pid in members)


async def test_ladder_ends_with_sigkill_for_a_group_ignoring_term_and_int(
        started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("trap '' TERM INT; sleep 100 & sleep 100", shell=True))
    started.append(process)
    await until(lambda: len(psutil.Process(process.pid).children()) >= 2)

    code = await process.terminate(term_grace=0.2, int_grace=0.2)

    assert code == -signal.SIGKILL
    assert await process.members() == []


async def test_terminate_is_idempotent_and_shared(started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("sleep", arguments=("100",)))
    started.append(process)
    first, second = await asyncio.gather(process.terminate(), process.terminate())
    assert first == second == -signal.SIGTERM
    assert await process.terminate() == first
    assert await process.kill() == first


async def test_members_left_by_an_exited_leader_are_killed(started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("sleep 100 & exit 0", shell=True))
    started.append(process)
    assert await process.wait() == 0
    left = await process.members()
    assert left, "the background sleep should still be in the group"

    assert await process.terminate(term_grace=1.0) == 0

    assert await process.members() == []
    assert all(gone(pid) for pid in left)


CONTROLLER = """
import asyncio, sys
from executor.command import CommandError, OutputMode, TaskCommand, uses_occlite_json
from executor.controlmode import ControlMode
from executor.launcher import launch

async def main():
    sleeper = await launch(TaskCommand("sleep", arguments=("100",), user=sys.argv[1]))
    print(sleeper.pid, flush=True)
    await asyncio.sleep(100)

asyncio.run(main())
"""


# As another user too: switching credentials clears PDEATHSIG, so it must be set after.
@pytest.mark.parametrize("user", ["", "nobody"])
async def test_task_dies_with_its_controller(user: str) -> None:
    if user and os.geteuid() != 0:
        pytest.skip("switching users needs root")
    controller = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONTROLLER, user, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert controller.stdout is not None
        line = await asyncio.wait_for(controller.stdout.readline(), 10)
        sleeper = int(line)
        assert not gone(sleeper)
        controller.kill()  # SIGKILL: no clean-up code of ours runs
        await controller.wait()
        await until(lambda: gone(sleeper))
    finally:
        if controller.returncode is None:
            controller.kill()
            await controller.wait()


async def test_missing_executable_is_a_clear_error() -> None:
    with pytest.raises(LaunchError, match=r"'no-such-program-x --flag'.*not found"):
        await launch(TaskCommand("no-such-program-x", arguments=("--flag",)))


async def test_environment_is_ours_then_the_commands_then_extra(
        started: list[TaskProcess]) -> None:
    os.environ["NUTSHELL_TEST_INHERITED"] = "inherited"
    try:
        process = await launch(
            TaskCommand('echo "$NUTSHELL_TEST_INHERITED $A $B"', shell=True, env=("A=a", "B=b")),
            extra_env={"B": "extra"}, capture=True)
    finally:
        del os.environ["NUTSHELL_TEST_INHERITED"]
    started.append(process)
    assert await process.wait() == 0
    assert process.stdout == "inherited a extra\n"


async def test_runs_as_the_commands_user(started: list[TaskProcess]) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    nobody = pwd.getpwnam("nobody")
    process = await launch(TaskCommand("id", arguments=("-u",), user="nobody"), capture=True)
    started.append(process)
    assert await process.wait() == 0
    assert process.stdout == f"{nobody.pw_uid}\n"


async def test_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(LaunchError, match=r"as user 'no-such-user-x': no such user"):
        await launch(TaskCommand("true", user="no-such-user-x"))


UNPRIVILEGED = """
import asyncio, os
from executor.command import CommandError, OutputMode, TaskCommand, uses_occlite_json
from executor.controlmode import ControlMode
from executor.launcher import launch, LaunchError
os.setgid(65534); os.setgroups([]); os.setuid(65534)
try:
    asyncio.run(launch(TaskCommand("true", user="root")))
except LaunchError as error:
    print(error)
"""


def test_an_unprivileged_executor_may_not_switch_users() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody first")
    result = subprocess.run([sys.executable, "-c", UNPRIVILEGED], cwd=ROOT, capture_output=True,
                            text=True, timeout=20)
    assert "as user 'root': the executor runs as uid 65534 and may not switch users" in result.stdout


async def test_output_is_appended_to_the_log_file(tmp_path: Path,
                                                  started: list[TaskProcess]) -> None:
    log = tmp_path / "task.log"
    log.write_text("earlier\n")
    process = await launch(TaskCommand("echo out; echo err >&2", shell=True), log_path=log)
    started.append(process)
    assert await process.wait() == 0
    assert log.read_text().splitlines() == ["earlier", "out", "err"]


async def test_forwarded_lines_reach_the_executor_logger(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, started: list[TaskProcess]) -> None:
    caplog.set_level(logging.INFO, logger="executor")
    log = tmp_path / "task.log"
    command = TaskCommand("echo one; echo two >&2; printf 'no newline'", shell=True,
                          stdout=OutputMode.STDOUT, stderr=OutputMode.NONE)
    process = await launch(command, log_path=log)
    started.append(process)
    assert await process.wait() == 0
    forwarded = [r.getMessage() for r in caplog.records if r.name == "executor"]
    assert f"task {process.pid} stdout: one" in forwarded
    assert f"task {process.pid} stdout: no newline" in forwarded
    assert not any("two" in line for line in forwarded)  # stderr mode none
    assert sorted(log.read_text().splitlines()) == ["no newline", "one", "two"]


async def test_no_log_and_no_forwarding_discards_output(started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("yes | head -c 1000000", shell=True))
    started.append(process)
    assert await process.wait() == 0
    assert process.stdout is None and process.tail() == []


async def test_capture_is_capped_and_says_truncated(started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("head -c 5000 /dev/zero | tr '\\0' x", shell=True),
                           capture=True, capture_limit=1000)
    started.append(process)
    assert await process.wait() == 0
    assert process.stdout == "x" * 1000 + "\n" + TRUNCATED
    assert process.stderr == ""


async def test_tail_keeps_the_last_lines(started: list[TaskProcess]) -> None:
    process = await launch(TaskCommand("seq 1 50", shell=True), tail_lines=3)
    started.append(process)
    await process.wait()
    assert process.tail() == ["48", "49", "50"]


async def test_every_line_reaches_the_line_callback(started: list[TaskProcess], tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    process = await launch(TaskCommand("echo one; echo two >&2; printf three", shell=True),
                           log_path=tmp_path / "task.log", on_line=lambda *line: lines.append(line))
    started.append(process)
    assert await process.wait() == 0
    assert sorted(lines) == [("stderr", "two"), ("stdout", "one"), ("stdout", "three")]
    logged = (tmp_path / "task.log").read_text()
    assert all(word in logged for word in ("one", "two", "three"))


def test_command_json_round_trip() -> None:
    body = {"env": ["A=1", "B=x=y"], "shell": True, "value": "dev", "user": "flp",
            "arguments": ["--a", "b"], "stdout": "all", "stderr": "stdout", "controlPort": 30001,
            "controlMode": "fairmq", "timeout": 5_000_000_000}
    command = TaskCommand.from_json(json.dumps(body))
    assert command.control_mode is ControlMode.FAIRMQ and command.timeout == 5.0
    assert command.environment == {"A": "1", "B": "x=y"}
    assert command.argv() == ["/bin/sh", "-c", "dev --a b"]
    assert json.loads(command.to_json()) == body
    assert TaskCommand.from_json({"value": "x", "controlMode": "whatever"}).control_mode is ControlMode.DIRECT
    assert TaskCommand.from_json({"value": "x", "arguments": ["y"]}).argv() == ["x", "y"]


@pytest.mark.parametrize("body,field", [
    ({"value": "x", "stdout": "some"}, "stdout must be none|stdout|all"),
    ({"value": "x", "stderr": 1}, "stderr must be none|stdout|all"),
    ({"value": ""}, "value"),
    ({"value": "x", "env": ["NOVALUE"]}, "env[0]"),
    ({"value": "x", "arguments": "a b"}, "arguments must be a list"),
    ({"value": "x", "controlPort": 70000}, "controlPort 70000 is out of range"),
    ({"value": "x", "timeout": -1}, "timeout -1 is out of range"),
    ({"value": "x", "shell": "true"}, "shell must be true or false"),
])
def test_command_validation_names_the_field(body: dict, field: str) -> None:
    with pytest.raises(CommandError) as caught:
        TaskCommand.from_json(body)
    assert field in str(caught.value)


def test_occlite_json_is_chosen_like_aliecs_and_a_bit_better() -> None:
    assert uses_occlite_json(["/bin/sh", "-c", "dev --id a -P OCClite --color false"])
    assert uses_occlite_json(["dev", "-P OCClite"])
    assert uses_occlite_json(["dev", "-P", "OCClite"])  # AliECS: protobuf (its quirk)
    assert not uses_occlite_json(["dev", "-P", "OCC"])
    assert not uses_occlite_json(["dev", "OCClite", "-P"])
