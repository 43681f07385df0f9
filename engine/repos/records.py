"""What the repository manager hands out: plain records and its one error type."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from engine.templates.yamlsource import VarSpec


class RepoError(Exception):
    """A repository operation failed; the message names the repo, revision and file."""


class RepoKind(Enum):
    """How a repository is reached (AliECS decides it from the identifier's shape)."""

    HTTPS = "https"   # host/path/name, cloned from https://host/path/name.git
    SSH = "ssh"       # host:/path/name, cloned over ssh
    LOCAL = "local"   # an absolute path, read in place and never persisted


LOCAL_REVISION = "local"  # the revision of a local repository's working tree


@dataclass(frozen=True)
class AddResult:
    """The outcome of adding a repository: the default revision chosen and why."""

    repo: str
    revision: str
    info: str


@dataclass(frozen=True)
class RepoInfo:
    """One row of the repository list (alphabetical; index is the position in it)."""

    index: int
    name: str
    kind: RepoKind
    default: bool
    default_revision: str
    revisions: tuple[str, ...]   # branches
    tags: tuple[str, ...]


@dataclass(frozen=True)
class TemplateFile:
    """A template read from a repository at one commit."""

    repo: str
    revision: str   # what was asked for (branch, tag, hash or "local")
    commit: str     # the full commit hash it resolved to, or "local"
    path: str       # inside the repository, e.g. workflows/readout-dataflow.yaml
    text: str

    @property
    def origin(self) -> str:
        """How error messages name this file: <repo>/<path>@<revision>."""
        return f"{self.repo}/{self.path}@{self.revision}"

    @property
    def name(self) -> str:
        """The template's name: its file name without .yaml."""
        base = self.path.rsplit("/", 1)[-1]
        return base[:-5] if base.endswith(".yaml") else base


@dataclass(frozen=True)
class WorkflowTemplateInfo:
    """One workflow template as `template list` shows it."""

    repo: str
    revision: str
    name: str
    description: str
    public: bool
    var_specs: tuple[VarSpec, ...]
