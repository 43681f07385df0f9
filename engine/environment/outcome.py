"""A transition's table read for its outcome: which failed rows are critical, and the
failure that ends a transition before the environment changed (reference §1.1.2)."""
from __future__ import annotations

from engine.environment.environment import (
    Environment,
    TaskRow,
    TransitionFailed,
    TransitionResult,
)
from engine.environment.statemachine import EnvEvent


def critical(env: Environment, row: TaskRow) -> bool:
    """A failed row of a critical task, or of a critical role that has no task (yet)."""
    if not row.failed:
        return False
    entry = env.tasks.get(row.task_id)
    if entry is not None:
        return entry.critical
    role = env.workflow.find(row.role_path)
    return bool(getattr(role, "critical", True))


def fail(env: Environment, event: EnvEvent, user: str, rows: list[TaskRow],
         message: str) -> None:
    """Keep `rows` as the environment's last result and raise TransitionFailed with them."""
    result = TransitionResult(env.id, event.value, str(env.state), 0, tuple(rows), user)
    env.last_transition, env.last_result = event.value, result
    raise TransitionFailed(f"{message} {env.id}", result)
