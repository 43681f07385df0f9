"""What the engine persists to come back after a restart, as plain records.

States and statuses are kept as their wire names (`RUNNING`, `ACTIVE`), so the
store does not depend on the state machines that produce them; the engine turns
them back into its enums. Nested data (variables, trees, result tables) is JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.store.database import StoreError
from executor.controlmode import ControlMode


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EnvironmentRecord:
    """One environment, as the engine must know it again after a restart."""

    id: str
    workflow: str                   # the workflow reference as requested
    repo: str
    revision: str
    commit: str                     # the commit the revision resolved to
    state: str                      # environment state name (§1.1)
    created_by: str                 # the user who created it
    user_vars: dict[str, str] = field(default_factory=dict)
    current_run_number: int = 0     # 0: no run
    created: datetime = field(default_factory=utc_now)
    last_transition: str = ""       # the event, e.g. START_ACTIVITY
    last_transition_result: list[dict[str, Any]] = field(default_factory=list)  # table rows
    detectors: list[str] = field(default_factory=list)  # held exclusively while saved
    emulate: bool = False           # created with --emulate (unloaded plugins answer no-ops)
    last_run_number: int = 0
    runs_started: int = 0           # completed STARTs: the `cleanup` argument of the next one
    creating: bool = False          # its creation (DEPLOY, CONFIGURE) is under way


@dataclass
class RoleTreeRecord:
    """An environment's role tree: the workflow's snapshot and the runtime variables since."""

    environment_id: str
    tree: dict[str, Any]
    runtime_vars: dict[str, dict[str, str]] = field(default_factory=dict)  # role path -> vars


@dataclass
class TaskRecord:
    """One deployed task: enough to find its executor and process again."""

    task_id: str
    environment_id: str             # '' when released from its environment
    role_path: str
    class_identifier: str
    agent_id: str
    hostname: str
    executor_id: str
    control_mode: ControlMode
    state: str                      # task state name (§1.4)
    status: str                     # task status name (§1.4)
    pid: int | None = None
    control_port: int | None = None
    critical: bool = True
    locked: bool = True
    log_path: str = ""
    command: str = ""               # the TaskCommandInfo JSON it was launched with
    placement: dict[str, Any] = field(default_factory=dict)  # ports and endpoints it was given


@dataclass(frozen=True)
class TaskChange:
    """What changes of a stored task while its environment lives: state, status, pid."""

    task_id: str
    state: str
    status: str
    pid: int | None


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def from_json(text: str, where: str) -> Any:
    """Parsed JSON; a StoreError naming the file, table, record and column otherwise."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as error:
        raise StoreError(f"{where}: not valid JSON ({error})") from None


def parse_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StoreError(f"{where}: {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def parse_control_mode(text: str, where: str) -> ControlMode:
    """Strict, unlike ControlMode.parse: an unknown name in the store is damage, not DIRECT."""
    try:
        return ControlMode[text.upper()]
    except KeyError:
        raise StoreError(f"{where}: {text!r} is not a control mode") from None
