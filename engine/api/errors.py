"""Engine exceptions over gRPC: a status code for any client, the whole error for ours.

The server answers a failed call with the status code of reference §3.1 (NotFound for
an unknown environment or task, InvalidArgument for a refused transition or a bad
argument, Internal for a failed create or destroy, Aborted for a failed control) and
puts the error itself in the trailing metadata (`nutshell-error-bin`: JSON with the
kind, message and, per kind, the result table, the busy transition or the refused
event). `RemoteEngine` re-raises the same exception type with the same message, so a
front-end cannot tell a remote engine from an in-process one.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import grpc

from engine import USER_ERRORS
from engine.environment.environment import (
    Busy,
    EnvironmentBusy,
    TaskRow,
    TransitionFailed,
    TransitionResult,
    UnknownEnvironmentError,
    format_table,
)
from engine.environment.roleglob import RoleGlobError
from engine.environment.roster import UnknownTaskError
from engine.environment.statemachine import (
    DestroyRefused,
    EnvEvent,
    EnvState,
    TransitionRefused,
)

METADATA_KEY = "nutshell-error-bin"  # "-bin": the value is bytes (UTF-8 JSON)
DETAILS_LIMIT = 6000  # characters of error text in a status, as AliECS truncates


class RemoteEngineError(RuntimeError):
    """The engine behind a RemoteEngine failed in a way that is not one of its user
    errors (or could not be reached); the message says what and where."""


class AccessDenied(RemoteEngineError):
    """The core refused the call: no or unknown credentials (UNAUTHENTICATED) or a role
    too low (PERMISSION_DENIED); the message names the method and the role it needs."""


class Operation(Enum):
    """What a call did, for the status code its failure gets (§3.1)."""

    CREATE = "create"
    DESTROY = "destroy"
    CONTROL = "control"
    OTHER = "other"


# Exceptions rebuilt from their message alone (no extra state in their messages).
_PLAIN: dict[str, type[Exception]] = {cls.__name__: cls for cls in USER_ERRORS} | {
    "RoleGlobError": RoleGlobError, "ValueError": ValueError}


def status_code(error: Exception, operation: Operation) -> grpc.StatusCode:
    if isinstance(error, (UnknownEnvironmentError, UnknownTaskError)):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, TransitionRefused):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, EnvironmentBusy):
        return grpc.StatusCode.FAILED_PRECONDITION
    if operation is Operation.CONTROL and isinstance(error, TransitionFailed):
        return grpc.StatusCode.ABORTED
    if operation in (Operation.CREATE, Operation.DESTROY):
        return grpc.StatusCode.INTERNAL  # AliECS: any failure to create or destroy
    if isinstance(error, (ValueError, *USER_ERRORS)):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def describe(error: Exception) -> dict[str, Any]:
    """The error as JSON-ready data: its kind, message and what it carries."""
    data: dict[str, Any] = {"kind": type(error).__name__, "message": str(error)}
    if isinstance(error, TransitionFailed):
        table = format_table(error.result.rows)
        text = str(error)
        data["message"] = text[:-len(table) - 1] if table and text.endswith(table) else text
        data["result"] = _result_data(error.result)
    elif isinstance(error, EnvironmentBusy):
        data |= {"environment_id": error.environment_id, "transition": error.busy.transition,
                 "user": error.busy.user, "since": error.busy.since.isoformat()}
    elif isinstance(error, TransitionRefused):
        data |= {"event": error.event.value, "state": error.state.value,
                 "allowed": [event.value for event in error.allowed],
                 "environment_id": error.environment_id}
    elif isinstance(error, UnknownEnvironmentError):
        data["environment_id"] = error.environment_id
    elif isinstance(error, UnknownTaskError):
        data["task_id"] = error.task_id
    return data


def _result_data(result: TransitionResult) -> dict[str, Any]:
    return {"environment_id": result.environment_id, "event": result.event,
            "state": result.state, "run_number": result.run_number, "user": result.user,
            "rows": [row.to_dict() for row in result.rows]}


def trailing_metadata(error: Exception) -> tuple[tuple[str, bytes], ...]:
    return ((METADATA_KEY, json.dumps(describe(error)).encode()),)


def details(error: Exception) -> str:
    return str(error)[:DETAILS_LIMIT]


def rebuild(data: dict[str, Any]) -> Exception:
    """The exception `describe` described, same type and message."""
    kind, message = data.get("kind", ""), str(data.get("message", ""))
    if kind == "TransitionFailed":
        raw = data["result"]
        result = TransitionResult(
            environment_id=raw["environment_id"], event=raw["event"], state=raw["state"],
            run_number=int(raw["run_number"]), user=raw.get("user", ""),
            rows=tuple(TaskRow(**row) for row in raw["rows"]))
        return TransitionFailed(message, result)
    if kind == "EnvironmentBusy":
        busy = Busy(data["transition"], data["user"], datetime.fromisoformat(data["since"]))
        return EnvironmentBusy(data["environment_id"], busy)
    if kind == "DestroyRefused":
        return DestroyRefused(data.get("environment_id", ""), EnvState(data["state"]))
    if kind == "TransitionRefused":
        return TransitionRefused(EnvEvent(data["event"]), EnvState(data["state"]),
                                 [EnvEvent(event) for event in data["allowed"]],
                                 data.get("environment_id", ""))
    if kind == "UnknownEnvironmentError":
        return UnknownEnvironmentError(data["environment_id"])
    if kind == "UnknownTaskError":
        return UnknownTaskError(data["task_id"])
    cls = _PLAIN.get(kind)
    if cls is None:
        return RemoteEngineError(message)
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


def from_rpc_error(error: grpc.RpcError, address: str) -> Exception:
    """The engine's exception carried by a failed call, or a RemoteEngineError naming
    the address when the engine sent none (unreachable, cancelled, not ours)."""
    metadata: Sequence[Any] = ()
    trailing = getattr(error, "trailing_metadata", None)
    if callable(trailing):
        metadata = trailing() or ()
    for key, value in metadata:
        if key == METADATA_KEY:
            return rebuild(json.loads(value))
    code = error.code() if callable(getattr(error, "code", None)) else None
    text = error.details() if callable(getattr(error, "details", None)) else str(error)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AccessDenied(f"engine at {address}: refused: {text}")
    if code is grpc.StatusCode.UNAVAILABLE:
        return RemoteEngineError(f"cannot reach the engine at {address}: {text}")
    name = code.name if code is not None else "error"
    return RemoteEngineError(f"engine at {address}: {name}: {text}")


