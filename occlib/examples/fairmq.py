"""An emulated FairMQ device controlled through the OCClite plugin.

It takes the options the AliECS core gives FairMQ devices (--id, --control-port,
-S, -P OCClite, --color) and ignores the other FairMQ options. It serves
OCClite: gRPC with the JSON codec under the bare method paths GetState,
Transition and EventStream. It counts events while RUNNING and logs every
transition with its arguments. After END (EXITING) it exits 0.

Exit codes: 0 after END, 1 if the control port is busy (or after ERROR with
--exit-on-error), 2 for bad options, 3 for --crash-on, 130 on Ctrl+C.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Callable, Iterator, Sequence

import grpc

from occlib.fairmq import FairMQEvent, FairMQState
from occlib.fairmq_device import (
    CRASH_EXIT_CODE,
    FORWARD_EVENT,
    TERMINAL_STATES,
    DeviceBehaviour,
    FairMQDevice,
    StateMismatch,
    UnknownEvent,
    parse_bool,
    parse_event,
    parse_state,
)
from occlib.jsoncodec import EVENT_STREAM, GET_STATE, TRANSITION, decoder, encode
from occlib.options import OptionError, control_options
from occlib.protos import occ_pb2
from occlib.owner import owner_interceptors
from occlib.server import PortBusy, check_port_free, warn_if_open

PROG = "python -m occlib.examples.fairmq"
PLUGIN = "OCClite"
DEFAULT_ID = "fairmq-device"
ERROR_EXIT_CODE = 1
USAGE_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130
STREAM_POLL_SECONDS = 0.2
WAIT_SLICE_SECONDS = 0.5
EXIT_GRACE_SECONDS = 1.0

log = logging.getLogger("fairmq")


class OccLiteService(grpc.GenericRpcHandler):
    """OCClite's three methods under their bare paths; any other path is UNIMPLEMENTED."""

    def __init__(self, device: FairMQDevice) -> None:
        self.device = device
        self._methods: dict[str, grpc.RpcMethodHandler] = {
            GET_STATE: grpc.unary_unary_rpc_method_handler(
                self.get_state, request_deserializer=decoder(occ_pb2.GetStateRequest),
                response_serializer=encode),
            TRANSITION: grpc.unary_unary_rpc_method_handler(
                self.transition, request_deserializer=decoder(occ_pb2.TransitionRequest),
                response_serializer=encode),
            EVENT_STREAM: grpc.unary_stream_rpc_method_handler(
                self.event_stream, request_deserializer=decoder(occ_pb2.EventStreamRequest),
                response_serializer=encode),
        }

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._methods.get(handler_call_details.method)

    def get_state(self, request: occ_pb2.GetStateRequest, context: grpc.ServicerContext) -> occ_pb2.GetStateReply:
        return occ_pb2.GetStateReply(state=self.device.state.value, pid=os.getpid())

    def transition(self, request: occ_pb2.TransitionRequest, context: grpc.ServicerContext
                   ) -> occ_pb2.TransitionReply:
        arguments = {entry.key: entry.value for entry in request.arguments}
        try:
            result = self.device.transition(request.srcState, request.transitionEvent, arguments)
        except (StateMismatch, UnknownEvent) as refused:
            log.warning("Transition refused: %s", refused)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(refused))
        return occ_pb2.TransitionReply(trigger=int(result.trigger), state=result.state.value,
                                       transitionEvent=request.transitionEvent, ok=result.ok)

    def event_stream(self, request: occ_pb2.EventStreamRequest, context: grpc.ServicerContext
                     ) -> Iterator[occ_pb2.EventStreamReply]:
        # OCClite sends one NULL_DEVICE_EVENT when the device reaches EXITING or ERROR, then closes.
        while context.is_active():
            reached = self.device.wait_for_state(TERMINAL_STATES, STREAM_POLL_SECONDS)
            if reached is not None:
                log.info("EventStream: %s reached, sending NULL_DEVICE_EVENT and closing", reached)
                yield occ_pb2.EventStreamReply(event=occ_pb2.DeviceEvent(type=occ_pb2.NULL_DEVICE_EVENT))
                return
            if self.device.closed:
                return


