"""The FairMQ device vocabulary as the OCClite plugin speaks it.

Shared by the FairMQ device emulator (occlib.examples.fairmq) and the fairmq
transitioner of the executor, so both use the same names and expectations.
"""
from __future__ import annotations

from enum import Enum

from occlib.states import OccState


class FairMQState(str, Enum):
    OK = "OK"
    ERROR = "ERROR"
    IDLE = "IDLE"
    INITIALIZING_DEVICE = "INITIALIZING DEVICE"
    INITIALIZED = "INITIALIZED"
    BINDING = "BINDING"
    BOUND = "BOUND"
    CONNECTING = "CONNECTING"
    DEVICE_READY = "DEVICE READY"
    INITIALIZING_TASK = "INITIALIZING TASK"
    READY = "READY"
    RUNNING = "RUNNING"
    RESETTING_TASK = "RESETTING TASK"
    RESETTING_DEVICE = "RESETTING DEVICE"
    EXITING = "EXITING"

    def __str__(self) -> str:
        return self.value


class FairMQEvent(str, Enum):
    AUTO = "Auto"
    INIT_DEVICE = "INIT DEVICE"
    COMPLETE_INIT = "COMPLETE INIT"
    BIND = "BIND"
    CONNECT = "CONNECT"
    INIT_TASK = "INIT TASK"
    RUN = "RUN"
    STOP = "STOP"
    RESET_TASK = "RESET TASK"
    RESET_DEVICE = "RESET DEVICE"
    END = "END"
    ERROR_FOUND = "ERROR FOUND"

    def __str__(self) -> str:
        return self.value


# The stable state each event must end in for OCClite to reply ok.
EXPECTED_FAIRMQ_STATE: dict[FairMQEvent, FairMQState] = {
    FairMQEvent.INIT_DEVICE: FairMQState.INITIALIZING_DEVICE,
    FairMQEvent.COMPLETE_INIT: FairMQState.INITIALIZED,
    FairMQEvent.BIND: FairMQState.BOUND,
    FairMQEvent.CONNECT: FairMQState.DEVICE_READY,
    FairMQEvent.INIT_TASK: FairMQState.READY,
    FairMQEvent.RUN: FairMQState.RUNNING,
    FairMQEvent.STOP: FairMQState.READY,
    FairMQEvent.RESET_TASK: FairMQState.DEVICE_READY,
    FairMQEvent.RESET_DEVICE: FairMQState.IDLE,
    FairMQEvent.END: FairMQState.EXITING,
    FairMQEvent.ERROR_FOUND: FairMQState.ERROR,
}

# OCC state → the FairMQ state that stands for it.
FAIRMQ_STATE_OF: dict[OccState, FairMQState] = {
    OccState.STANDBY: FairMQState.IDLE,
    OccState.CONFIGURED: FairMQState.READY,
    OccState.RUNNING: FairMQState.RUNNING,
    OccState.ERROR: FairMQState.ERROR,
    OccState.DONE: FairMQState.EXITING,
}

OCC_STATE_OF: dict[str, OccState] = {fmq.value: occ for occ, fmq in FAIRMQ_STATE_OF.items()}


def occ_state(fairmq_state: str) -> OccState:
    """The OCC state a FairMQ state stands for; intermediate states are UNDEFINED."""
    return OCC_STATE_OF.get(fairmq_state, OccState.UNDEFINED)
