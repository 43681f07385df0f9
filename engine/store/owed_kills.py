"""Kills owed to tasks of destroyed environments whose agent was unreachable at the time.

A destroy goes through while an agent is behind a cut channel; its tasks there may still
run. The engine kills them when the agent answers again, and keeps the debt here too, so
an engine that dies before then leaves it to the next one (recovery settles it).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.store.database import Database


@dataclass(frozen=True)
class OwedKill:
    task_id: str
    agent_id: str
    environment_id: str  # the destroyed environment it belonged to


class OwedKillStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, kills: Iterable[OwedKill]) -> None:
        rows = [(k.task_id, k.agent_id, k.environment_id) for k in kills]
        with self._database.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO owed_kills (task_id, agent_id, "
                           "environment_id) VALUES (?,?,?)", rows)

    def list(self) -> list[OwedKill]:
        rows = self._database.query("SELECT task_id, agent_id, environment_id FROM owed_kills "
                                    "ORDER BY agent_id, task_id")
        return [OwedKill(row["task_id"], row["agent_id"], row["environment_id"]) for row in rows]

    def delete(self, task_ids: Iterable[str]) -> int:
        """The debts settled (killed, or found gone); returns how many went."""
        with self._database.transaction() as db:
            return sum(db.execute("DELETE FROM owed_kills WHERE task_id = ?", (task_id,)).rowcount
                       for task_id in task_ids)
