"""Serving a Controllable over OCC (protobuf gRPC, service occ_pb.Occ).

`serve()` is the one call a program makes: it resolves the control port and
role, serves until the process reaches DONE, and returns the exit code.
"""
from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
import threading
from concurrent import futures
from typing import Iterator, Sequence

import grpc

from occlib.controllable import Controllable
from occlib.options import ControlOptions, OptionError, control_options
from occlib.owner import TOKEN_ENV, control_token, owner_interceptors
from occlib.protos import occ_pb2, occ_pb2_grpc
from occlib.runtime import ControlRuntime, TransitionRefused

log = logging.getLogger("occlib")

STREAM_POLL_SECONDS = 0.2
EXIT_GRACE_SECONDS = 0.5


class PortBusy(OSError):
    """The control port cannot be bound; the message names it."""


class OccServicer(occ_pb2_grpc.OccServicer):
    """Thin: parse the request, ask the runtime, build the reply."""

    def __init__(self, runtime: ControlRuntime) -> None:
        self.runtime = runtime

    def GetState(self, request: occ_pb2.GetStateRequest, context: grpc.ServicerContext
                 ) -> occ_pb2.GetStateReply:
        return occ_pb2.GetStateReply(state=self.runtime.state.value, pid=self.runtime.pid)

    def Transition(self, request: occ_pb2.TransitionRequest, context: grpc.ServicerContext
                   ) -> occ_pb2.TransitionReply:
        entries = [(entry.key, entry.value) for entry in request.arguments]
        try:
            result = self.runtime.transition(request.srcState, request.transitionEvent, entries)
        except TransitionRefused as refused:
            context.abort(getattr(grpc.StatusCode, refused.code), str(refused))
        return occ_pb2.TransitionReply(trigger=int(result.trigger), state=result.state.value,
                                       transitionEvent=result.event, ok=result.ok)

    def StateStream(self, request: occ_pb2.StateStreamRequest, context: grpc.ServicerContext
                    ) -> Iterator[occ_pb2.StateStreamReply]:
        subscription = self.runtime.states.subscribe()
        for state in subscription.items(STREAM_POLL_SECONDS, context.is_active):
            yield occ_pb2.StateStreamReply(type=occ_pb2.STATE_STABLE, state=state.value)

    def EventStream(self, request: occ_pb2.EventStreamRequest, context: grpc.ServicerContext
                    ) -> Iterator[occ_pb2.EventStreamReply]:
        subscription = self.runtime.events.subscribe()
        for event in subscription.items(STREAM_POLL_SECONDS, context.is_active):
            yield occ_pb2.EventStreamReply(event=occ_pb2.DeviceEvent(type=int(event)))


def is_loopback(host: str) -> bool:
    return host.strip("[]") in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def warn_if_open(address: str, token_required: bool) -> None:
    """A control port others can reach and drive deserves a line in the log."""
    host = address.rpartition(":")[0]
    if not token_required and not is_loopback(host):
        log.warning("OCC endpoint %s is reachable from other machines and asks no token: anyone "
                    "who reaches it can drive this process (set %s, or listen on 127.0.0.1)",
                    address, TOKEN_ENV)


def check_port_free(host: str, port: int) -> None:
    """gRPC reports a busy port only as a log line and a RuntimeError; say it plainly."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortBusy(error.errno, f"control port {host}:{port} is already in use") from None
            raise PortBusy(error.errno, f"cannot listen on {host}:{port}: {error.strerror}") from None


class OccServer:
    """A running OCC endpoint for one Controllable."""

    def __init__(self, controlled: Controllable, port: int, host: str = "127.0.0.1",
                 max_workers: int = 16, token: str | None = None) -> None:
        """`token`: every call must carry it (None: $OCC_CONTROL_TOKEN, if set)."""
        self.runtime = ControlRuntime(controlled)
        check_port_free(host, port)
        token = control_token() if token is None else token
        self.token_required = bool(token)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                              thread_name_prefix="occ"),
                                   interceptors=owner_interceptors({TOKEN_ENV: token},
                                                                   f"OCC endpoint {host}:{port}"),
                                   options=[("grpc.so_reuseport", 0)])
        occ_pb2_grpc.add_OccServicer_to_server(OccServicer(self.runtime), self._server)
        try:
            self.port = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            raise PortBusy(errno.EADDRINUSE, f"control port {host}:{port} is already in use") from None
        self.address = f"{host}:{self.port}"

    def start(self) -> None:
        self._server.start()
        self.runtime.start_loop()
        log.info("OCC server listening on %s, state %s, %s", self.address, self.runtime.state.value,
                 f"calls must carry ${TOKEN_ENV}" if self.token_required else "no token asked")
        warn_if_open(self.address, self.token_required)

    def wait_done(self, timeout: float | None = None) -> bool:
        return self.runtime.finished.wait(timeout)

    def stop(self, grace: float | None = EXIT_GRACE_SECONDS) -> None:
        self._server.stop(grace).wait()


def _configure_logging(role: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                            format=f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s")


def serve(controlled: Controllable, argv: Sequence[str] | None = None) -> int:
    """Serve `controlled` until it reaches DONE; return the process exit code.

    0 after EXIT, 130 on Ctrl+C, 1 when the control port cannot be used
    (with a one-line message on stderr, no traceback).
    """
    try:
        options, _ = control_options(sys.argv[1:] if argv is None else argv)
    except OptionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return serve_with(controlled, options)


def serve_with(controlled: Controllable, options: ControlOptions) -> int:
    """serve() for a program that resolved its control options itself."""
    _configure_logging(options.role)
    controlled.role = options.role
    if threading.current_thread() is threading.main_thread():
        # Ctrl+C must reach us even if whoever started us ignored SIGINT.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    server: OccServer | None = None
    try:
        server = OccServer(controlled, options.control_port, options.control_host)
        server.start()
        while not server.wait_done(timeout=0.5):
            pass
    except PortBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Anywhere from binding to serving: a clean stop, never a traceback.
        if server is not None:
            log.info("interrupted in state %s", server.runtime.state.value)
            server.stop(grace=0)
        return 130
    server.stop()
    log.info("done")
    return 0