def _events(allowed: Callable[[FairMQEvent], str | None]) -> Callable[[str], frozenset[FairMQEvent]]:
    """An argparse type for `EVENT[,EVENT…]`; `allowed` returns why an event is refused, or None."""
    def parse(value: str) -> frozenset[FairMQEvent]:
        events = set()
        for part in value.split(","):
            if not part.strip():
                continue
            try:
                event = parse_event(part)
            except ValueError as err:
                raise argparse.ArgumentTypeError(str(err)) from None
            refusal = allowed(event)
            if refusal:
                raise argparse.ArgumentTypeError(f"{event}: {refusal}")
            events.add(event)
        if not events:
            raise argparse.ArgumentTypeError("expected at least one FairMQ event")
        return frozenset(events)
    return parse


def _not_automatic(event: FairMQEvent) -> str | None:
    if event in (FairMQEvent.AUTO, FairMQEvent.ERROR_FOUND):
        return "not an event a device does work for"
    return None


def _can_fail(event: FairMQEvent) -> str | None:
    if event == FairMQEvent.END:
        return "cannot fail: EXITING is final in FairMQ (use --crash-on END)"
    return _not_automatic(event)


def _one_event(value: str) -> FairMQEvent:
    events = _events(_not_automatic)(value)
    if len(events) != 1:
        raise argparse.ArgumentTypeError("expected one FairMQ event")
    return next(iter(events))


def _stuck_state(value: str) -> FairMQState:
    try:
        state = parse_state(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if state not in FORWARD_EVENT:
        raise argparse.ArgumentTypeError(
            f"{state}: CONFIGURE can only get stuck in {', '.join(s.value for s in FORWARD_EVENT)}")
    return state


def _flag(value: str) -> bool:
    try:
        return parse_bool(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return seconds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Other FairMQ options (--severity, --channel-config, --session, "
                                       "--shm-segment-size, --rate, …) are accepted and ignored.")
    fairmq = p.add_argument_group("FairMQ device options (as the AliECS core passes them)")
    fairmq.add_argument("--id", default=DEFAULT_ID, help=f"device id (default {DEFAULT_ID})")
    fairmq.add_argument("--control-port", metavar="PORT",
                        help="OCClite port (else $OCC_CONTROL_PORT, else 47100)")
    fairmq.add_argument("--control-host", metavar="HOST",
                        help="address to listen on (else $OCC_CONTROL_HOST, else 127.0.0.1)")
    fairmq.add_argument("-S", dest="plugin_search_path", metavar="PATH", help="plugin search path (logged)")
    fairmq.add_argument("-P", dest="plugin", default=PLUGIN, metavar="PLUGIN",
                        help=f"control plugin; only {PLUGIN} is emulated (default)")
    fairmq.add_argument("--color", type=_flag, default=True, metavar="true|false", help="coloured log (ignored)")
    testing = p.add_argument_group("testing switches")
    testing.add_argument("--fail-on", type=_events(_can_fail), default=frozenset(), metavar="EVENT[,EVENT]",
                         help='the device\'s work for these FairMQ events fails, so it goes to ERROR '
                              '(e.g. --fail-on BIND, --fail-on "INIT TASK,RUN")')
    testing.add_argument("--crash-on", type=_one_event, metavar="EVENT",
                         help=f"exit with code {CRASH_EXIT_CODE} during this FairMQ event")
    testing.add_argument("--stuck-in", type=_stuck_state, metavar="STATE",
                         help="CONFIGURE gets stuck in INITIALIZED, BOUND or DEVICE READY: the event that "
                              "would take it on from there (BIND, CONNECT, INIT TASK) leaves the state "
                              "unchanged (reply ok false), so the executor rolls back with RESET DEVICE")
    testing.add_argument("--stuck-on", type=_events(lambda e: "automatic" if e == FairMQEvent.AUTO else None),
                         default=frozenset(), metavar="EVENT[,EVENT]",
                         help='these FairMQ events leave the state unchanged (reply ok false); e.g. '
                              '--stuck-on "RESET DEVICE" makes RESET get stuck in DEVICE READY')
    testing.add_argument("--startup-delay", type=_seconds, default=0.0, metavar="SEC",
                         help="sleep this long before serving")
    testing.add_argument("--exit-on-error", action="store_true",
                         help=f"exit with code {ERROR_EXIT_CODE} once in ERROR, as a real FairMQ device does "
                              "(by default the emulator stays up in ERROR)")
    testing.add_argument("--event-interval", type=_seconds, default=0.01, metavar="SEC",
                         help="one event is counted per interval while RUNNING (default 0.01)")
    return p


def behaviour_from(options: argparse.Namespace) -> DeviceBehaviour:
    stuck = set(options.stuck_on)
    if options.stuck_in is not None:
        stuck.add(FORWARD_EVENT[options.stuck_in])
    return DeviceBehaviour(fail_on=options.fail_on, crash_on=options.crash_on, stuck_on=frozenset(stuck),
                           event_interval=options.event_interval)


def _configure_logging(device_id: str) -> None:
    handler = logging.StreamHandler(sys.stdout)  # flushes after every record
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [fairmq {device_id}] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _start_server(device: FairMQDevice, host: str, port: int) -> grpc.Server:
    """Listen on host:port or raise PortBusy. SO_REUSEPORT off, so a busy port is an error at all."""
    check_port_free(host, port)
    interceptors = owner_interceptors(what=f"OCClite endpoint {host}:{port}")  # $OCC_CONTROL_TOKEN
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="occlite"),
                         handlers=[OccLiteService(device)], interceptors=interceptors,
                         options=[("grpc.so_reuseport", 0)])
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        raise PortBusy(errno.EADDRINUSE, f"control port {host}:{port} is already in use") from None
    server.start()
    warn_if_open(f"{host}:{port}", bool(interceptors))
    return server


