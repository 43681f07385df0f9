"""`-e` variables as coconut takes them: a JSON object, or key=value pairs
(several in one argument separated by commas, as `k=v,k2=v2`).

Template variables are strings, so lists and objects become compact JSON text
(`hosts` = `["flp001","flp002"]`), booleans `true`/`false`, numbers as written.
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence


# A comma starts a new pair only when a `key=` follows, so `hosts=["a","b"]` stays whole.
_PAIR_SEPARATOR = re.compile(r",(?=\s*[A-Za-z_][\w.:-]*=)")


class VariablesError(ValueError):
    """An -e argument that is neither a JSON object nor key=value; the message quotes it."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def parse_variables(arguments: Sequence[str]) -> dict[str, str]:
    """Merge every -e argument in order; later ones win."""
    variables: dict[str, str] = {}
    for argument in arguments:
        text = argument.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as error:
                raise VariablesError(f"-e {argument!r}: not valid JSON ({error.msg} at "
                                     f"column {error.colno})") from None
            except RecursionError:
                raise VariablesError(f"-e {argument[:60]!r}…: the JSON is nested too "
                                     "deeply") from None
            if not isinstance(parsed, dict):
                raise VariablesError(f"-e {argument!r}: the JSON must be an object")
            try:
                variables.update({str(k): _text(v) for k, v in parsed.items()})
            except RecursionError:  # a value json could read but not write back
                raise VariablesError(f"-e {argument[:60]!r}…: the JSON is nested too "
                                     "deeply") from None
            continue
        for pair in _PAIR_SEPARATOR.split(text):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise VariablesError(f"-e {argument!r}: expected a JSON object or key=value")
            variables[key.strip()] = value
    return variables
