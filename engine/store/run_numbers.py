"""Run numbers: AliECS's `o2/runtime/run_number`, a global monotonic uint32.

AliECS increments it in Consul with compare-and-swap; here the increment is one
BEGIN IMMEDIATE transaction on the store, committed with synchronous=FULL
before the number is returned. So a number is never handed out twice: not to
two processes on the same file (the write lock serialises them), and not after
a crash (a number anyone saw is already on disk; a crash can only lose numbers
nobody saw, which leaves a gap, as a START that fails does in AliECS).
"""
from __future__ import annotations

from engine.store.database import Database, StoreError

RUN_NUMBER_MAX = 2**32 - 1  # uint32, as in AliECS


class RunNumberOverflowError(StoreError):
    """The counter reached the largest uint32: no further run number exists."""


class RunNumberCounter:
    """Hands out 1, 2, 3, … from the store's `run_counter` row."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def next(self) -> int:
        """The next run number, already durably committed when it is returned."""
        if self._database.in_transaction:
            # An outer transaction could still roll the increment back after the
            # number was used, and the number would come again.
            raise StoreError(
                f"the store {self._database.path}: a run number must be allocated outside a "
                f"transaction, so that its increment is committed before it is used")
        with self._database.transaction() as db:
            last = self._last(db.execute("SELECT last FROM run_counter WHERE id = 0").fetchone())
            if last >= RUN_NUMBER_MAX:
                raise RunNumberOverflowError(
                    f"the store {self._database.path}: the run number counter is at {last}, the "
                    f"largest uint32; no further run number can be allocated")
            db.execute("UPDATE run_counter SET last = ? WHERE id = 0", (last + 1,))
        return last + 1

    def peek(self) -> int:
        """The last run number handed out (0 if none yet); allocates nothing."""
        rows = self._database.query("SELECT last FROM run_counter WHERE id = 0")
        return self._last(rows[0] if rows else None)

    def _last(self, row: object) -> int:
        if row is None:
            raise StoreError(f"the store {self._database.path} has no run_counter row; "
                             f"the file was changed by hand")
        return int(row[0])  # type: ignore[index]
