"""The tasks of this framework as the pool knows them, and what their statuses mean.

A task is known from its launch (or, after an engine restart, from the master's
reconciliation and its executor's listing). Mesos statuses become the StatusUpdate
body the environment manager reads from either backend; the states it does not know
(TASK_DROPPED, TASK_GONE, TASK_UNREACHABLE…) count as TASK_LOST, and a lost task's
message names its agent and host (§7.5).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.scheduler.local_agent import AgentTaskList, RemoteTask

LOST_STATES = {"TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNREACHABLE",
               "TASK_UNKNOWN"}
TERMINAL_STATES = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
                   *LOST_STATES}
QUIET_STATES = {"TASK_STAGING", "TASK_KILLING"}  # nothing for the manager to learn


@dataclass
class FrameworkTask:
    """A task of this framework: where, for whom, its last status."""

    task_id: str
    machine_id: str
    agent_id: str
    environment_id: str = ""
    detector: str = ""
    control_mode: str = ""
    control_port: int = 0
    log_path: str = ""
    status: str = "TASK_STAGING"
    pid: int = 0

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATES

    def remote(self) -> RemoteTask:
        """As a task listing shows it (its OCC state is the executor's to tell)."""
        return RemoteTask(task_id=self.task_id, environment_id=self.environment_id,
                          detector=self.detector, control_mode=self.control_mode, pid=self.pid,
                          state="", control_port=self.control_port, status=self.status,
                          log_path=self.log_path)

    def learn(self, listed: RemoteTask) -> None:
        """What its executor's listing says of it (a task adopted after a restart)."""
        self.environment_id, self.detector = listed.environment_id, listed.detector
        self.control_mode, self.control_port = listed.control_mode, listed.control_port
        self.log_path, self.pid = listed.log_path, listed.pid


def status_report(task: FrameworkTask, status: Mapping[str, Any], hostname: str
                  ) -> dict[str, Any]:
    """The StatusUpdate body (executor/reports.py's keys) of a Mesos task status."""
    state = str(status.get("state", ""))
    message = str(status.get("message") or "")
    reason = str(status.get("reason") or "")
    if state in LOST_STATES or state == "TASK_LOST":
        message = (f"{state} on agent {task.machine_id} ({hostname or 'unknown host'}, Mesos "
                   f"agent {task.agent_id}): {message or reason or 'no reason given'}")
    return {"_messageType": "StatusUpdate", "taskId": task.task_id,
            "state": "TASK_LOST" if state in LOST_STATES else state,
            "message": message, "reason": reason}


def parse_listing(machine: str, body: Mapping[str, Any]) -> AgentTaskList:
    """A MesosCommandResponse_ListTasks body as the listing re-adoption reads."""
    return AgentTaskList(machine, 0, tuple(
        RemoteTask(task_id=str(entry.get("taskId", "")),
                   environment_id=str(entry.get("environmentId", "")),
                   detector=str(entry.get("detector", "")),
                   control_mode=str(entry.get("controlMode", "")),
                   pid=int(entry.get("pid") or 0), state=str(entry.get("state", "")),
                   control_port=int(entry.get("controlPort") or 0),
                   status=str(entry.get("status", "")), log_path=str(entry.get("logPath", "")))
        for entry in body.get("tasks") or []))
