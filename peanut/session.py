"""One peanut session with one task: the client, the transitioner and the loaded config.

The CLI and the TUI share it, so a transition means the same thing in both: the
same FairMQ sequences, the same argument rules, the same lines printed.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from executor.controlmode import ControlMode
from executor.occ_client import OccClient, TransitionReply, connect
from executor.transitioner import TransitionOutcome, TransitionStep, transitioner_for
from occlib.fairmq import FairMQEvent, FairMQState, occ_state
from occlib.states import DeviceEventType, OccEvent, OccState, StateType
from peanut.modes import PeanutMode


@dataclass(frozen=True)
class DeviceStatus:
    """GetState as the device names it, with the OCC state it stands for."""

    state: str
    occ_state: OccState
    pid: int

    def describe(self) -> str:
        """"READY (OCC CONFIGURED)"; an intermediate FairMQ state stands for no OCC state."""
        if self.state == self.occ_state.value or self.occ_state is OccState.UNDEFINED:
            return self.state
        return f"{self.state} (OCC {self.occ_state.value})"


@dataclass(frozen=True)
class StepResult:
    """One Transition call, ready to print."""

    event: str
    src: str
    state: str
    ok: bool
    trigger: str
    error: str = ""
    rollback: bool = False

    def line(self) -> str:
        """One line per call; the reason of a failure is the result's error, printed once."""
        label = f"{self.event} (roll-back)" if self.rollback else self.event
        if not self.state:
            return f"{label}: {self.src} → no reply"
        verdict = "ok" if self.ok else "FAILED"
        return f"{label}: {self.src} → {self.state} {verdict} (trigger {self.trigger})"


@dataclass(frozen=True)
class TransitionResult:
    """What a transition (one call or a FairMQ sequence) did, in printable terms."""

    ok: bool
    state: str
    error: str
    steps: list[StepResult] = field(default_factory=list)
    arguments_delivered: bool = False

    @property
    def device_state(self) -> str:
        """The state the last reply named, in the device's own terms (FairMQ for OCClite)."""
        replied = [s.state for s in self.steps if s.state]
        return replied[-1] if replied else ""


def _step_result(step: TransitionStep) -> StepResult:
    reply = step.reply
    if reply is None:
        return StepResult(step.event, step.src, "", False, "", step.error, step.rollback)
    return StepResult(step.event, step.src, reply.state, step.ok, reply.trigger.name, step.error,
                      step.rollback)


def reply_result(event: str, src: str, reply: TransitionReply) -> TransitionResult:
    """A raw step's reply; it succeeded when the device says ok."""
    error = "" if reply.ok else (f"{event} from {src} not ok: device is {reply.state} "
                                 f"(trigger {reply.trigger.name})")
    step = StepResult(event, src, reply.state, reply.ok, reply.trigger.name, error)
    return TransitionResult(reply.ok, reply.state, error, [step], arguments_delivered=True)


def outcome_result(outcome: TransitionOutcome, carrier: str) -> TransitionResult:
    """A transitioner's outcome; arguments were delivered if the `carrier` step got a reply."""
    steps = [_step_result(s) for s in outcome.steps]
    delivered = any(s.event == carrier and s.reply is not None for s in outcome.steps)
    return TransitionResult(outcome.ok, outcome.state.value, outcome.error, steps, delivered)


class PeanutSession:
    """A link to one OCC endpoint in one peanut mode; reconnect by making a new one."""

    def __init__(self, address: str, mode: PeanutMode, timeout: float, token: str = "") -> None:
        """`token`: the task's OCC_CONTROL_TOKEN ("" for a process that asks none)."""
        self.address = address
        self.mode = mode
        self.timeout = timeout
        self.client: OccClient = connect(address, json=mode.json, token=token)
        control = ControlMode.FAIRMQ if mode.json else ControlMode.DIRECT
        self.transitioner = transitioner_for(control, self.client)
        self.config: dict[str, str] = {}
        self.config_pushed = False

    @property
    def config_carrier(self) -> str:
        """The event that carries the loaded config: CONFIGURE, or INIT DEVICE step by step."""
        if self.mode is PeanutMode.FMQ_STEP:
            return FairMQEvent.INIT_DEVICE.value
        return OccEvent.CONFIGURE.value

    async def wait_connected(self) -> None:
        await self.client.wait_connected(self.timeout)

    async def status(self) -> DeviceStatus:
        state, pid = await self.client.get_state(timeout=self.timeout)
        mapped = occ_state(state) if self.mode.json else OccState.parse(state)
        return DeviceStatus(state, mapped, pid)

    async def transition(self, src: OccState, event: OccEvent,
                         arguments: Mapping[str, str] | None = None) -> TransitionResult:
        """An OCC event, as the mode's transitioner runs it.

        In fmq mode RECOVER is the raw `RESET DEVICE` from ERROR, as in AliECS
        peanut (the executor's fairmq transitioner treats RECOVER as a no-op).
        """
        if self.mode.json and event is OccEvent.RECOVER:
            return await self.step(FairMQState.ERROR.value, FairMQEvent.RESET_DEVICE.value,
                                   arguments)
        outcome = await self.transitioner.transition(src, event, arguments, timeout=self.timeout)
        carrier = FairMQEvent.INIT_DEVICE.value if self.mode.json else OccEvent.CONFIGURE.value
        return outcome_result(outcome, carrier)

    async def step(self, src: str, event: str,
                   arguments: Mapping[str, str] | None = None) -> TransitionResult:
        """One raw Transition call with the names exactly as given."""
        reply = await self.client.transition(src, event, arguments, timeout=self.timeout)
        return reply_result(event, src, reply)

    async def send(self, event: str, status: DeviceStatus) -> TransitionResult:
        """A TUI button: `event` from the device's current state, with the loaded config
        on the carrier event (it goes again with every later one)."""
        arguments = self.config if event == self.config_carrier else {}
        if self.mode is PeanutMode.FMQ_STEP:
            result = await self.step(status.state, event, arguments)
        else:
            result = await self.transition(status.occ_state, OccEvent(event), arguments)
        if arguments and result.arguments_delivered:
            self.config_pushed = True
        return result

    def load_config(self, flat: Mapping[str, str]) -> None:
        self.config = dict(flat)
        self.config_pushed = False

    def event_stream(self) -> AsyncIterator[DeviceEventType]:
        return self.client.event_stream()

    def state_stream(self) -> AsyncIterator[tuple[StateType, str]]:
        return self.client.state_stream()

    async def close(self) -> None:
        await self.client.close()
