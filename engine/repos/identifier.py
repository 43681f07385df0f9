"""Repository identifiers and template references, parsed the way AliECS reads them.

Identifier forms (never with a protocol prefix; a trailing `/` or `.git` is dropped):
- `host/path/name` (a `.` in the host, no `:`): cloned from `https://host/path/name.git`;
- `host:/path/name`: cloned from `ssh://host/path/name.git`;
- `/an/absolute/path`: a local repository, read in place.

References: a workflow is `[<repo>/workflows/]<name>[@<revision>]`; a task
template (`load:`) is `<name>[@<revision>]` or `<repo>/tasks/<name>[@<revision>]`;
an include is `<name>` or `<repo>/workflows/<name>[@<revision>]`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.repos.records import RepoError, RepoKind

_PROTOCOL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class RepoIdentifier:
    """A parsed repository identifier; `id` is its canonical text."""

    kind: RepoKind
    host: str
    path: str      # the segments between host and name, joined with "/"; "" for local
    name: str
    local_path: str = ""

    @property
    def id(self) -> str:
        if self.kind is RepoKind.LOCAL:
            return self.local_path
        middle = f"{self.path}/" if self.path else ""
        if self.kind is RepoKind.SSH:
            return f"{self.host}:/{middle}{self.name}"
        return f"{self.host}/{middle}{self.name}"

    @property
    def clone_url(self) -> str:
        """Where git fetches from (local repositories are not cloned)."""
        middle = f"{self.path}/" if self.path else ""
        if self.kind is RepoKind.SSH:
            return f"ssh://{self.host}/{middle}{self.name}.git"
        if self.kind is RepoKind.HTTPS:
            return f"https://{self.host}/{middle}{self.name}.git"
        return self.local_path

    def directory(self, repos_root: Path) -> Path:
        """The clone at <repos>/<host>/<path>/<name> (AliECS keeps `host:` for ssh), or the local path."""
        if self.kind is RepoKind.LOCAL:
            return Path(self.local_path)
        host = f"{self.host}:" if self.kind is RepoKind.SSH else self.host
        return repos_root.joinpath(host, *[p for p in self.path.split("/") if p], self.name)


def _segments(text: str, identifier: str) -> list[str]:
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise RepoError(f"bad repository identifier {identifier!r}: empty, '.' or '..' path segment")
    return parts


def parse_identifier(identifier: str) -> RepoIdentifier:
    """Parse a repository identifier (see the module docstring) or raise RepoError."""
    text = identifier.strip()
    if not text:
        raise RepoError("empty repository identifier")
    if _PROTOCOL.match(text):
        raise RepoError(f"bad repository identifier {identifier!r}: write it without a protocol "
                        f"prefix, e.g. github.com/AliceO2Group/ControlWorkflows")
    if "@" in text:
        raise RepoError(f"bad repository identifier {identifier!r}: a repository identifier "
                        f"has no @revision")
    if text.startswith("/"):
        normalized = os.path.normpath(text)
        return RepoIdentifier(RepoKind.LOCAL, "", "", os.path.basename(normalized), normalized)
    text = text.rstrip("/")
    if text.endswith(".git"):
        text = text[:-4]
    if ":" in text:
        host, _, rest = text.partition(":")
        parts = _segments(rest.lstrip("/"), identifier)
        if not host or "/" in host or len(parts) < 2:
            raise RepoError(f"bad repository identifier {identifier!r}: expected host:/path/name")
        return RepoIdentifier(RepoKind.SSH, host, "/".join(parts[:-1]), parts[-1])
    parts = _segments(text, identifier)
    if "." not in parts[0] or len(parts) < 3:
        raise RepoError(f"bad repository identifier {identifier!r}: expected host/path/name with a "
                        f"dot in the host (github.com/org/repo), host:/path/name or an absolute path")
    return RepoIdentifier(RepoKind.HTTPS, parts[0], "/".join(parts[1:-1]), parts[-1])


@dataclass(frozen=True)
class TemplateReference:
    """A parsed reference: repo ("" = relative/default), file path in the repo, revision ("" = none)."""

    repo: str
    path: str
    revision: str


def _split_revision(reference: str) -> tuple[str, str]:
    if "@" not in reference:
        return reference, ""
    base, _, revision = reference.rpartition("@")
    if not revision or not base:
        raise RepoError(f"bad template reference {reference!r}: empty name or revision around '@'")
    return base, revision


def _template_path(folder: str, name: str, reference: str) -> str:
    name = name.strip()
    if name.endswith(".yaml"):
        name = name[:-5]
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise RepoError(f"bad template reference {reference!r}: {name!r} is no template name")
    return f"{folder}/{name}.yaml"


def parse_reference(reference: str, folder: str) -> TemplateReference:
    """`[<repo>/<folder>/]<name>[@<revision>]` with folder "workflows" or "tasks"."""
    text = reference.strip()
    if not text:
        raise RepoError(f"empty {folder[:-1]} reference")
    base, revision = _split_revision(text)
    marker = f"/{folder}/"
    if marker in base:
        repo, _, name = base.rpartition(marker)
        repo_id = parse_identifier(repo).id
    else:
        repo_id, name = "", base
        if "/" in name:
            raise RepoError(f"bad {folder[:-1]} reference {reference!r}: a path must have the form "
                            f"<repo>/{folder}/<name>[@<revision>]")
    return TemplateReference(repo_id, _template_path(folder, name, reference), revision)
