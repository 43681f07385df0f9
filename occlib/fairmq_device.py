"""An emulated FairMQ device: the FairMQ state machine plus the OCClite plugin's rules.

The device is what `python -m occlib.examples.fairmq` serves. It keeps the FairMQ
states and events of occlib.fairmq, applies transition arguments as FairMQ
properties the way OCClite does (§2.4 of the reference), and answers a
Transition request with the reply OCClite would give. Its failure modes
(fail, crash, get stuck) are switches, so the executor's error and roll-back
paths can be exercised against a real process.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from statemachine import State, StateChart

from occlib.arguments import PTREE_PREFIX, parse_arguments
from occlib.fairmq import EXPECTED_FAIRMQ_STATE, FairMQEvent, FairMQState
from occlib.states import Trigger

# Property values as FairMQ holds them after OCClite's conversions.
Tree = dict[str, Any]
PropertyValue = Union[str, int, bool, Tree]

# The last segment of a `chans.` key that OCClite pushes as an int (autoBind: as a bool).
CHANNEL_INT_KEYS = frozenset({"rateLogging", "rcvBufSize", "sndBufSize", "linger", "rcvKernelSize", "sndKernelSize"})
CHANNEL_BOOL_KEYS = frozenset({"autoBind"})

# States FairMQ passes through on its own (an automatic transition follows).
TRANSIENT_STATES = frozenset({
    FairMQState.BINDING,
    FairMQState.CONNECTING,
    FairMQState.INITIALIZING_TASK,
    FairMQState.RESETTING_TASK,
    FairMQState.RESETTING_DEVICE,
})

# Where OCClite's EventStream ends: FairMQ's state machine stops in both.
TERMINAL_STATES = frozenset({FairMQState.EXITING, FairMQState.ERROR})

# The event that takes a device on from a state during CONFIGURE; refusing it
# leaves CONFIGURE stuck there, which the executor undoes with RESET DEVICE.
FORWARD_EVENT: dict[FairMQState, FairMQEvent] = {
    FairMQState.INITIALIZED: FairMQEvent.BIND,
    FairMQState.BOUND: FairMQEvent.CONNECT,
    FairMQState.DEVICE_READY: FairMQEvent.INIT_TASK,
}

_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class PropertyError(ValueError):
    """A transition argument cannot be converted to the property type FairMQ needs."""


class StateMismatch(Exception):
    """The request's source state is not the device's state (OCClite: INVALID_ARGUMENT)."""

    def __init__(self, src: str, current: FairMQState) -> None:
        super().__init__(f"transition not possible: state mismatch: source: {src} current: {current}")


class UnknownEvent(Exception):
    """The request names no transition OCClite knows (OCClite: INVALID_ARGUMENT)."""

    def __init__(self, event: str) -> None:
        super().__init__(f"argument {event} is not a valid transition name")


class DeviceFailure(RuntimeError):
    """The device's work for an event failed; FairMQ then goes to ERROR."""


def parse_event(name: str) -> FairMQEvent:
    """A FairMQ event from its wire name; on the command line also `init_device`, `init device`."""
    try:
        return FairMQEvent(name)
    except ValueError:
        pass
    wanted = name.strip().upper().replace("_", " ")
    for event in FairMQEvent:
        if event.value.upper() == wanted:
            return event
    raise ValueError(f"{name!r} is not a FairMQ event (one of: {', '.join(e.value for e in FairMQEvent)})")


def parse_state(name: str) -> FairMQState:
    """A FairMQ state from its wire name; on the command line also `device_ready`."""
    wanted = name.strip().upper().replace("_", " ")
    for state in FairMQState:
        if state.value == wanted:
            return state
    raise ValueError(f"{name!r} is not a FairMQ state (one of: {', '.join(s.value for s in FairMQState)})")


