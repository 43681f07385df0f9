"""How a run ends without anyone asking (reference §1.2): its tasks say so, or its time is up.

- END_OF_STREAM from a task, or BASIC_TASK_TERMINATED from a basic task that is not a
  hook, marks that task safe to stop. Once every task is RUNNING and every basic task
  is marked (AliECS `env.IsSafeToStop`), the core runs STOP_ACTIVITY. A task that is
  not basic counts as safe whenever it is RUNNING, so one END_OF_STREAM stops a run
  that has no basic task. Criticality plays no part, as in AliECS.
- Auto-stop: with `auto_stop_enabled` "true" and `auto_stop_timeout` a Go duration, a
  timer started after START_ACTIVITY runs STOP_ACTIVITY as the user TIMER; a STOP (or
  GO_ERROR) in between cancels it. A run re-adopted after a restart keeps its deadline
  (counted from `run_start_time_ms`).

These transitions name the core or the timer as their user, as AliECS's SpecialUserId.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from engine.environment.environment import DeployedTask, Environment
from engine.gosyntax import parse_go_duration
from engine.workflow.aggregation import TaskState
from engine.workflow.roles import WorkflowError

CORE_USER = "core"  # the core itself: a run its tasks ended, GO_ERROR after a task failure
TIMER_USER = "TIMER"  # the auto-stop timer (common.SpecialUserId TIMER)
LHC_USER = "LHC"  # beam-dump stops (common.SpecialUserId LHC); kept for the API's mapping
SPECIAL_USER_IDS = {LHC_USER: 60, TIMER_USER: 65}  # common.SpecialUserId numbers

AUTO_STOP_ENABLED = "auto_stop_enabled"
AUTO_STOP_TIMEOUT = "auto_stop_timeout"


def safe_to_stop(tasks: Iterable[DeployedTask]) -> bool:
    """AliECS `env.IsSafeToStop`: every task RUNNING, every basic task marked safe.
    Hook tasks never take part in the environment's transitions, so they do not count."""
    counted = [task for task in tasks if not task.hook]
    return bool(counted) and all(
        task.state is TaskState.RUNNING and (task.safe_to_stop or not task.basic)
        for task in counted)


def auto_stop_delay(stack: Mapping[str, str], where: str = "") -> float | None:
    """Seconds after START_ACTIVITY at which the run stops itself, or None (no auto-stop).

    WorkflowError naming the variable when auto-stop is on and the timeout is not a
    positive Go duration (AliECS only logs it; we refuse it at creation instead)."""
    if stack.get(AUTO_STOP_ENABLED, "").strip().lower() != "true":
        return None
    text = stack.get(AUTO_STOP_TIMEOUT, "").strip()
    at = f"{where}: " if where else ""
    try:
        seconds = parse_go_duration(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise WorkflowError(f"{at}{AUTO_STOP_ENABLED} is true but {AUTO_STOP_TIMEOUT} {text!r} "
                            "is not a positive Go duration (e.g. 90s, 10m)")
    return seconds


class AutoStopTimer:
    """The auto-stop timer of each running environment; `due(env, delay)` runs when one
    fires (the manager then stops the run as TIMER)."""

    def __init__(self, due: Callable[[Environment, float], None]) -> None:
        self._due = due

    def arm(self, env: Environment, elapsed: float = 0.0) -> None:
        """After START_ACTIVITY: the auto-stop timer, when the workflow asks for one;
        `elapsed` seconds of the run already gone (a run re-adopted after a restart
        stops when it would have, or at once if that moment has passed)."""
        self.disarm(env)
        delay = auto_stop_delay(env.workflow.stack_of(env.workflow.root), env.workflow.origin)
        if delay is None:
            return

        def fire() -> None:
            env.auto_stop = None
            self._due(env, delay)

        env.auto_stop = asyncio.get_running_loop().call_later(max(0.0, delay - elapsed), fire)

    @staticmethod
    def disarm(env: Environment) -> None:
        if env.auto_stop is not None:
            env.auto_stop.cancel()
            env.auto_stop = None
