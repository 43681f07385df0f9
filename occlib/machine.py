"""The OCClib state machine, declared as the table of reference §2.5.

Handlers run in the transition callbacks; a failing handler raises
HandlerFailed so the machine stays put and the runtime sends `fail` (→ ERROR).
"""
from __future__ import annotations

import logging
from typing import Any

from statemachine import State, StateMachine

from occlib.controllable import Arguments, Controllable
from occlib.states import OccEvent, OccState

log = logging.getLogger("occlib")


class HandlerFailed(Exception):
    """A handler returned non-zero or raised; the message says which and why."""


class OccStateMachine(StateMachine):
    standby = State("STANDBY", value=OccState.STANDBY, initial=True)
    configured = State("CONFIGURED", value=OccState.CONFIGURED)
    running = State("RUNNING", value=OccState.RUNNING)
    error = State("ERROR", value=OccState.ERROR)
    done = State("DONE", value=OccState.DONE, final=True)

    configure = standby.to(configured)
    reset = configured.to(standby)
    start = configured.to(running)
    stop = running.to(configured)
    exit = standby.to(done) | configured.to(done) | error.to(done)
    recover = error.to(standby)
    # Not an OCC event: a failed handler, iterate_running or iterate_check.
    fail = standby.to(error) | configured.to(error) | running.to(error)

    def __init__(self, controlled: Controllable) -> None:
        self.controlled = controlled
        super().__init__()

    @property
    def state(self) -> OccState:
        return OccState(self.current_state_value)

    def can(self, event: OccEvent) -> bool:
        return event.value.lower() in {e.id for e in self.allowed_events}

    def _run(self, handler: str, arguments: Arguments) -> None:
        try:
            result: Any = getattr(self.controlled, handler)(arguments)
        except Exception as error:
            log.exception("%s handler raised", handler)
            raise HandlerFailed(f"{handler} handler raised {type(error).__name__}: {error}") from error
        if result not in (None, 0):
            raise HandlerFailed(f"{handler} handler returned {result}")

    def on_configure(self, arguments: Arguments) -> None:
        self._run("configure", arguments)

    def on_reset(self, arguments: Arguments) -> None:
        self._run("reset", arguments)

    def on_start(self, arguments: Arguments) -> None:
        self._run("start", arguments)

    def on_stop(self, arguments: Arguments) -> None:
        self._run("stop", arguments)

    def on_exit(self, arguments: Arguments) -> None:
        self._run("exit", arguments)

    def on_recover(self, arguments: Arguments) -> None:
        self._run("recover", arguments)
