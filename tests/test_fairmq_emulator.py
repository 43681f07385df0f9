"""The FairMQ device emulator, driven over real OCClite gRPC by a raw JSON client.

The client here is built from the codec and the generated messages only, not
from executor code, so these tests pin the wire behaviour the executor's
fairmq transitioner relies on (reference §2.2, §2.4).
"""
from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Callable

import grpc
import pytest

from occlib.fairmq import FairMQState as S
from occlib.jsoncodec import EVENT_STREAM, GET_STATE, TRANSITION, decoder, encode
from occlib.protos import occ_pb2
from occlib.states import DeviceEventType, Trigger

MODULE = "occlib.examples.fairmq"
CALL_TIMEOUT = 5.0
EXIT_TIMEOUT = 5.0

CHANNEL_ARGUMENTS = {
    "chans.data.numSockets": "1",
    "chans.data.0.address": "tcp://*:5555",
    "chans.data.0.method": "bind",
    "chans.data.0.type": "push",
    "chans.data.0.rcvBufSize": "1000",
    "chans.data.0.rateLogging": "0",
    "chans.data.0.autoBind": "0",
    "__ptree__:json:qc": '{"tasks": {"daq": {"active": "true"}}}',
}

# (source state, event, state reached) of the five CONFIGURE steps.
CONFIGURE_STEPS = [
    (S.IDLE, "INIT DEVICE", S.INITIALIZING_DEVICE),
    (S.INITIALIZING_DEVICE, "COMPLETE INIT", S.INITIALIZED),
    (S.INITIALIZED, "BIND", S.BOUND),
    (S.BOUND, "CONNECT", S.DEVICE_READY),
    (S.DEVICE_READY, "INIT TASK", S.READY),
]


