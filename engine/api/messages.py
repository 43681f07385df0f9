"""The facade's records as protobuf messages, and back.

Two sets of messages: o2control's (what coconut-style clients and `-o json` see, with
AliECS's field names) and our extension's (`nutshell.proto`), which carry a record
whole so that a remote engine returns exactly what an in-process one does. The
functions are pure: the server and the client call them, and so do front-ends that
print `MessageToDict` of an o2control message.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.api.protos import common_pb2 as common
from engine.api.protos import events_pb2 as events
from engine.api.protos import nutshell_pb2 as ext
from engine.api.protos import o2control_pb2 as o2
from engine.environment.environment import (
    EnvironmentInfo,
    TaskInfo,
    TaskRow,
    TransitionResult,
)
from engine.environment.events import EnvironmentEvent, EventKind
from engine.environment.roster import RoleInfo
from engine.repos import AddResult, RepoInfo, RepoKind, WorkflowTemplateInfo
from engine.scheduler.agent_info import AgentInfo
from engine.templates.yamlsource import VarSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
SUBSCRIBED = "subscribed"  # kind of the first message of a ControlExt.Subscribe stream
_TASK_FIELDS = {f.name for f in fields(TaskInfo)}
_VAR_TYPES = dict(o2.VarSpecMessage.Type.items())
_WIDGETS = dict(o2.VarSpecMessage.UiWidget.items())


def now_ms() -> int:
    """The `timestamp` most o2control replies carry: unix ms at send time."""
    return int(datetime.now(UTC).timestamp() * 1000)


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + micros * MICROSECOND


def variables_json(variables: Mapping[str, Any] | None) -> str:
    """User variables for the wire: JSON keeps lists and numbers as the caller gave them."""
    return json.dumps(dict(variables or {}))


def variables_from_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text)) if text else {}


# --------------------------------------------------------------------- o2control

def short_task_info(task: TaskInfo) -> o2.ShortTaskInfo:
    """ShortTaskInfo as AliECS fills it; `sandboxStdout` is the task's log file here."""
    locked = bool(getattr(task, "locked", True))
    return o2.ShortTaskInfo(
        name=f"{task.class_name}#{task.task_id}", locked=locked, taskId=task.task_id,
        status=task.status, state=task.state, className=task.class_name,
        deploymentInfo=o2.TaskDeploymentInfo(hostname=task.host, agentId=task.agent,
                                             executorId=task.agent),
        pid="" if task.pid is None else str(task.pid), sandboxStdout=task.log_path,
        claimable=not locked and task.status == "ACTIVE" and task.state == "STANDBY",
        critical=task.critical)


def environment_info(info: EnvironmentInfo, root: RoleInfo | None = None) -> o2.EnvironmentInfo:
    """o2control EnvironmentInfo; with the root role's info (`root`) the
    variable maps are filled from it as AliECS does (its own layers, flattened stack)."""
    hosts = {task.host for task in info.tasks if task.host}
    active = sum(1 for task in info.tasks if task.status == "ACTIVE")
    message = o2.EnvironmentInfo(
        id=info.id, createdWhen=int(info.created.timestamp() * 1000), state=info.state,
        tasks=[short_task_info(task) for task in info.tasks], rootRole=_root_path(info),
        currentRunNumber=info.current_run_number, numberOfHosts=len(hosts),
        numberOfFlps=len(hosts), numberOfTasks=len(info.tasks), numberOfActiveTasks=active,
        numberOfInactiveTasks=len(info.tasks) - active,
        currentTransition=info.current_transition)
    if root is not None:
        message.defaults.update(root.consolidated_stack)
        message.vars.update(root.vars)
        message.userVars.update(root.user_vars)
        message.description = root.description
        hosts_var = root.consolidated_stack.get("hosts", "")
        listed = _json_list(hosts_var)
        if listed is not None:
            message.numberOfFlps = len(listed)
    return message


def _root_path(info: EnvironmentInfo) -> str:
    paths = sorted(info.roles, key=lambda path: (path.count("."), path))
    return paths[0] if paths else ""


