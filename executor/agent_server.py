"""`nutshell-executor agent`: one local agent's executor, serving the Agent service.

The executor serves and the engine dials, so the executor and its tasks outlive
the engine: the next engine finds it by its info file, lists its tasks and asks
for the events it missed (`Events(after=N)` from a bounded backlog). Every
call must carry the installation's secret (`authorization: Bearer <secret>`).
SIGTERM or SIGINT takes every task down (walk to DONE, then signals) and exits.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import signal
import stat
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from executor.basic_task import CommandTask
from executor.command import CommandError, TaskCommand
from executor.controlled_task import ControlledTask
from executor.hook_task import HookTask
from executor.protos import agent_pb2, agent_pb2_grpc
from executor.reports import HookResult, Report, StatusUpdate, TaskIdentity, TransitionResponse
from executor.task import Task
from executor.tasks import make_task

log = logging.getLogger("executor.agent")

BACKLOG = 10000  # events kept for an engine that reconnects
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # also the name of its default log file
AUTH_HEADER = "authorization"
UNIX_PATH_MAX = 107
TRANSITION = "MesosCommand_Transition"
TRIGGER_HOOK = "MesosCommand_TriggerHook"


class AgentError(Exception):
    """A request this executor refuses; `code` is the gRPC status it answers with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class SecretError(ValueError):
    """The secret file is missing, empty or readable by others; the message names it."""


