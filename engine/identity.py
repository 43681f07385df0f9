"""`CallerIdentity`: who an engine takes its caller for (`Engine.who_am_i`), so a
front-end can show it and hide what the role may not do.

An in-process engine checks nobody: its caller is the local user, with every right.
A `nutshell core` with security settings answers with the authenticated user and role;
without them it checks nobody either and cannot know the client's user ("").
"""
from __future__ import annotations

from dataclasses import dataclass

READ_ONLY_ROLE = "observer"  # the role that may only look (engine.api.security.Role)


@dataclass(frozen=True)
class CallerIdentity:
    user: str
    role: str  # observer | operator | admin
    authenticated: bool  # False: the engine checks nobody (in-process, or a core without security)

    @property
    def read_only(self) -> bool:
        """The role may call nothing that changes the engine."""
        return self.role == READ_ONLY_ROLE

    def describe(self) -> str:
        """"olga (observer)"; "" when the engine checks nobody (nothing worth showing)."""
        return f"{self.user} ({self.role})" if self.authenticated else ""
