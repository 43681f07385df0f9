"""Task records in the store: what the next engine needs to re-adopt live tasks.

A task record outlives its environment's row on purpose: a released task
(environment_id '') is still a process on an agent until `task clean` kills it.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from engine.store.database import Database, StoreError
from engine.store.records import (
    TaskChange,
    TaskRecord,
    from_json,
    parse_control_mode,
    to_json,
)

_COLUMNS = ("task_id, environment_id, role_path, class_identifier, agent_id, hostname, "
            "executor_id, pid, control_port, control_mode, state, status, critical, locked, "
            "log_path, command, placement")


class TaskStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def upsert(self, records: Iterable[TaskRecord]) -> None:
        """Insert or replace these tasks' records, all in one transaction."""
        rows = [(r.task_id, r.environment_id, r.role_path, r.class_identifier, r.agent_id,
                 r.hostname, r.executor_id, r.pid, r.control_port, str(r.control_mode), r.state,
                 r.status, int(r.critical), int(r.locked), r.log_path, r.command,
                 to_json(r.placement)) for r in records]
        with self._database.transaction() as db:
            db.executemany(f"INSERT OR REPLACE INTO tasks ({_COLUMNS}) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def update(self, changes: Iterable[TaskChange]) -> None:
        """Set the state, status and pid of stored tasks, all in one transaction; the rest
        of a record (command, placement…) is written once by upsert and never changes."""
        rows = [(c.state, c.status, c.pid, c.task_id) for c in changes]
        with self._database.transaction() as db:
            db.executemany("UPDATE tasks SET state = ?, status = ?, pid = ? WHERE task_id = ?",
                           rows)

    def get(self, task_id: str) -> TaskRecord | None:
        rows = self._database.query(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,))
        return self._record(rows[0]) if rows else None

    def by_environment(self, environment_id: str) -> list[TaskRecord]:
        """An environment's tasks in role-path order ('' lists the released ones)."""
        rows = self._database.query(f"SELECT {_COLUMNS} FROM tasks WHERE environment_id = ? "
                                    "ORDER BY role_path, task_id", (environment_id,))
        return [self._record(row) for row in rows]

    def by_agent(self, agent_id: str) -> list[TaskRecord]:
        """The tasks on one agent, whatever their environment."""
        rows = self._database.query(f"SELECT {_COLUMNS} FROM tasks WHERE agent_id = ? "
                                    "ORDER BY environment_id, role_path, task_id", (agent_id,))
        return [self._record(row) for row in rows]

    def list(self) -> list[TaskRecord]:
        rows = self._database.query(
            f"SELECT {_COLUMNS} FROM tasks ORDER BY environment_id, role_path, task_id")
        return [self._record(row) for row in rows]

    def release(self, environment_id: str) -> int:
        """Detach an environment's tasks and unlock them (AliECS releaseTask); returns how many."""
        with self._database.transaction() as db:
            return db.execute("UPDATE tasks SET environment_id = '', locked = 0 "
                              "WHERE environment_id = ?", (environment_id,)).rowcount

    def delete(self, task_ids: Iterable[str]) -> int:
        """Forget these tasks (killed and reaped); returns how many records went."""
        with self._database.transaction() as db:
            return sum(db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,)).rowcount
                       for task_id in task_ids)

    def _record(self, row: sqlite3.Row) -> TaskRecord:
        where = f"{self._database.path}: task {row['task_id']}, control_mode"
        return TaskRecord(
            task_id=row["task_id"], environment_id=row["environment_id"],
            role_path=row["role_path"], class_identifier=row["class_identifier"],
            agent_id=row["agent_id"], hostname=row["hostname"], executor_id=row["executor_id"],
            pid=row["pid"], control_port=row["control_port"],
            control_mode=parse_control_mode(row["control_mode"], where), state=row["state"],
            status=row["status"], critical=bool(row["critical"]), locked=bool(row["locked"]),
            log_path=row["log_path"], command=row["command"],
            placement=self._placement(row))

    def _placement(self, row: sqlite3.Row) -> dict[str, Any]:
        where = f"{self._database.path}: task {row['task_id']}, placement"
        placement = from_json(row["placement"], where)
        if not isinstance(placement, dict):
            raise StoreError(f"{where}: expected a JSON object")
        return placement
