"""The engine's persistence (sqlite, WAL) in the working directory's store.sqlite.

Environments, role trees, task records, detector locks, the run-number counter
and engine settings, committed before a transition is acknowledged, so the next
engine can reload them after a restart or a crash.
"""
from engine.store.database import (
    AsyncDatabase,
    Database,
    SchemaVersionError,
    StoreError,
)
from engine.store.environments import (
    DetectorInUseError,
    EnvironmentNotFoundError,
    EnvironmentStore,
)
from engine.store.records import EnvironmentRecord, RoleTreeRecord, TaskRecord
from engine.store.owed_kills import OwedKill, OwedKillStore
from engine.store.run_numbers import (
    RUN_NUMBER_MAX,
    RunNumberCounter,
    RunNumberOverflowError,
)
from engine.store.settings import SettingsStore
from engine.store.store import AsyncStore, Store
from engine.store.tasks import TaskStore

__all__ = [
    "RUN_NUMBER_MAX", "AsyncDatabase", "AsyncStore", "Database", "DetectorInUseError",
    "EnvironmentNotFoundError", "EnvironmentRecord", "EnvironmentStore", "OwedKill",
    "OwedKillStore", "RoleTreeRecord",
    "RunNumberCounter", "RunNumberOverflowError", "SchemaVersionError", "SettingsStore", "Store",
    "StoreError", "TaskRecord", "TaskStore",
]