def parse_bool(value: str) -> bool:
    """A boolean as FairMQ's options read it: true/false, 1/0, yes/no."""
    try:
        return _BOOL_WORDS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"{value!r} is not a boolean (true/false/1/0)") from None


def channel_property(key: str, value: str) -> PropertyValue:
    """The value of a `chans.` property, typed as OCClite pushes it."""
    last = key.rsplit(".", 1)[-1]
    if last in CHANNEL_INT_KEYS:
        try:
            return int(value.strip())
        except ValueError:
            raise PropertyError(f"property {key}: {value!r} is not an integer") from None
    if last in CHANNEL_BOOL_KEYS:
        try:
            return parse_bool(value)
        except ValueError as err:
            raise PropertyError(f"property {key}: {err}") from None
    return value


class FairMQMachine(StateChart):
    """FairMQ's device state machine (fair::mq::StateMachine), one attribute per event.

    ERROR and EXITING are final as in FairMQ, where ERROR is a terminate state
    (END is not accepted there). Transient states leave by `auto`, raised by the
    device once its work in that state is done. Side effects are callbacks on
    the device, which listens to the machine; `proceeds` is its guard for
    events the device refuses (--stuck-on / --stuck-in).
    """

    catch_errors_as_events = True  # an exception in the device's work → error.execution → ERROR
    allow_event_without_transition = True  # an event invalid here leaves the state as it is

    idle = State(value=FairMQState.IDLE, initial=True)
    initializing_device = State(value=FairMQState.INITIALIZING_DEVICE)
    initialized = State(value=FairMQState.INITIALIZED)
    binding = State(value=FairMQState.BINDING)
    bound = State(value=FairMQState.BOUND)
    connecting = State(value=FairMQState.CONNECTING)
    device_ready = State(value=FairMQState.DEVICE_READY)
    initializing_task = State(value=FairMQState.INITIALIZING_TASK)
    ready = State(value=FairMQState.READY)
    running = State(value=FairMQState.RUNNING)
    resetting_task = State(value=FairMQState.RESETTING_TASK)
    resetting_device = State(value=FairMQState.RESETTING_DEVICE)
    exiting = State(value=FairMQState.EXITING, final=True)
    error = State(value=FairMQState.ERROR, final=True)

    init_device = idle.to(initializing_device, cond="proceeds")
    complete_init = initializing_device.to(initialized, cond="proceeds")
    bind = initialized.to(binding, cond="proceeds")
    connect = bound.to(connecting, cond="proceeds")
    init_task = device_ready.to(initializing_task, cond="proceeds")
    run = ready.to(running, cond="proceeds")
    stop = running.to(ready, cond="proceeds")
    reset_task = ready.to(resetting_task, cond="proceeds")
    reset_device = (
        initialized.to(resetting_device, cond="proceeds")
        | bound.to(resetting_device, cond="proceeds")
        | device_ready.to(resetting_device, cond="proceeds")
    )
    end = idle.to(exiting, cond="proceeds")
    auto = (
        binding.to(bound)
        | connecting.to(device_ready)
        | initializing_task.to(ready)
        | resetting_task.to(device_ready)
        | resetting_device.to(idle)
    )
    error_found = error.from_.any(cond="proceeds")
    error_execution = error.from_.any()


def machine_event(event: FairMQEvent) -> str:
    """The FairMQMachine attribute for a FairMQ event (`INIT DEVICE` → `init_device`)."""
    return event.name.lower()


def fairmq_event(machine_event_id: str) -> FairMQEvent | None:
    try:
        return FairMQEvent[machine_event_id.upper()]
    except KeyError:
        return None  # error.execution, the initial activation


@dataclass(frozen=True)
class DeviceBehaviour:
    """How the emulated device misbehaves, for tests of its controller."""

    fail_on: frozenset[FairMQEvent] = frozenset()  # the work for these events fails → ERROR
    crash_on: FairMQEvent | None = None  # the process exits with CRASH_EXIT_CODE during this event
    stuck_on: frozenset[FairMQEvent] = frozenset()  # these events leave the state unchanged
    event_interval: float = 0.01  # seconds per counted event while RUNNING


