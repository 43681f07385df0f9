"""How a task is driven: the AliECS `control.mode` of a task class.

The integer values are those of AliECS common/controlmode, so they can be
carried in AliECS-shaped messages unchanged.
"""
from __future__ import annotations

from enum import IntEnum


class ControlMode(IntEnum):
    DIRECT = 0
    FAIRMQ = 1
    BASIC = 2
    HOOK = 3
    KUBECTL_DIRECT = 4
    KUBECTL_FAIRMQ = 5
    KUBERNETES_DIRECT = 6
    KUBERNETES_FAIRMQ = 7

    def __str__(self) -> str:
        """Lower case, as templates write it (`control.mode: fairmq`)."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> "ControlMode":
        """Case-insensitive; an unknown or empty name is DIRECT, as in AliECS."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            return cls.DIRECT

    @property
    def uses_fairmq(self) -> bool:
        """The task is a FairMQ device: its OCC endpoint speaks FairMQ states and events.

        AliECS picks its fairmq transitioner for FAIRMQ only; the kubectl and
        kubernetes FairMQ modes run the same devices, so they count here too.
        """
        return self in (ControlMode.FAIRMQ, ControlMode.KUBECTL_FAIRMQ,
                        ControlMode.KUBERNETES_FAIRMQ)
