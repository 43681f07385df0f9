from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LaunchRequest(_message.Message):
    __slots__ = ("task_id", "command_json", "environment_id", "detector", "log_path")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_JSON_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    command_json: str
    environment_id: str
    detector: str
    log_path: str
    def __init__(self, task_id: _Optional[str] = ..., command_json: _Optional[str] = ..., environment_id: _Optional[str] = ..., detector: _Optional[str] = ..., log_path: _Optional[str] = ...) -> None: ...

class LaunchReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CommandRequest(_message.Message):
    __slots__ = ("body_json",)
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    body_json: str
    def __init__(self, body_json: _Optional[str] = ...) -> None: ...

class CommandReply(_message.Message):
    __slots__ = ("body_json", "seq")
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    body_json: str
    seq: int
    def __init__(self, body_json: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class CommandBatchRequest(_message.Message):
    __slots__ = ("body_json",)
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    body_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, body_json: _Optional[_Iterable[str]] = ...) -> None: ...

class CommandOutcome(_message.Message):
    __slots__ = ("body_json", "code", "error", "seq")
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    body_json: str
    code: int
    error: str
    seq: int
    def __init__(self, body_json: _Optional[str] = ..., code: _Optional[int] = ..., error: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class CommandBatchReply(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[CommandOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[CommandOutcome, _Mapping]]] = ...) -> None: ...

class KillRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class KillReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("task_id", "environment_id", "detector", "control_mode", "pid", "state", "control_port", "status", "log_path")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    CONTROL_MODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PORT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    environment_id: str
    detector: str
    control_mode: str
    pid: int
    state: str
    control_port: int
    status: str
    log_path: str
    def __init__(self, task_id: _Optional[str] = ..., environment_id: _Optional[str] = ..., detector: _Optional[str] = ..., control_mode: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[str] = ..., control_port: _Optional[int] = ..., status: _Optional[str] = ..., log_path: _Optional[str] = ...) -> None: ...

class ListTasksReply(_message.Message):
    __slots__ = ("agent_name", "last_seq", "tasks", "instance")
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    agent_name: str
    last_seq: int
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    instance: str
    def __init__(self, agent_name: _Optional[str] = ..., last_seq: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., instance: _Optional[str] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("after", "instance")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    after: int
    instance: str
    def __init__(self, after: _Optional[int] = ..., instance: _Optional[str] = ...) -> None: ...

class AgentEvent(_message.Message):
    __slots__ = ("seq", "body_json", "instance")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    body_json: str
    instance: str
    def __init__(self, seq: _Optional[int] = ..., body_json: _Optional[str] = ..., instance: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("agent_name", "instance", "last_seq")
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    agent_name: str
    instance: str
    last_seq: int
    def __init__(self, agent_name: _Optional[str] = ..., instance: _Optional[str] = ..., last_seq: _Optional[int] = ...) -> None: ...
