"""The engine's end of the local-agent transport: start, find and talk to executors.

Each local agent is served by a `nutshell-executor agent` process that the
engine starts detached (its own session, no parent-death signal), so it and its
tasks keep running when the engine dies; the next engine finds it again by the
info file it wrote (`find_running`) and reconnects. Calls carry the working
directory's secret (root/agent.secret, 0600, made once).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc

from engine.logtail import tail
from engine.scheduler.agents import AgentSpec
from executor.agent_server import (
    UNIX_PATH_MAX,
    SecretError,
    bearer,
    process_start,
    read_secret,
)
from executor.command import TaskCommand
from executor.protos import agent_pb2, agent_pb2_grpc

SECRET_FILE = "agent.secret"
AGENTS_DIR = "agents"  # sockets and info files, one per agent
START_TIMEOUT = 15.0  # seconds for a new executor to write its info file
COMMAND_MARGIN = 10.0  # seconds added to a command's own timeout for the call deadline
DEFAULT_COMMAND_TIMEOUT = 90.0
BATCH_LIMIT = 256  # commands per CommandBatch call, well within gRPC's 4 MB messages
RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)  # then every 2 s
# Added to a transition's answer: the seq of the event that tells the same answer to every
# Events reader (CommandReply.seq), so the event can be told apart from a newer one.
ANSWER_SEQ = "_seq"


class LocalAgentError(RuntimeError):
    """A call to an executor failed; the message names the agent, the call and why.

    `code` is the gRPC status (UNAUTHENTICATED, NOT_FOUND, UNAVAILABLE…).
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- the secret

def agent_secret(root: Path) -> str:
    """The working directory's secret for executor calls: created once (0600), then read.

    A file others may read is refused, not silently used.
    """
    path = root / SECRET_FILE
    root.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    try:
        return read_secret(path)
    except SecretError as error:
        raise LocalAgentError(str(error)) from None


# ---------------------------------------------------------------- records

@dataclass(frozen=True)
class RemoteTask:
    """A task as its executor describes it (ListTasks): what re-adoption starts from."""

    task_id: str
    environment_id: str
    detector: str
    control_mode: str
    pid: int
    state: str
    control_port: int
    status: str
    log_path: str

    @classmethod
    def from_proto(cls, info: agent_pb2.TaskInfo) -> RemoteTask:
        return cls(task_id=info.task_id, environment_id=info.environment_id,
                   detector=info.detector, control_mode=info.control_mode, pid=info.pid,
                   state=info.state, control_port=info.control_port, status=info.status,
                   log_path=info.log_path)


@dataclass(frozen=True)
class AgentTaskList:
    """An executor's tasks and the seq of its newest event: follow events() from there.

    `instance` names the run of the executor the seq counts in (a restarted executor
    counts from 1 again).
    """

    agent_name: str
    last_seq: int
    tasks: tuple[RemoteTask, ...]
    instance: str = ""


@dataclass(frozen=True)
class AgentBeat:
    """An executor's answer to a heartbeat: which run of it answered, and its newest event."""

    agent_name: str
    instance: str
    last_seq: int


@dataclass(frozen=True)
class RunningAgent:
    """An executor found alive from its info file."""

    name: str
    pid: int
    address: str
    info_file: Path


# ---------------------------------------------------------------- the client

