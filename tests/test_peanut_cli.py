"""peanut's CLI against real tasks: the OCClib dummy (protobuf) and the FairMQ emulator (OCClite).

Commands that talk to a task run the installed console script as a child
process; pure command-line mistakes call main() in-process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from peanut.cli import main
from peanut.config_file import ConfigFileError, load_config_file
from peanut.durations import parse_duration
from peanut.flags import parse_flags, resolve_address
from peanut.modes import PeanutMode

PEANUT = str(Path(sys.executable).with_name("peanut"))
DUMMY = "occlib.examples.dummy"
FAIRMQ = "occlib.examples.fairmq"


def peanut(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PEANUT, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def test_config_file_flattens_nested_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "device.yaml"
    yaml_file.write_text("chans:\n  data:\n    - address: tcp://*:5555\n      rateLogging: 0\n"
                         "    - {address: 'ipc://x', autoBind: true}\nseverity: ~\nempty: {}\n")
    assert load_config_file(yaml_file) == {
        "chans.data.0.address": "tcp://*:5555", "chans.data.0.rateLogging": "0",
        "chans.data.1.address": "ipc://x", "chans.data.1.autoBind": "true",
        "severity": "", "empty": ""}
    json_file = tmp_path / "device.json"
    json_file.write_text(json.dumps({"a": {"b": [1, 2.5]}, "c": False}))
    assert load_config_file(json_file) == {"a.b.0": "1", "a.b.1": "2.5", "c": "false"}


@pytest.mark.parametrize("name, text, expected", [
    ("bad.json", '{"a": 1,\n "b": }', r"bad\.json: invalid JSON at line 2 column 7"),
    ("bad.yaml", "a: [1, 2\nb: 3\n", r"bad\.yaml: invalid YAML at line \d+ column \d+"),
    ("list.yaml", "- a\n- b\n", r"list\.yaml: the top level must be a mapping"),
])
def test_config_file_errors_name_the_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=expected):
        load_config_file(path)
    with pytest.raises(ConfigFileError, match=r"missing\.yaml: no such file"):
        load_config_file(tmp_path / "missing.yaml")


def test_go_style_flags_durations_and_launch_words() -> None:
    flags = parse_flags(["-addr", "host:1", "--timeout=1m30s", "-mode=fmq-step", "--",
                         "python", "-m", "dummy", "--", "-x"])
    assert (flags.addr, flags.timeout, flags.mode, flags.command) == ("host:1", 90.0, "fmq-step", None)
    assert flags.launch == ["python", "-m", "dummy", "--", "-x"]
    flags = parse_flags(["fmq-step", "IDLE", "INIT DEVICE", "a=1", "-timeout", "500ms"])
    assert (flags.command, flags.args, flags.timeout) == ("fmq-step", ["IDLE", "INIT DEVICE", "a=1"], 0.5)
    assert parse_duration("1h2m3.5s") == 3723.5 and parse_duration("0") == 0.0
    assert resolve_address(None, PeanutMode.DIRECT, {"OCC_CONTROL_PORT": "4711"}) == "localhost:4711"
    assert resolve_address(None, PeanutMode.FMQ, {"OCC_CONTROL_PORT": "4711"}) == "localhost:47100"


@pytest.mark.parametrize("argv, message", [
    (["-timeout", "soon", "get-state"], "-timeout: invalid duration 'soon'"),
    (["-mode", "fmq-step", "get-state"], "-mode 'fmq-step': expected direct|fmq"),
    (["-addr", "nohost", "get-state"], "-addr 'nohost': expected host:port"),
    (["-bogus", "get-state"], "flag provided but not defined: -bogus"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["get-state", "-addr"], "flag needs an argument: -addr"),
    (["get-state", "--", "sleep", "1"], "-- CMD (launching a process) is for the TUI"),
])
def test_bad_command_lines_exit_2_with_one_line(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[0]


def test_bad_arguments_and_states_fail_before_any_call(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    addr = ["-addr", f"127.0.0.1:{free_port()}", "-timeout", "200ms"]
    assert main([*addr, "transition", "STANDBY", "CONFIGURED", "novalue"]) == 1
    assert "bad argument 'novalue': expected key=value" in capsys.readouterr().err
    assert main([*addr, "transition", "STANDBY", "RUNNING"]) == 1
    assert "no OCC transition leads from STANDBY to RUNNING" in capsys.readouterr().err
    assert main([*addr, "transition", "STANDBY", "PAUSED"]) == 1
    assert "unknown state 'PAUSED'" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    assert main([*addr, "-config", str(broken), "transition", "STANDBY", "CONFIGURED"]) == 1
    err = capsys.readouterr().err
    assert f"-config: {broken}: invalid YAML at line" in err and len(err.splitlines()) == 1


def test_unreachable_address_fails_within_the_timeout() -> None:
    result = peanut("-addr", f"127.0.0.1:{free_port()}", "-timeout", "300ms", "get-state")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("unreachable: no OCC endpoint answered within 300ms")
    assert result.stdout == ""


def test_direct_transition_chain_with_config_file(spawn, tmp_path: Path) -> None:
    dummy = spawn(DUMMY)
    config = tmp_path / "dummy.yaml"
    config.write_text("chans:\n  data:\n    - address: tcp://*:5555\n      rateLogging: 1\n"
                      "runNumber: 7\n")
    base = ["-addr", dummy.address, "-mode", "direct"]

    state = peanut(*base, "get-state")
    assert state.returncode == 0, state.stderr
    assert state.stdout.splitlines() == ["state: STANDBY", f"pid: {dummy.proc.pid}"]

    configure = peanut(*base, "-config", str(config), "transition", "STANDBY", "CONFIGURED",
                       "runNumber=42", "extra=a=b")
    assert configure.returncode == 0, configure.stderr
    assert "CONFIGURE: STANDBY → CONFIGURED ok (trigger EXECUTOR)" in configure.stdout
    assert ("CONFIGURE run=42 events=0 arguments: chans.data.0.address=tcp://*:5555, "
            "chans.data.0.rateLogging=1, extra=a=b, runNumber=42") in dummy.output()

    # Go-style flag spellings: -flag=value and --flag value
    for words in (["--addr", dummy.address, "-mode=direct"], [f"-addr={dummy.address}", "--mode", "direct"]):
        assert peanut(*words, "get-state").stdout.startswith("state: CONFIGURED")
    for src, dst in (("CONFIGURED", "RUNNING"), ("running", "configured"),
                     ("CONFIGURED", "STANDBY"), ("STANDBY", "DONE")):
        step = peanut(*base, "transition", src, dst)
        assert step.returncode == 0, step.stderr
        assert step.stdout.splitlines()[-1] == f"state: {dst.upper()}"
    assert dummy.proc.wait(timeout=10) == 0


def test_wrong_state_and_rejected_events_fail_clearly(spawn) -> None:
    dummy = spawn(DUMMY)
    base = ["-addr", dummy.address, "-mode", "direct"]
    wrong = peanut(*base, "transition", "CONFIGURED", "RUNNING")
    assert wrong.returncode == 1
    assert ("failed: occplugin returned INVALID_ARGUMENT: transition not possible: state mismatch: "
            "source: CONFIGURED current: STANDBY") in wrong.stderr
    not_valid = peanut(*base, "direct-step", "STANDBY", "START")
    assert not_valid.returncode == 1
    assert "START: STANDBY → STANDBY FAILED (trigger DEVICE_INTENTIONAL)" in not_valid.stdout
    assert "START from STANDBY not ok" in not_valid.stderr
    unknown = peanut(*base, "direct-step", "STANDBY", "PAUSE")
    assert unknown.returncode == 1 and "UNKNOWN" in unknown.stderr
    wrong_mode = peanut("-addr", dummy.address, "get-state")  # CLI default mode is fmq
    assert wrong_mode.returncode == 1
    assert "does not serve OCClite JSON" in wrong_mode.stderr and "-mode direct" in wrong_mode.stderr
    assert dummy.proc.poll() is None


def test_streams_print_events_and_states_and_end_at_exit(spawn) -> None:
    dummy = spawn(DUMMY, "--eos-after", "3")
    env = {**os.environ, "OCC_CONTROL_PORT": str(dummy.port)}  # direct mode without -addr uses it
    streams = [subprocess.Popen([PEANUT, "-mode", "direct", command], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
               for command in ("event-stream", "state-stream")]
    try:
        for stream in streams:
            assert stream.stderr is not None and "following" in stream.stderr.readline()
        for src, event in (("STANDBY", "CONFIGURE"), ("CONFIGURED", "START"),
                           ("RUNNING", "STOP"), ("CONFIGURED", "EXIT")):
            step = peanut("direct-step", src, event, env=env)
            assert step.returncode == 0, step.stderr
        (events, events_err), (states, states_err) = (s.communicate(timeout=10) for s in streams)
    finally:
        for stream in streams:
            if stream.poll() is None:
                stream.kill()
                stream.wait()
    assert [s.returncode for s in streams] == [0, 0], events_err + states_err
    assert [line.split()[1:] for line in events.splitlines()] == [["END_OF_STREAM"]]
    assert [line.split()[1:] for line in states.splitlines()] == [
        ["STATE_STABLE", state] for state in ("CONFIGURED", "RUNNING", "CONFIGURED", "DONE")]
    assert "event stream ended" in events_err and "state stream ended" in states_err


def test_fmq_mode_runs_fairmq_sequences_and_raw_steps(spawn, tmp_path: Path) -> None:
    device = spawn(FAIRMQ, "--id", "x", "-P", "OCClite")
    config = tmp_path / "channels.json"
    config.write_text(json.dumps({"chans": {"data": [{"address": "tcp://*:5555"}]}}))
    base = ["-addr", device.address]  # -mode fmq is the CLI default
    assert peanut(*base, "get-state").stdout.startswith("state: IDLE (OCC STANDBY)")

    configure = peanut(*base, "-config", str(config), "transition", "STANDBY", "CONFIGURED")
    assert configure.returncode == 0, configure.stderr
    assert [line.split(":")[0] for line in configure.stdout.splitlines()] == [
        "INIT DEVICE", "COMPLETE INIT", "BIND", "CONNECT", "INIT TASK", "state"]
    assert configure.stdout.splitlines()[-1] == "state: CONFIGURED (FairMQ READY)"
    assert "SetProperty chans.data.0.address = 'tcp://*:5555'" in device.output()

    run = peanut(*base, "fmq-step", "READY", "RUN", "rate=5")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["RUN: READY → RUNNING ok (trigger EXECUTOR)", "state: RUNNING"]
    no_states = peanut(*base, "state-stream")
    assert no_states.returncode == 1 and "no StateStream" in no_states.stderr
    wrong = peanut(*base, "fmq-step", "READY", "STOP")
    assert wrong.returncode == 1 and "source: READY current: RUNNING" in wrong.stderr
    for src, dst in (("RUNNING", "CONFIGURED"), ("CONFIGURED", "DONE")):
        assert peanut(*base, "transition", src, dst).returncode == 0
    assert device.proc.wait(timeout=10) == 0
