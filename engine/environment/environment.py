"""One environment: its workflow, state machine, deployed tasks, run number and last result.

The manager (manager.py) drives it; this module holds what an environment is and how
it is shown: the `TaskRow`s of the last transition's result table, the records the
facade hands out (`EnvironmentInfo`, `TaskInfo`) and the store's records.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.environment.statemachine import EnvEvent, EnvironmentStateMachine, EnvState
from engine.scheduler.offers import Placement
from engine.scheduler.placement_record import placement_to_dict
from engine.store.records import EnvironmentRecord, TaskChange, TaskRecord
from engine.task.command import TaskSpecials
from engine.workflow.aggregation import Aggregator, TaskState, TaskStatus
from engine.workflow.roles import TaskRole, Workflow
from executor.command import TaskCommand
from executor.controlmode import ControlMode

if TYPE_CHECKING:
    from engine.environment.hooks import EnvironmentHooks


@dataclass(frozen=True)
class TaskRow:
    """One row of a transition's result table: what happened to one task, and why."""

    task_id: str
    role_path: str
    host: str
    before: str
    after: str
    reason: str = ""
    exit_code: int | None = None
    log_path: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.reason)

    def to_dict(self) -> dict[str, Any]:
        """Field by field: dataclasses.asdict deep-copies, and the store saves every row of
        every transition's table."""
        return {"task_id": self.task_id, "role_path": self.role_path, "host": self.host,
                "before": self.before, "after": self.after, "reason": self.reason,
                "exit_code": self.exit_code, "log_path": self.log_path}

    def __str__(self) -> str:
        code = "" if self.exit_code is None else f", exit code {self.exit_code}"
        why = f": {self.reason}" if self.reason else ""
        log = f" (log {self.log_path})" if self.log_path else ""
        return (f"{self.role_path} [{self.task_id or 'not deployed'}] on {self.host or '-'}: "
                f"{self.before} → {self.after}{why}{code}{log}")


def format_table(rows: Sequence[TaskRow]) -> str:
    """The failed rows, one a line, for an error message."""
    return "\n".join(f"  {row}" for row in rows if row.failed)


@dataclass(frozen=True)
class TransitionResult:
    """What one transition did: the state reached, the run number, a row per task."""

    environment_id: str
    event: str
    state: str
    run_number: int
    rows: tuple[TaskRow, ...]
    user: str = ""

    @property
    def ok(self) -> bool:
        return not any(row.failed for row in self.rows)

    @property
    def failed(self) -> tuple[TaskRow, ...]:
        return tuple(row for row in self.rows if row.failed)


class TransitionFailed(Exception):
    """A transition (or creation) failed; `result` holds the table naming every failed task."""

    def __init__(self, message: str, result: TransitionResult) -> None:
        table = format_table(result.rows)
        super().__init__(f"{message}\n{table}" if table else message)
        self.result = result


class EnvironmentBusy(Exception):
    """A second transition asked for while one runs: refused at once, saying who and since when."""

    def __init__(self, environment_id: str, busy: Busy) -> None:
        super().__init__(f"environment {environment_id} is busy: {busy.transition} by "
                         f"{busy.user or 'unknown user'} since {busy.since.isoformat()}")
        self.environment_id = environment_id
        self.busy = busy


class UnknownEnvironmentError(KeyError):
    def __init__(self, environment_id: str) -> None:
        super().__init__(environment_id)
        self.environment_id = environment_id

    def __str__(self) -> str:
        return f"no environment {self.environment_id}"


@dataclass(frozen=True)
class Busy:
    transition: str
    user: str
    since: datetime


