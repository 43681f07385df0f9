"""`nutshell shell`: the headless commands through prompt-toolkit, fed by a pipe.

Real executors and dummy processes (the working directory of test_cli_env: agents a1,
a2 and the two-task `cli` workflow); the shell reads its lines from a pipe input and
draws its prompt to a dummy output, its commands print to the captured stdout.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from console.cli import main
from console.client import open_engine
from console.shell.app import Shell, history_path
from console.shell.colour import ColouredStream
from console.shell.completion import CommandCompleter
from console.shell.parser import build_parser
from console.shell.watch import WatchedEnvironment, _apply
from engine import Engine, EnvironmentEvent, EventKind, WorkingDirectory, find_host
from tests.conftest import free_port
from tests.test_cli_env import NUTSHELL, Home, working_home

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Iterator[Home]:
    yield from working_home(tmp_path, monkeypatch, capsys)


class Transcript:
    """What the shell printed so far (stdout and stderr), read as it comes."""

    def __init__(self, capture: pytest.CaptureFixture[str]) -> None:
        self.capture = capture
        self.out = ""
        self.err = ""

    def read(self) -> None:
        captured = self.capture.readouterr()
        self.out += captured.out
        self.err += captured.err

    async def until(self, seen: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            if seen():
                return
            assert time.monotonic() < deadline, f"stdout:\n{self.out}\nstderr:\n{self.err}"
            await asyncio.sleep(0.05)


async def texts(completer: CommandCompleter, line: str) -> list[str]:
    return [c.text async for c in completer.get_completions_async(Document(line),
                                                                     CompleteEvent())]


@contextlib.contextmanager
def hosted_by_core(home: Home, log: Path) -> Iterator[None]:
    """`nutshell core` hosting the working directory, so front-ends attach to it over gRPC."""
    with log.open("w") as output:
        core = subprocess.Popen([str(NUTSHELL), "core", "--listen", f"127.0.0.1:{free_port()}"],
                                stdout=output, stderr=subprocess.STDOUT,
                                env={**os.environ, "NUTSHELL_HOME": str(home.root)})
    try:
        deadline = time.monotonic() + 30
        while (host := find_host(WorkingDirectory(home.root))) is None or not host.address:
            assert core.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(30) == 0, log.read_text()


# ---------------------------------------------------------------- a session

@pytest.mark.parametrize("where", ["in-process", "attached"])
async def test_a_session_creates_lists_starts_watches_and_destroys(
        home: Home, capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str) -> None:
    with hosted_by_core(home, tmp_path / "core.out") if where == "attached" \
            else contextlib.nullcontext():
        await a_session(home, capsys, attached=where == "attached")


async def a_session(home: Home, capsys: pytest.CaptureFixture[str], attached: bool) -> None:
    transcript = Transcript(capsys)
    capsys.readouterr()
    pipe: PipeInput
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        engine = await open_engine(WorkingDirectory(home.root))
        assert isinstance(engine, Engine) is not attached
        shell = Shell(engine, WorkingDirectory(home.root))
        session = asyncio.create_task(shell.loop())
        try:
            pipe.send_text(f"env create -w {home.reference}\n")
            await transcript.until(lambda: "created" in transcript.out)
            env_id = re.search(r"environment (\S+) created: CONFIGURED, 2 tasks",
                               transcript.out).group(1)

            # Completion while the prompt waits: ids and events from the engine.
            assert env_id in await texts(shell.completer, "env control ")
            assert env_id in await texts(shell.completer, f"env destroy {env_id[:3]}")
            assert sorted(await texts(shell.completer, f"env control {env_id} -e ST")) == [
                "START", "START_ACTIVITY", "STOP", "STOP_ACTIVITY"]
            assert "demo" in await texts(shell.completer, "env create -w de")  # demo repo
            task_ids = {task.task_id for task in (await engine.get_environment(env_id)).tasks}
            assert set(await texts(shell.completer, "task log ")) == task_ids

            pipe.send_text("env list\n")
            await transcript.until(lambda: "WORKFLOW" in transcript.out)
            row = next(line for line in transcript.out.splitlines() if line.startswith(env_id))
            assert "CONFIGURED" in row.split()

            pipe.send_text(f"env control {env_id} -e START\n")
            await transcript.until(lambda: "START_ACTIVITY" in transcript.out)
            assert f"environment {env_id}: START_ACTIVITY CONFIGURED → RUNNING, run 1" \
                in transcript.out

            # A live view until Ctrl+C, which ends the view and not the session.
            pipe.send_text(f"env watch {env_id}\n")
            await transcript.until(lambda: "tasks: 2 RUNNING" in transcript.out)
            assert f"environment {env_id}: RUNNING  run 1  tasks: 2 RUNNING" in transcript.out
            shell.interrupt()
            await transcript.until(lambda: "error: interrupted" in transcript.err)

            pipe.send_text(f"env control {env_id} -e LAUNCH\n")  # a bad line…
            await transcript.until(lambda: "LAUNCH" in transcript.err)
            assert shell.last_code == 1 and not session.done()  # …does not end the session

            pipe.send_text(f"env destroy {env_id} -a\n")
            await transcript.until(lambda: "destroyed" in transcript.out)
            assert f"environment {env_id} destroyed (RUNNING → DONE); 2 tasks killed" \
                in transcript.out
            assert await engine.list_environments() == []
            pipe.send_text("exit\n")
            assert await asyncio.wait_for(session, 10) == 0
        finally:
            session.cancel()
            await engine.close()
    assert "Traceback" not in transcript.err
    history = history_path(WorkingDirectory(home.root)).read_text()
    assert f"+env destroy {env_id} -a" in history and "+exit" in history


def test_nutshell_shell_reads_lines_until_exit_and_keeps_history(
        home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        pipe.send_text("help\nhelp env control\nenv show nope\nfrobnicate\nenv create\n"
                       "'unclosed\nenv list\nquit\nenv list\n")
        code = main(["shell"])
    captured = capsys.readouterr()
    assert code == 0
    assert re.search(r"^environment \(env, e\) +environments$", captured.out, re.MULTILINE)
    assert re.search(r"^exit +leave the shell$", captured.out, re.MULTILINE)
    assert "usage: environment control [-h] -e EVENT" in captured.out
    assert captured.out.count("no environments") == 1  # nothing after quit ran
    errors = captured.err.splitlines()
    assert errors[0] == "error: no environment nope"
    assert errors[1].startswith("error: : argument COMMAND: invalid choice: 'frobnicate'")
    assert "the following arguments are required: -w/--workflow-template" in errors[2]
    assert errors[3] == "error: No closing quotation" and len(errors) == 4
    history = history_path(WorkingDirectory(home.root)).read_text()
    assert "+help env control" in history and "+quit" in history


def test_ctrl_d_leaves_the_shell(home: Home) -> None:
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        pipe.send_text("\x04")
        assert main(["shell"]) == 0


# ---------------------------------------------------------------- completion from the parser

@pytest.mark.parametrize("line, expected", [
    ("", ["environment", "env", "e", "task", "role", "run", "agents", "template", "repository",
          "repo", "help", "exit", "quit"]),
    ("en", ["environment", "env"]),
    ("env c", ["create", "c", "control"]),
    ("env ctl x -", ["-h", "--help", "-e", "--event", "-o", "--output"]),
    ("env ctl x --o", ["--output"]),
    ("env ctl x -o ", ["text", "json"]),
    ("env destroy x -a -", ["-h", "--help", "-k", "--keep-tasks", "-f", "--force", "-o",
                            "--output"]),
    ("env control x -e RE", ["RESET", "RECOVER"]),
    ("env control x -e sto", ["STOP", "STOP_ACTIVITY"]),  # any case, as -e takes them
    ("env create -e ", []),  # variables: nothing to offer
    ("repo default-revision ", []),
    ("help en", ["environment", "env"]),
    ("help env w", ["watch", "w"]),
])
def test_completion_follows_the_parser(line: str, expected: list[str]) -> None:
    completer = CommandCompleter(build_parser(), None)
    got = [c.text for c in completer.get_completions(Document(line), CompleteEvent())]
    assert set(expected) <= set(got) and (expected or not got)
    assert all(text.startswith(line.split(" ")[-1].upper() if " -e " in line
                               else line.split(" ")[-1]) for text in got)


# ---------------------------------------------------------------- colour and the live view

def test_command_output_is_coloured_by_state_on_a_terminal() -> None:
    buffer = io.StringIO()
    stream = ColouredStream(Console(file=buffer, force_terminal=True, color_system="standard",
                                    width=200))
    table = ("ID   WORKFLOW  STATE    RUN\n"
             "abc  cli       RUNNING  1\n"
             "def  cli       ERROR    -\n")
    stream.write(table[:30])  # lines complete across writes
    stream.write(table[30:] + "partial CONFIGURED")
    stream.close()
    text = buffer.getvalue()
    assert ANSI.sub("", text) == table + "partial CONFIGURED"
    assert "\x1b[1mID   WORKFLOW  STATE    RUN\x1b[0m" in text
    assert "\x1b[1;32mRUNNING\x1b[0m" in text and "\x1b[1;31mERROR\x1b[0m" in text
    assert "\x1b[1;34mCONFIGURED\x1b[0m" in text


async def test_the_watched_view_follows_task_events_and_ends_when_destroyed() -> None:
    class NoEngine:
        async def get_environment(self, environment_id: str) -> None:
            raise AssertionError("a task event needs no reading of the environment")

    watched = WatchedEnvironment("e1", "CONFIGURED", 0, {"t1": "CONFIGURED", "t2": "CONFIGURED"})
    engine = NoEngine()
    assert await _apply(engine, watched, EnvironmentEvent(EventKind.TASK, "e1", "RUNNING",
                                                          task_id="t1"))
    assert not await _apply(engine, watched, EnvironmentEvent(EventKind.TASK, "e2", "ERROR",
                                                              task_id="x"))
    assert watched.line() == "environment e1: CONFIGURED  tasks: 1 CONFIGURED, 1 RUNNING"
    assert await _apply(engine, watched, EnvironmentEvent(EventKind.ENVIRONMENT, "e1", "DONE",
                                                          message="destroyed"))
    assert watched.gone
