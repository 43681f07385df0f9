"""The store's tables, as forward migrations: `MIGRATIONS[i]` takes version i to i + 1.

Never edit a released step; append a new one (ALTER TABLE, a new table, a data
fix). Nested data is JSON text; times are ISO 8601 in UTC.
"""
from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: environments, role trees, detector locks, tasks, the run counter, engine settings
    (
        """
        CREATE TABLE environments (
            id                     TEXT PRIMARY KEY,
            workflow               TEXT NOT NULL,   -- the reference as requested
            repo                   TEXT NOT NULL,
            revision               TEXT NOT NULL,
            commit_hash            TEXT NOT NULL,
            user_vars              TEXT NOT NULL,   -- JSON object
            state                  TEXT NOT NULL,
            current_run_number     INTEGER NOT NULL,
            created                TEXT NOT NULL,
            created_by             TEXT NOT NULL,
            last_transition        TEXT NOT NULL,
            last_transition_result TEXT NOT NULL,   -- JSON array of table rows
            detectors              TEXT NOT NULL    -- JSON array
        )
        """,
        """
        CREATE TABLE role_trees (
            environment_id TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
            tree           TEXT NOT NULL,   -- JSON: the workflow's role tree snapshot
            runtime_vars   TEXT NOT NULL    -- JSON: role path -> {name: value}
        )
        """,
        """
        CREATE TABLE detector_locks (
            detector       TEXT PRIMARY KEY,
            environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE
        )
        """,
        "CREATE INDEX detector_locks_by_environment ON detector_locks(environment_id)",
        """
        CREATE TABLE tasks (
            task_id          TEXT PRIMARY KEY,
            environment_id   TEXT NOT NULL,   -- '' once released from its environment
            role_path        TEXT NOT NULL,
            class_identifier TEXT NOT NULL,
            agent_id         TEXT NOT NULL,
            hostname         TEXT NOT NULL,
            executor_id      TEXT NOT NULL,
            pid              INTEGER,
            control_port     INTEGER,
            control_mode     TEXT NOT NULL,
            state            TEXT NOT NULL,
            status           TEXT NOT NULL,
            critical         INTEGER NOT NULL,
            locked           INTEGER NOT NULL,
            log_path         TEXT NOT NULL
        )
        """,
        "CREATE INDEX tasks_by_environment ON tasks(environment_id)",
        "CREATE INDEX tasks_by_agent ON tasks(agent_id)",
        """
        CREATE TABLE run_counter (
            id   INTEGER PRIMARY KEY CHECK (id = 0),
            last INTEGER NOT NULL CHECK (last >= 0 AND last <= 4294967295)
        )
        """,
        "INSERT INTO run_counter (id, last) VALUES (0, 0)",
        """
        CREATE TABLE engine_settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL   -- JSON
        )
        """,
    ),
    # 2: what recovery needs to rebuild an environment's tasks after the host died
    (
        "ALTER TABLE tasks ADD COLUMN command TEXT NOT NULL DEFAULT ''",  # TaskCommandInfo JSON
        "ALTER TABLE tasks ADD COLUMN placement TEXT NOT NULL DEFAULT '{}'",  # ports, endpoints
        "ALTER TABLE environments ADD COLUMN emulate INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE environments ADD COLUMN last_run_number INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE environments ADD COLUMN runs_started INTEGER NOT NULL DEFAULT 0",
    ),
    # 3: an environment is saved before its creation launches anything, marked until it ends
    (
        "ALTER TABLE environments ADD COLUMN creating INTEGER NOT NULL DEFAULT 0",
    ),
    # 4: kills owed to tasks of destroyed environments behind a cut channel
    (
        """
        CREATE TABLE owed_kills (
            task_id        TEXT PRIMARY KEY,
            agent_id       TEXT NOT NULL,
            environment_id TEXT NOT NULL
        )
        """,
    ),
)