@dataclass
class DeployedTask:
    """One task of an environment: where it runs, its command and what we know of it."""

    task_id: str
    role: TaskRole
    placement: Placement
    command: TaskCommand
    log_path: str
    specials: TaskSpecials
    state: TaskState = TaskState.STANDBY
    status: TaskStatus = TaskStatus.INACTIVE
    mesos_state: str = ""  # the last TASK_* status from the executor
    message: str = ""  # the executor's words with the last failure status
    pid: int | None = None
    exit_code: int | None = None
    launched: bool = False  # TASK_RUNNING was seen
    terminations: int = 0  # BASIC_TASK_TERMINATED events seen (a hook task: one per run)
    safe_to_stop: bool = False  # END_OF_STREAM or its command ended in this run (§1.2)
    # The executor's event seq its state is as of (a transition's answer or a listing): an
    # answer told on the event stream with a seq not above it is not news.
    state_seq: int = 0
    commanding: bool = False  # this engine waits on a transition of the task
    kill_owed: bool = False  # destroyed while its agent was unreachable: killed on its return
    # Its full record is in the store: later saves write only what changes (TaskChange).
    stored: bool = field(default=False, compare=False)

    @property
    def agent(self) -> str:
        return self.placement.agent_id

    @property
    def host(self) -> str:
        return self.placement.offer.machine_id

    @property
    def critical(self) -> bool:
        return self.role.critical

    @property
    def controlled(self) -> bool:
        """Driven over OCC with transitions; basic tasks only run their command."""
        return self.command.control_mode not in (ControlMode.BASIC, ControlMode.HOOK)

    @property
    def hook(self) -> bool:
        """A hook task: run at its trigger, never driven through the environment's transitions."""
        return self.command.control_mode is ControlMode.HOOK

    @property
    def basic(self) -> bool:
        return self.command.control_mode is ControlMode.BASIC

    @property
    def gone(self) -> bool:
        return self.mesos_state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST",
                                    "TASK_ERROR")

    def row(self, before: TaskState | str, reason: str = "") -> TaskRow:
        return TaskRow(self.task_id, self.role.path, self.host, str(before), str(self.state),
                       reason, self.exit_code, self.log_path)

    def info(self) -> TaskInfo:
        return TaskInfo(task_id=self.task_id, role_path=self.role.path,
                        class_name=self.role.class_identifier, host=self.host, agent=self.agent,
                        state=str(self.state), status=str(self.status), pid=self.pid,
                        control_port=self.placement.control_port, critical=self.critical,
                        log_path=self.log_path)

    def record(self, environment_id: str) -> TaskRecord:
        return TaskRecord(task_id=self.task_id, environment_id=environment_id,
                          role_path=self.role.path, class_identifier=self.role.class_identifier,
                          agent_id=self.agent, hostname=self.placement.hostname,
                          executor_id=self.agent, control_mode=self.command.control_mode,
                          state=str(self.state), status=str(self.status), pid=self.pid,
                          control_port=self.placement.control_port, critical=self.critical,
                          log_path=self.log_path, command=self.command.redacted().to_json(),  # no secrets stored
                          placement=placement_to_dict(self.placement))

    def change(self) -> TaskChange:
        return TaskChange(self.task_id, str(self.state), str(self.status), self.pid)


@dataclass(frozen=True)
class TaskInfo:
    """A task as front-ends show it (o2control ShortTaskInfo)."""

    task_id: str
    role_path: str
    class_name: str
    host: str
    agent: str
    state: str
    status: str
    pid: int | None
    control_port: int | None
    critical: bool
    log_path: str
    locked: bool = True  # held by an environment; an unlocked one is left for `task clean`


@dataclass(frozen=True)
class EnvironmentInfo:
    """An environment as front-ends show it (o2control EnvironmentInfo)."""

    id: str
    state: str
    workflow: str
    created_by: str
    created: datetime
    current_run_number: int
    last_run_number: int
    tasks: tuple[TaskInfo, ...]
    last_transition: str
    last_result: tuple[TaskRow, ...]
    roles: dict[str, tuple[str, str]]  # role path -> aggregated (state, status), §1.5
    detectors: tuple[str, ...] = ()  # held exclusively (o2control includedDetectors)
    # The transition under way (o2control currentTransition), "" when idle, and since when:
    # every front-end shows it, whoever started it.
    current_transition: str = ""
    transition_since: datetime | None = None


