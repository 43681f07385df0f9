"""One controlled process at run time: its state machine, its streams, its loop.

The gRPC servicer only translates; every OCClib rule (reply fields, refusals,
END_OF_STREAM once, TASK_INTERNAL_ERROR, streams closing at DONE) lives here
so it can be read in one place.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Iterable

from occlib.arguments import parse_arguments, run_number
from occlib.broadcast import Broadcast
from occlib.controllable import Controllable
from occlib.machine import HandlerFailed, OccStateMachine
from occlib.states import EXPECTED_STATE, DeviceEventType, OccEvent, OccState, Trigger, reply_trigger

log = logging.getLogger("occlib")


class TransitionRefused(Exception):
    """A Transition call that OCClib answers with a gRPC error instead of a reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # a grpc.StatusCode name: UNKNOWN, INVALID_ARGUMENT, FAILED_PRECONDITION


@dataclass(frozen=True)
class TransitionResult:
    trigger: Trigger
    state: OccState
    event: str
    ok: bool


class ControlRuntime:
    def __init__(self, controlled: Controllable) -> None:
        self.controlled = controlled
        self.machine = OccStateMachine(controlled)
        self.states: Broadcast[OccState] = Broadcast()
        self.events: Broadcast[DeviceEventType] = Broadcast()
        self.finished = threading.Event()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._end_of_stream_sent = False
        self._loop: threading.Thread | None = None

    @property
    def state(self) -> OccState:
        return self.machine.state

    @property
    def pid(self) -> int:
        return os.getpid()

    def start_loop(self) -> None:
        self._loop = threading.Thread(target=self._iterate, name="occ-checker", daemon=True)
        self._loop.start()

    def transition(self, src: str, event: str, entries: Iterable[tuple[str, str]]) -> TransitionResult:
        try:
            occ_event = OccEvent(event)
        except ValueError:
            raise TransitionRefused("UNKNOWN", f"transition not possible: unknown event {event!r}") from None
        with self._lock:
            current = self.state
            if current is OccState.DONE:
                raise TransitionRefused("FAILED_PRECONDITION", "transition not possible: the process is DONE")
            if src != current.value:
                raise TransitionRefused(
                    "INVALID_ARGUMENT",
                    f"transition not possible: state mismatch: source: {src} current: {current.value}")
            arguments = parse_arguments(entries)
            self.controlled.run_number = run_number(arguments)
            log.debug("transition %s from %s with arguments %s", event, current.value, dict(arguments))
            if self.machine.can(occ_event):
                try:
                    self.machine.send(occ_event.value.lower(), arguments=arguments)
                except HandlerFailed as failure:
                    log.error("%s failed: %s", event, failure)
                    if self.state is not OccState.ERROR:
                        self.machine.send("fail")
            reached = self.state
            if reached is not current:
                self._changed_to(reached)
        expected = EXPECTED_STATE[occ_event]
        return TransitionResult(trigger=reply_trigger(reached, expected), state=reached,
                                event=event, ok=reached is expected)

    def _changed_to(self, state: OccState) -> None:
        """Publish a new state; called with the lock held."""
        log.info("state %s", state.value)
        if state is OccState.RUNNING:
            self._end_of_stream_sent = False
        self.states.publish(state)
        self._changed.notify_all()
        if state is OccState.DONE:
            self.states.close()
            self.events.close()
            self.finished.set()

    def _go_error(self, reason: str, event: DeviceEventType | None = None) -> None:
        log.error("going to ERROR: %s", reason)
        if event is not None:
            self.events.publish(event)
        self.machine.send("fail")
        self._changed_to(OccState.ERROR)

    def _iterate(self) -> None:
        """OCClib's checker thread: iterate_running while RUNNING, iterate_check except in ERROR."""
        controlled = self.controlled
        while not self.finished.is_set():
            with self._lock:
                state = self.state
                if state is OccState.RUNNING and not self._end_of_stream_sent:
                    self._step_running()
                    state = self.state
                if state not in (OccState.ERROR, OccState.DONE):
                    self._step_check()
                running = self.state is OccState.RUNNING and not self._end_of_stream_sent
                self._changed.wait(controlled.loop_interval if running else controlled.check_interval)

    def _step_running(self) -> None:
        try:
            result = self.controlled.iterate_running()
        except Exception as error:
            log.exception("iterate_running raised")
            self._go_error(f"iterate_running raised {type(error).__name__}: {error}")
            return
        if result == 1:
            log.info("end of stream")
            self._end_of_stream_sent = True
            self.events.publish(DeviceEventType.END_OF_STREAM)
        elif result:
            self._go_error(f"iterate_running returned {result}")

    def _step_check(self) -> None:
        try:
            result = self.controlled.iterate_check()
        except Exception as error:
            log.exception("iterate_check raised")
            result, why = -1, f"iterate_check raised {type(error).__name__}: {error}"
        else:
            why = f"iterate_check returned {result}"
        if result:
            self._go_error(why, DeviceEventType.TASK_INTERNAL_ERROR)
