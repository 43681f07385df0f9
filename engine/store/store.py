"""The engine's store as one object: run numbers, environments, tasks, settings.

`Store` is synchronous (for worker threads, scripts and tests); `AsyncStore`
is what the engine's event loop uses: every method runs in a worker thread.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from engine.repos.settings import RepoSettings
from engine.store.database import AsyncDatabase, Database
from engine.store.environments import EnvironmentStore
from engine.store.owed_kills import OwedKillStore
from engine.store.records import EnvironmentRecord, RoleTreeRecord, TaskRecord
from engine.store.run_numbers import RunNumberCounter
from engine.store.settings import SettingsStore
from engine.store.tasks import TaskStore
from engine.workdir import WorkingDirectory

T = TypeVar("T")


class Store:
    def __init__(self, path: Path) -> None:
        self.database = Database(path)
        self.run_numbers = RunNumberCounter(self.database)
        self.environments = EnvironmentStore(self.database)
        self.tasks = TaskStore(self.database)
        self.settings = SettingsStore(self.database)
        self.owed_kills = OwedKillStore(self.database)

    @classmethod
    def open(cls, workdir: WorkingDirectory) -> Store:
        """The store of a working directory (its store.sqlite)."""
        return cls(workdir.store)

    @property
    def path(self) -> Path:
        return self.database.path

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group saves so they commit together, e.g. everything a transition changed,
        before the transition is acknowledged; an exception rolls all of them back."""
        with self.database.transaction() as db:
            yield db

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStore:
    """`Store` for the event loop: the same operations, each awaited in a worker thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._db = AsyncDatabase(store.database)

    @classmethod
    async def open(cls, workdir: WorkingDirectory) -> AsyncStore:
        return cls(await asyncio.to_thread(Store.open, workdir))

    async def transaction(self, work: Callable[[Store], T]) -> T:
        """Run `work(store)` in one transaction in one worker thread; committed (durably)
        when this returns, rolled back entirely if `work` raises. Allocate a run number
        before, not inside: the counter refuses to run in a transaction."""
        return await self._db.transaction(lambda _: work(self.store))

    async def close(self) -> None:
        await self._db.close()

    # --- run numbers -------------------------------------------------------------------------

    async def next_run_number(self) -> int:
        return await self._db.call(self.store.run_numbers.next)

    async def last_run_number(self) -> int:
        return await self._db.call(self.store.run_numbers.peek)

    # --- environments ------------------------------------------------------------------------

    async def save_environment(self, record: EnvironmentRecord) -> None:
        await self._db.call(self.store.environments.save, record)

    async def load_environment(self, environment_id: str) -> EnvironmentRecord:
        return await self._db.call(self.store.environments.load, environment_id)

    async def list_environments(self) -> list[EnvironmentRecord]:
        return await self._db.call(self.store.environments.list)

    async def delete_environment(self, environment_id: str) -> bool:
        return await self._db.call(self.store.environments.delete, environment_id)

    async def check_detectors(self, detectors: Iterable[str], environment_id: str = "") -> None:
        await self._db.call(self.store.environments.check_detectors, list(detectors),
                            environment_id)

    async def detector_holders(self) -> dict[str, str]:
        return await self._db.call(self.store.environments.detector_holders)

    async def save_role_tree(self, record: RoleTreeRecord) -> None:
        await self._db.call(self.store.environments.save_role_tree, record)

    async def save_runtime_vars(self, environment_id: str,
                                runtime_vars: dict[str, dict[str, str]]) -> None:
        await self._db.call(self.store.environments.save_runtime_vars, environment_id,
                            runtime_vars)

    async def load_role_tree(self, environment_id: str) -> RoleTreeRecord:
        return await self._db.call(self.store.environments.load_role_tree, environment_id)

    # --- tasks -------------------------------------------------------------------------------

    async def upsert_tasks(self, records: Iterable[TaskRecord]) -> None:
        await self._db.call(self.store.tasks.upsert, list(records))

    async def tasks_of_environment(self, environment_id: str) -> list[TaskRecord]:
        return await self._db.call(self.store.tasks.by_environment, environment_id)

    async def tasks_on_agent(self, agent_id: str) -> list[TaskRecord]:
        return await self._db.call(self.store.tasks.by_agent, agent_id)

    async def list_tasks(self) -> list[TaskRecord]:
        return await self._db.call(self.store.tasks.list)

    async def release_tasks(self, environment_id: str) -> int:
        return await self._db.call(self.store.tasks.release, environment_id)

    async def delete_tasks(self, task_ids: Iterable[str]) -> int:
        return await self._db.call(self.store.tasks.delete, list(task_ids))

    # --- settings ----------------------------------------------------------------------------

    async def get_setting(self, key: str, default: Any = None) -> Any:
        return await self._db.call(self.store.settings.get, key, default)

    async def set_setting(self, key: str, value: Any) -> None:
        await self._db.call(self.store.settings.set, key, value)

    async def load_repo_settings(self) -> RepoSettings:
        return await self._db.call(self.store.settings.load_repo_settings)

    async def save_repo_settings(self, settings: RepoSettings) -> None:
        await self._db.call(self.store.settings.save_repo_settings, settings)
