"""Environments, their role trees and their detector locks in the store.

Detector exclusivity (reference §11): the detectors an environment's saved
record lists are its locks. Saving an environment that lists a detector another
environment holds fails with DetectorInUseError and saves nothing; deleting an
environment releases its detectors (and drops its role tree). The locks live in
a table keyed by detector, so two engines on one file cannot both take one.

Every method is its own transaction, or a savepoint of the caller's
`Database.transaction()`, so a transition's saves commit together.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from engine.store.database import Database, StoreError
from engine.store.records import (
    EnvironmentRecord,
    RoleTreeRecord,
    format_time,
    from_json,
    parse_time,
    to_json,
)


class DetectorInUseError(StoreError):
    """A detector is held by another environment."""

    def __init__(self, detector: str, environment_id: str) -> None:
        super().__init__(f"detector {detector} is already in use by environment {environment_id}")
        self.detector = detector
        self.environment_id = environment_id


class EnvironmentNotFoundError(StoreError):
    """No environment with that id in the store."""


_COLUMNS = ("id, workflow, repo, revision, commit_hash, user_vars, state, current_run_number, "
            "created, created_by, last_transition, last_transition_result, detectors, emulate, "
            "last_run_number, runs_started, creating")


class EnvironmentStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    # --- environments ----------------------------------------------------------------------

    def save(self, record: EnvironmentRecord) -> None:
        """Insert or update; takes the record's detectors and releases those it no longer lists."""
        detectors = sorted(dict.fromkeys(record.detectors))
        with self._database.transaction() as db:
            self._check_detectors(db, detectors, record.id)
            # An upsert, not INSERT OR REPLACE: replacing would delete the row and, with it,
            # the role tree and locks that reference it.
            db.execute(
                f"INSERT INTO environments ({_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET workflow = excluded.workflow, "
                "repo = excluded.repo, revision = excluded.revision, "
                "commit_hash = excluded.commit_hash, user_vars = excluded.user_vars, "
                "state = excluded.state, current_run_number = excluded.current_run_number, "
                "created = excluded.created, created_by = excluded.created_by, "
                "last_transition = excluded.last_transition, "
                "last_transition_result = excluded.last_transition_result, "
                "detectors = excluded.detectors, emulate = excluded.emulate, "
                "last_run_number = excluded.last_run_number, "
                "runs_started = excluded.runs_started, creating = excluded.creating",
                (record.id, record.workflow, record.repo, record.revision, record.commit,
                 to_json(record.user_vars), record.state, record.current_run_number,
                 format_time(record.created), record.created_by, record.last_transition,
                 to_json(record.last_transition_result), to_json(list(record.detectors)),
                 int(record.emulate), record.last_run_number, record.runs_started,
                 int(record.creating)))
            db.execute("DELETE FROM detector_locks WHERE environment_id = ?", (record.id,))
            db.executemany("INSERT INTO detector_locks (detector, environment_id) VALUES (?, ?)",
                           [(detector, record.id) for detector in detectors])

    def load(self, environment_id: str) -> EnvironmentRecord:
        rows = self._database.query(f"SELECT {_COLUMNS} FROM environments WHERE id = ?",
                                    (environment_id,))
        if not rows:
            raise EnvironmentNotFoundError(
                f"no environment {environment_id} in the store {self._database.path}")
        return self._record(rows[0])

    def find(self, environment_id: str) -> EnvironmentRecord | None:
        rows = self._database.query(f"SELECT {_COLUMNS} FROM environments WHERE id = ?",
                                    (environment_id,))
        return self._record(rows[0]) if rows else None

    def list(self) -> list[EnvironmentRecord]:
        """All environments, oldest first."""
        rows = self._database.query(f"SELECT {_COLUMNS} FROM environments ORDER BY created, id")
        return [self._record(row) for row in rows]

    def delete(self, environment_id: str) -> bool:
        """Remove the environment, its role tree and its detector locks; False if it was absent.

        Task records are left alone: the engine kills or releases tasks itself.
        """
        with self._database.transaction() as db:
            cursor = db.execute("DELETE FROM environments WHERE id = ?", (environment_id,))
            return cursor.rowcount > 0

    def _record(self, row: sqlite3.Row) -> EnvironmentRecord:
        where = f"{self._database.path}: environment {row['id']}"
        user_vars = from_json(row["user_vars"], f"{where}, user_vars")
        result = from_json(row["last_transition_result"], f"{where}, last_transition_result")
        detectors = from_json(row["detectors"], f"{where}, detectors")
        if not isinstance(user_vars, dict):
            raise StoreError(f"{where}, user_vars: expected a JSON object")
        if not isinstance(result, list):
            raise StoreError(f"{where}, last_transition_result: expected a JSON array")
        if not isinstance(detectors, list):
            raise StoreError(f"{where}, detectors: expected a JSON array")
        return EnvironmentRecord(
            id=row["id"], workflow=row["workflow"], repo=row["repo"], revision=row["revision"],
            commit=row["commit_hash"], state=row["state"], created_by=row["created_by"],
            user_vars={str(k): str(v) for k, v in user_vars.items()},
            current_run_number=int(row["current_run_number"]),
            created=parse_time(row["created"], f"{where}, created"),
            last_transition=row["last_transition"], last_transition_result=result,
            detectors=[str(d) for d in detectors], emulate=bool(row["emulate"]),
            last_run_number=int(row["last_run_number"]), runs_started=int(row["runs_started"]),
            creating=bool(row["creating"]))

    # --- detector locks ----------------------------------------------------------------------

    def check_detectors(self, detectors: Iterable[str], environment_id: str = "") -> None:
        """Raise DetectorInUseError if another environment holds one of `detectors`.

        A check before deploying; saving the environment is what takes the locks.
        """
        wanted = sorted(set(detectors))
        marks = ",".join("?" * len(wanted))
        rows = self._database.query(
            f"SELECT detector, environment_id FROM detector_locks WHERE detector IN ({marks}) "
            "ORDER BY detector", wanted)
        for row in rows:
            if row["environment_id"] != environment_id:
                raise DetectorInUseError(row["detector"], row["environment_id"])

    def detector_holders(self) -> dict[str, str]:
        """Which environment holds which detector."""
        rows = self._database.query(
            "SELECT detector, environment_id FROM detector_locks ORDER BY detector")
        return {row["detector"]: row["environment_id"] for row in rows}

    def _check_detectors(self, db: sqlite3.Connection, detectors: list[str],
                         environment_id: str) -> None:
        for detector in detectors:
            row = db.execute("SELECT environment_id FROM detector_locks WHERE detector = ?",
                             (detector,)).fetchone()
            if row is not None and row[0] != environment_id:
                raise DetectorInUseError(detector, row[0])

    # --- role trees --------------------------------------------------------------------------

    def save_role_tree(self, record: RoleTreeRecord) -> None:
        """Store the tree and runtime variables; the environment must be saved already."""
        with self._database.transaction() as db:
            self._require(db, record.environment_id, "save its role tree")
            db.execute(
                "INSERT INTO role_trees (environment_id, tree, runtime_vars) VALUES (?, ?, ?) "
                "ON CONFLICT(environment_id) DO UPDATE SET tree = excluded.tree, "
                "runtime_vars = excluded.runtime_vars",
                (record.environment_id, to_json(record.tree), to_json(record.runtime_vars)))

    def save_runtime_vars(self, environment_id: str,
                          runtime_vars: dict[str, dict[str, str]]) -> None:
        """Replace only the runtime variables (they change at every START; the tree does not)."""
        with self._database.transaction() as db:
            cursor = db.execute("UPDATE role_trees SET runtime_vars = ? WHERE environment_id = ?",
                                (to_json(runtime_vars), environment_id))
            if cursor.rowcount == 0:
                raise EnvironmentNotFoundError(
                    f"cannot save runtime variables: no role tree for environment "
                    f"{environment_id} in the store {self._database.path}")

    def load_role_tree(self, environment_id: str) -> RoleTreeRecord:
        rows = self._database.query(
            "SELECT tree, runtime_vars FROM role_trees WHERE environment_id = ?",
            (environment_id,))
        if not rows:
            raise EnvironmentNotFoundError(
                f"no role tree for environment {environment_id} in the store "
                f"{self._database.path}")
        where = f"{self._database.path}: role tree of environment {environment_id}"
        tree = from_json(rows[0]["tree"], f"{where}, tree")
        runtime_vars = from_json(rows[0]["runtime_vars"], f"{where}, runtime_vars")
        if not isinstance(tree, dict) or not isinstance(runtime_vars, dict):
            raise StoreError(f"{where}: tree and runtime_vars must be JSON objects")
        return RoleTreeRecord(environment_id, tree, runtime_vars)

    def _require(self, db: sqlite3.Connection, environment_id: str, action: str) -> None:
        if db.execute("SELECT 1 FROM environments WHERE id = ?", (environment_id,)).fetchone() is None:
            raise EnvironmentNotFoundError(
                f"cannot {action}: no environment {environment_id} in the store "
                f"{self._database.path}")