def read_secret(path: Path) -> str:
    """The installation's secret; refused if anyone but the owner may read the file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as error:
        raise SecretError(f"secret file {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"secret file {path}: mode {stat.S_IMODE(mode):04o} lets others read it; "
                          f"make it 0600")
    if not text:
        raise SecretError(f"secret file {path} is empty")
    return text


def bearer(secret: str) -> tuple[tuple[str, str]]:
    """The call metadata that authenticates a client."""
    return ((AUTH_HEADER, f"Bearer {secret}"),)


# ---------------------------------------------------------------- event backlog

class EventBacklog:
    """Executor→core bodies with sequence numbers; the newest BACKLOG kept for late readers."""

    def __init__(self, size: int = BACKLOG) -> None:
        self._events: deque[tuple[int, str]] = deque(maxlen=size)
        self.last_seq = 0
        self._changed: asyncio.Event = asyncio.Event()

    def append(self, body: Mapping[str, Any]) -> int:
        self.last_seq += 1
        self._events.append((self.last_seq, json.dumps(body)))
        self._changed.set()
        self._changed = asyncio.Event()
        return self.last_seq

    def since(self, after: int) -> list[tuple[int, str]]:
        return [event for event in self._events if event[0] > after]

    async def follow(self, after: int) -> AsyncIterator[tuple[int, str]]:
        """Every event with seq > after, then each new one as it comes; never ends by itself."""
        cursor = after
        while True:
            changed = self._changed
            for seq, body in self.since(cursor):
                cursor = seq
                yield seq, body
            if self.last_seq <= cursor:
                await changed.wait()


# ---------------------------------------------------------------- the executor's tasks

@dataclass
class AgentTask:
    """One task of this executor and the latest status it reported."""

    task: Task
    status: str = ""


class AgentTasks:
    """What the Agent service does, apart from the wire: launch, command, kill, list, report."""

    def __init__(self, name: str, log_dir: Path | None = None) -> None:
        self.name = name
        self.log_dir = log_dir
        self.instance = executor_instance()
        self.backlog = EventBacklog()
        self._tasks: dict[str, AgentTask] = {}
        self._starting: set[asyncio.Task[bool]] = set()

    def _reporter(self, task_id: str) -> Callable[[Report], None]:
        def report(record: Report) -> None:
            if isinstance(record, StatusUpdate) and task_id in self._tasks:
                self._tasks[task_id].status = record.state.name
            if isinstance(record, (TransitionResponse, HookResult)):
                return  # the answer to a Command call: its reply carries it
            self.backlog.append(record.to_message())
        return report

    def launch(self, task_id: str, command_json: str, environment_id: str = "",
               detector: str = "", log_path: str = "") -> None:
        """Register the task and start it in the background; its statuses go to the backlog."""
        if not TASK_ID.fullmatch(task_id):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"launch: task id {task_id!r} is not letters, digits, '.', '_', '-'")
        if task_id in self._tasks:
            raise AgentError(grpc.StatusCode.ALREADY_EXISTS,
                             f"launch: task {task_id} already exists on agent {self.name}")
        try:
            command = TaskCommand.from_json(command_json)
        except (CommandError, ValueError) as error:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"launch of task {task_id}: bad TaskCommandInfo: {error}") from None
        path = Path(log_path) if log_path else (
            self.log_dir / f"{task_id}.log" if self.log_dir is not None else None)
        identity = TaskIdentity(task_id=task_id, agent_id=self.name, executor_id=self.name,
                                environment_id=environment_id, detector=detector)
        try:
            task = make_task(identity, command, self._reporter(task_id), log_path=path)
        except CommandError as error:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"launch of task {task_id}: {error}") from None
        self._tasks[task_id] = AgentTask(task)
        starting = asyncio.ensure_future(task.launch())
        self._starting.add(starting)
        starting.add_done_callback(self._started)

    def _started(self, starting: asyncio.Task[bool]) -> None:
        self._starting.discard(starting)
        if not starting.cancelled() and starting.exception() is not None:
            log.error("agent %s: a launch failed", self.name, exc_info=starting.exception())

    def _task(self, task_id: str, what: str) -> Task:
        entry = self._tasks.get(task_id)
        if entry is None:
            raise AgentError(grpc.StatusCode.NOT_FOUND,
                             f"{what}: no task {task_id!r} on agent {self.name}")
        return entry.task

    async def command(self, body_json: str) -> dict[str, Any]:
        """Run a §7.4 MesosCommand; the MesosCommandResponse body it gives."""
        try:
            body = json.loads(body_json)
        except ValueError as error:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"command body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT, "command body is not a JSON object")
        name = body.get("name")
        targets = body.get("targetList") or []
        arguments = body.get("arguments") or {}
        if not isinstance(targets, list) or len(targets) != 1:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: exactly one target required in targetList, got {targets!r}")
        try:
            task_id = str(targets[0]["TaskId"]["value"])
        except (KeyError, TypeError):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: target has no TaskId.value") from None
        if not isinstance(arguments, dict):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: arguments must be an object, not {arguments!r}")
        task = self._task(task_id, str(name))
        arguments = {str(k): str(v) for k, v in arguments.items()}
        command_id = str(body.get("id", ""))
        environment_id = str(body.get("environmentId", ""))
        if name == TRANSITION:
            timeout = body.get("timeout")
            seconds = timeout / 1e9 if isinstance(timeout, (int, float)) and timeout > 0 else None
            response = await task.transition(str(body.get("source", "")), str(body.get("event", "")),
                                             arguments, seconds, command_id=command_id,
                                             environment_id=environment_id)
            return response.to_message()
        if name == TRIGGER_HOOK:
            if not isinstance(task, HookTask):
                raise AgentError(grpc.StatusCode.FAILED_PRECONDITION,
                                 f"{name}: task {task_id} is not a hook task")
            result = await task.trigger(arguments, command_id=command_id,
                                        environment_id=environment_id)
            return result.to_message()
        raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"unknown command {name!r} (expected {TRANSITION} or {TRIGGER_HOOK})")

    async def command_batch(self, bodies: Sequence[str]) -> list[agent_pb2.CommandOutcome]:
        """Run several MesosCommands at once, each as `command` would; an outcome per body,
        in order. A refused body (AgentError) is its own outcome: the others still run."""
        async def one(body_json: str) -> agent_pb2.CommandOutcome:
            try:
                response = await self.command(body_json)
            except AgentError as error:
                return agent_pb2.CommandOutcome(code=error.code.value[0], error=str(error))
            except Exception as error:  # a fault of ours: this command's outcome, not all's
                log.exception("agent %s: command %.200s failed", self.name, body_json)
                return agent_pb2.CommandOutcome(code=grpc.StatusCode.UNKNOWN.value[0],
                                                error=f"agent {self.name}: {error!r}")
            return agent_pb2.CommandOutcome(body_json=json.dumps(response))
        return list(await asyncio.gather(*(one(body) for body in bodies)))

    async def kill(self, task_id: str) -> None:
        """Take the task down and forget it; its terminal status goes to the backlog."""
        task = self._task(task_id, "kill")
        await task.kill()
        self._tasks.pop(task_id, None)

    async def kill_all(self) -> None:
        """Every task down at once; a task still starting is stopped by its kill."""
        task_ids = list(self._tasks)
        outcomes = await asyncio.gather(*(self.kill(task_id) for task_id in task_ids),
                                        return_exceptions=True)
        for task_id, outcome in zip(task_ids, outcomes):
            if isinstance(outcome, BaseException):
                log.error("agent %s: taking task %s down failed", self.name, task_id,
                          exc_info=outcome)

    def list_tasks(self) -> agent_pb2.ListTasksReply:
        reply = agent_pb2.ListTasksReply(agent_name=self.name, last_seq=self.backlog.last_seq,
                                         instance=self.instance)
        for task_id, entry in self._tasks.items():
            task = entry.task
            reply.tasks.append(agent_pb2.TaskInfo(
                task_id=task_id, environment_id=task.identity.environment_id,
                detector=task.identity.detector, control_mode=str(task.command.control_mode),
                pid=_pid(task), state=str(task.state), control_port=task.command.control_port or 0,
                status=entry.status, log_path=str(task.log_path or "")))
        return reply


def executor_instance() -> str:
    """This run of the executor: its pid and start, which no later process shares."""
    pid = os.getpid()
    return f"{pid}-{process_start(pid) or time.time_ns()}"


def _pid(task: Task) -> int:
    """The task's live process, 0 when it has none."""
    process = None
    if isinstance(task, ControlledTask):
        process = task.process
    elif isinstance(task, CommandTask) and task.run is not None:
        process = task.run.process
    if process is None or process.returncode is not None:
        return 0
    if isinstance(task, ControlledTask) and task.pid:
        return task.pid  # as announced (AnnounceTaskPIDEvent): the one its GetState reports
    return process.pid


