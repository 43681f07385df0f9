"""Transition arguments from the command line (`key=value` words) and a config file."""
from __future__ import annotations

from collections.abc import Mapping, Sequence


class ArgumentError(ValueError):
    """A `key=value` word that is not one; the message quotes it."""


def parse_arguments(words: Sequence[str]) -> dict[str, str]:
    """`["a=1", "b=x=y"]` → {"a": "1", "b": "x=y"}: split at the first `=`, later words win."""
    arguments: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key.strip():
            raise ArgumentError(f"bad argument {word!r}: expected key=value")
        arguments[key.strip()] = value
    return arguments


def merge_arguments(from_file: Mapping[str, str], explicit: Mapping[str, str]) -> dict[str, str]:
    """Config file keys first, explicit key=value words override them."""
    return {**from_file, **explicit}
