"""Every key of the TUI, in one place.

Transitions: the OCC ones on letters (direct and fmq modes), the raw FairMQ
events of fmq-step mode on 1…9, 0. The app enables only the current mode's.
"""
from __future__ import annotations

from textual.binding import Binding

from occlib.states import OccEvent
from peanut.modes import FMQ_STEP_BUTTONS, OCC_BUTTONS, PeanutMode

OCC_KEYS: dict[str, str] = {
    OccEvent.CONFIGURE.value: "c",
    OccEvent.RESET.value: "r",
    OccEvent.START.value: "s",
    OccEvent.STOP.value: "t",
    OccEvent.RECOVER.value: "v",
    OccEvent.EXIT.value: "x",
}
assert set(OCC_KEYS) == {e.value for e in OCC_BUTTONS}

FMQ_STEP_KEYS: dict[str, str] = {e.value: key for e, key in zip(FMQ_STEP_BUTTONS, "1234567890")}

# Actions of the transition keys; the app allows each only in its modes.
SEND_OCC = "send_occ"
SEND_STEP = "send_step"

APP_BINDINGS: list[Binding] = [
    Binding("l", "load_config", "Load config"),
    Binding("n", "reconnect", "Reconnect"),
    Binding("q", "quit", "Quit"),
    # the transition buttons show their keys, so the footer does not repeat them
    *(Binding(key, f"{SEND_OCC}({event!r})", event, show=False) for event, key in OCC_KEYS.items()),
    *(Binding(key, f"{SEND_STEP}({event!r})", event, show=False) for event, key in FMQ_STEP_KEYS.items()),
]


def key_of(mode: PeanutMode, event: str) -> str:
    """The key that sends `event` in `mode`."""
    return (FMQ_STEP_KEYS if mode is PeanutMode.FMQ_STEP else OCC_KEYS)[event]


def action_allowed(mode: PeanutMode, action: str) -> bool:
    """Whether a transition action belongs to `mode`; other actions are always allowed."""
    if action == SEND_OCC:
        return mode is not PeanutMode.FMQ_STEP
    if action == SEND_STEP:
        return mode is PeanutMode.FMQ_STEP
    return True
