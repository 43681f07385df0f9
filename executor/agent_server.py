"""`nutshell-executor agent`: one local agent's executor, serving the Agent service.

The executor serves and the engine dials, so the executor and its tasks outlive
the engine: the next engine finds it by its info file, lists its tasks and asks
for the events it missed (`Events(after=N)` from a bounded backlog). Every
call must carry the installation's secret (`authorization: Bearer <secret>`).
SIGTERM or SIGINT takes every task down (walk to DONE, then signals) and exits.
The tasks themselves are handled by AgentTasks (agent_tasks.py), shared with the
Mesos executor.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from executor.agent_tasks import AgentError, AgentTasks, process_start
from executor.protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger("executor.agent")

AUTH_HEADER = "authorization"
UNIX_PATH_MAX = 107


class SecretError(ValueError):
    """The secret file is missing, empty or readable by others; the message names it."""


def read_secret(path: Path) -> str:
    """The installation's secret; refused if the file is not ours or anyone else may read it."""
    try:
        info = path.stat()
        text = path.read_text().strip()
    except OSError as error:
        raise SecretError(f"secret file {path}: {error.strerror}") from None
    mode = info.st_mode
    if info.st_uid != os.getuid():
        raise SecretError(f"secret file {path}: owned by uid {info.st_uid}, not by this user "
                          f"({os.getuid()}); whoever owns it could drive the executor")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"secret file {path}: mode {stat.S_IMODE(mode):04o} lets others read it; "
                          f"make it 0600")
    if not text:
        raise SecretError(f"secret file {path} is empty")
    return text


def bearer(secret: str) -> tuple[tuple[str, str]]:
    """The call metadata that authenticates a client."""
    return ((AUTH_HEADER, f"Bearer {secret}"),)


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
        answer = await _answering(context, lambda: self.tasks.command(request.body_json))
        return agent_pb2.CommandReply(body_json=json.dumps(answer.body), seq=answer.seq)

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

    async def Heartbeat(self, request: agent_pb2.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> agent_pb2.HeartbeatReply:
        return agent_pb2.HeartbeatReply(agent_name=self.tasks.name,
                                        instance=self.tasks.instance,
                                        last_seq=self.tasks.backlog.last_seq)

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


def check_socket(path: Path) -> None:
    """The agent socket must be ours and 0600: the secret is not its only guard."""
    info = path.lstat()
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) != 0o600:
        raise OSError(f"agent socket {path}: expected a socket owned by uid {os.getuid()} with mode "
                      f"0600, found mode {stat.S_IMODE(info.st_mode):04o} owned by uid {info.st_uid}")


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
    # The socket is made when the port is added: born 0600, so nobody else can connect
    # even before the chmod below (one thread only, this early: the umask is ours).
    umask = os.umask(0o177) if socket_path is not None else None
    try:
        port = server.add_insecure_port(options.listen)
    finally:
        if umask is not None:
            os.umask(umask)
    if port == 0:
        raise OSError(f"agent {options.name}: cannot listen on {options.listen}")
    await server.start()
    if socket_path is not None:
        os.chmod(socket_path, 0o600)
        check_socket(socket_path)
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
