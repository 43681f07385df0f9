"""Go's duration and boolean syntax, as templates, call roles and plugins write them.

Timeouts in templates are Go durations (`30s`, `1m30s`, `0`) and switches
are read with Go's strconv.ParseBool: one reading of each for the engine.
"""
from __future__ import annotations

import re

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


def is_go_duration(text: str) -> bool:
    """Whether Go's time.ParseDuration accepts text (`1s`, `1m30s`, `310s`, `0`)."""
    try:
        parse_go_duration(text)
    except ValueError:
        return False
    return True


def parse_go_bool(text: str | None, default: bool = False) -> bool:
    """Go's strconv.ParseBool; `default` when text is missing or not a Go boolean."""
    if text is None:
        return default
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return default
