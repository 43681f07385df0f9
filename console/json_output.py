"""`-o json`: the o2control reply each command stands for, as protobuf's JSON mapping.

Scripts switch between the CLI and the gRPC API without relearning: `env list`
prints a GetEnvironmentsReply, `env show` a GetEnvironmentReply, `env control` a
ControlEnvironmentReply, and so on, with AliECS's field names (id, state,
currentRunNumber, tasks[].taskId, deploymentInfo.hostname…). Fields at their
default value are printed too, so a script can always index them.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from engine import AgentInfo, EnvironmentInfo, RoleInfo, TaskInfo, TransitionResult
from engine.api import messages
from engine.api.protos import nutshell_pb2 as ext
from engine.api.protos import o2control_pb2 as o2


def print_message(message: Message) -> None:
    print(json.dumps(MessageToDict(message, always_print_fields_with_no_presence=True),
                     indent=2))


def environments_reply(environments: Sequence[EnvironmentInfo]) -> o2.GetEnvironmentsReply:
    return o2.GetEnvironmentsReply(
        environments=[messages.environment_info(env) for env in environments],
        timestamp=messages.now_ms())


def environment_reply(environment: EnvironmentInfo, root: RoleInfo | None,
                      with_workflow: bool) -> o2.GetEnvironmentReply:
    reply = o2.GetEnvironmentReply(environment=messages.environment_info(environment, root),
                                   public=True, timestamp=messages.now_ms())
    if with_workflow and root is not None:
        reply.workflow.CopyFrom(messages.role_info(root))
    return reply


def new_environment_reply(environment: EnvironmentInfo, root: RoleInfo | None
                          ) -> o2.NewEnvironmentReply:
    return o2.NewEnvironmentReply(environment=messages.environment_info(environment, root),
                                  public=True, timestamp=messages.now_ms())


def control_reply(result: TransitionResult, started_ms: int, ended_ms: int
                  ) -> o2.ControlEnvironmentReply:
    return messages.control_reply(result, started_ms, ended_ms)


def cleanup_reply(killed: Sequence[TaskInfo], running: Sequence[TaskInfo]
                  ) -> o2.CleanupTasksReply:
    return o2.CleanupTasksReply(killedTasks=[messages.short_task_info(t) for t in killed],
                                runningTasks=[messages.short_task_info(t) for t in running],
                                timestamp=messages.now_ms())


def destroy_reply(killed: Sequence[TaskInfo], running: Sequence[TaskInfo]
                  ) -> o2.DestroyEnvironmentReply:
    return o2.DestroyEnvironmentReply(cleanupTasksReply=cleanup_reply(killed, running),
                                      timestamp=messages.now_ms())


def tasks_reply(tasks: Sequence[TaskInfo]) -> o2.GetTasksReply:
    return o2.GetTasksReply(tasks=[messages.short_task_info(t) for t in tasks],
                            timestamp=messages.now_ms())


def roles_reply(roles: Sequence[RoleInfo]) -> o2.GetRolesReply:
    return o2.GetRolesReply(roles=[messages.role_info(role) for role in roles],
                            timestamp=messages.now_ms())


def agents_reply(agents: Sequence[AgentInfo]) -> ext.AgentInfoList:
    """`agents list`: o2control has no agents call; our ControlExt.ListAgents reply."""
    return ext.AgentInfoList(agents=[messages.agent_message(agent) for agent in agents])
