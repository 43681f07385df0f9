"""The OCC vocabulary: state and event names, and the reply rules built on them.

Shared by the controlled side (occlib) and the controlling side (executor, peanut)
so both spell every name exactly as the wire does.
"""
from __future__ import annotations

from enum import Enum, IntEnum


class OccState(str, Enum):
    """OCClib states, upper case on the wire. UNDEFINED is how unknown states print."""

    STANDBY = "STANDBY"
    CONFIGURED = "CONFIGURED"
    RUNNING = "RUNNING"
    ERROR = "ERROR"
    DONE = "DONE"
    UNDEFINED = "UNDEFINED"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, name: str) -> "OccState":
        try:
            return cls(name.upper())
        except ValueError:
            return cls.UNDEFINED


class OccEvent(str, Enum):
    """The only event names OCClib accepts (case-sensitive); others fail with UNKNOWN."""

    CONFIGURE = "CONFIGURE"
    RESET = "RESET"
    START = "START"
    STOP = "STOP"
    EXIT = "EXIT"
    GO_ERROR = "GO_ERROR"
    RECOVER = "RECOVER"

    def __str__(self) -> str:
        return self.value


# The state each event must reach for the reply to count as a success.
EXPECTED_STATE: dict[OccEvent, OccState] = {
    OccEvent.CONFIGURE: OccState.CONFIGURED,
    OccEvent.RESET: OccState.STANDBY,
    OccEvent.START: OccState.RUNNING,
    OccEvent.STOP: OccState.CONFIGURED,
    OccEvent.EXIT: OccState.DONE,
    OccEvent.GO_ERROR: OccState.ERROR,
    OccEvent.RECOVER: OccState.STANDBY,
}


class Trigger(IntEnum):
    """occ_pb.StateChangeTrigger."""

    EXECUTOR = 0
    DEVICE_INTENTIONAL = 1
    DEVICE_ERROR = 2


class StateType(IntEnum):
    """occ_pb.StateType."""

    STATE_STABLE = 0
    STATE_INTERMEDIATE = 1


class DeviceEventType(IntEnum):
    """occ_pb.DeviceEventType."""

    NULL_DEVICE_EVENT = 0
    END_OF_STREAM = 1
    BASIC_TASK_TERMINATED = 2
    TASK_INTERNAL_ERROR = 3


def reply_trigger(reached: str, expected: str) -> Trigger:
    """The trigger a controlled process reports for a transition that ended in `reached`.

    EXECUTOR when the expected state was reached, DEVICE_ERROR when the process
    ended in ERROR instead, DEVICE_INTENTIONAL for any other outcome.
    """
    if reached == expected:
        return Trigger.EXECUTOR
    if reached == OccState.ERROR:
        return Trigger.DEVICE_ERROR
    return Trigger.DEVICE_INTENTIONAL
