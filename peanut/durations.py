"""Go duration strings (`30s`, `500ms`, `1m30s`), as AliECS tools take them on the command line."""
from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration; ValueError naming the text when it is not one.

    As in Go's time.ParseDuration: a sequence of decimal numbers each with a
    unit, an optional sign, and "0" alone without a unit. Negative is refused
    here because every peanut duration is a time limit.
    """
    body = text.strip()
    if body.startswith("+"):
        body = body[1:]
    if body.startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}: empty")
    seconds = 0.0
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number and a unit (ns, us, ms, s, m, h), e.g. 30s")
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return seconds


def format_duration(seconds: float) -> str:
    """Short Go-like text for messages: 30s, 500ms, 1m30s."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    if minutes and rest:
        return f"{int(minutes)}m{rest:g}s"
    if minutes:
        return f"{int(minutes)}m"
    return f"{rest:g}s"