@dataclass
class Environment:
    """One environment. Only the manager changes it, one transition at a time."""

    id: str
    reference: str
    workflow: Workflow
    created_by: str
    user_vars: dict[str, str]
    machine: EnvironmentStateMachine
    aggregator: Aggregator
    tasks: dict[str, DeployedTask] = field(default_factory=dict)
    run_number: int = 0
    last_run_number: int = 0
    starts: int = 0  # completed START_ACTIVITY transitions: `cleanup` of the next START
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    busy: Busy | None = None
    last_transition: str = ""
    last_result: TransitionResult | None = None
    hooks: EnvironmentHooks | None = None  # set by the manager before the first transition
    detectors: tuple[str, ...] = ()  # held exclusively while the environment lives (§11)
    auto_stop: asyncio.TimerHandle | None = None  # the auto-stop timer of the current run (§1.2)
    emulate: bool = False  # created with --emulate: kept so a restarted engine does the same
    creating: bool = False  # stored while create() runs: a next engine undoes a creation cut short
    # Told when a transition begins (True) and ends (False); the manager publishes both, so
    # every front-end sees the transition under way, whoever started it.
    on_busy: Callable[[Environment, Busy, bool], None] | None = None

    @property
    def state(self) -> EnvState:
        return self.machine.state

    def begin(self, transition: EnvEvent | str, user: str) -> None:
        """Mark a transition under way; EnvironmentBusy if another one is."""
        if self.busy is not None:
            raise EnvironmentBusy(self.id, self.busy)
        self.busy = Busy(str(transition), user, datetime.now(UTC))
        if self.on_busy is not None:
            self.on_busy(self, self.busy, True)

    def end(self) -> None:
        busy, self.busy = self.busy, None
        if busy is not None and self.on_busy is not None:
            self.on_busy(self, busy, False)

    def info(self) -> EnvironmentInfo:
        result = self.last_result
        return EnvironmentInfo(
            id=self.id, state=str(self.state), workflow=self.reference,
            created_by=self.created_by, created=self.created,
            current_run_number=self.run_number, last_run_number=self.last_run_number,
            tasks=tuple(task.info() for task in self.tasks.values()),
            last_transition=self.last_transition,
            last_result=result.rows if result is not None else (),
            roles={path: (str(state), str(status))
                   for path, (state, status) in self.aggregator.values().items()},
            detectors=self.detectors,
            current_transition=self.busy.transition if self.busy is not None else "",
            transition_since=self.busy.since if self.busy is not None else None)

    def record(self) -> EnvironmentRecord:
        repo, _, rest = self.workflow.origin.partition("/workflows/")
        _, _, revision = rest.rpartition("@")
        return EnvironmentRecord(
            id=self.id, workflow=self.reference, repo=repo, revision=revision,
            commit=self.workflow.commit or revision, state=str(self.state),
            created_by=self.created_by,
            user_vars=dict(self.user_vars), current_run_number=self.run_number,
            created=self.created, last_transition=self.last_transition,
            last_transition_result=[row.to_dict() for row in
                                    (self.last_result.rows if self.last_result else ())],
            emulate=self.emulate, last_run_number=self.last_run_number,
            runs_started=self.starts, detectors=list(self.detectors), creating=self.creating)

    def task_saves(self) -> tuple[list[TaskRecord], list[TaskChange]]:
        """What the store needs of the tasks: the full record of each task not stored yet
        (its command and placement never change), the changing columns of the others."""
        new: list[TaskRecord] = []
        changed: list[TaskChange] = []
        for task in self.tasks.values():
            if task.stored:
                changed.append(task.change())
            else:
                new.append(task.record(self.id))
        return new, changed
