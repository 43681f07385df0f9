"""Request fields the servicers read before calling the facade, checked.

The facade validates what it is given; these are the fields the server itself decodes
(JSON variables, o2control's numeric event type). Each is a coroutine so the servicer
awaits it under `_answer`: a bad field becomes INVALID_ARGUMENT with a message naming
it, never an exception escaping the handler (UNKNOWN).
"""
from __future__ import annotations

import json
from typing import Any

from engine.api.protos import o2control_pb2 as o2


async def variables(text: str, field: str = "varsJson") -> dict[str, Any]:
    """A request's variables JSON: empty, or an object; ValueError naming `field`."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{field}: not valid JSON ({error.msg} at line {error.lineno} "
                         f"column {error.colno})") from None
    except RecursionError:
        raise ValueError(f"{field}: the JSON is nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{field}: the JSON must be an object of variables, "
                         f"not {type(parsed).__name__}")
    return parsed


async def optype(value: int) -> str:
    """o2control ControlEnvironmentRequest.type as the event name; ValueError for a
    number the enum does not have (proto3 enums carry any int32)."""
    try:
        return o2.ControlEnvironmentRequest.Optype.Name(value)
    except ValueError:
        names = ", ".join(o2.ControlEnvironmentRequest.Optype.keys())
        raise ValueError(f"type: {value} is not a ControlEnvironmentRequest.Optype "
                         f"({names})") from None
