"""From a pair of OCC states to the OCC event between them, as `peanut transition` needs."""
from __future__ import annotations

from occlib.fairmq import FairMQState, occ_state
from occlib.states import OccEvent, OccState

_EVENT_BETWEEN: dict[tuple[OccState, OccState], OccEvent] = {
    (OccState.STANDBY, OccState.CONFIGURED): OccEvent.CONFIGURE,
    (OccState.CONFIGURED, OccState.RUNNING): OccEvent.START,
    (OccState.RUNNING, OccState.CONFIGURED): OccEvent.STOP,
    (OccState.CONFIGURED, OccState.STANDBY): OccEvent.RESET,
    (OccState.ERROR, OccState.STANDBY): OccEvent.RECOVER,
}

_NAMED_STATES = tuple(s for s in OccState if s is not OccState.UNDEFINED)


def parse_state(word: str) -> OccState:
    """An OCC state name in any case; the FairMQ name of a stable state counts as its OCC state."""
    state = OccState.parse(word)
    if state is OccState.UNDEFINED:
        try:
            state = occ_state(FairMQState(word.upper()).value)
        except ValueError:
            pass
    if state is OccState.UNDEFINED:
        names = ", ".join(s.value for s in _NAMED_STATES)
        raise ValueError(f"unknown state {word!r}; expected one of {names}")
    return state


def event_between(src: OccState, dst: OccState) -> OccEvent:
    """The event that moves a task from `src` to `dst`; ValueError when none does."""
    if dst is OccState.DONE and src is not OccState.DONE:
        return OccEvent.EXIT
    try:
        return _EVENT_BETWEEN[(src, dst)]
    except KeyError:
        raise ValueError(f"no OCC transition leads from {src.value} to {dst.value}") from None
