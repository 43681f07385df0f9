"""The repository manager's persistent state: repos.json in the working directory.

AliECS keeps the same three facts in Consul (`o2/runtime/aliecs/default_repo`,
`default_revision`, `default_revisions`): the default repository, the global
default revision and each repository's default revision. The keys of
`default_revisions` are the repositories to bring back on the next start.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.repos.records import RepoError

GLOBAL_DEFAULT_REVISION = "master"  # AliECS globalDefaultRevision


@dataclass
class RepoSettings:
    default_repo: str = ""
    global_default_revision: str = GLOBAL_DEFAULT_REVISION
    default_revisions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "RepoSettings":
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as error:
            raise RepoError(f"cannot read the repository settings {path}: {error}") from None
        try:
            data = json.loads(text)
        except ValueError as error:
            raise RepoError(f"{path}: invalid JSON in the repository settings: {error}") from None
        if not isinstance(data, dict):
            raise RepoError(f"{path}: the repository settings must be a JSON object")
        revisions = data.get("default_revisions") or {}
        if not isinstance(revisions, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in revisions.items()):
            raise RepoError(f"{path}: default_revisions must map repository names to revisions")
        default_repo = data.get("default_repo") or ""
        global_default = data.get("default_revision") or GLOBAL_DEFAULT_REVISION
        if not isinstance(default_repo, str) or not isinstance(global_default, str):
            raise RepoError(f"{path}: default_repo and default_revision must be strings")
        return cls(default_repo, global_default, dict(revisions))

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "default_repo": self.default_repo,
            "default_revision": self.global_default_revision,
            "default_revisions": dict(sorted(self.default_revisions.items())),
        }
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
