"""The control engine (AliECS "core"): environments, workflows, scheduling.

`Engine` is the one facade; front-ends import it and the records below from
here, never from the modules inside this package.
"""
from engine.config.service import ConfigurationError
from engine.engine import Engine
from engine.environment.environment import (
                                            EnvironmentBusy,
                                            EnvironmentInfo,
                                            TaskInfo,
                                            TaskRow,
                                            TransitionFailed,
                                            TransitionResult,
                                            UnknownEnvironmentError,
)
from engine.environment.events import EnvironmentEvent, EventKind, EventQueue, Subscription
from engine.environment.roleglob import RoleGlobError
from engine.environment.roster import RoleInfo, UnknownTaskError
from engine.environment.statemachine import EnvEvent, EnvState, TransitionRefused
from engine.gosyntax import parse_go_duration
from engine.hosting import EngineHostedElsewhere, HostInfo, find_host, local_user
from engine.identity import CallerIdentity
from engine.logtail import TaskLogError
from engine.repos import AddResult, RepoError, RepoInfo, WorkflowTemplateInfo
from engine.scheduler.agent_info import AgentInfo
from engine.store.environments import DetectorInUseError
from engine.task.errors import ChannelError, TaskClassError
from engine.templates.render import TemplateError
from engine.templates.yamlsource import TemplateYAMLError, VarSpec
from engine.workdir import WorkingDirectory
from engine.workflow.roles import WorkflowError

# Errors a front-end shows as they are: their messages name the file, role and field.
USER_ERRORS: tuple[type[Exception], ...] = (
    ChannelError, ConfigurationError, EnvironmentBusy, RepoError, TaskClassError, TemplateError,
    TemplateYAMLError, TransitionFailed, TransitionRefused, UnknownEnvironmentError, WorkflowError,
    RoleGlobError, UnknownTaskError, EngineHostedElsewhere, DetectorInUseError, TaskLogError)

__all__ = [
    "USER_ERRORS", "AddResult", "AgentInfo", "CallerIdentity", "ChannelError",
    "ConfigurationError",
    "DetectorInUseError", "Engine", "EngineHostedElsewhere", "EnvEvent", "EnvState",
    "EnvironmentBusy", "EnvironmentEvent", "EnvironmentInfo", "EventKind", "EventQueue",
    "HostInfo", "RepoError", "RepoInfo", "RoleGlobError", "TaskLogError",
    "RoleInfo", "Subscription", "TaskClassError", "TaskInfo", "TaskRow", "TemplateError",
    "TemplateYAMLError", "TransitionFailed", "TransitionRefused", "TransitionResult",
    "UnknownEnvironmentError", "UnknownTaskError", "VarSpec", "WorkflowError",
    "WorkflowTemplateInfo", "WorkingDirectory", "parse_go_duration", "find_host", "local_user",
]
