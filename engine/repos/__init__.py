"""Template repositories (AliECS core/repos): cloning, revisions, reading templates at a commit."""
from engine.repos.identifier import RepoIdentifier, TemplateReference, parse_identifier, parse_reference
from engine.repos.manager import RepoManager
from engine.repos.records import (
    LOCAL_REVISION,
    AddResult,
    RepoError,
    RepoInfo,
    RepoKind,
    TemplateFile,
    WorkflowTemplateInfo,
)

__all__ = [
    "LOCAL_REVISION", "AddResult", "RepoError", "RepoIdentifier", "RepoInfo", "RepoKind",
    "RepoManager", "TemplateFile", "TemplateReference", "WorkflowTemplateInfo", "parse_identifier",
    "parse_reference",
]
