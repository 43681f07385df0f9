"""A call's timeout, read as AliECS plugins read it (Go syntax from engine.gosyntax).

A call role's `timeout` is a Go duration (`30s`, `1m30s`) that reaches plugins
as `__call_timeout`; AliECS plugins read it with `callable.AcquireTimeout`,
falling back to their own default when it is missing or malformed, and read
switches such as `testplugin_fail` with Go's `strconv.ParseBool`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from engine.gosyntax import format_seconds, parse_go_bool, parse_go_duration

log = logging.getLogger("engine.integration")

CALL_TIMEOUT_VAR = "__call_timeout"

__all__ = ["CALL_TIMEOUT_VAR", "acquire_timeout", "format_seconds", "parse_go_bool",
           "parse_go_duration"]


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
