"""What a basic or hook task's run leaves on its role (reference §1.2, §1.3 `taskResult.*`).

Every BASIC_TASK_TERMINATED sets these runtime variables on the task's role, so
templates and calls after it can read how the command ended.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor.reports import MesosTaskState

PREFIX = "taskResult."


def task_result_vars(body: Mapping[str, Any]) -> dict[str, str]:
    """`taskResult.exitCode/stdout/stderr/finalStatus/timestamp` of a BASIC_TASK_TERMINATED body."""
    final = body.get("finalMesosState")
    try:
        status = MesosTaskState(int(final)).name if final is not None else ""
    except (TypeError, ValueError):
        status = str(final)
    return {f"{PREFIX}exitCode": str(body.get("exitCode", "")),
            f"{PREFIX}stdout": str(body.get("stdout", "")),
            f"{PREFIX}stderr": str(body.get("stderr", "")),
            f"{PREFIX}finalStatus": status,
            f"{PREFIX}timestamp": str(body.get("timestamp", ""))}


def killed_by_engine(body: Mapping[str, Any]) -> bool:
    """The command was killed (STOP, kill), not ended by itself or by its own timeout."""
    return body.get("finalMesosState") == int(MesosTaskState.TASK_KILLED)
