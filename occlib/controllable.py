"""The base class a program subclasses to become controllable.

Handlers mirror OCClib's RuntimeControlledObject: each returns 0 (or None) on
success; a non-zero return or an exception fails the transition and the
process goes to ERROR. Every handler receives the transition's arguments.
"""
from __future__ import annotations

from typing import Any, Mapping

Arguments = Mapping[str, Any]


class Controllable:
    """Override the handlers your program needs; the defaults succeed and do nothing."""

    # Seconds between iterate_running() calls while RUNNING (OCClib loops every 1 ms).
    loop_interval: float = 0.001
    # Seconds between iterate_check() calls outside RUNNING; idle processes stay cheap.
    check_interval: float = 0.1

    def __init__(self) -> None:
        self.role = ""
        self.run_number = 0

    def configure(self, args: Arguments) -> int | None:
        return 0

    def start(self, args: Arguments) -> int | None:
        return 0

    def stop(self, args: Arguments) -> int | None:
        return 0

    def reset(self, args: Arguments) -> int | None:
        return 0

    def exit(self, args: Arguments) -> int | None:
        return 0

    def recover(self, args: Arguments) -> int | None:
        return 0

    def iterate_running(self) -> int:
        """One step of work while RUNNING: 0 go on, 1 end of stream (once), other → ERROR."""
        return 0

    def iterate_check(self) -> int:
        """A health check in every state but ERROR: non-zero → ERROR and TASK_INTERNAL_ERROR."""
        return 0
