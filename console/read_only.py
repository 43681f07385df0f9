"""What a read-only front-end refuses: the commands that change the engine, its
repositories or its agents. One list for the console's `:` line and the shell, which
refuse them up front for `--readonly` and for an observer (engine.CallerIdentity)."""
from __future__ import annotations

# By their full names (console.shell.line.command_name).
MUTATING_COMMANDS: frozenset[str] = frozenset({
    "environment create", "environment control", "environment destroy",
    "task clean", "run", "agents stop",
    "repository add", "repository remove", "repository refresh", "repository default",
    "repository default-revision",
})
