"""What the executor tells the core about its tasks.

Tasks hand these records to a `report` callback; the transports (local and
Mesos, later) send `to_message()` as the body. The bodies are those of the
AliECS executor (§7.4), key for key, so a core written for either reads them.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from occlib.states import DeviceEventType


class MesosTaskState(IntEnum):
    """The mesos.TaskState values an executor sends, with their mesos.proto numbers.

    Go's encoding/json writes them as these numbers (finalMesosState).
    """

    TASK_STARTING = 0
    TASK_RUNNING = 1
    TASK_FINISHED = 2
    TASK_FAILED = 3
    TASK_KILLED = 4

    def __str__(self) -> str:
        return self.name

    @property
    def terminal(self) -> bool:
        return self in (MesosTaskState.TASK_FINISHED, MesosTaskState.TASK_FAILED,
                        MesosTaskState.TASK_KILLED)


def _timestamp() -> str:
    """Seconds since the epoch as AliECS writes event timestamps ("%f")."""
    return f"{time.time():f}"


@dataclass(frozen=True)
class TaskIdentity:
    """Who a task is to the core: its Mesos ids and the labels its TaskInfo carried."""

    task_id: str
    agent_id: str = ""
    executor_id: str = ""
    environment_id: str = ""
    detector: str = ""

    def origin(self) -> dict[str, Any]:
        """DeviceEventOrigin: Mesos id wrappers, hence the {"value": …} objects."""
        return {"agentId": {"value": self.agent_id}, "executorId": {"value": self.executor_id},
                "taskId": {"value": self.task_id}}

    def labels(self) -> dict[str, str]:
        return {"environmentId": self.environment_id, "detector": self.detector}


@dataclass(frozen=True)
class StatusUpdate:
    """A Mesos task status. Mesos carries it in an UPDATE call, not a MESSAGE, so the
    body is nutshell's own, for the local transport: `_messageType` "StatusUpdate"."""

    task: TaskIdentity
    state: MesosTaskState
    message: str = ""

    def to_message(self) -> dict[str, Any]:
        return {"_messageType": "StatusUpdate", "taskId": self.task.task_id,
                "state": self.state.name, "message": self.message,
                "labels": self.task.labels()}


@dataclass(frozen=True)
class DeviceEvent:
    """An event of the task's process (EventStream), or BASIC_TASK_TERMINATED.

    The termination fields only go out for BASIC_TASK_TERMINATED. `exit_code`
    is the process's exit status, negative when a signal ended it (-9: SIGKILL).
    """

    task: TaskIdentity
    type: DeviceEventType
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    voluntary_termination: bool = False
    final_mesos_state: MesosTaskState = MesosTaskState.TASK_FINISHED
    timestamp: str = field(default_factory=_timestamp)

    def to_message(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "_messageType": "DeviceEvent",
            "timestamp": self.timestamp,
            "type": int(self.type),
            "origin": self.task.origin(),
            "labels": self.task.labels(),
        }
        if self.type is DeviceEventType.BASIC_TASK_TERMINATED:
            body.update(exitCode=self.exit_code, stdout=self.stdout, stderr=self.stderr,
                        voluntaryTermination=self.voluntary_termination,
                        finalMesosState=int(self.final_mesos_state))
        return body


@dataclass(frozen=True)
class PidAnnouncement:
    """AnnounceTaskPIDEvent: the pid the process reported through GetState."""

    task: TaskIdentity
    pid: int
    timestamp: str = field(default_factory=_timestamp)

    def to_message(self) -> dict[str, Any]:
        return {"_messageType": "AnnounceTaskPIDEvent", "timestamp": self.timestamp,
                "taskId": self.task.task_id, "pid": self.pid}


def _command_response(name: str, task: TaskIdentity, command_id: str, environment_id: str,
                      error: str) -> dict[str, Any]:
    return {"_messageType": "MesosCommandResponse", "name": name, "id": command_id,
            "environmentId": environment_id or task.environment_id, "error": error,
            "taskId": task.task_id}


@dataclass(frozen=True)
class TransitionResponse:
    """The answer to MesosCommand_Transition: the state the task is in now; error if it failed.

    `state` is taken from the process even on failure, as AliECS does.
    """

    task: TaskIdentity
    state: str
    error: str = ""
    event: str = ""
    command_id: str = ""
    environment_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_message(self) -> dict[str, Any]:
        body = _command_response("MesosCommand_Transition", self.task, self.command_id,
                                 self.environment_id, self.error)
        body["state"] = self.state
        return body


@dataclass(frozen=True)
class HookResult:
    """What a hook run gave: the answer to MesosCommand_TriggerHook.

    exit_code is None when the command could not even start. The message body
    is AliECS's (no output in it); the output went out in BASIC_TASK_TERMINATED.
    """

    task: TaskIdentity
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    command_id: str = ""
    environment_id: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_message(self) -> dict[str, Any]:
        return _command_response("MesosCommand_TriggerHook", self.task, self.command_id,
                                 self.environment_id, self.error)


Report = StatusUpdate | DeviceEvent | PidAnnouncement | TransitionResponse | HookResult
ReportFn = Callable[[Report], None]
