"""Go's duration and boolean syntax, as call roles and plugins read their variables.

A call role's `timeout` is a Go duration (`30s`, `1m30s`) that reaches plugins
as `__call_timeout`; AliECS plugins read it with `callable.AcquireTimeout`,
falling back to their own default when it is missing or malformed, and read
switches such as `testplugin_fail` with Go's `strconv.ParseBool`.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping

log = logging.getLogger("engine.integration")

CALL_TIMEOUT_VAR = "__call_timeout"

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration (time.ParseDuration); ValueError if malformed."""
    stripped = text.strip()
    body = stripped.lstrip("+-")
    sign = -1.0 if stripped.startswith("-") else 1.0
    if body == "0":
        return 0.0
    if not body or len(stripped) - len(body) > 1:
        raise ValueError(f"{text!r} is not a duration (e.g. 3s, 500ms, 1m30s)")
    total = 0.0
    position = 0
    for match in _PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(body):
        raise ValueError(f"{text!r} is not a duration (e.g. 3s, 500ms, 1m30s)")
    return sign * total


def format_seconds(seconds: float) -> str:
    """A duration for messages, Go-like: 3s, 1.5s, 250ms."""
    if seconds and abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def acquire_timeout(default: float, var_stack: Mapping[str, str], call: str = "") -> float:
    """The call's `__call_timeout` in seconds, or `default` when unset or malformed
    (AliECS callable.AcquireTimeout, warnings included)."""
    text = var_stack.get(CALL_TIMEOUT_VAR)
    if text is None:
        log.warning("could not get timeout declaration for hook call %s; using %s",
                    call, format_seconds(default))
        return default
    try:
        return max(0.0, parse_go_duration(text))
    except ValueError:
        log.warning("could not parse timeout declaration %r for hook call %s; using %s",
                    text, call, format_seconds(default))
        return default


def parse_go_bool(text: str | None, default: bool = False) -> bool:
    """Go's strconv.ParseBool; `default` when text is missing or not a Go boolean."""
    if text is None:
        return default
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return default
