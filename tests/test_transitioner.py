"""Transitioners driving real processes: the dummy (direct) and the FairMQ emulator (fairmq)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from executor.controlmode import ControlMode
from executor.occ_client import OccClient, connect
from executor.transitioner import (DirectTransitioner, FairMQTransitioner, TransitionOutcome,
                                   Transitioner, transitioner_for)
from occlib.states import OccEvent, OccState, Trigger
from tests.conftest import free_port

DUMMY = "occlib.examples.dummy"
FAIRMQ = "occlib.examples.fairmq"

C, S, R = OccState.CONFIGURED, OccState.STANDBY, OccState.RUNNING


@pytest.fixture
async def direct() -> AsyncIterator[Callable[[str], Transitioner]]:
    """direct(address): a DirectTransitioner over a protobuf client, closed at teardown."""
    clients: list[OccClient] = []

    def make(address: str) -> Transitioner:
        clients.append(connect(address))
        return transitioner_for(ControlMode.DIRECT, clients[-1])

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def fairmq() -> AsyncIterator[Callable[[str], Transitioner]]:
    """fairmq(address): a FairMQTransitioner over an OCClite (JSON) client, closed at teardown."""
    clients: list[OccClient] = []

    def make(address: str) -> Transitioner:
        clients.append(connect(address, json=True))
        return transitioner_for(ControlMode.FAIRMQ, clients[-1])

    yield make
    for c in clients:
        await c.close()


def walk(outcome: TransitionOutcome) -> list[tuple[str, str, str]]:
    """(event, src, reached) of every step."""
    return [(s.event, s.src, s.reply.state if s.reply else "-") for s in outcome.steps]


# --- control modes ---------------------------------------------------------------------------

def test_control_mode_parse_and_fairmq_modes() -> None:
    assert ControlMode.parse("FairMQ") is ControlMode.FAIRMQ
    assert ControlMode.parse(" kubectl_direct ") is ControlMode.KUBECTL_DIRECT
    assert ControlMode.parse("nonsense") is ControlMode.DIRECT
    assert ControlMode.parse("") is ControlMode.DIRECT
    assert [int(m) for m in ControlMode] == list(range(8))
    assert str(ControlMode.KUBERNETES_FAIRMQ) == "kubernetes_fairmq"
    assert {m for m in ControlMode if m.uses_fairmq} == {
        ControlMode.FAIRMQ, ControlMode.KUBECTL_FAIRMQ, ControlMode.KUBERNETES_FAIRMQ}


async def test_transitioner_for_picks_by_mode() -> None:
    async with connect("127.0.0.1:1") as c:
        assert isinstance(transitioner_for(ControlMode.FAIRMQ, c), FairMQTransitioner)
        assert isinstance(transitioner_for(ControlMode.KUBECTL_FAIRMQ, c), FairMQTransitioner)
        for mode in (ControlMode.DIRECT, ControlMode.BASIC, ControlMode.HOOK):
            assert isinstance(transitioner_for(mode, c), DirectTransitioner)


# --- direct: the dummy -------------------------------------------------------------------------

async def test_direct_lifecycle(spawn, direct) -> None:
    dummy = spawn(DUMMY)
    t = direct(dummy.address)
    assert await t.current_state() == (S, dummy.proc.pid)
    for src, event, args, reached in [
            (S, OccEvent.CONFIGURE, {"detector": "TST"}, C),
            (C, OccEvent.START, {"runNumber": "7"}, R),
            (R, OccEvent.STOP, None, C),
            (C, OccEvent.RESET, None, S),
            (S, OccEvent.CONFIGURE, None, C),
            (C, OccEvent.EXIT, None, OccState.DONE)]:
        outcome = await t.transition(src, event, args)
        assert outcome.ok and outcome.error == "" and outcome.state is reached, outcome
        assert walk(outcome) == [(event.value, src.value, reached.value)]
        assert outcome.steps[0].reply.trigger is Trigger.EXECUTOR
        if event is not OccEvent.EXIT:
            assert await t.current_state() == (reached, dummy.proc.pid)
    assert dummy.proc.wait(timeout=10) == 0
    log = dummy.output()
    assert "CONFIGURE run=0 events=0 arguments: detector=TST" in log
    assert "START run=7 events=0 arguments: runNumber=7" in log


async def test_direct_failing_transition_goes_to_error_and_recovers(spawn, direct) -> None:
    dummy = spawn(DUMMY, "--fail-on", "CONFIGURE")
    t = direct(dummy.address)
    outcome = await t.transition(S, OccEvent.CONFIGURE)
    assert not outcome.ok and outcome.state is OccState.ERROR
    assert outcome.error == ("transition unsuccessful: ok: false, trigger: DEVICE_ERROR, "
                             f"event: CONFIGURE, state: ERROR, address: {dummy.address}")
    assert outcome.steps[0].error == outcome.error
    outcome = await t.transition(OccState.ERROR, OccEvent.RECOVER)
    assert outcome.ok and outcome.state is S


async def test_direct_event_not_valid_here_keeps_the_state(spawn, direct) -> None:
    dummy = spawn(DUMMY)
    t = direct(dummy.address)
    outcome = await t.transition(S, OccEvent.START)
    assert not outcome.ok and outcome.state is S
    assert outcome.error == ("transition unsuccessful: ok: false, trigger: DEVICE_INTENTIONAL, "
                             f"event: START, state: STANDBY, address: {dummy.address}")


async def test_direct_wrong_source_state(spawn, direct) -> None:
    dummy = spawn(DUMMY)
    t = direct(dummy.address)
    outcome = await t.transition(C, OccEvent.START)
    assert not outcome.ok and outcome.state is OccState.UNDEFINED
    assert outcome.error == ("occplugin returned INVALID_ARGUMENT: transition not possible: "
                             "state mismatch: source: CONFIGURED current: STANDBY")
    assert outcome.steps[0].reply is None
    assert await t.current_state() == (S, dummy.proc.pid)


async def test_direct_dead_address(direct) -> None:
    t = direct(f"127.0.0.1:{free_port()}")
    outcome = await t.transition(S, OccEvent.CONFIGURE, timeout=5)
    assert not outcome.ok and outcome.state is OccState.UNDEFINED
    assert outcome.error.startswith("occplugin returned UNAVAILABLE: ")


# --- fairmq: the FairMQ device emulator (OCClite) -----------------------------------------------

CONFIGURE_WALK = [("INIT DEVICE", "IDLE", "INITIALIZING DEVICE"),
                  ("COMPLETE INIT", "INITIALIZING DEVICE", "INITIALIZED"),
                  ("BIND", "INITIALIZED", "BOUND"),
                  ("CONNECT", "BOUND", "DEVICE READY"),
                  ("INIT TASK", "DEVICE READY", "READY")]
RESET_WALK = [("RESET TASK", "READY", "DEVICE READY"), ("RESET DEVICE", "DEVICE READY", "IDLE")]


def fairmq_args(log: str, event: str, src: str) -> str:
    """The arguments the emulator logged for one FairMQ transition ("none" if it had none)."""
    marker = f"transition {event} from {src}, arguments: "
    lines = [line.split(marker, 1)[1] for line in log.splitlines() if marker in line]
    assert len(lines) == 1, f"{marker!r} logged {len(lines)} times"
    return lines[0]


async def test_fairmq_lifecycle_sequences_and_argument_placement(spawn, fairmq) -> None:
    device = spawn(FAIRMQ)
    t = fairmq(device.address)
    assert await t.current_state() == (S, device.proc.pid)

    outcome = await t.transition(S, OccEvent.CONFIGURE, {"chans.data.0.address": "tcp://*:5555"})
    assert (outcome.ok, outcome.state, outcome.error) == (True, C, "")
    assert walk(outcome) == CONFIGURE_WALK
    assert all(s.ok and not s.rollback for s in outcome.steps)
    assert await t.current_state() == (C, device.proc.pid)

    outcome = await t.transition(C, OccEvent.START, {"runNumber": "12"})
    assert outcome.ok and outcome.state is R and walk(outcome) == [("RUN", "READY", "RUNNING")]
    outcome = await t.transition(R, OccEvent.STOP, {"stopped": "yes"})
    assert outcome.ok and outcome.state is C and walk(outcome) == [("STOP", "RUNNING", "READY")]
    outcome = await t.transition(C, OccEvent.RESET, {"reset": "1"})
    assert outcome.ok and outcome.state is S and walk(outcome) == RESET_WALK
    assert await t.current_state() == (S, device.proc.pid)

    log = device.output()
    assert fairmq_args(log, "INIT DEVICE", "IDLE") == "chans.data.0.address=tcp://*:5555"
    for event, src, _ in CONFIGURE_WALK[1:] + RESET_WALK[:1]:
        assert fairmq_args(log, event, src) == "none"
    assert fairmq_args(log, "RUN", "READY") == "runNumber=12"
    assert fairmq_args(log, "STOP", "RUNNING") == "stopped=yes"
    assert fairmq_args(log, "RESET DEVICE", "DEVICE READY") == "reset=1"


async def test_fairmq_exit_from_configured_resets_first(spawn, fairmq) -> None:
    device = spawn(FAIRMQ)
    t = fairmq(device.address)
    assert (await t.transition(S, OccEvent.CONFIGURE)).ok
    outcome = await t.transition(C, OccEvent.EXIT)
    assert (outcome.ok, outcome.state, outcome.error) == (True, OccState.DONE, "")
    assert walk(outcome) == RESET_WALK + [("END", "IDLE", "EXITING")]
    assert device.proc.wait(timeout=10) == 0


async def test_fairmq_exit_from_standby_is_end(spawn, fairmq) -> None:
    device = spawn(FAIRMQ)
    t = fairmq(device.address)
    outcome = await t.transition(S, OccEvent.EXIT)
    assert outcome.ok and outcome.state is OccState.DONE
    assert walk(outcome) == [("END", "IDLE", "EXITING")]
    assert device.proc.wait(timeout=10) == 0


@pytest.mark.parametrize("stuck, failed_event", [
    ("INITIALIZED", "BIND"), ("BOUND", "CONNECT"), ("DEVICE READY", "INIT TASK")])
async def test_fairmq_configure_stuck_rolls_back_to_idle(spawn, fairmq, stuck: str,
                                                         failed_event: str) -> None:
    device = spawn(FAIRMQ, "--stuck-in", stuck)
    t = fairmq(device.address)
    outcome = await t.transition(S, OccEvent.CONFIGURE, {"k": "v"})
    assert not outcome.ok and outcome.state is S
    done = CONFIGURE_WALK[:[event for event, _, _ in CONFIGURE_WALK].index(failed_event)]
    assert walk(outcome) == done + [(failed_event, stuck, stuck), ("RESET DEVICE", stuck, "IDLE")]
    assert [s.rollback for s in outcome.steps] == [False] * (len(done) + 1) + [True]
    assert not outcome.steps[-2].ok and outcome.steps[-1].ok
    assert outcome.error == (
        f"CONFIGURE failed at FairMQ {failed_event} from {stuck}: transition unsuccessful: ok: false, "
        f"trigger: DEVICE_INTENTIONAL, event: {failed_event}, state: {stuck}, "
        f"address: {device.address}; rolled back with RESET DEVICE to IDLE")
    assert await t.current_state() == (S, device.proc.pid)
    # Only INIT DEVICE carries the CONFIGURE arguments, not the roll-back.
    assert fairmq_args(device.output(), "INIT DEVICE", "IDLE") == "k=v"
    assert fairmq_args(device.output(), "RESET DEVICE", stuck) == "none"


async def test_fairmq_configure_failed_roll_back_leaves_the_last_stable_state(spawn, fairmq) -> None:
    device = spawn(FAIRMQ, "--stuck-in", "BOUND", "--stuck-on", "RESET DEVICE")
    t = fairmq(device.address)
    outcome = await t.transition(S, OccEvent.CONFIGURE)
    assert not outcome.ok and outcome.state is S
    assert walk(outcome)[-2:] == [("CONNECT", "BOUND", "BOUND"), ("RESET DEVICE", "BOUND", "BOUND")]
    assert outcome.error.startswith("CONFIGURE failed at FairMQ CONNECT from BOUND: ")
    assert outcome.error.endswith(
        "; roll-back RESET DEVICE failed: transition unsuccessful: ok: false, trigger: "
        f"DEVICE_INTENTIONAL, event: RESET DEVICE, state: BOUND, address: {device.address}"
        "; device left in FairMQ state BOUND")
    assert await t.current_state() == (OccState.UNDEFINED, device.proc.pid)


async def test_fairmq_configure_stuck_initializing_device_cannot_roll_back(spawn, fairmq) -> None:
    device = spawn(FAIRMQ, "--stuck-on", "COMPLETE INIT")
    t = fairmq(device.address)
    outcome = await t.transition(S, OccEvent.CONFIGURE)
    assert not outcome.ok and outcome.state is S
    assert walk(outcome) == [CONFIGURE_WALK[0],
                             ("COMPLETE INIT", "INITIALIZING DEVICE", "INITIALIZING DEVICE")]
    assert outcome.error.endswith("; device left in FairMQ state INITIALIZING DEVICE")


async def test_fairmq_failing_step_goes_to_error_without_roll_back(spawn, fairmq) -> None:
    device = spawn(FAIRMQ, "--fail-on", "BIND")
    t = fairmq(device.address)
    outcome = await t.transition(S, OccEvent.CONFIGURE)
    assert not outcome.ok and outcome.state is OccState.ERROR
    assert walk(outcome) == CONFIGURE_WALK[:2] + [("BIND", "INITIALIZED", "ERROR")]
    assert outcome.error == (
        "CONFIGURE failed at FairMQ BIND from INITIALIZED: transition unsuccessful: ok: false, "
        f"trigger: DEVICE_ERROR, event: BIND, state: ERROR, address: {device.address}")
    assert await t.current_state() == (OccState.ERROR, device.proc.pid)


async def test_fairmq_failing_start(spawn, fairmq) -> None:
    device = spawn(FAIRMQ, "--fail-on", "RUN")
    t = fairmq(device.address)
    assert (await t.transition(S, OccEvent.CONFIGURE)).ok
    outcome = await t.transition(C, OccEvent.START, {"runNumber": "3"})
    assert not outcome.ok and outcome.state is OccState.ERROR
    assert walk(outcome) == [("RUN", "READY", "ERROR")]


async def test_fairmq_reset_stuck_in_device_ready_goes_back_to_ready(spawn, fairmq) -> None:
    device = spawn(FAIRMQ, "--stuck-on", "RESET DEVICE")
    t = fairmq(device.address)
    assert (await t.transition(S, OccEvent.CONFIGURE)).ok
    outcome = await t.transition(C, OccEvent.RESET, {"a": "b"})
    assert not outcome.ok and outcome.state is C
    assert walk(outcome) == [RESET_WALK[0], ("RESET DEVICE", "DEVICE READY", "DEVICE READY"),
                             ("INIT TASK", "DEVICE READY", "READY")]
    assert [s.rollback for s in outcome.steps] == [False, False, True]
    assert outcome.error.startswith("RESET failed at FairMQ RESET DEVICE from DEVICE READY: ")
    assert outcome.error.endswith("; rolled back with INIT TASK to READY")
    assert await t.current_state() == (C, device.proc.pid)
    # EXIT stops at the failed reset: END is never sent.
    outcome = await t.transition(C, OccEvent.EXIT)
    assert not outcome.ok and outcome.state is C
    assert outcome.error.startswith("EXIT failed at FairMQ RESET DEVICE from DEVICE READY: ")
    assert [s.event for s in outcome.steps] == ["RESET TASK", "RESET DEVICE", "INIT TASK"]


async def test_fairmq_go_error_and_recover_are_no_ops(spawn, fairmq) -> None:
    device = spawn(FAIRMQ, "--fail-on", "INIT DEVICE")
    t = fairmq(device.address)
    outcome = await t.transition(S, OccEvent.GO_ERROR)
    assert (outcome.ok, outcome.state, outcome.steps) == (False, S, [])
    assert outcome.error == f"GO_ERROR is a no-op for FairMQ devices: {device.address} stays STANDBY"
    assert (await t.transition(S, OccEvent.RECOVER)).ok  # already where RECOVER leads
    assert (await t.transition(S, OccEvent.CONFIGURE)).state is OccState.ERROR
    outcome = await t.transition(OccState.ERROR, OccEvent.RECOVER)
    assert (outcome.ok, outcome.state, outcome.steps) == (False, OccState.ERROR, [])
    assert (await t.transition(OccState.ERROR, OccEvent.GO_ERROR)).ok
    assert await t.current_state() == (OccState.ERROR, device.proc.pid)


async def test_fairmq_wrong_source_state(spawn, fairmq) -> None:
    device = spawn(FAIRMQ)
    t = fairmq(device.address)
    outcome = await t.transition(C, OccEvent.START)
    assert not outcome.ok and outcome.state is OccState.UNDEFINED
    assert outcome.error == (
        "START failed at FairMQ RUN from READY: occplugin returned INVALID_ARGUMENT: "
        "transition not possible: state mismatch: source: READY current: IDLE")
    assert walk(outcome) == [("RUN", "READY", "-")]


async def test_fairmq_undefined_source_sends_nothing(fairmq) -> None:
    t = fairmq("127.0.0.1:1")
    outcome = await t.transition(OccState.UNDEFINED, OccEvent.CONFIGURE)
    assert (outcome.ok, outcome.state, outcome.steps) == (False, OccState.UNDEFINED, [])
    assert outcome.error == ("CONFIGURE from UNDEFINED: no FairMQ state stands for UNDEFINED "
                             "(127.0.0.1:1)")


async def test_fairmq_dead_address(fairmq) -> None:
    t = fairmq(f"127.0.0.1:{free_port()}")
    outcome = await t.transition(S, OccEvent.CONFIGURE)
    assert not outcome.ok and outcome.state is OccState.UNDEFINED
    assert len(outcome.steps) == 1
    assert "occplugin returned UNAVAILABLE: " in outcome.error
