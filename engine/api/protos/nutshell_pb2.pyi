from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskRow(_message.Message):
    __slots__ = ("taskId", "rolePath", "host", "before", "after", "reason", "exitCode", "logPath")
    TASKID_FIELD_NUMBER: _ClassVar[int]
    ROLEPATH_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXITCODE_FIELD_NUMBER: _ClassVar[int]
    LOGPATH_FIELD_NUMBER: _ClassVar[int]
    taskId: str
    rolePath: str
    host: str
    before: str
    after: str
    reason: str
    exitCode: int
    logPath: str
    def __init__(self, taskId: _Optional[str] = ..., rolePath: _Optional[str] = ..., host: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., reason: _Optional[str] = ..., exitCode: _Optional[int] = ..., logPath: _Optional[str] = ...) -> None: ...

class TransitionResult(_message.Message):
    __slots__ = ("environmentId", "event", "state", "runNumber", "rows", "user")
    ENVIRONMENTID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNNUMBER_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    environmentId: str
    event: str
    state: str
    runNumber: int
    rows: _containers.RepeatedCompositeFieldContainer[TaskRow]
    user: str
    def __init__(self, environmentId: _Optional[str] = ..., event: _Optional[str] = ..., state: _Optional[str] = ..., runNumber: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[TaskRow, _Mapping]]] = ..., user: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("taskId", "rolePath", "className", "host", "agent", "state", "status", "pid", "controlPort", "critical", "logPath", "locked")
    TASKID_FIELD_NUMBER: _ClassVar[int]
    ROLEPATH_FIELD_NUMBER: _ClassVar[int]
    CLASSNAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CONTROLPORT_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    LOGPATH_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    taskId: str
    rolePath: str
    className: str
    host: str
    agent: str
    state: str
    status: str
    pid: int
    controlPort: int
    critical: bool
    logPath: str
    locked: bool
    def __init__(self, taskId: _Optional[str] = ..., rolePath: _Optional[str] = ..., className: _Optional[str] = ..., host: _Optional[str] = ..., agent: _Optional[str] = ..., state: _Optional[str] = ..., status: _Optional[str] = ..., pid: _Optional[int] = ..., controlPort: _Optional[int] = ..., critical: _Optional[bool] = ..., logPath: _Optional[str] = ..., locked: _Optional[bool] = ...) -> None: ...