class LocalAgentClient:
    """One engine's connection to one executor; gRPC reconnects the channel by itself."""

    def __init__(self, name: str, address: str, secret: str) -> None:
        self.name = name
        self.address = address
        self._metadata = bearer(secret)
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = agent_pb2_grpc.AgentStub(self._channel)
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        await self._channel.close()

    def _error(self, call: str, error: grpc.aio.AioRpcError) -> LocalAgentError:
        return LocalAgentError(f"agent {self.name} ({self.address}): {call} failed: "
                               f"{error.code().name}: {error.details()}", error.code())

    def _closed_under(self, call: str) -> LocalAgentError:
        """A call cancelled by its channel's close (the pool closes the client of an executor
        found gone while calls still wait on it): that call's failure, not a cancellation of
        the transition. A cancellation of the caller itself goes on."""
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError
        return LocalAgentError(f"agent {self.name} ({self.address}): {call} failed: "
                               f"UNAVAILABLE: the channel closed during the call (the "
                               f"executor is gone)", grpc.StatusCode.UNAVAILABLE)

    async def wait_ready(self, timeout: float) -> None:
        """Until the executor answers (authenticated); LocalAgentError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.list_tasks(timeout=max(0.1, deadline - time.monotonic()))
                return
            except LocalAgentError as error:
                if error.code is not grpc.StatusCode.UNAVAILABLE or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.05)

    async def launch(self, task_id: str, command: TaskCommand | Mapping[str, Any] | str, *,
                     environment_id: str = "", detector: str = "",
                     log_path: Path | str | None = None, timeout: float = 10.0) -> None:
        """Hand the executor a task; TASK_STARTING/RUNNING (or FAILED) follow on events()."""
        if isinstance(command, TaskCommand):
            command_json = command.to_json()
        elif isinstance(command, str):
            command_json = command
        else:
            command_json = json.dumps(dict(command))
        request = agent_pb2.LaunchRequest(task_id=task_id, command_json=command_json,
                                          environment_id=environment_id, detector=detector,
                                          log_path=str(log_path or ""))
        try:
            await self._stub.Launch(request, metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error(f"launch of {task_id}", error) from None

    async def command(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Send a MesosCommand body (§7.4); the MesosCommandResponse body, with ANSWER_SEQ
        for a transition.

        The call's deadline is the command's own `timeout` (ns) plus a margin.
        """
        request = agent_pb2.CommandRequest(body_json=json.dumps(dict(body)))
        try:
            reply = await self._stub.Command(request, metadata=self._metadata,
                                             timeout=_command_seconds(body) + COMMAND_MARGIN)
        except grpc.aio.AioRpcError as error:
            raise self._error(_command_call(body), error) from None
        except asyncio.CancelledError:
            raise self._closed_under(_command_call(body)) from None
        return _answer(reply.body_json, reply.seq)

    async def command_batch(self, bodies: Sequence[Mapping[str, Any]]
                            ) -> list[dict[str, Any] | LocalAgentError]:
        """Send several MesosCommand bodies (each with its one target) in one call per
        BATCH_LIMIT of them, run in parallel by the executor; per body, in order, the
        MesosCommandResponse body or the LocalAgentError `command` would have raised.

        A refused body (unknown task…) fails alone; a call that fails (agent unreachable,
        deadline) fails each of its bodies with the call's error. The deadline is the longest
        of the commands' own timeouts plus a margin. Never raises LocalAgentError itself.
        """
        if not bodies:
            return []
        if len(bodies) <= BATCH_LIMIT:
            return await self._batch(bodies)
        chunks = [bodies[start:start + BATCH_LIMIT]
                  for start in range(0, len(bodies), BATCH_LIMIT)]
        results = await asyncio.gather(*(self._batch(chunk) for chunk in chunks))
        return [outcome for result in results for outcome in result]

    async def _batch(self, bodies: Sequence[Mapping[str, Any]]
                     ) -> list[dict[str, Any] | LocalAgentError]:
        seconds = max(_command_seconds(body) for body in bodies)
        request = agent_pb2.CommandBatchRequest(body_json=[json.dumps(dict(b)) for b in bodies])
        try:
            reply = await self._stub.CommandBatch(request, metadata=self._metadata,
                                                  timeout=seconds + COMMAND_MARGIN)
        except grpc.aio.AioRpcError as error:
            failure = self._error(_command_call(bodies[0]), error)
            return [failure] * len(bodies)
        except asyncio.CancelledError:
            return [self._closed_under(_command_call(bodies[0]))] * len(bodies)
        if len(reply.outcomes) != len(bodies):
            failure = LocalAgentError(
                f"agent {self.name} ({self.address}): {_command_call(bodies[0])} failed: "
                f"{len(reply.outcomes)} outcomes for {len(bodies)} commands")
            return [failure] * len(bodies)
        outcomes: list[dict[str, Any] | LocalAgentError] = []
        for body, outcome in zip(bodies, reply.outcomes, strict=True):
            if outcome.code:
                code = _STATUS_CODES.get(outcome.code, grpc.StatusCode.UNKNOWN)
                outcomes.append(LocalAgentError(
                    f"agent {self.name} ({self.address}): {_command_call(body)} failed: "
                    f"{code.name}: {outcome.error}", code))
            else:
                outcomes.append(_answer(outcome.body_json, outcome.seq))
        return outcomes

    async def kill(self, task_id: str, timeout: float = 60.0) -> None:
        """Take a task down; returns once the executor has no process of it left."""
        try:
            await self._stub.Kill(agent_pb2.KillRequest(task_id=task_id),
                                  metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error(f"kill of {task_id}", error) from None

    async def list_tasks(self, timeout: float = 10.0) -> AgentTaskList:
        try:
            reply = await self._stub.ListTasks(agent_pb2.ListTasksRequest(),
                                               metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error("ListTasks", error) from None
        return AgentTaskList(reply.agent_name, reply.last_seq,
                             tuple(RemoteTask.from_proto(t) for t in reply.tasks),
                             reply.instance)

    async def heartbeat(self, timeout: float) -> AgentBeat:
        """One heartbeat: the executor answers at once unless the channel is cut (or it is
        frozen); LocalAgentError (DEADLINE_EXCEEDED, UNAVAILABLE) otherwise."""
        try:
            reply = await self._stub.Heartbeat(agent_pb2.HeartbeatRequest(),
                                               metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise self._error("Heartbeat", error) from None
        return AgentBeat(reply.agent_name, reply.instance, reply.last_seq)

    async def events(self, after: int = 0, instance: str = "",
                     gone: Callable[[], bool] | None = None
                     ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """(seq, body) of every event after `after`, following live; survives reconnects.

        `instance` is the executor run `after` counts in (AgentTaskList.instance). A dropped
        connection is re-opened from the last seq seen; if the executor restarted meanwhile,
        the new one sends all of its events, none skipped. A gap in seq means the executor's
        backlog no longer held what was missed. Ends when the client closes; a refusal other
        than UNAVAILABLE raises LocalAgentError, and so does an unreachable executor once
        `gone()` says its process no longer runs.
        """
        cursor = after
        failures = 0
        while not self._closed:
            call = self._stub.Events(agent_pb2.EventsRequest(after=cursor, instance=instance),
                                     metadata=self._metadata)
            try:
                async for event in call:
                    failures = 0
                    cursor = event.seq
                    instance = event.instance or instance
                    yield event.seq, json.loads(event.body_json)
            except grpc.aio.AioRpcError as error:
                if self._closed or error.code() is grpc.StatusCode.CANCELLED:
                    return
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise self._error("Events", error) from None
            finally:
                call.cancel()
            if self._closed:
                return
            if gone is not None and gone():
                raise LocalAgentError(f"agent {self.name} ({self.address}): its executor "
                                      "process is gone")
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
            failures += 1


def _answer(body_json: str, seq: int) -> dict[str, Any]:
    answer = json.loads(body_json)
    if seq:
        answer[ANSWER_SEQ] = seq
    return answer


def _command_seconds(body: Mapping[str, Any]) -> float:
    """A MesosCommand's own timeout (ns in the body) in seconds, or the default."""
    timeout_ns = body.get("timeout")
    return (timeout_ns / 1e9 if isinstance(timeout_ns, (int, float)) and timeout_ns > 0
            else DEFAULT_COMMAND_TIMEOUT)


def _command_call(body: Mapping[str, Any]) -> str:
    """How an error names a command: its name and event, e.g. MesosCommand_Transition START."""
    return f"{body.get('name', 'command')} {body.get('event', '')}".strip()


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


# ---------------------------------------------------------------- executor processes

def agents_dir(root: Path) -> Path:
    return root / AGENTS_DIR


def info_file(root: Path, name: str) -> Path:
    return agents_dir(root) / f"{name}.json"


def socket_address(root: Path, name: str) -> str:
    """unix:<root>/agents/<name>.sock, or loopback with any free port when that path is too long."""
    path = agents_dir(root) / f"{name}.sock"
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        return "127.0.0.1:0"
    return f"unix:{path}"


def _alive(pid: int, started: int) -> bool:
    """The same live process as the one that wrote the info file (not a reused pid)."""
    return process_start(pid) == started


def _read_info(path: Path) -> RunningAgent | None:
    try:
        info = json.loads(path.read_text())
        agent = RunningAgent(name=str(info["name"]), pid=int(info["pid"]),
                             address=str(info["address"]), info_file=path)
        started = int(info["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return agent if _alive(agent.pid, started) else None


def find_running(root: Path) -> dict[str, RunningAgent]:
    """The executors of this working directory that are still alive, by agent name.

    Info files of dead executors are skipped (and left for the next start to replace).
    Reads a few small files: cheap enough for the event loop.
    """
    folder = agents_dir(root)
    found: dict[str, RunningAgent] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        agent = _read_info(path)
        if agent is not None:
            found[agent.name] = agent
    return found


class LocalAgentProcess:
    """Starting the executor of one AgentSpec, detached from the engine that starts it."""

    def __init__(self, root: Path, spec: AgentSpec, log_dir: Path | None = None) -> None:
        self.root = root
        self.spec = spec
        self.log_dir = log_dir if log_dir is not None else root / "logs"
        self.process: subprocess.Popen[bytes] | None = None  # when this engine started it

    @property
    def info_file(self) -> Path:
        return info_file(self.root, self.spec.name)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "executor.cli", "agent", "--name", self.spec.name,
                "--listen", socket_address(self.root, self.spec.name),
                "--secret-file", str(self.root / SECRET_FILE),
                "--info-file", str(self.info_file), "--log-dir", str(self.log_dir)]

    async def start(self, timeout: float = START_TIMEOUT) -> RunningAgent:
        """Start the executor (own session, output to logs/agent-<name>.log) and wait until
        its info file names it; LocalAgentError with its log's tail if it exits or is slow."""
        agent_secret(self.root)
        running = find_running(self.root).get(self.spec.name)
        if running is not None:
            raise LocalAgentError(f"agent {self.spec.name}: an executor already serves it "
                                  f"(pid {running.pid}, {running.address}); connect to it instead")
        agents_dir(self.root).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.info_file.unlink()
        output = self.log_dir / f"agent-{self.spec.name}.log"
        proc = self.process = await asyncio.to_thread(self._spawn, output)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            agent = _read_info(self.info_file)
            if agent is not None and agent.pid == proc.pid:
                return agent
            if proc.poll() is not None:
                raise LocalAgentError(f"agent {self.spec.name}: executor exited with "
                                      f"{proc.returncode} at start: {_tail(output)}")
            await asyncio.sleep(0.05)
        raise LocalAgentError(f"agent {self.spec.name}: executor (pid {proc.pid}) did not "
                              f"serve within {timeout:g} s: {_tail(output)}")

    def _spawn(self, output: Path) -> subprocess.Popen[bytes]:
        with output.open("ab") as out:
            return subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=self.root)

    async def connect(self, timeout: float = START_TIMEOUT) -> LocalAgentClient:
        """A ready client to this agent's executor: the running one, or a new one started."""
        secret = agent_secret(self.root)
        agent = find_running(self.root).get(self.spec.name) or await self.start(timeout)
        client = LocalAgentClient(self.spec.name, agent.address, secret)
        try:
            await client.wait_ready(timeout)
        except BaseException:
            await client.close()
            raise
        return client


def _tail(path: Path, lines: int = 5) -> str:
    """An executor's last lines of start-up output, on one line for an error message."""
    try:
        text = tail(path, lines + 5).strip().splitlines()[-lines:]  # blank lines at the end
    except OSError:
        return "(no output)"
    return " | ".join(text) or "(no output)"
