"""The ways peanut talks to a task, as AliECS peanut names them on `-mode`."""
from __future__ import annotations

from enum import Enum

from occlib.fairmq import FairMQEvent
from occlib.states import OccEvent


class PeanutMode(str, Enum):
    """direct: protobuf OCC (OCClib); fmq: OCClite JSON, OCC events run as FairMQ sequences;
    fmq-step: OCClite JSON, one raw FairMQ event at a time (TUI only)."""

    DIRECT = "direct"
    FMQ = "fmq"
    FMQ_STEP = "fmq-step"

    def __str__(self) -> str:
        return self.value

    @property
    def json(self) -> bool:
        """True when the task speaks OCClite (JSON codec, bare method paths)."""
        return self is not PeanutMode.DIRECT

    @property
    def codec(self) -> str:
        return "OCClite JSON" if self.json else "protobuf"

    @classmethod
    def parse(cls, text: str, allowed: tuple["PeanutMode", ...]) -> "PeanutMode":
        for mode in allowed:
            if mode.value == text.lower():
                return mode
        names = "|".join(m.value for m in allowed)
        raise ValueError(f"-mode {text!r}: expected {names}")


# The OCC transitions peanut offers, in AliECS peanut's order; it cannot send GO_ERROR.
OCC_BUTTONS: tuple[OccEvent, ...] = (
    OccEvent.CONFIGURE,
    OccEvent.RESET,
    OccEvent.START,
    OccEvent.STOP,
    OccEvent.RECOVER,
    OccEvent.EXIT,
)

# The raw FairMQ events of fmq-step mode, on keys 1…9, 0.
FMQ_STEP_BUTTONS: tuple[FairMQEvent, ...] = (
    FairMQEvent.INIT_DEVICE,
    FairMQEvent.COMPLETE_INIT,
    FairMQEvent.BIND,
    FairMQEvent.CONNECT,
    FairMQEvent.INIT_TASK,
    FairMQEvent.RUN,
    FairMQEvent.STOP,
    FairMQEvent.RESET_TASK,
    FairMQEvent.RESET_DEVICE,
    FairMQEvent.END,
)


def buttons_of(mode: PeanutMode) -> tuple[str, ...]:
    """The transition names the TUI shows as buttons in `mode`."""
    events = FMQ_STEP_BUTTONS if mode is PeanutMode.FMQ_STEP else OCC_BUTTONS
    return tuple(str(e) for e in events)