class RoleState(_message.Message):
    __slots__ = ("state", "status")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    state: str
    status: str
    def __init__(self, state: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("id", "state", "workflow", "createdBy", "createdMicros", "currentRunNumber", "lastRunNumber", "tasks", "lastTransition", "lastResult", "roles", "currentTransition", "transitionSinceMicros")
    class RolesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: RoleState
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[RoleState, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CREATEDBY_FIELD_NUMBER: _ClassVar[int]
    CREATEDMICROS_FIELD_NUMBER: _ClassVar[int]
    CURRENTRUNNUMBER_FIELD_NUMBER: _ClassVar[int]
    LASTRUNNUMBER_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LASTTRANSITION_FIELD_NUMBER: _ClassVar[int]
    LASTRESULT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CURRENTTRANSITION_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONSINCEMICROS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    workflow: str
    createdBy: str
    createdMicros: int
    currentRunNumber: int
    lastRunNumber: int
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    lastTransition: str
    lastResult: _containers.RepeatedCompositeFieldContainer[TaskRow]
    roles: _containers.MessageMap[str, RoleState]
    currentTransition: str
    transitionSinceMicros: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., workflow: _Optional[str] = ..., createdBy: _Optional[str] = ..., createdMicros: _Optional[int] = ..., currentRunNumber: _Optional[int] = ..., lastRunNumber: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., lastTransition: _Optional[str] = ..., lastResult: _Optional[_Iterable[_Union[TaskRow, _Mapping]]] = ..., roles: _Optional[_Mapping[str, RoleState]] = ..., currentTransition: _Optional[str] = ..., transitionSinceMicros: _Optional[int] = ...) -> None: ...

class EnvironmentList(_message.Message):
    __slots__ = ("environments",)
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[Environment]
    def __init__(self, environments: _Optional[_Iterable[_Union[Environment, _Mapping]]] = ...) -> None: ...

class EnvironmentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateEnvironmentRequest(_message.Message):
    __slots__ = ("workflowTemplate", "varsJson", "emulate", "user", "id")
    WORKFLOWTEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VARSJSON_FIELD_NUMBER: _ClassVar[int]
    EMULATE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    workflowTemplate: str
    varsJson: str
    emulate: bool
    user: str
    id: str
    def __init__(self, workflowTemplate: _Optional[str] = ..., varsJson: _Optional[str] = ..., emulate: _Optional[bool] = ..., user: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ControlEnvironmentRequest(_message.Message):
    __slots__ = ("id", "event", "user")
    ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    id: str
    event: str
    user: str
    def __init__(self, id: _Optional[str] = ..., event: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class DestroyEnvironmentRequest(_message.Message):
    __slots__ = ("id", "user", "keepTasks", "allowInRunningState", "force")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    KEEPTASKS_FIELD_NUMBER: _ClassVar[int]
    ALLOWINRUNNINGSTATE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    user: str
    keepTasks: bool
    allowInRunningState: bool
    force: bool
    def __init__(self, id: _Optional[str] = ..., user: _Optional[str] = ..., keepTasks: _Optional[bool] = ..., allowInRunningState: _Optional[bool] = ..., force: _Optional[bool] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "environmentId", "state", "user", "taskId", "rolePath", "status", "message", "timeMicros")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENTID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TASKID_FIELD_NUMBER: _ClassVar[int]
    ROLEPATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIMEMICROS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    environmentId: str
    state: str
    user: str
    taskId: str
    rolePath: str
    status: str
    message: str
    timeMicros: int
    def __init__(self, kind: _Optional[str] = ..., environmentId: _Optional[str] = ..., state: _Optional[str] = ..., user: _Optional[str] = ..., taskId: _Optional[str] = ..., rolePath: _Optional[str] = ..., status: _Optional[str] = ..., message: _Optional[str] = ..., timeMicros: _Optional[int] = ...) -> None: ...

class TaskList(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class CleanupTasksRequest(_message.Message):
    __slots__ = ("taskIds",)
    TASKIDS_FIELD_NUMBER: _ClassVar[int]
    taskIds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, taskIds: _Optional[_Iterable[str]] = ...) -> None: ...

class CleanupTasksReply(_message.Message):
    __slots__ = ("killed", "running")
    KILLED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    killed: _containers.RepeatedCompositeFieldContainer[Task]
    running: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, killed: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., running: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class QueryRolesRequest(_message.Message):
    __slots__ = ("environmentId", "pathGlob")
    ENVIRONMENTID_FIELD_NUMBER: _ClassVar[int]
    PATHGLOB_FIELD_NUMBER: _ClassVar[int]
    environmentId: str
    pathGlob: str
    def __init__(self, environmentId: _Optional[str] = ..., pathGlob: _Optional[str] = ...) -> None: ...

class RoleInfo(_message.Message):
    __slots__ = ("name", "fullPath", "kind", "state", "status", "taskIds", "roles", "defaults", "vars", "userVars", "consolidatedStack", "description")
    class DefaultsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class VarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class UserVarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ConsolidatedStackEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    FULLPATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TASKIDS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    VARS_FIELD_NUMBER: _ClassVar[int]
    USERVARS_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATEDSTACK_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    fullPath: str
    kind: str
    state: str
    status: str
    taskIds: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedCompositeFieldContainer[RoleInfo]
    defaults: _containers.ScalarMap[str, str]
    vars: _containers.ScalarMap[str, str]
    userVars: _containers.ScalarMap[str, str]
    consolidatedStack: _containers.ScalarMap[str, str]
    description: str
    def __init__(self, name: _Optional[str] = ..., fullPath: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., status: _Optional[str] = ..., taskIds: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[_Union[RoleInfo, _Mapping]]] = ..., defaults: _Optional[_Mapping[str, str]] = ..., vars: _Optional[_Mapping[str, str]] = ..., userVars: _Optional[_Mapping[str, str]] = ..., consolidatedStack: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ...) -> None: ...

class RoleList(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[RoleInfo]
    def __init__(self, roles: _Optional[_Iterable[_Union[RoleInfo, _Mapping]]] = ...) -> None: ...

class TaskLogRequest(_message.Message):
    __slots__ = ("taskId", "lines")
    TASKID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    taskId: str
    lines: int
    def __init__(self, taskId: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class TaskLogReply(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class AgentList(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agents: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("name", "machineId", "hostname", "attributes", "cpus", "cpusUsed", "mem", "memUsed", "portRanges", "portsInUse", "executorRunning", "executorPid", "tasks")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MACHINEID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    CPUSUSED_FIELD_NUMBER: _ClassVar[int]
    MEM_FIELD_NUMBER: _ClassVar[int]
    MEMUSED_FIELD_NUMBER: _ClassVar[int]
    PORTRANGES_FIELD_NUMBER: _ClassVar[int]
    PORTSINUSE_FIELD_NUMBER: _ClassVar[int]
    EXECUTORRUNNING_FIELD_NUMBER: _ClassVar[int]
    EXECUTORPID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    machineId: str
    hostname: str
    attributes: _containers.ScalarMap[str, str]
    cpus: float
    cpusUsed: float
    mem: float
    memUsed: float
    portRanges: str
    portsInUse: _containers.RepeatedScalarFieldContainer[int]
    executorRunning: bool
    executorPid: int
    tasks: int
    def __init__(self, name: _Optional[str] = ..., machineId: _Optional[str] = ..., hostname: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., cpus: _Optional[float] = ..., cpusUsed: _Optional[float] = ..., mem: _Optional[float] = ..., memUsed: _Optional[float] = ..., portRanges: _Optional[str] = ..., portsInUse: _Optional[_Iterable[int]] = ..., executorRunning: _Optional[bool] = ..., executorPid: _Optional[int] = ..., tasks: _Optional[int] = ...) -> None: ...

class AgentInfoList(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class RepoInfo(_message.Message):
    __slots__ = ("index", "name", "kind", "default", "defaultRevision", "revisions", "tags")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DEFAULTREVISION_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    kind: str
    default: bool
    defaultRevision: str
    revisions: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., default: _Optional[bool] = ..., defaultRevision: _Optional[str] = ..., revisions: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class RepoList(_message.Message):
    __slots__ = ("repos",)
    REPOS_FIELD_NUMBER: _ClassVar[int]
    repos: _containers.RepeatedCompositeFieldContainer[RepoInfo]
    def __init__(self, repos: _Optional[_Iterable[_Union[RepoInfo, _Mapping]]] = ...) -> None: ...

class AddRepoRequest(_message.Message):
    __slots__ = ("identifier", "defaultRevision")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    DEFAULTREVISION_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    defaultRevision: str
    def __init__(self, identifier: _Optional[str] = ..., defaultRevision: _Optional[str] = ...) -> None: ...

class AddRepoReply(_message.Message):
    __slots__ = ("repo", "revision", "info")
    REPO_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    repo: str
    revision: str
    info: str
    def __init__(self, repo: _Optional[str] = ..., revision: _Optional[str] = ..., info: _Optional[str] = ...) -> None: ...

class RevisionRequest(_message.Message):
    __slots__ = ("index", "revision")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    index: int
    revision: str
    def __init__(self, index: _Optional[int] = ..., revision: _Optional[str] = ...) -> None: ...

class TemplatesRequest(_message.Message):
    __slots__ = ("repoPattern", "revisionPattern", "allBranches", "allTags", "allWorkflows", "repoPath")
    REPOPATTERN_FIELD_NUMBER: _ClassVar[int]
    REVISIONPATTERN_FIELD_NUMBER: _ClassVar[int]
    ALLBRANCHES_FIELD_NUMBER: _ClassVar[int]
    ALLTAGS_FIELD_NUMBER: _ClassVar[int]
    ALLWORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    REPOPATH_FIELD_NUMBER: _ClassVar[int]
    repoPattern: str
    revisionPattern: str
    allBranches: bool
    allTags: bool
    allWorkflows: bool
    repoPath: str
    def __init__(self, repoPattern: _Optional[str] = ..., revisionPattern: _Optional[str] = ..., allBranches: _Optional[bool] = ..., allTags: _Optional[bool] = ..., allWorkflows: _Optional[bool] = ..., repoPath: _Optional[str] = ...) -> None: ...

class VarSpec(_message.Message):
    __slots__ = ("name", "defaultValue", "type", "label", "description", "widget", "panel", "allowedValues", "index", "visibleIf", "enabledIf", "rows", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULTVALUE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WIDGET_FIELD_NUMBER: _ClassVar[int]
    PANEL_FIELD_NUMBER: _ClassVar[int]
    ALLOWEDVALUES_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VISIBLEIF_FIELD_NUMBER: _ClassVar[int]
    ENABLEDIF_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    name: str
    defaultValue: str
    type: str
    label: str
    description: str
    widget: str
    panel: str
    allowedValues: _containers.RepeatedScalarFieldContainer[str]
    index: int
    visibleIf: str
    enabledIf: str
    rows: int
    extra: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., defaultValue: _Optional[str] = ..., type: _Optional[str] = ..., label: _Optional[str] = ..., description: _Optional[str] = ..., widget: _Optional[str] = ..., panel: _Optional[str] = ..., allowedValues: _Optional[_Iterable[str]] = ..., index: _Optional[int] = ..., visibleIf: _Optional[str] = ..., enabledIf: _Optional[str] = ..., rows: _Optional[int] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkflowTemplate(_message.Message):
    __slots__ = ("repo", "revision", "name", "description", "public", "varSpecs")
    REPO_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    VARSPECS_FIELD_NUMBER: _ClassVar[int]
    repo: str
    revision: str
    name: str
    description: str
    public: bool
    varSpecs: _containers.RepeatedCompositeFieldContainer[VarSpec]
    def __init__(self, repo: _Optional[str] = ..., revision: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., public: _Optional[bool] = ..., varSpecs: _Optional[_Iterable[_Union[VarSpec, _Mapping]]] = ...) -> None: ...

class TemplateList(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[WorkflowTemplate]
    def __init__(self, templates: _Optional[_Iterable[_Union[WorkflowTemplate, _Mapping]]] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("reference", "varsJson", "repoPath")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VARSJSON_FIELD_NUMBER: _ClassVar[int]
    REPOPATH_FIELD_NUMBER: _ClassVar[int]
    reference: str
    varsJson: str
    repoPath: str
    def __init__(self, reference: _Optional[str] = ..., varsJson: _Optional[str] = ..., repoPath: _Optional[str] = ...) -> None: ...

class RenderReply(_message.Message):
    __slots__ = ("treeJson",)
    TREEJSON_FIELD_NUMBER: _ClassVar[int]
    treeJson: str
    def __init__(self, treeJson: _Optional[str] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ("user", "role", "authenticated")
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    user: str
    role: str
    authenticated: bool
    def __init__(self, user: _Optional[str] = ..., role: _Optional[str] = ..., authenticated: _Optional[bool] = ...) -> None: ...