def _json_list(text: str) -> list[Any] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, list) else None


def control_reply(result: TransitionResult, started_ms: int, ended_ms: int
                  ) -> o2.ControlEnvironmentReply:
    return o2.ControlEnvironmentReply(
        id=result.environment_id, state=result.state, currentRunNumber=result.run_number,
        startOfTransition=started_ms, endOfTransition=ended_ms,
        transitionDuration=ended_ms - started_ms, timestamp=now_ms())


def role_info(role: RoleInfo) -> o2.RoleInfo:
    """o2control RoleInfo of a roster RoleInfo (own variable layers, flattened stack)."""
    return o2.RoleInfo(
        name=role.name, status=role.status, state=role.state, fullPath=role.full_path,
        taskIds=list(role.task_ids), roles=[role_info(child) for child in role.roles],
        defaults=role.defaults, vars=role.vars, userVars=role.user_vars,
        consolidatedStack=role.consolidated_stack, description=role.description)


def task_detail(task: TaskInfo, environment_id: str) -> o2.TaskInfo:
    return o2.TaskInfo(shortInfo=short_task_info(task), taskPath=task.role_path,
                       envId=environment_id)


def repo_info(repo: RepoInfo, with_revisions: bool) -> o2.RepoInfo:
    revisions = [*repo.revisions, *repo.tags] if with_revisions else []
    return o2.RepoInfo(name=repo.name, default=repo.default, defaultRevision=repo.default_revision,
                       revisions=revisions)


def var_spec_message(spec: VarSpec) -> o2.VarSpecMessage:
    return o2.VarSpecMessage(
        defaultValue=spec.default_value, type=_VAR_TYPES.get(spec.type, _VAR_TYPES["string"]),
        label=spec.label, description=spec.description,
        widget=_WIDGETS.get(spec.widget, _WIDGETS["editBox"]), panel=spec.panel,
        allowedValues=list(spec.allowed_values), index=spec.index, visibleIf=spec.visible_if,
        enabledIf=spec.enabled_if, rows=max(spec.rows, 0))


def workflow_template_info(template: WorkflowTemplateInfo) -> o2.WorkflowTemplateInfo:
    return o2.WorkflowTemplateInfo(
        repo=template.repo, template=template.name, revision=template.revision,
        varSpecMap={spec.name: var_spec_message(spec) for spec in template.var_specs},
        description=template.description)


