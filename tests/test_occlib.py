"""occlib over real gRPC: the dummy process driven by a client made only from occ.proto,
and the OCClib rules checked on an in-process server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

import occlib
from occlib.arguments import parse_arguments
from occlib.options import OptionError, control_options
from occlib.protos import occ_pb2, occ_pb2_grpc
from tests.conftest import ROOT, free_port, wait_for_port

PROTO = str(ROOT / "occlib" / "protos" / "occ.proto")
CLIENT = str(ROOT / "tests" / "clients" / "proto_only_client.py")


def drive(address: str, steps: list) -> list[dict]:
    """Run the proto-only client in its own interpreter; one reply dict per printing step."""
    done = subprocess.run([sys.executable, CLIENT, PROTO, address, json.dumps(steps)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def T(src: str, event: str, **arguments: str) -> list:
    return ["transition", src, event, arguments]


def test_dummy_full_lifecycle_with_a_client_built_from_the_proto(spawn) -> None:
    dummy = spawn("occlib.examples.dummy", "--o2-role", "readout-1")
    replies = drive(dummy.address, [
        ["get"], ["events"], ["states"], ["sleep", 0.3],
        T("STANDBY", "CONFIGURE", **{"chans.data.0.address": "tcp://x:1", "runNumber": "0"}),
        T("CONFIGURED", "START", runNumber="4711"),
        ["sleep", 0.1],
        T("RUNNING", "STOP"),
        T("CONFIGURED", "RESET"),
        T("STANDBY", "EXIT"),
        ["sleep", 0.5], ["streams"],
    ])
    assert replies[0]["state"] == "STANDBY" and replies[0]["pid"] == dummy.proc.pid
    expected = [("CONFIGURE", "CONFIGURED"), ("START", "RUNNING"), ("STOP", "CONFIGURED"),
                ("RESET", "STANDBY"), ("EXIT", "DONE")]
    for reply, (event, state) in zip(replies[1:6], expected):
        assert reply == {"trigger": "EXECUTOR", "state": state, "event": event, "ok": True}
    assert replies[6]["states"] == ["CONFIGURED", "RUNNING", "CONFIGURED", "STANDBY", "DONE", "closed"]
    assert replies[6]["events"] == ["closed"]
    assert dummy.proc.wait(timeout=10) == 0
    log = dummy.output()
    assert "CONFIGURE run=0 events=0 arguments: chans.data.0.address=tcp://x:1, runNumber=0" in log
    assert "START run=4711" in log
    assert "[readout-1]" in log


def test_refusals_and_replies_follow_occlib(spawn) -> None:
    dummy = spawn("occlib.examples.dummy")
    replies = drive(dummy.address, [
        T("STANDBY", "configure"),      # event names are case-sensitive
        T("STANDBY", "PAUSE"),          # not an OCC event
        T("CONFIGURED", "CONFIGURE"),   # wrong source
        T("STANDBY", "START"),          # not valid in STANDBY
        T("STANDBY", "RESET"),          # quirk: already where RESET leads
        T("STANDBY", "CONFIGURE"),
        T("CONFIGURED", "EXIT"),
    ])
    assert replies[0]["code"] == "UNKNOWN"
    assert replies[1]["code"] == "UNKNOWN"
    assert replies[2] == {"code": "INVALID_ARGUMENT",
                          "details": "transition not possible: state mismatch: source: CONFIGURED current: STANDBY"}
    assert replies[3] == {"trigger": "DEVICE_INTENTIONAL", "state": "STANDBY", "event": "START", "ok": False}
    assert replies[4] == {"trigger": "EXECUTOR", "state": "STANDBY", "event": "RESET", "ok": True}
    assert replies[5]["ok"] and replies[6] == {"trigger": "EXECUTOR", "state": "DONE", "event": "EXIT", "ok": True}
    assert dummy.proc.wait(timeout=10) == 0


def test_failing_handler_goes_to_error_and_recovers(spawn) -> None:
    dummy = spawn("occlib.examples.dummy", "--fail-on", "START")
    replies = drive(dummy.address, [
        T("STANDBY", "CONFIGURE"),
        T("CONFIGURED", "START"),
        T("ERROR", "START"),
        T("ERROR", "RECOVER"),
        T("STANDBY", "CONFIGURE", **{"fail-on": "STOP"}),
        T("CONFIGURED", "START"),
        T("RUNNING", "STOP"),
        T("ERROR", "EXIT"),
    ])
    assert replies[1] == {"trigger": "DEVICE_ERROR", "state": "ERROR", "event": "START", "ok": False}
    assert replies[2] == {"trigger": "DEVICE_ERROR", "state": "ERROR", "event": "START", "ok": False}
    assert replies[3] == {"trigger": "EXECUTOR", "state": "STANDBY", "event": "RECOVER", "ok": True}
    assert replies[5]["state"] == "RUNNING"
    assert replies[6] == {"trigger": "DEVICE_ERROR", "state": "ERROR", "event": "STOP", "ok": False}
    assert replies[7]["state"] == "DONE"
    assert "failing START as asked" in dummy.output()


def test_end_of_stream_is_sent_once_and_the_run_goes_on(spawn) -> None:
    dummy = spawn("occlib.examples.dummy", "--eos-after", "5", "--event-interval", "0.001")
    replies = drive(dummy.address, [
        ["events"], ["sleep", 0.3],
        T("STANDBY", "CONFIGURE"), T("CONFIGURED", "START"),
        ["sleep", 0.5], ["get"],
        T("RUNNING", "STOP"), T("CONFIGURED", "START"), ["sleep", 0.5],
        T("RUNNING", "STOP"), T("CONFIGURED", "EXIT"), ["sleep", 0.3], ["streams"],
    ])
    assert replies[2]["state"] == "RUNNING"
    assert replies[-1]["events"] == ["END_OF_STREAM", "END_OF_STREAM", "closed"]
    assert dummy.output().count("end of stream after 5 events") == 2


def test_internal_error_goes_to_error_with_an_event(spawn) -> None:
    dummy = spawn("occlib.examples.dummy", "--internal-error-after", "3", "--event-interval", "0.001")
    replies = drive(dummy.address, [
        ["events"], ["states"], ["sleep", 0.3],
        T("STANDBY", "CONFIGURE"), T("CONFIGURED", "START"), ["sleep", 0.5], ["get"],
        T("ERROR", "EXIT"), ["sleep", 0.3], ["streams"],
    ])
    assert replies[2]["state"] == "ERROR"
    assert replies[-1]["events"] == ["TASK_INTERNAL_ERROR", "closed"]
    assert replies[-1]["states"] == ["CONFIGURED", "RUNNING", "ERROR", "DONE", "closed"]


def test_crash_inside_a_transition_ends_the_process(spawn) -> None:
    dummy = spawn("occlib.examples.dummy", "--crash-on", "CONFIGURE")
    replies = drive(dummy.address, [T("STANDBY", "CONFIGURE")])
    assert replies[0]["code"] in {"UNAVAILABLE", "CANCELLED", "INTERNAL", "UNKNOWN"}
    assert dummy.proc.wait(timeout=10) == 3


def test_busy_port_is_a_clear_error_not_a_trace(spawn) -> None:
    first = spawn("occlib.examples.dummy")
    second = subprocess.run([sys.executable, "-m", "occlib.examples.dummy", "--control-port", str(first.port)],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert second.returncode == 1
    assert f"control port 127.0.0.1:{first.port} is already in use" in second.stderr
    assert "Traceback" not in second.stderr


def test_port_and_role_come_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OCC_CONTROL_PORT": str(port), "O2_ROLE": "from-env"}
    proc = subprocess.Popen([sys.executable, "-m", "occlib.examples.dummy"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port)
        replies = drive(f"127.0.0.1:{port}", [T("STANDBY", "EXIT")])
        assert replies[0]["state"] == "DONE"
        output, _ = proc.communicate(timeout=10)
        assert "[from-env]" in output and proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigint_stops_the_process_cleanly(spawn) -> None:
    dummy = spawn("occlib.examples.dummy")
    dummy.proc.send_signal(signal.SIGINT)
    assert dummy.proc.wait(timeout=10) == 130
    assert "Traceback" not in dummy.output()


def test_control_option_precedence() -> None:
    options, rest = control_options(["--control-port", "40001", "--x", "1"],
                                    {"OCC_CONTROL_PORT": "40002", "O2_ROLE": "env-role"})
    assert (options.control_port, options.role, rest) == (40001, "env-role", ["--x", "1"])
    options, _ = control_options(["--o2-role=cli"], {"OCC_CONTROL_PORT": "40002"})
    assert (options.control_port, options.role) == (40002, "cli")
    options, _ = control_options([], {})
    assert (options.control_port, options.role) == (47100, "default-role")
    with pytest.raises(OptionError, match="OCC_CONTROL_PORT: 'x' is not a port number"):
        control_options([], {"OCC_CONTROL_PORT": "x"})


def test_ptree_arguments_are_parsed_and_malformed_ones_dropped(caplog) -> None:
    arguments = parse_arguments([
        ("plain", "v"),
        ("__ptree__:json:cfg", '{"a": {"b": 1}}'),
        ("__ptree__:ini:readout", "[equipment]\nrate = 10\n"),
        ("__ptree__:xml:x", '<root k="1"><a>2</a></root>'),
        ("__ptree__:json:broken", "{nope"),
        ("__ptree__:yaml:other", "a: 1"),
    ])
    assert arguments == {"plain": "v", "cfg": {"a": {"b": 1}}, "readout": {"equipment": {"rate": "10"}},
                         "x": {"root": {"<xmlattr>.k": "1", "a": "2"}}}
    assert "malformed json" in caplog.text and "__ptree__:yaml:other" in caplog.text


class Recorder(occlib.Controllable):
    """An in-process controllable to check the rules that a process exit would hide."""

    check_interval = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict]] = []
        self.raise_in: str | None = None

    def _record(self, name: str, args: occlib.Arguments) -> None:
        self.calls.append((name, dict(args)))
        if name == self.raise_in:
            raise RuntimeError(f"{name} exploded")

    def configure(self, args: occlib.Arguments) -> None:
        self._record("configure", args)

    def exit(self, args: occlib.Arguments) -> None:
        self._record("exit", args)


@pytest.fixture
def served() -> tuple[occlib.OccServer, Recorder, occ_pb2_grpc.OccStub]:
    recorder = Recorder()
    server = occlib.OccServer(recorder, free_port())
    server.start()
    channel = grpc.insecure_channel(server.address)
    yield server, recorder, occ_pb2_grpc.OccStub(channel)
    channel.close()
    server.stop(grace=0)


def _transition(stub: occ_pb2_grpc.OccStub, src: str, event: str, **arguments: str) -> occ_pb2.TransitionReply:
    return stub.Transition(occ_pb2.TransitionRequest(
        srcState=src, transitionEvent=event,
        arguments=[occ_pb2.ConfigEntry(key=k, value=v) for k, v in arguments.items()]), timeout=5)


def test_done_refuses_every_transition(served) -> None:
    server, recorder, stub = served
    assert _transition(stub, "STANDBY", "EXIT").state == "DONE"
    assert server.wait_done(timeout=5)
    with pytest.raises(grpc.RpcError) as refused:
        _transition(stub, "DONE", "RECOVER")
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert recorder.calls == [("exit", {})]


def test_raising_handler_goes_to_error_and_run_number_is_read(served) -> None:
    server, recorder, stub = served
    recorder.raise_in = "configure"
    reply = _transition(stub, "STANDBY", "CONFIGURE", runNumber="77", k="v")
    assert (reply.state, reply.ok, reply.trigger) == ("ERROR", False, occ_pb2.DEVICE_ERROR)
    assert recorder.run_number == 77
    assert recorder.calls == [("configure", {"runNumber": "77", "k": "v"})]
    assert stub.GetState(occ_pb2.GetStateRequest(), timeout=5).state == "ERROR"


def test_streams_close_when_done(served) -> None:
    server, recorder, stub = served
    seen: list[str] = []
    call = stub.StateStream(occ_pb2.StateStreamRequest())
    follower = threading.Thread(target=lambda: seen.extend(r.state for r in call))
    follower.start()
    time.sleep(0.2)
    _transition(stub, "STANDBY", "CONFIGURE")
    _transition(stub, "CONFIGURED", "EXIT")
    follower.join(timeout=5)
    assert not follower.is_alive()
    assert seen == ["CONFIGURED", "DONE"]
