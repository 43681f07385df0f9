"""Executor reports (reference §7.4 bodies) turned into the state of the task they name.

A status update says whether the process runs or is gone, an announced pid that a
controlled task is up, BASIC_TASK_TERMINATED how a command ended (`taskResult.*`,
taskresult.py), END_OF_STREAM that a task's part of the run is over (runend.py),
TASK_INTERNAL_ERROR that the process went to ERROR by itself (§1.2). What the
environment does about it (roll-up, GO_ERROR, a run's end) is the manager's.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.environment.environment import DeployedTask
from engine.environment.taskresult import killed_by_engine, task_result_vars
from engine.workflow.aggregation import TaskState, TaskStatus
from occlib.states import DeviceEventType

GONE_STATES = {"TASK_FINISHED": TaskState.DONE, "TASK_FAILED": TaskState.ERROR,
               "TASK_KILLED": TaskState.ERROR, "TASK_LOST": TaskState.ERROR,
               "TASK_ERROR": TaskState.ERROR}
BASIC_TASK_TERMINATED = int(DeviceEventType.BASIC_TASK_TERMINATED)  # as the body carries it
END_OF_STREAM = int(DeviceEventType.END_OF_STREAM)
TASK_INTERNAL_ERROR = int(DeviceEventType.TASK_INTERNAL_ERROR)


@dataclass(frozen=True)
class Applied:
    """A report changed its task; `run_end` says why the run should end ("" if not);
    `late`: it was a transition's answer nobody here waited for (the engine that sent it
    died before it came)."""

    run_end: str = ""
    late: bool = False


def reported_task(body: Mapping[str, Any]) -> str:
    """The id of the task a report names."""
    return str(body.get("taskId") or body.get("origin", {}).get("taskId", {}).get("value", ""))


def apply_report(task: DeployedTask, body: Mapping[str, Any], seq: int = 0) -> Applied | None:
    """Update `task` from one report of its executor (`seq`: its event's, 0 if unknown);
    None when the report changes nothing."""
    kind = body.get("_messageType")
    ends_run = False
    if kind == "MesosCommandResponse":
        # A transition's answer as the event stream tells it: news only when this engine
        # did not wait for it and has nothing newer (an answer it got carries its seq).
        if not seq or task.commanding or seq <= task.state_seq or not body.get("state"):
            return None
        task.state_seq = seq
        task.state = TaskState.parse(str(body["state"]))
        task.message = (f"a transition sent by an engine that stopped ended afterwards, "
                        f"the task in {task.state}"
                        + (f": {body['error']}" if body.get("error") else ""))
        return Applied(late=True)
    if kind == "StatusUpdate":
        state = str(body.get("state", ""))
        task.mesos_state = state
        if state == "TASK_RUNNING":
            task.status = TaskStatus.ACTIVE
            task.launched = True
            if body.get("taskState"):  # back after a lost agent: the state it runs in
                task.state = TaskState.parse(str(body["taskState"]))
                task.message = str(body.get("message") or "")
                task.state_seq = max(task.state_seq, seq)  # as of that listing
        elif state in GONE_STATES:
            task.status = TaskStatus.INACTIVE
            task.state = GONE_STATES[state]
            task.message = str(body.get("message") or "") or task.message
    elif kind == "AnnounceTaskPIDEvent":
        task.pid = int(body.get("pid") or 0) or None
    elif kind == "DeviceEvent" and body.get("type") == BASIC_TASK_TERMINATED:
        task.exit_code = body.get("exitCode")
        task.terminations += 1
        task.role.user_vars.update(task_result_vars(body))
        # A command the engine killed (STOP, destroy) did not end its part of a run.
        ends_run = task.safe_to_stop = not task.hook and not killed_by_engine(body)
    elif kind == "DeviceEvent" and body.get("type") == END_OF_STREAM:
        ends_run = task.safe_to_stop = True
    elif kind == "DeviceEvent" and body.get("type") == TASK_INTERNAL_ERROR:
        # The process went to ERROR by itself (§1.2): a critical one takes the
        # environment to ERROR through the manager's _task_changed; a non-critical one
        # only shows.
        task.state = TaskState.ERROR
        task.message = "the process reported an internal error (TASK_INTERNAL_ERROR)"
    else:
        return None
    if not ends_run:
        return Applied()
    why = ("end of stream" if body.get("type") == END_OF_STREAM
           else f"its command ended (exit code {task.exit_code})")
    return Applied(f"task {task.role.path} on {task.host}: {why}")
