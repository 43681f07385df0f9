"""What RECOVER (ERROR → DEPLOYED, reference §1.1) must do to each task (not to be confused
with recovery.py, which re-adopts environments when an engine restarts).

DEPLOYED means every task is deployed and in STANDBY, so RECOVER brings each task there
by the shortest way its state allows: a RUNNING task is stopped and reset, a CONFIGURED
one reset, one in ERROR sent OCC's RECOVER (ERROR → STANDBY); a task whose process is
gone (crashed, killed, lost) is deployed again on fresh offers. Hook tasks are left
alone: they only run at their triggers. AliECS cannot reach RECOVER at all (no client
can send it); nutshell makes it the way back from ERROR short of destroying.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.environment.environment import DeployedTask
from engine.workflow.aggregation import TaskState


@dataclass
class RecoveryPlan:
    """The tasks of an environment in ERROR, by what each needs to be in STANDBY again."""

    redeploy: list[DeployedTask] = field(default_factory=list)
    stop: list[DeployedTask] = field(default_factory=list)  # then reset
    reset: list[DeployedTask] = field(default_factory=list)
    recover: list[DeployedTask] = field(default_factory=list)


def recovery_plan(tasks: Iterable[DeployedTask]) -> RecoveryPlan:
    plan = RecoveryPlan()
    for task in tasks:
        if task.hook and not task.gone:
            continue
        if task.gone:
            plan.redeploy.append(task)
        elif task.state is TaskState.RUNNING:
            plan.stop.append(task)
        elif task.state is TaskState.CONFIGURED:
            plan.reset.append(task)
        elif task.state is TaskState.ERROR:
            plan.recover.append(task)
    return plan
