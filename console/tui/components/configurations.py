"""Saved new-environment configurations: a workflow's form values kept under a name.

One JSON file, $NUTSHELL_HOME/console-configurations.json:
{"<name>": {"workflow": "<reference>", "variables": {...}}}. Written whole
through a temporary file so a crash never leaves half of it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CONFIGURATIONS_FILE = "console-configurations.json"


class ConfigurationsError(Exception):
    """The configurations file cannot be read or holds something else; names the file."""


@dataclass(frozen=True)
class SavedConfiguration:
    name: str
    workflow: str
    variables: dict[str, str]


def _read(path: Path) -> dict[str, SavedConfiguration]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigurationsError(f"{path}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigurationsError(f"{path}: not a JSON object of configurations")
    saved: dict[str, SavedConfiguration] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("variables"), dict):
            raise ConfigurationsError(f"{path}: configuration {name!r} has no variables object")
        saved[name] = SavedConfiguration(name, str(entry.get("workflow", "")),
                                         {str(k): str(v) for k, v in entry["variables"].items()})
    return saved


def load_configurations(root: Path) -> dict[str, SavedConfiguration]:
    """Every saved configuration of the working directory `root`, by name."""
    return _read(root / CONFIGURATIONS_FILE)


def save_configuration(root: Path, configuration: SavedConfiguration) -> None:
    """Add or replace one configuration, keeping the others."""
    path = root / CONFIGURATIONS_FILE
    saved = _read(path)
    saved[configuration.name] = configuration
    data = {name: {"workflow": entry.workflow, "variables": entry.variables}
            for name, entry in sorted(saved.items())}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
