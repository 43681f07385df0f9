"""The engine's store on real sqlite files: records survive a reopen, transactions are all
or nothing, detectors are exclusive, the schema migrates forward and refuses newer files."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.config.embedded import EmbeddedConfiguration
from engine.repos.settings import RepoSettings
from engine.store import (
    AsyncStore,
    Database,
    DetectorInUseError,
    EnvironmentNotFoundError,
    EnvironmentRecord,
    RoleTreeRecord,
    SchemaVersionError,
    Store,
    StoreError,
    TaskRecord,
)
from engine.store.records import TaskChange
from engine.store.schema import MIGRATIONS
from engine.workdir import WorkingDirectory
from executor.controlmode import ControlMode


def environment(env_id: str = "2oDvieFrVTi", *, detectors: list[str] | None = None,
                state: str = "CONFIGURED") -> EnvironmentRecord:
    return EnvironmentRecord(
        id=env_id, workflow="readout-dataflow@master", repo="github.com/AliceO2Group/ControlWorkflows",
        revision="master", commit="0123456789abcdef0123456789abcdef01234567", state=state,
        created_by="operator", user_vars={"hosts": '["flp001","flp002"]', "odc_enabled": "false"},
        current_run_number=0, created=datetime(2026, 11, 22, 17, 0, 1, 250000, tzinfo=UTC),
        last_transition="CONFIGURE",
        last_transition_result=[{"task": "t1", "host": "flp001", "before": "STANDBY",
                                 "after": "CONFIGURED", "reason": "", "exitCode": None,
                                 "logPath": "/tmp/t1.log"}],
        detectors=list(detectors if detectors is not None else ["TPC", "ITS"]))


def task(task_id: str, env_id: str = "2oDvieFrVTi", *, agent: str = "flp001",
         path: str = "readout", **changes: object) -> TaskRecord:
    record = TaskRecord(
        task_id=task_id, environment_id=env_id, role_path=path,
        class_identifier="controlworkflows/tasks/readout@0123abc", agent_id=agent,
        hostname=agent, executor_id=f"executor-{agent}", control_mode=ControlMode.FAIRMQ,
        state="CONFIGURED", status="ACTIVE", pid=4242, control_port=30001, critical=True,
        locked=True, log_path=f"/logs/{task_id}.log")
    for name, value in changes.items():
        setattr(record, name, value)
    return record


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "store.sqlite"


@pytest.fixture
def store(path: Path):
    with Store(path) as opened:
        yield opened


# --- the file ---------------------------------------------------------------------------------

def test_opens_in_wal_with_full_sync_and_shares_the_file_with_the_configuration(
        tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    config = EmbeddedConfiguration(workdir)
    config.runtime_set("aliecs", "mesos_fid", "framework-1")
    with Store.open(workdir) as store:
        assert store.path == workdir.store
        db = store.database
        assert db.query("PRAGMA journal_mode")[0][0] == "wal"
        assert db.query("PRAGMA synchronous")[0][0] == 2  # FULL
        assert db.query("PRAGMA foreign_keys")[0][0] == 1
        assert db.query("PRAGMA busy_timeout")[0][0] == 30000
        assert db.version == db.schema_version == len(MIGRATIONS)
        store.run_numbers.next()
    config.runtime_set("aliecs", "other", "x")
    assert config.runtime_get("aliecs", "mesos_fid") == "framework-1"
    config.close()
    with Store.open(workdir) as store:
        tables = {row[0] for row in store.database.query(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"config_runtime", "store_schema", "environments", "tasks"} <= tables
        assert store.run_numbers.peek() == 1


def test_a_closed_store_says_so(path: Path) -> None:
    store = Store(path)
    store.close()
    with pytest.raises(StoreError, match=f"the store {path} is closed"):
        store.environments.list()


# --- migrations ---------------------------------------------------------------------------------

OLD = (("CREATE TABLE things (name TEXT PRIMARY KEY)",),)
NEW = OLD + (("ALTER TABLE things ADD COLUMN colour TEXT NOT NULL DEFAULT 'grey'",
              "CREATE TABLE more (id INTEGER)"),)


def test_migrates_an_older_file_forward_keeping_its_data(path: Path) -> None:
    with Database(path, migrations=OLD) as db:
        assert db.version == 1
        with db.transaction() as conn:
            conn.execute("INSERT INTO things (name) VALUES ('kept')")
    with Database(path, migrations=NEW) as db:
        assert db.version == 2
        assert [tuple(r) for r in db.query("SELECT name, colour FROM things")] == [("kept", "grey")]
        assert db.query("SELECT count(*) FROM more")[0][0] == 0
    with Database(path, migrations=NEW) as db:  # idempotent once there
        assert db.version == 2


def test_the_real_schema_migrates_a_file_that_has_only_an_older_version(path: Path) -> None:
    with Database(path, migrations=()) as db:  # a file from before the store existed
        assert db.version == 0
    with Store(path) as store:
        assert store.database.version == len(MIGRATIONS)
        assert store.run_numbers.next() == 1


def test_a_failing_migration_changes_nothing(path: Path) -> None:
    with Database(path, migrations=OLD) as db, db.transaction() as conn:
        conn.execute("INSERT INTO things (name) VALUES ('kept')")
    broken = OLD + (("CREATE TABLE half (id INTEGER)", "ALTER TABLE nowhere ADD COLUMN x"),)
    with pytest.raises(StoreError, match=r"migration to schema version 2 failed .*nowhere"):
        Database(path, migrations=broken)
    with Database(path, migrations=OLD) as db:
        assert db.version == 1
        assert db.query("SELECT name FROM sqlite_master WHERE name = 'half'") == []
        assert db.query("SELECT name FROM things")[0][0] == "kept"


def test_a_newer_schema_is_refused_naming_file_and_versions(path: Path) -> None:
    Database(path, migrations=NEW).close()
    with pytest.raises(SchemaVersionError) as error:
        Database(path, migrations=OLD)
    message = str(error.value)
    assert str(path) in message
    assert "schema version 2" in message and "versions up to 1" in message


# --- environments --------------------------------------------------------------------------------

def test_environment_round_trip_across_a_reopen(path: Path) -> None:
    record = environment()
    with Store(path) as store:
        store.environments.save(record)
    with Store(path) as store:
        loaded = store.environments.load(record.id)
        assert loaded == EnvironmentRecord(**{**record.__dict__, "detectors": ["TPC", "ITS"]})
        assert loaded.created.tzinfo is not None
        assert store.environments.list() == [loaded]
        assert store.environments.find("nope") is None
        with pytest.raises(EnvironmentNotFoundError, match=f"no environment nope in the store {path}"):
            store.environments.load("nope")


def test_updates_keep_the_role_tree_and_list_oldest_first(store: Store) -> None:
    first = environment("envA", detectors=[])
    second = environment("envB", detectors=[])
    second.created = first.created.replace(hour=18)
    store.environments.save(second)
    store.environments.save(first)
    tree = RoleTreeRecord("envA", {"name": "readout-dataflow", "roles": [{"name": "readout"}]},
                          {"readout-dataflow": {"run_number": "1"}})
    store.environments.save_role_tree(tree)
    first.state = "RUNNING"
    first.current_run_number = 7
    store.environments.save(first)  # an update, not delete + insert: the tree stays
    assert store.environments.load_role_tree("envA") == tree
    assert [e.id for e in store.environments.list()] == ["envA", "envB"]
    assert store.environments.load("envA").current_run_number == 7


def test_role_trees_and_runtime_vars(store: Store) -> None:
    with pytest.raises(EnvironmentNotFoundError, match="cannot save its role tree"):
        store.environments.save_role_tree(RoleTreeRecord("ghost", {}))
    store.environments.save(environment())
    tree = RoleTreeRecord("2oDvieFrVTi", {"name": "root", "path": "root", "kind": "aggregator",
                                          "roles": []})
    store.environments.save_role_tree(tree)
    store.environments.save_runtime_vars("2oDvieFrVTi", {"root": {"run_number": "12"}})
    assert store.environments.load_role_tree("2oDvieFrVTi").runtime_vars == {
        "root": {"run_number": "12"}}
    with pytest.raises(EnvironmentNotFoundError, match="no role tree for environment ghost"):
        store.environments.save_runtime_vars("ghost", {})
    assert store.environments.delete("2oDvieFrVTi") is True
    assert store.environments.delete("2oDvieFrVTi") is False
    with pytest.raises(EnvironmentNotFoundError):
        store.environments.load_role_tree("2oDvieFrVTi")


def test_damaged_json_is_reported_with_file_record_and_column(store: Store, path: Path) -> None:
    store.environments.save(environment())
    with store.transaction() as db:
        db.execute("UPDATE environments SET user_vars = '{broken'")
    with pytest.raises(StoreError, match=f"{path}: environment 2oDvieFrVTi, user_vars: not valid JSON"):
        store.environments.load("2oDvieFrVTi")


# --- detector locks --------------------------------------------------------------------------------

def test_a_held_detector_is_refused_to_another_environment(path: Path) -> None:
    with Store(path) as store, Store(path) as other_engine:
        store.environments.save(environment("envA", detectors=["TPC", "ITS"]))
        assert store.environments.detector_holders() == {"ITS": "envA", "TPC": "envA"}
        with pytest.raises(DetectorInUseError,
                           match="^detector TPC is already in use by environment envA$") as error:
            other_engine.environments.save(environment("envB", detectors=["MFT", "TPC"]))
        assert (error.value.detector, error.value.environment_id) == ("TPC", "envA")
        assert other_engine.environments.find("envB") is None  # nothing half-saved
        assert "MFT" not in store.environments.detector_holders()
        with pytest.raises(DetectorInUseError, match="detector ITS .* envA"):
            store.environments.check_detectors(["ITS"], "envB")
        store.environments.check_detectors(["ITS", "TPC"], "envA")  # its own: fine
        store.environments.check_detectors(["MFT"])

        released = store.environments.load("envA")
        released.detectors = ["ITS"]
        store.environments.save(released)  # saving fewer detectors releases the others
        other_engine.environments.save(environment("envB", detectors=["MFT", "TPC"]))
        assert store.environments.detector_holders() == {"ITS": "envA", "MFT": "envB",
                                                         "TPC": "envB"}
        store.environments.delete("envA")
        assert store.environments.detector_holders() == {"MFT": "envB", "TPC": "envB"}


# --- tasks -----------------------------------------------------------------------------------------

def test_tasks_by_environment_and_agent_across_a_reopen(path: Path) -> None:
    with Store(path) as store:
        store.tasks.upsert([
            task("t1", path="readout"),
            task("t2", agent="flp002", path="readout", control_mode=ControlMode.BASIC,
                 pid=None, control_port=None, critical=False),
            task("t3", "envB", agent="flp001", path="qc", control_mode=ControlMode.DIRECT),
        ])
        store.tasks.upsert([task("t1", path="readout", state="RUNNING", pid=5000)])
    with Store(path) as store:
        mine = store.tasks.by_environment("2oDvieFrVTi")
        assert [t.task_id for t in mine] == ["t1", "t2"]
        assert mine[0] == task("t1", path="readout", state="RUNNING", pid=5000)
        assert mine[1].control_mode is ControlMode.BASIC
        assert (mine[1].pid, mine[1].control_port, mine[1].critical) == (None, None, False)
        assert [t.task_id for t in store.tasks.by_agent("flp001")] == ["t1", "t3"]
        assert store.tasks.get("t3") == task("t3", "envB", path="qc",
                                             control_mode=ControlMode.DIRECT)
        assert store.tasks.get("nope") is None

        assert store.tasks.release("2oDvieFrVTi") == 2
        released = store.tasks.by_environment("")
        assert [(t.task_id, t.locked) for t in released] == [("t1", False), ("t2", False)]
        assert store.tasks.delete(["t1", "t2", "nope"]) == 2
        assert [t.task_id for t in store.tasks.list()] == ["t3"]



def test_a_task_change_updates_only_state_status_and_pid(path: Path) -> None:
    with Store(path) as store:
        store.tasks.upsert([task("t1", command='{"value": "readout.exe"}',
                                 placement={"control_port": 30001}), task("t2")])
        store.tasks.update([TaskChange("t1", "RUNNING", "ACTIVE", 5001),
                            TaskChange("t2", "ERROR", "INACTIVE", None)])
    with Store(path) as store:
        assert store.tasks.get("t1") == task("t1", state="RUNNING", pid=5001,
                                             command='{"value": "readout.exe"}',
                                             placement={"control_port": 30001})
        assert store.tasks.get("t2") == task("t2", state="ERROR", status="INACTIVE", pid=None)

# --- transactions ----------------------------------------------------------------------------------

def test_a_transition_commits_together_or_not_at_all(path: Path) -> None:
    with Store(path) as store:
        record = environment()
        with store.transaction():
            store.environments.save(record)
            store.environments.save_role_tree(RoleTreeRecord(record.id, {"name": "root"}))
            store.tasks.upsert([task("t1")])
        record.state = "RUNNING"
        record.current_run_number = store.run_numbers.next()
        with pytest.raises(RuntimeError, match="acknowledge failed"), store.transaction():
            store.environments.save(record)
            store.tasks.upsert([task("t1", state="RUNNING"), task("t2")])
            store.environments.save_runtime_vars(record.id, {"root": {"run_number": "1"}})
            raise RuntimeError("acknowledge failed")
    with Store(path) as store:  # nothing of the failed one, on disk either
        assert store.environments.load(record.id).state == "CONFIGURED"
        assert [(t.task_id, t.state) for t in store.tasks.list()] == [("t1", "CONFIGURED")]
        assert store.environments.load_role_tree(record.id).runtime_vars == {}
        assert store.run_numbers.peek() == 1  # a run number is consumed all the same


def test_a_failing_step_inside_a_transaction_rolls_back_only_itself(store: Store) -> None:
    store.environments.save(environment("envA", detectors=["TPC"]))
    with store.transaction():
        store.tasks.upsert([task("t1", "envB")])
        with pytest.raises(DetectorInUseError):
            store.environments.save(environment("envB", detectors=["TPC"]))
        store.environments.save(environment("envB", detectors=["ITS"]))
    assert store.environments.load("envB").detectors == ["ITS"]
    assert store.tasks.get("t1") is not None


def test_a_write_lock_held_elsewhere_makes_writers_wait_not_fail(path: Path) -> None:
    with Store(path) as store:
        locked = threading.Event()

        def other_process() -> None:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.2)
            blocker.execute("COMMIT")
            blocker.close()

        holder = threading.Thread(target=other_process)
        holder.start()
        locked.wait(5)
        store.database.query("SELECT count(*) FROM environments")  # readers go on (WAL)
        started = time.monotonic()
        store.environments.save(environment())  # waits within the busy timeout
        waited = time.monotonic() - started
        holder.join()
        assert waited > 0.1
        assert store.environments.load("2oDvieFrVTi").state == "CONFIGURED"


# --- settings --------------------------------------------------------------------------------------

def test_settings_and_repo_defaults(path: Path) -> None:
    with Store(path) as store:
        assert store.settings.load_repo_settings() == RepoSettings()
        store.settings.set("auto_stop", {"seconds": 30})
        store.settings.save_repo_settings(RepoSettings(
            "github.com/AliceO2Group/ControlWorkflows", "main",
            {"github.com/AliceO2Group/ControlWorkflows": "main", "/tmp/local": "master"}))
        with pytest.raises(StoreError, match="engine setting bad: the value is not JSON"):
            store.settings.set("bad", object())
    with Store(path) as store:
        settings = store.settings.load_repo_settings()
        assert settings.default_repo == "github.com/AliceO2Group/ControlWorkflows"
        assert settings.global_default_revision == "main"
        assert settings.default_revisions["/tmp/local"] == "master"
        assert store.settings.get("auto_stop") == {"seconds": 30}
        assert store.settings.get("missing", 5) == 5
        assert set(store.settings.items()) == {"auto_stop", "default_repo", "default_revision",
                                               "default_revisions"}
        assert store.settings.delete("auto_stop") is True
        assert store.settings.delete("auto_stop") is False


# --- asyncio ---------------------------------------------------------------------------------------

async def test_async_store_keeps_the_event_loop_running(tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    store = await AsyncStore.open(workdir)
    try:
        blocker = sqlite3.connect(workdir.store, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        allocation = asyncio.create_task(store.next_run_number())
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 10 and not allocation.done()  # the loop ran while the writer waited
        blocker.execute("COMMIT")
        blocker.close()
        assert await allocation == 1

        record = environment()
        record.current_run_number = 1

        def transition(sync: Store) -> None:
            sync.environments.save(record)
            sync.tasks.upsert([task("t1")])

        await store.transaction(transition)

        def failing(sync: Store) -> None:
            sync.tasks.upsert([task("t2")])
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await store.transaction(failing)
        assert [t.task_id for t in await store.tasks_of_environment(record.id)] == ["t1"]
        assert [t.task_id for t in await store.tasks_on_agent("flp001")] == ["t1"]
        assert (await store.load_environment(record.id)).current_run_number == 1
        assert [e.id for e in await store.list_environments()] == [record.id]
        assert await store.detector_holders() == {"ITS": record.id, "TPC": record.id}
        with pytest.raises(DetectorInUseError):
            await store.check_detectors(["TPC"], "other")
        await store.save_role_tree(RoleTreeRecord(record.id, {"name": "root"}))
        await store.save_runtime_vars(record.id, {"root": {"run_number": "1"}})
        assert (await store.load_role_tree(record.id)).runtime_vars["root"]["run_number"] == "1"
        assert await store.last_run_number() == 1
        await store.set_setting("k", [1, 2])
        assert await store.get_setting("k") == [1, 2]
        await store.save_repo_settings(RepoSettings("repo", "main", {"repo": "main"}))
        assert (await store.load_repo_settings()).default_repo == "repo"
        assert await store.release_tasks(record.id) == 1
        assert await store.delete_tasks(["t1"]) == 1
        assert await store.list_tasks() == []
        assert await store.delete_environment(record.id) is True
    finally:
        await store.close()


def test_an_sqlite_failure_inside_a_transaction_is_a_store_error(store: Store, path: Path) -> None:
    store.environments.save(environment("envA", detectors=[]))
    with pytest.raises(StoreError, match=f"the store {path}: .*nothing of this transaction"), \
            store.transaction() as db:
        store.tasks.upsert([task("t1")])
        db.execute("INSERT INTO environments (id) VALUES ('envA')")  # NOT NULL columns missing
    assert store.tasks.list() == []
