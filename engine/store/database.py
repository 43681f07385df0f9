"""The engine's sqlite file: opening, schema migrations, transactions, async access.

The store shares the working directory's `store.sqlite` with the embedded
configuration's `config_runtime` table and opens it the same way (WAL,
autocommit mode with explicit transactions, a busy timeout), plus
`synchronous=FULL` so a commit is on disk when it returns: the run-number
counter and "committed before a transition is acknowledged" rely on it.

Threads: one connection per `Database`, shared under a re-entrant lock. A
connection runs one transaction at a time anyway, the engine's writes are small,
and a single connection makes nested transactions (savepoints) and closing
simple. Other processes are not blocked by the lock: WAL lets them read while
we write, and writers queue on sqlite's own lock within the busy timeout.

Schema: the store's tables carry their own version in `store_schema` (the
configuration's table is not part of it). `MIGRATIONS[i]` takes the store from
version i to i + 1; all pending steps run in one transaction, so an opening
that fails half-way leaves the file as it was.
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from engine.store.schema import MIGRATIONS

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 30.0  # as engine/config/embedded.py

Migration = Sequence[str]  # the SQL statements of one schema version, in order

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS store_schema (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    version INTEGER NOT NULL
)
"""


class StoreError(Exception):
    """The store cannot do what was asked; the message names the file and the record."""


class SchemaVersionError(StoreError):
    """The file's schema is newer than this code knows: a newer nutshell wrote it."""


class Database:
    """One sqlite store file, opened and migrated to the code's schema on construction."""

    def __init__(self, path: Path, *, migrations: Sequence[Migration] = MIGRATIONS,
                 timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.path = Path(path)
        self._migrations = tuple(tuple(step) for step in migrations)
        self._lock = threading.RLock()
        self._depth = 0  # open transactions: 0 none, 1 BEGIN, >1 savepoints
        self._owner: int | None = None  # the thread inside transaction()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the store {self.path}: {error}") from None
        try:
            self._configure()
            self.version = self._migrate()
        except BaseException:
            self._db.close()
            self._db = None
            raise

    @property
    def schema_version(self) -> int:
        """The newest schema this code knows (the file is at it once opened)."""
        return len(self._migrations)

    def _configure(self) -> None:
        db = self._connection()
        db.row_factory = sqlite3.Row
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as error:
            raise StoreError(f"cannot set up the store {self.path}: {error}") from None
        if str(mode).lower() != "wal":
            raise StoreError(f"the store {self.path} cannot use write-ahead logging "
                             f"(journal mode stays {mode!r}); put NUTSHELL_HOME on a local disk")

    def _stored_version(self, db: sqlite3.Connection) -> int:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                      "AND name = 'store_schema'").fetchone() is None:
            return 0
        row = db.execute("SELECT version FROM store_schema WHERE id = 0").fetchone()
        current = 0 if row is None else int(row[0])
        if current > len(self._migrations):
            raise SchemaVersionError(
                f"the store {self.path} has schema version {current}, but this nutshell knows "
                f"versions up to {len(self._migrations)}: use the nutshell that wrote it, or "
                f"another NUTSHELL_HOME")
        return current

    def _migrate(self) -> int:
        """Bring the file to the newest schema in one transaction; returns the version.

        An up-to-date file is only read, so opening does not queue for the write lock
        behind busy writers; otherwise the version is read again under the lock, in case
        another process migrated meanwhile.
        """
        known = len(self._migrations)
        with self._lock:
            try:
                if self._stored_version(self._connection()) == known:
                    return known
            except sqlite3.Error as error:
                raise StoreError(f"cannot read the schema version of the store {self.path}: "
                                 f"{error}") from None
        with self.transaction() as db:
            db.execute(_VERSION_TABLE)
            current = self._stored_version(db)
            for version in range(current, known):
                for statement in self._migrations[version]:
                    try:
                        db.execute(statement)
                    except sqlite3.Error as error:
                        raise StoreError(
                            f"the store {self.path}: migration to schema version {version + 1} "
                            f"failed ({error}) in: {statement.strip()}") from None
            db.execute("INSERT INTO store_schema (id, version) VALUES (0, ?) "
                       "ON CONFLICT(id) DO UPDATE SET version = excluded.version", (known,))
            return known

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._db

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside `transaction()`."""
        return self._owner == threading.get_ident()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing: commit (durably) on success, roll back on any exception.

        The outermost one is BEGIN IMMEDIATE, so the write lock is taken up front
        and other processes wait instead of failing half-way; nested ones are
        savepoints that roll back only their own part.
        """
        with self._lock:
            db = self._connection()
            self._depth += 1
            savepoint = f"nested_{self._depth}"
            outermost = self._depth == 1
            try:
                db.execute("BEGIN IMMEDIATE" if outermost else f"SAVEPOINT {savepoint}")
            except sqlite3.Error as error:
                self._depth -= 1
                raise StoreError(f"cannot start a transaction on the store {self.path}: "
                                 f"{error}") from None
            if outermost:
                self._owner = threading.get_ident()
            try:
                yield db
            except BaseException as error:
                try:
                    if outermost:
                        if db.in_transaction:  # sqlite may have rolled back already
                            db.execute("ROLLBACK")
                    elif db.in_transaction:
                        db.execute(f"ROLLBACK TO {savepoint}")
                        db.execute(f"RELEASE {savepoint}")
                finally:
                    self._leave(outermost)
                if isinstance(error, sqlite3.Error):  # a locked file, a constraint, a full disk
                    raise StoreError(f"the store {self.path}: {error}; nothing of this "
                                     f"transaction was saved") from error
                raise
            try:
                db.execute("COMMIT" if outermost else f"RELEASE {savepoint}")
            except sqlite3.Error as error:
                if outermost and db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"cannot commit to the store {self.path}: {error}") from None
            finally:
                self._leave(outermost)

    def _leave(self, outermost: bool) -> None:
        self._depth -= 1
        if outermost:
            self._owner = None

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one read statement (its own snapshot, or the open transaction's)."""
        with self._lock:
            try:
                return self._connection().execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise StoreError(f"cannot read the store {self.path}: {error}") from None

    def close(self) -> None:
        """Close the connection; later calls fail with a StoreError naming the file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDatabase:
    """The same store for coroutines: every call runs in a worker thread.

    A transaction spanning several operations is one function run in one
    thread (`transaction(work)`), never a transaction held across awaits,
    which would pin the lock to a thread the loop no longer controls.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    async def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(work, *args, **kwargs)

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` inside one transaction; committed when this returns."""
        def run() -> T:
            with self.database.transaction() as db:
                return work(db)
        return await asyncio.to_thread(run)

    async def close(self) -> None:
        await asyncio.to_thread(self.database.close)