CRASH_EXIT_CODE = 3


@dataclass(frozen=True)
class TransitionResult:
    """What OCClite replies to a Transition request."""

    event: FairMQEvent
    state: FairMQState
    trigger: Trigger
    ok: bool
    states_visited: tuple[FairMQState, ...] = field(default=())


def reply_for(event: FairMQEvent, reached: FairMQState) -> tuple[Trigger, bool]:
    """OCClite's trigger and ok for `event` ending in `reached` (OccFMQCommon.cxx)."""
    expected = EXPECTED_FAIRMQ_STATE[event]
    if reached == FairMQState.ERROR:
        trigger = Trigger.DEVICE_ERROR
    elif reached == expected:
        trigger = Trigger.EXECUTOR
    else:
        trigger = Trigger.DEVICE_INTENTIONAL
    return trigger, reached == expected


class FairMQDevice:
    """One emulated FairMQ device with OCClite's transition rules; safe to call from many threads."""

    def __init__(self, device_id: str, behaviour: DeviceBehaviour | None = None,
                 log: logging.Logger | None = None) -> None:
        self.device_id = device_id
        self.behaviour = behaviour or DeviceBehaviour()
        self.log = log or logging.getLogger("occlib.fairmq_device")
        self.properties: dict[str, PropertyValue] = {}
        self.events_processed = 0
        self._state = FairMQState.IDLE
        self._visited: list[FairMQState] = []
        self._transition_lock = threading.Lock()
        self._changed = threading.Condition()
        self._closed = False
        self._running_stop = threading.Event()
        self._running_thread: threading.Thread | None = None
        self._machine = FairMQMachine(listeners=[self])

    # --- what a server asks -------------------------------------------------

    @property
    def state(self) -> FairMQState:
        return self._state

    def transition(self, src: str, event_name: str, arguments: Mapping[str, str] | None = None) -> TransitionResult:
        """Run one OCClite Transition: check, change state, wait for a non-transient state, reply."""
        arguments = dict(arguments or {})
        with self._transition_lock:
            if src != self._state.value:
                raise StateMismatch(src, self._state)
            try:
                event = FairMQEvent(event_name)
            except ValueError:
                raise UnknownEvent(event_name) from None
            if event not in EXPECTED_FAIRMQ_STATE:
                raise UnknownEvent(event_name)
            shown = ", ".join(f"{k}={v}" for k, v in arguments.items()) or "none"
            self.log.info("transition %s from %s, arguments: %s", event, src, shown)
            before = self._state
            self._visited = []
            allowed = {str(e) for e in self._machine.allowed_events}
            if machine_event(event) not in allowed:
                self.log.info("no transition from state %s on %s: state stays %s", before, event, before)
            self._machine.send(machine_event(event), arguments=arguments)
            reached = self._state
            # The machine runs the automatic steps inside send(); a transient state left over would be a bug.
            assert reached not in TRANSIENT_STATES, f"transition {event} ended in transient state {reached}"
            if self._visited:
                trigger, ok = reply_for(event, reached)
            else:  # refused: no transition from here, or the device is stuck
                trigger, ok = Trigger.DEVICE_INTENTIONAL, False
            self.log.info("transition %s done: %s (states visited: %s; trigger %s, ok %s)", event, reached,
                          " → ".join(s.value for s in self._visited) or "none", trigger.name, ok)
            return TransitionResult(event=event, state=reached, trigger=trigger, ok=ok,
                                    states_visited=tuple(self._visited))

    def wait_for_state(self, states: Collection[FairMQState], timeout: float | None = None) -> FairMQState | None:
        """Block until the device is in one of `states` (returned), close() or the timeout (None)."""
        with self._changed:
            self._changed.wait_for(lambda: self._state in states or self._closed, timeout)
            return self._state if self._state in states else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop counting events and release everyone blocked in wait_for_state()."""
        self._stop_running()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    # --- FairMQMachine callbacks ----------------------------------------------

    def proceeds(self, event: str, source: State) -> bool:
        fmq_event = fairmq_event(event)
        if fmq_event in self.behaviour.stuck_on:
            self.log.info("stuck in %s: %s does not proceed (--stuck-on/--stuck-in)", source.value, fmq_event)
            return False
        return True

    def on_enter_state(self, event: str, source: State, target: State, error: Exception | None = None) -> None:
        new = FairMQState(target.value)
        fmq_event = fairmq_event(event)
        if source.value is not None:  # not the machine's initial activation
            self.log.info("%s ---> %s", source.value, new)
            self._visited.append(new)
        with self._changed:
            self._state = new
            self._changed.notify_all()
        if fmq_event in (FairMQEvent.AUTO, FairMQEvent.ERROR_FOUND) or fmq_event is None:
            return
        if fmq_event == self.behaviour.crash_on:
            self.log.error("crashing during %s in %s (--crash-on): exit code %d", fmq_event, new, CRASH_EXIT_CODE)
            for handler in self.log.handlers + logging.getLogger().handlers:
                handler.flush()
            os._exit(CRASH_EXIT_CODE)
        if fmq_event in self.behaviour.fail_on:
            raise DeviceFailure(f"{fmq_event} failed in {new} (--fail-on)")
        if new in TRANSIENT_STATES:
            self._machine.raise_("auto")  # the work of this step is done; FairMQ moves on by itself

    def on_enter_initializing_device(self, arguments: Mapping[str, str]) -> None:
        # OCClite pushes the CONFIGURE arguments while the device is in INITIALIZING DEVICE.
        for key, value in arguments.items():
            if key.startswith("chans."):
                self._set_property(key, channel_property(key, value))
            elif key.startswith(PTREE_PREFIX):
                # Parsed into a tree under its NAME; a malformed payload is dropped with a log line.
                for name, tree in parse_arguments([(key, value)]).items():
                    self._set_property(name, tree)
            else:
                self._set_property(key, value)

    def before_run(self, arguments: Mapping[str, str]) -> None:
        self._set_arguments_as_properties(arguments)

    def before_stop(self, arguments: Mapping[str, str]) -> None:
        self._set_arguments_as_properties(arguments)

    def on_enter_running(self) -> None:
        self.events_processed = 0
        self._running_stop.clear()
        self._running_thread = threading.Thread(target=self._count_events, name="fairmq-running", daemon=True)
        self._running_thread.start()

    def on_exit_running(self) -> None:
        self._stop_running()
        self.log.info("processed %d events while RUNNING", self.events_processed)

    def on_enter_error(self, error: Exception | None = None) -> None:
        if error is None:
            reason = "ERROR FOUND requested"
        elif isinstance(error, (DeviceFailure, PropertyError)):
            reason = str(error)
        else:  # a bug in the emulator itself: say what broke
            reason = f"{type(error).__name__}: {error}"
        self.log.error("device went to ERROR: %s", reason)

    # --- helpers ----------------------------------------------------------------

    def _set_property(self, key: str, value: PropertyValue) -> None:
        self.properties[key] = value
        self.log.info("SetProperty %s = %r", key, value)

    def _set_arguments_as_properties(self, arguments: Mapping[str, str]) -> None:
        # OCClite sets each RUN and STOP argument as a property just before the transition.
        for key, value in arguments.items():
            self._set_property(key, value)

    def _count_events(self) -> None:
        while not self._running_stop.wait(self.behaviour.event_interval):
            self.events_processed += 1

    def _stop_running(self) -> None:
        thread = self._running_thread
        if thread is not None:
            self._running_stop.set()
            thread.join()
            self._running_thread = None
