"""Turning one OCC event into the calls a controlled process understands.

Direct processes (OCClib) take the OCC event as it is. FairMQ devices have
their own finer state machine, so each OCC event becomes a sequence of FairMQ
events (AliECS executorcmd/transitioner), with roll-backs when a device is
left half-way. Either way the caller gets one TransitionOutcome in OCC terms,
with every call made recorded as a step.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from executor.controlmode import ControlMode
from executor.occ_client import OccCallError, OccClient, TransitionReply
from occlib.fairmq import (EXPECTED_FAIRMQ_STATE, FAIRMQ_STATE_OF, FairMQEvent, FairMQState,
                           occ_state)
from occlib.states import EXPECTED_STATE, OccEvent, OccState, Trigger


@dataclass
class TransitionStep:
    """One Transition call: the event and source state sent, the reply, why it failed."""

    event: str
    src: str
    reply: TransitionReply | None
    error: str
    rollback: bool = False  # sent to undo a failed step, not part of the sequence proper

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class TransitionOutcome:
    ok: bool
    state: OccState
    error: str
    steps: list[TransitionStep] = field(default_factory=list)


def unsuccessful(reply: TransitionReply, sent: str, expected: str, address: str) -> str:
    """The AliECS success rule: empty if the reply is a success, else the reason.

    Success needs ok, trigger EXECUTOR, the event echoed back and the expected
    state; the text mirrors the AliECS executor's (address instead of task id).
    """
    if (reply.ok and reply.trigger == Trigger.EXECUTOR and reply.event == sent
            and reply.state == expected):
        return ""
    return (f"transition unsuccessful: ok: {str(reply.ok).lower()}, trigger: {reply.trigger.name}, "
            f"event: {reply.event}, state: {reply.state}, address: {address}")


class _Deadline:
    """One time budget shared by all calls of a transition (None: no limit)."""

    def __init__(self, timeout: float | None) -> None:
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())


async def _call(client: OccClient, src: str, event: str, expected: str,
                arguments: Mapping[str, str] | None, deadline: _Deadline,
                rollback: bool = False) -> TransitionStep:
    try:
        reply = await client.transition(src, event, arguments, timeout=deadline.remaining())
    except OccCallError as error:
        return TransitionStep(event, src, None, str(error), rollback)
    return TransitionStep(event, src, reply, unsuccessful(reply, event, expected, client.address),
                          rollback)


class Transitioner(ABC):
    """Drives one process through OCC events, whatever its own state machine."""

    def __init__(self, client: OccClient) -> None:
        self.client = client

    @abstractmethod
    async def transition(self, src: OccState, event: OccEvent,
                         arguments: Mapping[str, str] | None = None,
                         timeout: float | None = None) -> TransitionOutcome:
        """Move from `src` with `event`; `timeout` bounds the whole transition (None: no limit)."""

    @abstractmethod
    async def current_state(self) -> tuple[OccState, int]:
        """GetState in OCC terms, with the process id."""


class DirectTransitioner(Transitioner):
    """OCClib processes: the OCC event is passed through as it is.

    On a gRPC error the process's state is unknown: the outcome says UNDEFINED.
    """

    async def transition(self, src: OccState, event: OccEvent,
                         arguments: Mapping[str, str] | None = None,
                         timeout: float | None = None) -> TransitionOutcome:
        src, event = OccState(src), OccEvent(event)
        step = await _call(self.client, src.value, event.value, EXPECTED_STATE[event].value,
                           arguments, _Deadline(timeout))
        state = OccState.UNDEFINED if step.reply is None else OccState.parse(step.reply.state)
        return TransitionOutcome(ok=step.ok, state=state, error=step.error, steps=[step])

    async def current_state(self) -> tuple[OccState, int]:
        state, pid = await self.client.get_state()
        return OccState.parse(state), pid


_CONFIGURE_SEQUENCE = (FairMQEvent.INIT_DEVICE, FairMQEvent.COMPLETE_INIT, FairMQEvent.BIND,
                       FairMQEvent.CONNECT, FairMQEvent.INIT_TASK)
# Where a failed CONFIGURE can be undone with RESET DEVICE. INITIALIZING DEVICE
# cannot: FairMQ's only way out of it is COMPLETE INIT, and a real device whose
# initialisation fails goes to ERROR rather than stay there.
_CONFIGURE_ROLLBACK_FROM = (FairMQState.INITIALIZED.value, FairMQState.BOUND.value,
                            FairMQState.DEVICE_READY.value)


class _FairMQRun:
    """The steps of one FairMQ sequence and where they left the device."""

    def __init__(self, client: OccClient, src: OccState, timeout: float | None) -> None:
        self.client = client
        self.deadline = _Deadline(timeout)
        self.steps: list[TransitionStep] = []
        self.fairmq_state = FAIRMQ_STATE_OF[src].value
        self.stable = src  # last stable OCC state the device was seen in
        self.known = True  # False once a call failed: the device could be anywhere

    async def step(self, event: FairMQEvent, arguments: Mapping[str, str] | None = None,
                   rollback: bool = False) -> bool:
        expected = EXPECTED_FAIRMQ_STATE[event].value
        step = await _call(self.client, self.fairmq_state, event.value, expected, arguments,
                           self.deadline, rollback)
        self.steps.append(step)
        if step.reply is None:
            self.known = False
        else:
            self.fairmq_state = step.reply.state
            reached = occ_state(step.reply.state)
            if reached is not OccState.UNDEFINED:
                self.stable = reached
        return step.ok

    def succeeded(self) -> TransitionOutcome:
        return TransitionOutcome(ok=True, state=self.stable, error="", steps=self.steps)

    def failed(self, event: OccEvent, failed: TransitionStep) -> TransitionOutcome:
        """The outcome after `failed` went wrong (and any roll-back steps after it)."""
        error = f"{event.value} failed at FairMQ {failed.event} from {failed.src}: {failed.error}"
        undo = [s for s in self.steps if s.rollback]
        if undo:
            last = undo[-1]
            error += (f"; rolled back with {last.event} to {last.reply.state}" if last.ok and last.reply
                      else f"; roll-back {last.event} failed: {last.error}")
        if self.known and occ_state(self.fairmq_state) is OccState.UNDEFINED:
            error += f"; device left in FairMQ state {self.fairmq_state}"
        state = self.stable if self.known else OccState.UNDEFINED
        return TransitionOutcome(ok=False, state=state, error=error, steps=self.steps)


class FairMQTransitioner(Transitioner):
    """FairMQ devices (OCClite or the legacy OCC plugin): the AliECS sequences.

    Arguments go only with INIT DEVICE (CONFIGURE), RUN, STOP and RESET DEVICE.
    Every step must succeed by the AliECS rule, else the sequence stops and,
    where the device is left half-way, is rolled back:
    CONFIGURE stuck in INITIALIZED, BOUND or DEVICE READY → RESET DEVICE (to IDLE);
    RESET stuck in DEVICE READY → INIT TASK (back to READY).

    outcome.state is the OCC state of the last FairMQ state reached; if that is an
    intermediate state (a failed roll-back), it is the last stable OCC state the
    device was seen in, and the error names the FairMQ state. After a gRPC error
    the device could be anywhere: UNDEFINED.

    GO_ERROR and RECOVER are no-ops that report the source state, as in AliECS
    (OCClite offers no way to do either). They count as a success only when the
    source already is the event's target (GO_ERROR in ERROR, RECOVER in STANDBY),
    matching what OCClib answers in that case; otherwise ok is false, so nobody
    believes an ERROR device recovered.
    """

    async def transition(self, src: OccState, event: OccEvent,
                         arguments: Mapping[str, str] | None = None,
                         timeout: float | None = None) -> TransitionOutcome:
        src, event = OccState(src), OccEvent(event)
        if event in (OccEvent.GO_ERROR, OccEvent.RECOVER):
            return self._no_op(src, event)
        if src not in FAIRMQ_STATE_OF:
            return TransitionOutcome(
                ok=False, state=OccState.UNDEFINED, steps=[],
                error=f"{event.value} from {src.value}: no FairMQ state stands for {src.value} "
                      f"({self.client.address})")
        run = _FairMQRun(self.client, src, timeout)
        if event is OccEvent.CONFIGURE:
            return await self._configure(run, arguments)
        if event is OccEvent.START:
            return await self._single(run, event, FairMQEvent.RUN, arguments)
        if event is OccEvent.STOP:
            return await self._single(run, event, FairMQEvent.STOP, arguments)
        if event is OccEvent.RESET:
            return await self._reset(run, event, arguments) or run.succeeded()
        # EXIT: a configured device is reset first, END is only valid from IDLE.
        if src is OccState.CONFIGURED:
            failure = await self._reset(run, event, arguments)
            if failure is not None:
                return failure
        return await self._single(run, event, FairMQEvent.END, None)

    async def current_state(self) -> tuple[OccState, int]:
        """Intermediate FairMQ states have no OCC name: UNDEFINED."""
        state, pid = await self.client.get_state()
        return occ_state(state), pid

    def _no_op(self, src: OccState, event: OccEvent) -> TransitionOutcome:
        if src is EXPECTED_STATE[event]:
            return TransitionOutcome(ok=True, state=src, error="", steps=[])
        return TransitionOutcome(
            ok=False, state=src, steps=[],
            error=f"{event.value} is a no-op for FairMQ devices: {self.client.address} "
                  f"stays {src.value}")

    @staticmethod
    async def _single(run: _FairMQRun, event: OccEvent, fairmq_event: FairMQEvent,
                      arguments: Mapping[str, str] | None) -> TransitionOutcome:
        if await run.step(fairmq_event, arguments):
            return run.succeeded()
        return run.failed(event, run.steps[-1])

    @staticmethod
    async def _configure(run: _FairMQRun,
                         arguments: Mapping[str, str] | None) -> TransitionOutcome:
        for fairmq_event in _CONFIGURE_SEQUENCE:
            step_arguments = arguments if fairmq_event is FairMQEvent.INIT_DEVICE else None
            if not await run.step(fairmq_event, step_arguments):
                failed = run.steps[-1]
                if run.known and run.fairmq_state in _CONFIGURE_ROLLBACK_FROM:
                    await run.step(FairMQEvent.RESET_DEVICE, rollback=True)
                return run.failed(OccEvent.CONFIGURE, failed)
        return run.succeeded()

    @staticmethod
    async def _reset(run: _FairMQRun, event: OccEvent,
                     arguments: Mapping[str, str] | None) -> TransitionOutcome | None:
        """RESET TASK → RESET DEVICE; the failed outcome, or None when IDLE was reached."""
        if not await run.step(FairMQEvent.RESET_TASK):
            return run.failed(event, run.steps[-1])
        if not await run.step(FairMQEvent.RESET_DEVICE, arguments):
            failed = run.steps[-1]
            if run.known and run.fairmq_state == FairMQState.DEVICE_READY.value:
                await run.step(FairMQEvent.INIT_TASK, rollback=True)
            return run.failed(event, failed)
        return None


def transitioner_for(mode: ControlMode, client: OccClient) -> Transitioner:
    """FairMQ sequences for FairMQ devices, the event passed through for everything else."""
    if mode.uses_fairmq:
        return FairMQTransitioner(client)
    return DirectTransitioner(client)
