"""The control engine (AliECS "core"): environments, workflows, scheduling.

`Engine` is the one facade; front-ends import it and the records below from
here, never from the modules inside this package.
"""
from engine.config.service import ConfigurationError
from engine.engine import Engine
from engine.repos import AddResult, RepoError, RepoInfo, WorkflowTemplateInfo
from engine.task.errors import ChannelError, TaskClassError
from engine.templates.render import TemplateError
from engine.templates.yamlsource import TemplateYAMLError, VarSpec
from engine.workdir import WorkingDirectory
from engine.workflow.roles import WorkflowError

# Errors a front-end shows as they are: their messages name the file, role and field.
USER_ERRORS: tuple[type[Exception], ...] = (
    ChannelError, ConfigurationError, RepoError, TaskClassError, TemplateError, TemplateYAMLError,
    WorkflowError)

__all__ = [
    "USER_ERRORS", "AddResult", "ChannelError", "ConfigurationError", "TaskClassError", "Engine", "RepoError", "RepoInfo", "TemplateError",
    "TemplateYAMLError", "VarSpec", "WorkflowError", "WorkflowTemplateInfo", "WorkingDirectory",
]