class OccLiteClient:
    """OCClite as the executor speaks it: JSON bodies, bare method paths."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self._get_state = self.channel.unary_unary(
            GET_STATE, request_serializer=encode, response_deserializer=decoder(occ_pb2.GetStateReply))
        self._transition = self.channel.unary_unary(
            TRANSITION, request_serializer=encode, response_deserializer=decoder(occ_pb2.TransitionReply))
        self._event_stream = self.channel.unary_stream(
            EVENT_STREAM, request_serializer=encode, response_deserializer=decoder(occ_pb2.EventStreamReply))

    def get_state(self) -> occ_pb2.GetStateReply:
        return self._get_state(occ_pb2.GetStateRequest(), timeout=CALL_TIMEOUT)

    def state(self) -> str:
        return self.get_state().state

    def transition(self, src: str, event: str, arguments: dict[str, str] | None = None) -> occ_pb2.TransitionReply:
        entries = [occ_pb2.ConfigEntry(key=k, value=v) for k, v in (arguments or {}).items()]
        request = occ_pb2.TransitionRequest(srcState=src, transitionEvent=event, arguments=entries)
        return self._transition(request, timeout=CALL_TIMEOUT)

    def event_stream(self) -> Iterator[occ_pb2.EventStreamReply]:
        return self._event_stream(occ_pb2.EventStreamRequest(), timeout=CALL_TIMEOUT)

    def call_raw(self, method: str) -> None:
        self.channel.unary_unary(method, request_serializer=encode,
                                 response_deserializer=decoder(occ_pb2.GetStateReply))(
            occ_pb2.GetStateRequest(), timeout=CALL_TIMEOUT)


@pytest.fixture
def client() -> Iterator[Callable[[str], OccLiteClient]]:
    made: list[OccLiteClient] = []

    def connect(address: str) -> OccLiteClient:
        made.append(OccLiteClient(address))
        return made[-1]

    yield connect
    for c in made:
        c.channel.close()


def assert_reply(reply: occ_pb2.TransitionReply, event: str, state: str, trigger: Trigger, ok: bool) -> None:
    assert (reply.transitionEvent, reply.state, reply.trigger, reply.ok) == (event, state, int(trigger), ok)


def configure(device: OccLiteClient, arguments: dict[str, str] | None = None) -> None:
    for src, event, reached in CONFIGURE_STEPS:
        reply = device.transition(src, event, arguments if event == "INIT DEVICE" else None)
        assert_reply(reply, event, reached, Trigger.EXECUTOR, True)


def test_configure_step_by_step(spawn, client) -> None:
    proc = spawn(MODULE, "--id", "readout-1")
    device = client(proc.address)
    reply = device.get_state()
    assert (reply.state, reply.pid) == ("IDLE", proc.proc.pid)

    for src, event, reached in CONFIGURE_STEPS:
        arguments = CHANNEL_ARGUMENTS if event == "INIT DEVICE" else None
        assert_reply(device.transition(src, event, arguments), event, reached, Trigger.EXECUTOR, True)
        assert device.state() == reached

    log = proc.output()
    assert "SetProperty chans.data.0.rcvBufSize = 1000\n" in log  # int, not '1000'
    assert "SetProperty chans.data.0.rateLogging = 0\n" in log
    assert "SetProperty chans.data.0.autoBind = False\n" in log
    assert "SetProperty chans.data.0.address = 'tcp://*:5555'\n" in log
    assert "SetProperty qc = {'tasks': {'daq': {'active': 'true'}}}" in log
    assert "BINDING ---> BOUND" in log and "CONNECTING ---> DEVICE READY" in log


def test_run_stop_with_properties_then_reset(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    configure(device)

    reply = device.transition("READY", "RUN", {"runNumber": "42", "run_type": "PHYSICS"})
    assert_reply(reply, "RUN", "RUNNING", Trigger.EXECUTOR, True)
    reply = device.transition("RUNNING", "STOP", {"run_end_reason": "done"})
    assert_reply(reply, "STOP", "READY", Trigger.EXECUTOR, True)
    assert_reply(device.transition("READY", "RESET TASK"), "RESET TASK", "DEVICE READY", Trigger.EXECUTOR, True)
    assert_reply(device.transition("DEVICE READY", "RESET DEVICE"), "RESET DEVICE", "IDLE", Trigger.EXECUTOR, True)

    log = proc.output()
    assert "transition RUN from READY, arguments: runNumber=42, run_type=PHYSICS" in log
    assert "SetProperty runNumber = '42'" in log
    assert "SetProperty run_end_reason = 'done'" in log
    assert "events while RUNNING" in log
    assert "RESETTING TASK ---> DEVICE READY" in log and "RESETTING DEVICE ---> IDLE" in log


def test_end_closes_event_stream_and_exits_zero(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    stream = device.event_stream()
    assert device.state() == "IDLE"

    assert_reply(device.transition("IDLE", "END"), "END", "EXITING", Trigger.EXECUTOR, True)
    events = [reply.event.type for reply in stream]
    assert events == [DeviceEventType.NULL_DEVICE_EVENT]
    assert proc.proc.wait(timeout=EXIT_TIMEOUT) == 0


def test_wrong_source_state_is_invalid_argument(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    with pytest.raises(grpc.RpcError) as refused:
        device.transition("READY", "RUN")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "transition not possible: state mismatch: source: READY current: IDLE"

    with pytest.raises(grpc.RpcError) as unknown:
        device.transition("IDLE", "CONFIGURE")  # an OCC event, not a FairMQ one
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CONFIGURE is not a valid transition name" in unknown.value.details()
    assert device.state() == "IDLE"


def test_event_invalid_in_state_is_refused_without_change(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    assert_reply(device.transition("IDLE", "RUN"), "RUN", "IDLE", Trigger.DEVICE_INTENTIONAL, False)
    assert_reply(device.transition("IDLE", "CONNECT"), "CONNECT", "IDLE", Trigger.DEVICE_INTENTIONAL, False)
    assert device.state() == "IDLE"
    assert "no transition from state IDLE on RUN" in proc.output()


def test_only_occlite_methods_are_served(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    for method in ("StateStream", "/occ_pb.Occ/GetState"):
        with pytest.raises(grpc.RpcError) as missing:
            device.call_raw(method)
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED, method


def test_fail_on_goes_to_error_and_ends_event_stream(spawn, client) -> None:
    proc = spawn(MODULE, "--fail-on", "BIND")
    device = client(proc.address)
    stream = device.event_stream()
    assert_reply(device.transition("IDLE", "INIT DEVICE"), "INIT DEVICE", "INITIALIZING DEVICE",
                 Trigger.EXECUTOR, True)
    assert_reply(device.transition("INITIALIZING DEVICE", "COMPLETE INIT"), "COMPLETE INIT", "INITIALIZED",
                 Trigger.EXECUTOR, True)

    assert_reply(device.transition("INITIALIZED", "BIND"), "BIND", "ERROR", Trigger.DEVICE_ERROR, False)
    assert [reply.event.type for reply in stream] == [DeviceEventType.NULL_DEVICE_EVENT]
    assert device.state() == "ERROR"
    # ERROR is final in FairMQ: END is refused and the device stays up (without --exit-on-error).
    assert_reply(device.transition("ERROR", "END"), "END", "ERROR", Trigger.DEVICE_INTENTIONAL, False)
    assert proc.proc.poll() is None
    assert "BIND failed in BINDING (--fail-on)" in proc.output()


def test_malformed_channel_property_fails_init_device(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    reply = device.transition("IDLE", "INIT DEVICE", {"chans.data.0.sndBufSize": "lots"})
    assert_reply(reply, "INIT DEVICE", "ERROR", Trigger.DEVICE_ERROR, False)
    assert "property chans.data.0.sndBufSize: 'lots' is not an integer" in proc.output()


def test_exit_on_error_exits_one(spawn, client) -> None:
    proc = spawn(MODULE, "--fail-on", "init_device", "--exit-on-error")
    device = client(proc.address)
    reply = device.transition("IDLE", "INIT DEVICE")
    assert_reply(reply, "INIT DEVICE", "ERROR", Trigger.DEVICE_ERROR, False)
    assert proc.proc.wait(timeout=EXIT_TIMEOUT) == 1


@pytest.mark.parametrize("stuck_in", [S.INITIALIZED, S.BOUND, S.DEVICE_READY])
def test_stuck_in_state_then_roll_back(spawn, client, stuck_in: S) -> None:
    proc = spawn(MODULE, "--stuck-in", stuck_in.value)
    device = client(proc.address)
    for src, event, reached in CONFIGURE_STEPS:
        reply = device.transition(src, event)
        if src == stuck_in:
            assert_reply(reply, event, stuck_in.value, Trigger.DEVICE_INTENTIONAL, False)
            break
        assert_reply(reply, event, reached, Trigger.EXECUTOR, True)
    # The executor's roll-back of a stuck CONFIGURE.
    assert_reply(device.transition(stuck_in.value, "RESET DEVICE"), "RESET DEVICE", "IDLE", Trigger.EXECUTOR, True)
    assert f"stuck in {stuck_in.value}" in proc.output()


def test_stuck_on_reset_device_rolls_forward_to_ready(spawn, client) -> None:
    proc = spawn(MODULE, "--stuck-on", "RESET DEVICE")
    device = client(proc.address)
    configure(device)
    assert_reply(device.transition("READY", "RESET TASK"), "RESET TASK", "DEVICE READY", Trigger.EXECUTOR, True)
    reply = device.transition("DEVICE READY", "RESET DEVICE")
    assert_reply(reply, "RESET DEVICE", "DEVICE READY", Trigger.DEVICE_INTENTIONAL, False)
    # The executor's roll-back of a stuck RESET.
    assert_reply(device.transition("DEVICE READY", "INIT TASK"), "INIT TASK", "READY", Trigger.EXECUTOR, True)


def test_crash_on_exits_three(spawn, client) -> None:
    proc = spawn(MODULE, "--crash-on", "CONNECT")
    device = client(proc.address)
    for src, event, _ in CONFIGURE_STEPS[:3]:
        device.transition(src, event)
    with pytest.raises(grpc.RpcError):
        device.transition("BOUND", "CONNECT")
    assert proc.proc.wait(timeout=EXIT_TIMEOUT) == 3


def test_core_fairmq_options_accepted_and_others_ignored(spawn, client) -> None:
    proc = spawn(MODULE, "--id", "stfb-0", "--severity", "info", "--shm-segment-size", "1000",
                 "--channel-config", "name=data,type=push,method=bind,address=tcp://*:5555",
                 "--session", "default", "--rate", "10", "--startup-delay", "0.1",
                 "-S", "/opt/occ/lib/", "-P", "OCClite", "--color", "false")
    device = client(proc.address)
    assert device.state() == "IDLE"
    log = proc.output()
    assert ("ignoring FairMQ options: --severity info --shm-segment-size 1000 --channel-config "
            "name=data,type=push,method=bind,address=tcp://*:5555 --session default --rate 10") in log
    assert "[fairmq stfb-0]" in log and "/opt/occ/lib/" in log


def test_other_plugin_is_a_usage_error(spawn) -> None:
    proc = spawn(MODULE, "-P", "OCC", wait=False)
    assert proc.proc.wait(timeout=EXIT_TIMEOUT) == 2
    assert "-P OCC: this device emulates the OCClite control plugin only" in proc.output()


def test_busy_port_is_one_line_and_exit_one(spawn) -> None:
    first = spawn(MODULE)
    second = spawn(MODULE, "--control-port", str(first.port), wait=False)
    assert second.proc.wait(timeout=EXIT_TIMEOUT) == 1
    output = second.output()
    assert output.strip().splitlines() == [
        f"python -m {MODULE}: error: control port 127.0.0.1:{first.port} is already in use"]
    assert first.proc.poll() is None


def test_sigint_exits_130(spawn, client) -> None:
    proc = spawn(MODULE)
    device = client(proc.address)
    configure(device)
    device.transition("READY", "RUN")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=EXIT_TIMEOUT) == 130
    assert "interrupted in state RUNNING" in proc.output()