def event_message(event: EnvironmentEvent) -> events.Event:
    """An engine event as AliECS's events.Event (environment or task payload)."""
    stamp = to_micros(event.time)
    message = events.Event(timestamp=stamp // 1000, timestampNano=stamp * 1000)
    if event.kind is EventKind.TASK:
        message.taskEvent.CopyFrom(events.Ev_TaskEvent(
            taskid=event.task_id, state=event.state, status=event.status,
            environmentId=event.environment_id, path=event.role_path))
    else:
        message.environmentEvent.CopyFrom(events.Ev_EnvironmentEvent(
            environmentId=event.environment_id, state=event.state, message=event.message,
            lastRequestUser=common.User(name=event.user)))
    return message


# --------------------------------------------------------------------- extension, both ways

def row_message(row: TaskRow) -> ext.TaskRow:
    message = ext.TaskRow(taskId=row.task_id, rolePath=row.role_path, host=row.host,
                          before=row.before, after=row.after, reason=row.reason,
                          logPath=row.log_path)
    if row.exit_code is not None:
        message.exitCode = row.exit_code
    return message


def row_record(message: ext.TaskRow) -> TaskRow:
    return TaskRow(task_id=message.taskId, role_path=message.rolePath, host=message.host,
                   before=message.before, after=message.after, reason=message.reason,
                   exit_code=message.exitCode if message.HasField("exitCode") else None,
                   log_path=message.logPath)


def result_message(result: TransitionResult) -> ext.TransitionResult:
    return ext.TransitionResult(environmentId=result.environment_id, event=result.event,
                                state=result.state, runNumber=result.run_number,
                                rows=[row_message(row) for row in result.rows], user=result.user)


def result_record(message: ext.TransitionResult) -> TransitionResult:
    return TransitionResult(environment_id=message.environmentId, event=message.event,
                            state=message.state, run_number=message.runNumber,
                            rows=tuple(row_record(row) for row in message.rows),
                            user=message.user)


def task_message(task: TaskInfo) -> ext.Task:
    message = ext.Task(taskId=task.task_id, rolePath=task.role_path, className=task.class_name,
                       host=task.host, agent=task.agent, state=task.state, status=task.status,
                       critical=task.critical, logPath=task.log_path,
                       locked=bool(getattr(task, "locked", True)))
    if task.pid is not None:
        message.pid = task.pid
    if task.control_port is not None:
        message.controlPort = task.control_port
    return message


def task_record(message: ext.Task) -> TaskInfo:
    values: dict[str, Any] = {
        "task_id": message.taskId, "role_path": message.rolePath,
        "class_name": message.className, "host": message.host, "agent": message.agent,
        "state": message.state, "status": message.status,
        "pid": message.pid if message.HasField("pid") else None,
        "control_port": message.controlPort if message.HasField("controlPort") else None,
        "critical": message.critical, "log_path": message.logPath, "locked": message.locked}
    return TaskInfo(**{name: value for name, value in values.items() if name in _TASK_FIELDS})


def environment_message(info: EnvironmentInfo) -> ext.Environment:
    return ext.Environment(
        id=info.id, state=info.state, workflow=info.workflow, createdBy=info.created_by,
        createdMicros=to_micros(info.created), currentRunNumber=info.current_run_number,
        lastRunNumber=info.last_run_number, tasks=[task_message(task) for task in info.tasks],
        lastTransition=info.last_transition,
        lastResult=[row_message(row) for row in info.last_result],
        roles={path: ext.RoleState(state=state, status=status)
               for path, (state, status) in info.roles.items()},
        currentTransition=info.current_transition,
        transitionSinceMicros=(to_micros(info.transition_since)
                               if info.transition_since is not None else 0))


def environment_record(message: ext.Environment) -> EnvironmentInfo:
    return EnvironmentInfo(
        id=message.id, state=message.state, workflow=message.workflow,
        created_by=message.createdBy, created=from_micros(message.createdMicros),
        current_run_number=message.currentRunNumber, last_run_number=message.lastRunNumber,
        tasks=tuple(task_record(task) for task in message.tasks),
        last_transition=message.lastTransition,
        last_result=tuple(row_record(row) for row in message.lastResult),
        roles={path: (role.state, role.status) for path, role in message.roles.items()},
        current_transition=message.currentTransition,
        transition_since=(from_micros(message.transitionSinceMicros)
                          if message.transitionSinceMicros else None))


def event_ext_message(event: EnvironmentEvent) -> ext.Event:
    return ext.Event(kind=event.kind.value, environmentId=event.environment_id,
                     state=event.state, user=event.user, taskId=event.task_id,
                     rolePath=event.role_path, status=event.status, message=event.message,
                     timeMicros=to_micros(event.time))


def event_record(message: ext.Event) -> EnvironmentEvent:
    return EnvironmentEvent(kind=EventKind(message.kind), environment_id=message.environmentId,
                            state=message.state, user=message.user, task_id=message.taskId,
                            role_path=message.rolePath, status=message.status,
                            message=message.message, time=from_micros(message.timeMicros))


def role_ext_message(role: RoleInfo) -> ext.RoleInfo:
    return ext.RoleInfo(
        name=role.name, fullPath=role.full_path, kind=role.kind, state=role.state,
        status=role.status, taskIds=list(role.task_ids),
        roles=[role_ext_message(child) for child in role.roles], defaults=role.defaults,
        vars=role.vars, userVars=role.user_vars, consolidatedStack=role.consolidated_stack,
        description=role.description)


def role_record(message: ext.RoleInfo) -> RoleInfo:
    return RoleInfo(
        name=message.name, full_path=message.fullPath, kind=message.kind, state=message.state,
        status=message.status, task_ids=tuple(message.taskIds),
        roles=tuple(role_record(child) for child in message.roles),
        defaults=dict(message.defaults), vars=dict(message.vars),
        user_vars=dict(message.userVars), consolidated_stack=dict(message.consolidatedStack),
        description=message.description)


def repo_message(repo: RepoInfo) -> ext.RepoInfo:
    return ext.RepoInfo(index=repo.index, name=repo.name, kind=repo.kind.value,
                        default=repo.default, defaultRevision=repo.default_revision,
                        revisions=list(repo.revisions), tags=list(repo.tags))


def repo_record(message: ext.RepoInfo) -> RepoInfo:
    return RepoInfo(index=message.index, name=message.name, kind=RepoKind(message.kind),
                    default=message.default, default_revision=message.defaultRevision,
                    revisions=tuple(message.revisions), tags=tuple(message.tags))


def agent_message(agent: AgentInfo) -> ext.AgentInfo:
    message = ext.AgentInfo(
        name=agent.name, machineId=agent.machine_id, hostname=agent.hostname,
        attributes=dict(agent.attributes), cpus=agent.cpus, cpusUsed=agent.cpus_used,
        mem=agent.mem, memUsed=agent.mem_used, portRanges=agent.port_ranges,
        portsInUse=list(agent.ports_in_use), executorRunning=agent.executor_running,
        tasks=agent.tasks)
    if agent.executor_pid is not None:
        message.executorPid = agent.executor_pid
    return message


def agent_record(message: ext.AgentInfo) -> AgentInfo:
    return AgentInfo(
        name=message.name, machine_id=message.machineId, hostname=message.hostname,
        attributes=dict(message.attributes), cpus=message.cpus, cpus_used=message.cpusUsed,
        mem=message.mem, mem_used=message.memUsed, port_ranges=message.portRanges,
        ports_in_use=tuple(message.portsInUse), executor_running=message.executorRunning,
        executor_pid=message.executorPid if message.HasField("executorPid") else None,
        tasks=message.tasks)


def add_result_message(result: AddResult) -> ext.AddRepoReply:
    return ext.AddRepoReply(repo=result.repo, revision=result.revision, info=result.info)


def add_result_record(message: ext.AddRepoReply) -> AddResult:
    return AddResult(repo=message.repo, revision=message.revision, info=message.info)


def var_spec_ext_message(spec: VarSpec) -> ext.VarSpec:
    return ext.VarSpec(name=spec.name, defaultValue=spec.default_value, type=spec.type,
                       label=spec.label, description=spec.description, widget=spec.widget,
                       panel=spec.panel, allowedValues=list(spec.allowed_values),
                       index=spec.index, visibleIf=spec.visible_if, enabledIf=spec.enabled_if,
                       rows=spec.rows, extra=spec.extra)


def var_spec_record(message: ext.VarSpec) -> VarSpec:
    return VarSpec(name=message.name, default_value=message.defaultValue, type=message.type,
                   label=message.label, description=message.description,
                   widget=message.widget, panel=message.panel,
                   allowed_values=tuple(message.allowedValues), index=message.index,
                   visible_if=message.visibleIf, enabled_if=message.enabledIf,
                   rows=message.rows, extra=dict(message.extra))


def template_message(template: WorkflowTemplateInfo) -> ext.WorkflowTemplate:
    return ext.WorkflowTemplate(repo=template.repo, revision=template.revision,
                                name=template.name, description=template.description,
                                public=template.public,
                                varSpecs=[var_spec_ext_message(s) for s in template.var_specs])


def template_record(message: ext.WorkflowTemplate) -> WorkflowTemplateInfo:
    return WorkflowTemplateInfo(repo=message.repo, revision=message.revision, name=message.name,
                                description=message.description, public=message.public,
                                var_specs=tuple(var_spec_record(s) for s in message.varSpecs))


def tasks_message(tasks: Iterable[TaskInfo]) -> list[ext.Task]:
    return [task_message(task) for task in tasks]


def tasks_records(messages: Sequence[ext.Task]) -> list[TaskInfo]:
    return [task_record(message) for message in messages]
