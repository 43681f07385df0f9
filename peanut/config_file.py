"""Argument files for peanut: YAML or JSON, flattened to the dot keys a task receives.

AliECS peanut pushes a device configuration as flat key/value transition
arguments (`chans.data.0.address=tcp://…`); this module turns a nested file
into exactly those pairs, and says which file and where when it cannot.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml


class ConfigFileError(ValueError):
    """A config file that cannot be read or flattened; the message names the file."""


def flatten(tree: object, prefix: str = "") -> dict[str, str]:
    """Nested mappings and lists as dot keys: {"a": [{"b": 1}]} → {"a.0.b": "1"}."""
    flat: dict[str, str] = {}
    if isinstance(tree, Mapping):
        items = [(str(k), v) for k, v in tree.items()]
    elif isinstance(tree, list):
        items = [(str(i), v) for i, v in enumerate(tree)]
    else:
        flat[prefix] = scalar_text(tree)
        return flat
    if not items and prefix:
        flat[prefix] = ""
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def scalar_text(value: object) -> str:
    """A leaf value as the string a task reads: booleans lower case, null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(path: Path, text: str) -> object:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigFileError(
                f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigFileError(f"{path}: invalid YAML{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"{path}: invalid YAML: {err}") from None


def load_config_file(path: str | Path) -> dict[str, str]:
    """Read a YAML (or .json) file whose top level is a mapping; return its flattened keys.

    Blocking file I/O: call it from a thread on an event loop.
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{file}: is a directory, not a config file") from None
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"{file}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigFileError(f"{file}: cannot read: {err.strerror}") from None
    tree = _parse(file, text)
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigFileError(
            f"{file}: the top level must be a mapping of keys, not a {type(tree).__name__}")
    return flatten(tree)
