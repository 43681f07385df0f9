"""Engine-wide settings in the store: a key → JSON value table.

It holds what AliECS keeps under `o2/runtime/aliecs/` besides the run number:
the repository defaults (`default_repo`, `default_revision`,
`default_revisions`, same names), which do not live in any one repository.
"""
from __future__ import annotations

from typing import Any

from engine.repos.settings import GLOBAL_DEFAULT_REVISION, RepoSettings
from engine.store.database import Database, StoreError
from engine.store.records import from_json, to_json

DEFAULT_REPO = "default_repo"
DEFAULT_REVISION = "default_revision"
DEFAULT_REVISIONS = "default_revisions"

_MISSING: Any = object()


class SettingsStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def get(self, key: str, default: Any = None) -> Any:
        rows = self._database.query("SELECT value FROM engine_settings WHERE key = ?", (key,))
        if not rows:
            return default
        return from_json(rows[0][0], f"{self._database.path}: engine setting {key}")

    def set(self, key: str, value: Any) -> None:
        """Store any JSON-serialisable value under key."""
        try:
            text = to_json(value)
        except (TypeError, ValueError) as error:
            raise StoreError(f"engine setting {key}: the value is not JSON ({error})") from None
        with self._database.transaction() as db:
            db.execute("INSERT INTO engine_settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, text))

    def delete(self, key: str) -> bool:
        with self._database.transaction() as db:
            return db.execute("DELETE FROM engine_settings WHERE key = ?", (key,)).rowcount > 0

    def items(self) -> dict[str, Any]:
        rows = self._database.query("SELECT key, value FROM engine_settings ORDER BY key")
        return {row[0]: from_json(row[1], f"{self._database.path}: engine setting {row[0]}")
                for row in rows}

    # --- repository defaults -----------------------------------------------------------------

    def load_repo_settings(self) -> RepoSettings:
        """The repository defaults; the manager's defaults when nothing was saved."""
        where = f"{self._database.path}: engine setting"
        default_repo = self.get(DEFAULT_REPO, "")
        revision = self.get(DEFAULT_REVISION, GLOBAL_DEFAULT_REVISION)
        revisions = self.get(DEFAULT_REVISIONS, {})
        if not isinstance(default_repo, str) or not isinstance(revision, str):
            raise StoreError(f"{where} {DEFAULT_REPO} and {DEFAULT_REVISION} must be strings")
        if not isinstance(revisions, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in revisions.items()):
            raise StoreError(f"{where} {DEFAULT_REVISIONS} must map repositories to revisions")
        return RepoSettings(default_repo, revision or GLOBAL_DEFAULT_REVISION, dict(revisions))

    def save_repo_settings(self, settings: RepoSettings) -> None:
        """All three keys in one transaction."""
        with self._database.transaction():
            self.set(DEFAULT_REPO, settings.default_repo)
            self.set(DEFAULT_REVISION, settings.global_default_revision)
            self.set(DEFAULT_REVISIONS, dict(sorted(settings.default_revisions.items())))
