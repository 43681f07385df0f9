"""Errors of task building, each naming where in the templates it happened."""
from __future__ import annotations

from typing import Any


def describe(where: Any) -> str:
    """`where` (a render.Where: repo, file, role_path, field) as message text.

    Empty parts are left out, so a message never shows "role ''".
    """
    parts = []
    for label, attribute in (("repo", "repo"), ("file", "file"), ("role", "role_path"),
                             ("field", "field")):
        value = getattr(where, attribute, "") or ""
        if value:
            parts.append(f"{label} {value}")
    return ", ".join(parts) if parts else "(no location)"


class TaskClassError(ValueError):
    """A task template is not a valid task class; the message names the file and field."""


class TaskBuildError(ValueError):
    """A task's command or properties cannot be built; the message names repo, file,
    role path and field."""


class ChannelError(ValueError):
    """A bind/connect channel is malformed or its target cannot be matched; the message
    names the role path (or file) and field."""