# ---------------------------------------------------------------- gRPC

class AgentServicer(agent_pb2_grpc.AgentServicer):
    """Thin: parse the request, call AgentTasks, build the reply."""

    def __init__(self, tasks: AgentTasks) -> None:
        self.tasks = tasks

    async def Launch(self, request: agent_pb2.LaunchRequest,
                     context: grpc.aio.ServicerContext) -> agent_pb2.LaunchReply:
        await _answering(context, lambda: self.tasks.launch(
            request.task_id, request.command_json, request.environment_id, request.detector,
            request.log_path))
        return agent_pb2.LaunchReply()

    async def Command(self, request: agent_pb2.CommandRequest,
                      context: grpc.aio.ServicerContext) -> agent_pb2.CommandReply:
        body = await _answering(context, lambda: self.tasks.command(request.body_json))
        return agent_pb2.CommandReply(body_json=json.dumps(body))

    async def CommandBatch(self, request: agent_pb2.CommandBatchRequest,
                           context: grpc.aio.ServicerContext) -> agent_pb2.CommandBatchReply:
        outcomes = await self.tasks.command_batch(request.body_json)
        return agent_pb2.CommandBatchReply(outcomes=outcomes)

    async def Kill(self, request: agent_pb2.KillRequest,
                   context: grpc.aio.ServicerContext) -> agent_pb2.KillReply:
        await _answering(context, lambda: self.tasks.kill(request.task_id))
        return agent_pb2.KillReply()

    async def ListTasks(self, request: agent_pb2.ListTasksRequest,
                        context: grpc.aio.ServicerContext) -> agent_pb2.ListTasksReply:
        return self.tasks.list_tasks()

    async def Events(self, request: agent_pb2.EventsRequest,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.AgentEvent]:
        backlog = self.tasks.backlog
        instance = self.tasks.instance
        after = request.after
        if request.instance and request.instance != instance:
            after = 0  # the reader counted another run's events: all of this one's are new
        elif after > backlog.last_seq:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                f"agent {self.tasks.name}: no event {request.after} yet (newest is "
                                f"{backlog.last_seq}): this executor is not the one that sent it; "
                                f"list its tasks again")
        async for seq, body in backlog.follow(after):
            yield agent_pb2.AgentEvent(seq=seq, body_json=body, instance=instance)