def _serve_until_done(device: FairMQDevice, exit_on_error: bool) -> int:
    """Wait for EXITING (exit 0) or, with exit_on_error, ERROR (exit 1)."""
    ends = TERMINAL_STATES if exit_on_error else frozenset({FairMQState.EXITING})
    while True:
        reached = device.wait_for_state(ends, WAIT_SLICE_SECONDS)
        if reached is FairMQState.EXITING:
            log.info("EXITING: shutting down")
            return 0
        if reached is FairMQState.ERROR:
            log.error("ERROR: exiting with code %d (--exit-on-error)", ERROR_EXIT_CODE)
            return ERROR_EXIT_CODE


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        control, rest = control_options(args)
    except OptionError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_EXIT_CODE
    p = parser()
    options, ignored = p.parse_known_args(rest)
    if options.plugin != PLUGIN:
        p.error(f"-P {options.plugin}: this device emulates the {PLUGIN} control plugin only (-P {PLUGIN})")
    _configure_logging(options.id)
    if ignored:
        log.info("ignoring FairMQ options: %s", " ".join(ignored))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl+C must reach the waiting main thread
    device = FairMQDevice(options.id, behaviour_from(options), logging.getLogger("fairmq.device"))
    server: grpc.Server | None = None
    try:
        if options.startup_delay:
            log.info("starting in %.3g s (--startup-delay)", options.startup_delay)
            time.sleep(options.startup_delay)
        try:
            server = _start_server(device, control.control_host, control.control_port)
        except PortBusy as error:
            print(f"{PROG}: error: {error.strerror}", file=sys.stderr)
            return ERROR_EXIT_CODE
        log.info("device %s (pid %d) serving %s on %s:%d (plugin search path %s), state %s",
                 options.id, os.getpid(), PLUGIN, control.control_host, control.control_port,
                 options.plugin_search_path or "not given", device.state)
        code = _serve_until_done(device, options.exit_on_error)
        grace: float | None = EXIT_GRACE_SECONDS  # the last reply and the stream close reach the client first
    except KeyboardInterrupt:
        log.info("interrupted in state %s", device.state)
        code, grace = INTERRUPTED_EXIT_CODE, 0
    device.close()
    if server is not None:
        server.stop(grace).wait()
    log.info("exit code %d", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
