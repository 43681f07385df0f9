"""The repository manager's persistent state, in the working directory's sqlite store.

AliECS keeps the same three facts in Consul (`o2/runtime/aliecs/default_repo`,
`default_revision`, `default_revisions`): the default repository, the global
default revision and each repository's default revision. The keys of
`default_revisions` are the repositories to bring back on the next start.
We keep them as engine settings of the same names in `store.sqlite`, beside the
environments and the run counter: one file per working directory, committed
durably. Older nutshells wrote them to `repos.json`; the first opening moves
that file's settings into the store once and renames it `repos.json.migrated`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.repos.records import RepoError
from engine.workdir import WorkingDirectory

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger("engine.repos")

GLOBAL_DEFAULT_REVISION = "master"  # AliECS globalDefaultRevision
MIGRATED_SUFFIX = ".migrated"


@dataclass
class RepoSettings:
    default_repo: str = ""
    global_default_revision: str = GLOBAL_DEFAULT_REVISION
    default_revisions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json_file(cls, path: Path) -> RepoSettings:
        """The settings of a repos.json written by an older nutshell."""
        try:
            text = path.read_text(encoding="utf-8")
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


class RepoSettingsStore:
    """RepoSettings kept in the store, through its synchronous API.

    The repository manager runs in worker threads, so blocking sqlite calls are
    right here; the store's own connection is opened on first use, and again
    after close() (as the manager's git helpers are).
    """

    def __init__(self, workdir: WorkingDirectory) -> None:
        self._workdir = workdir
        self._lock = threading.Lock()
        self._store: Store | None = None

    @property
    def legacy_file(self) -> Path:
        """repos.json, where older nutshells kept the settings."""
        return self._workdir.repo_settings

    def _opened(self) -> Store:
        """The store (caller holds the lock)."""
        if self._store is None:
            # Imported here, as in load, save and _migrate: engine.store imports this module.
            from engine.store import Store
            self._store = Store.open(self._workdir)
        return self._store

    def load(self) -> RepoSettings:
        """The saved settings (defaults when none were), after moving in a repos.json."""
        from engine.store import StoreError
        with self._lock:
            try:
                store = self._opened()
                self._migrate(store)
                return store.settings.load_repo_settings()
            except StoreError as error:
                raise RepoError(f"cannot read the repository settings: {error}") from None

    def save(self, settings: RepoSettings) -> None:
        """Commit the three settings together (durably, when this returns)."""
        from engine.store import StoreError
        with self._lock:
            try:
                self._opened().settings.save_repo_settings(settings)
            except StoreError as error:
                raise RepoError(f"cannot save the repository settings: {error}") from None

    def _migrate(self, store: Store) -> None:
        """Move repos.json's settings into the store once, then rename the file.

        Settings already in the store win (a nutshell that migrated before); the
        file is renamed either way, so it is read only once. A file that cannot be
        read stops the opening with its name, and stays for the user to mend.
        """
        from engine.store.settings import (
            DEFAULT_REPO,
            DEFAULT_REVISION,
            DEFAULT_REVISIONS,
        )
        legacy = self.legacy_file
        if not legacy.is_file():
            return
        settings = RepoSettings.from_json_file(legacy)
        with store.transaction():
            saved = [store.settings.get(key) for key in
                     (DEFAULT_REPO, DEFAULT_REVISION, DEFAULT_REVISIONS)]
            adopted = all(value is None for value in saved)
            if adopted:
                store.settings.save_repo_settings(settings)
        migrated = legacy.with_name(legacy.name + MIGRATED_SUFFIX)
        try:
            os.replace(legacy, migrated)
        except FileNotFoundError:
            return  # another process migrated it meanwhile
        except OSError as error:
            raise RepoError(f"moved the repository settings of {legacy} into {store.path}, "
                            f"but cannot rename the file to {migrated.name}: {error}") from None
        if adopted:
            log.info("repository settings moved from %s into %s (the file is now %s)",
                     legacy, store.path, migrated.name)
        else:
            log.warning("%s ignored: %s already holds repository settings (the file is now %s)",
                        legacy, store.path, migrated.name)

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