async def _answering(context: grpc.aio.ServicerContext, call: Callable[[], Any]) -> Any:
    """Run `call` (plain or awaitable); an AgentError becomes its gRPC status."""
    try:
        result = call()
        if isinstance(result, Awaitable):
            result = await result
        return result
    except AgentError as error:
        await context.abort(error.code, str(error))


class SecretCheck(grpc.aio.ServerInterceptor):
    """Refuses every call without the installation's secret, before any servicer sees it."""

    def __init__(self, secret: str, name: str) -> None:
        self._expected = f"Bearer {secret}".encode()
        self._name = name

    async def intercept_service(self, continuation: Callable[..., Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        given = dict(details.invocation_metadata or ()).get(AUTH_HEADER, "")
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        if hmac.compare_digest(given_bytes, self._expected) or handler is None:
            return handler
        message = (f"agent {self._name}: {details.method} refused: "
                   + ("wrong secret" if given else f"no '{AUTH_HEADER}: Bearer <secret>' metadata"))
        return _refusal(handler, message)


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # an async generator, as the streaming handler must be

    options = {"request_deserializer": handler.request_deserializer,
               "response_serializer": handler.response_serializer}
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **options)
    return grpc.unary_unary_rpc_method_handler(refuse, **options)


# ---------------------------------------------------------------- running it

@dataclass(frozen=True)
class AgentOptions:
    name: str
    listen: str  # unix:PATH or 127.0.0.1:PORT
    secret_file: Path
    info_file: Path
    log_dir: Path | None = None


def _unix_path(listen: str) -> Path | None:
    return Path(listen[len("unix:"):]) if listen.startswith("unix:") else None


def check_listen(listen: str) -> None:
    """Only a unix socket or loopback: the executor is for this machine's engine."""
    path = _unix_path(listen)
    if path is not None:
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise ValueError(f"--listen {listen}: socket path longer than {UNIX_PATH_MAX} bytes")
        return
    host, sep, port = listen.rpartition(":")
    if not sep or host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
        raise ValueError(f"--listen {listen!r}: expected unix:PATH or 127.0.0.1:PORT")


def process_start(pid: int) -> int | None:
    """When a live process started (clock ticks since boot, /proc/PID/stat); None if gone or a zombie.

    With the pid it names one process for good: a reused pid has another start.
    """
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line[stat_line.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5), starttime


def write_info(options: AgentOptions, address: str) -> None:
    """The file an engine finds this executor by: name, pid, its start, address."""
    info = {"name": options.name, "pid": os.getpid(), "address": address,
            "started": process_start(os.getpid())}
    options.info_file.parent.mkdir(parents=True, exist_ok=True)
    partial = options.info_file.with_name(options.info_file.name + ".partial")
    partial.write_text(json.dumps(info))
    partial.replace(options.info_file)


async def serve(options: AgentOptions) -> None:
    """Serve until SIGTERM or SIGINT, then take every task down."""
    check_listen(options.listen)
    secret = read_secret(options.secret_file)
    tasks = AgentTasks(options.name, options.log_dir)
    server = grpc.aio.server(interceptors=[SecretCheck(secret, options.name)])
    agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(tasks), server)
    socket_path = _unix_path(options.listen)
    if socket_path is not None:
        socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()  # left by an executor that was killed
    port = server.add_insecure_port(options.listen)
    if port == 0:
        raise OSError(f"agent {options.name}: cannot listen on {options.listen}")
    await server.start()
    if socket_path is not None:
        os.chmod(socket_path, 0o600)
        address = options.listen
    else:
        address = f"{options.listen.rpartition(':')[0]}:{port}"
    write_info(options, address)
    log.info("agent %s: serving on %s", options.name, address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("agent %s: stopping, taking %d task(s) down", options.name,
                 len(tasks.list_tasks().tasks))
        started = time.monotonic()
        await tasks.kill_all()
        log.info("agent %s: tasks down in %.1f s", options.name, time.monotonic() - started)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await server.stop(grace=1.0)
        with contextlib.suppress(FileNotFoundError):
            options.info_file.unlink()
        if socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
