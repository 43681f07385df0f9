"""How peanut's link to a task stands, and what to tell the user when a call fails."""
from __future__ import annotations

from enum import Enum

import grpc

from executor.occ_client import OccCallError
from occlib.owner import TOKEN_ENV
from peanut.durations import format_duration
from peanut.modes import PeanutMode


class LinkState(str, Enum):
    """The connection states AliECS peanut shows, plus CONNECTED."""

    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    UNREACHABLE = "UNREACHABLE"
    WRONG_MODE = "WRONG MODE"

    def __str__(self) -> str:
        return self.value


# gRPC codes that mean "nobody (usable) is listening there".
_UNREACHABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                      grpc.StatusCode.CANCELLED)


def link_state_after(error: BaseException) -> LinkState | None:
    """The link state a failed call reveals, or None when the link itself is fine.

    UNIMPLEMENTED on GetState means the endpoint speaks the other transport: a
    protobuf client at an OCClite device, or a JSON client at an OCClib process.
    """
    if isinstance(error, TimeoutError):
        return LinkState.UNREACHABLE
    if isinstance(error, OccCallError):
        if error.code == grpc.StatusCode.UNIMPLEMENTED:
            return LinkState.WRONG_MODE
        if error.code in _UNREACHABLE_CODES:
            return LinkState.UNREACHABLE
    return None


def wrong_mode_hint(mode: PeanutMode) -> str:
    if mode.json:
        return "it does not serve OCClite JSON; is it an OCClib process? try -mode direct"
    return "it does not serve protobuf OCC; is it an OCClite FairMQ device? try -mode fmq"


def describe_failure(error: BaseException, address: str, mode: PeanutMode, timeout: float) -> str:
    """One line for the user: what failed, at which address, and what to try."""
    state = link_state_after(error)
    if isinstance(error, TimeoutError):
        return f"{address} unreachable: no OCC endpoint answered within {format_duration(timeout)}"
    if state is LinkState.WRONG_MODE:
        return f"{address} ({mode} mode, {mode.codec}): {wrong_mode_hint(mode)} ({error})"
    if isinstance(error, OccCallError) and error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{address}: no reply within {format_duration(timeout)} ({error})"
    if state is LinkState.UNREACHABLE:
        return f"{address} unreachable: {error}"
    if isinstance(error, OccCallError) and error.code == grpc.StatusCode.UNAUTHENTICATED:
        return (f"{address}: {error}; give peanut the task's token "
                f"(-token, or ${TOKEN_ENV} in peanut's environment)")
    return f"{address}: {error}"
