"""Rebuilding environments from the store after the engine's host died, and re-adopting tasks.

The store holds each environment's record (workflow reference, pinned commit, user
variables, state, run numbers, last result) and each task's record (role path, agent,
placement, the command it was launched with, last known state). From these an
Environment is rebuilt as create() built it: the same workflow loaded again at the
same commit with the same variables and environment id, a DeployedTask per record.
The executors' task listings then say what is still alive: a live task takes the
state its executor reports; one the executor no longer runs, or whose process ended,
died while no engine ran and is reported (a table row, an event), never dropped.

An environment is saved before its creation launches anything, marked as being created
until CONFIGURE ends. A record still so marked is a creation cut short by the engine's
death: its user never got the environment, so it is not rebuilt; the next engine kills
every task the executors hold under its id and deletes it (CreationCutShort). Tasks of
ids the store does not know, released by destroy with keep_tasks, run on.

The manager's `# --- recovery` section drives this; these functions only build and
compare, so they are testable without agents.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from engine.environment import runtime_vars
from engine.environment.agentevents import GONE_STATES  # as live statuses map
from engine.environment.environment import (
    DeployedTask,
    Environment,
    TaskRow,
    TransitionResult,
)
from engine.environment.statemachine import EnvironmentStateMachine, EnvState
from engine.scheduler.agents import AgentSpec
from engine.scheduler.local_agent import AgentTaskList, RemoteTask
from engine.scheduler.offers import MACHINE_ID, Offer, TaskDescriptor
from engine.scheduler.placement_record import PlacementRecordError, placement_from_dict
from engine.store import EnvironmentNotFoundError, EnvironmentRecord, Store, TaskRecord
from engine.task.command import TaskSpecials
from engine.workflow.aggregation import Aggregator, TaskState, TaskStatus
from engine.workflow.roles import TaskRole, Workflow
from executor.command import CommandError, TaskCommand

log = logging.getLogger("engine.environment")

RECOVERY = "RECOVERY"  # the event name of the result table that reports tasks found dead


class RecoveryError(Exception):
    """An environment that cannot be rebuilt; the message names it and the record at fault."""


@dataclass(frozen=True)
class StoredEnvironment:
    """One environment as the store has it: its record, its tasks' records and the runtime
    variables of its role tree (runtime_vars.py)."""

    record: EnvironmentRecord
    tasks: tuple[TaskRecord, ...]
    runtime_vars: dict[str, dict[str, str]]


@dataclass(frozen=True)
class CreationCutShort:
    """An environment whose creation a dying engine left unfinished: its user never got it,
    so the next engine kills its tasks and forgets it instead of rebuilding it."""

    environment_id: str
    workflow: str
    user: str
    killed: int  # its tasks the executors still ran, killed
    failed: tuple[str, ...] = ()  # kills that failed: agent, task and why

    @property
    def message(self) -> str:
        text = (f"creation of environment {self.environment_id} (workflow {self.workflow}, by "
                f"{self.user or 'an unnamed user'}) was cut short when its engine stopped: "
                f"{self.killed} task(s) killed")
        if self.failed:
            text += (f"; {len(self.failed)} could not be: {'; '.join(self.failed)}; its record "
                     "stays in the store for the next engine to undo")
        return text


@dataclass(frozen=True)
class Recovery:
    """What an engine found when it started hosting."""

    environments: tuple[str, ...] = ()  # rebuilt, with their live tasks re-adopted
    lost: tuple[TaskRow, ...] = ()  # tasks that died while no engine ran
    failures: tuple[str, ...] = ()  # environments left in the store: why each could not be rebuilt
    creations: tuple[CreationCutShort, ...] = ()  # creations cut short, undone
    owed_kills: tuple[str, ...] = ()  # tasks of destroyed environments killed at last


def creation_tasks(environment_id: str, listings: Mapping[str, AgentTaskList]
                   ) -> list[tuple[str, str]]:
    """(agent, task id) of every task the executors hold for `environment_id`: what a
    creation cut short launched, stored or not (its tasks are stored once DEPLOY ends)."""
    return [(agent, remote.task_id)
            for agent, listing in sorted(listings.items())
            for remote in listing.tasks if remote.environment_id == environment_id]


def load_stored(store: Store) -> list[StoredEnvironment]:
    """Every environment of the store with its tasks, oldest first (blocking: a worker thread)."""
    stored = []
    for record in store.environments.list():
        try:
            saved = store.environments.load_role_tree(record.id).runtime_vars
        except EnvironmentNotFoundError:  # the host died before DEPLOY was acknowledged
            saved = {}
        stored.append(StoredEnvironment(record, tuple(store.tasks.by_environment(record.id)),
                                        saved))
    return stored


def pinned_reference(record: EnvironmentRecord) -> str:
    """The workflow the environment was created from, at the commit it resolved to then.

    `record.repo` is the repository's identifier and `record.workflow` the reference as
    requested (`[<repo>/workflows/]<name>[@<revision>]`); a record without a repository
    (a generated workflow) is loaded by its reference as it was.
    """
    pin = record.commit or record.revision
    if not record.repo or not pin:
        return record.workflow
    name = record.workflow.rpartition("@")[0] or record.workflow
    name = name.rpartition("/workflows/")[2].removesuffix(".yaml")
    return f"{record.repo}/workflows/{name}@{pin}"


def _result(record: EnvironmentRecord) -> TransitionResult | None:
    if not record.last_transition and not record.last_transition_result:
        return None
    rows = []
    for row in record.last_transition_result:
        try:
            rows.append(TaskRow(**row))
        except TypeError:
            log.warning("environment %s: a stored result row is damaged, skipped: %r",
                        record.id, row)
    return TransitionResult(record.id, record.last_transition, record.state,
                            record.current_run_number, tuple(rows))


def rebuild_environment(record: EnvironmentRecord, workflow: Workflow,
                        saved_vars: Mapping[str, Mapping[str, str]]) -> Environment:
    """The environment object of `record`, with its workflow and its runtime variables put
    back, at its stored state; no tasks yet."""
    try:
        state = EnvState(record.state)
    except ValueError:
        raise RecoveryError(f"environment {record.id}: stored state {record.state!r} is not an "
                            "environment state") from None
    env = Environment(id=record.id, reference=record.workflow, workflow=workflow,
                      created_by=record.created_by, user_vars=dict(record.user_vars),
                      machine=EnvironmentStateMachine(state, record.id),
                      aggregator=Aggregator.from_workflow(workflow),
                      run_number=record.current_run_number,
                      last_run_number=record.last_run_number, starts=record.runs_started,
                      created=record.created, last_transition=record.last_transition,
                      last_result=_result(record), emulate=record.emulate,
                      detectors=tuple(record.detectors))
    root = workflow.root
    if env.run_number:
        root.vars["run_number"] = root.vars["runNumber"] = str(env.run_number)
    if env.last_run_number:
        root.vars["last_run_number"] = str(env.last_run_number)
    missing = runtime_vars.apply(workflow, saved_vars)  # the saved ones win
    if missing:
        log.warning("environment %s: runtime variables of roles the reloaded workflow lacks "
                    "are dropped: %s", record.id, ", ".join(missing))
    return env


def _offer(spec: AgentSpec | None, record: TaskRecord) -> Offer:
    """The agent's full offer; a stand-in naming the agent when nutshell.yaml dropped it."""
    if spec is not None:
        return spec.offer()
    return Offer(agent_id=record.agent_id, hostname=record.hostname,
                 attributes={MACHINE_ID: record.agent_id}, cpus=0.0, mem=0.0)


def rebuild_task(env: Environment, record: TaskRecord, specs: Mapping[str, AgentSpec],
                 describe: Callable[[TaskRole], TaskDescriptor]) -> DeployedTask:
    """The DeployedTask of `record` in `env`: its role by path, its placement and command
    as launched, its last known state. RecoveryError names the task and the field at fault."""
    where = f"environment {env.id}, task {record.task_id} ({record.role_path})"
    role = env.workflow.find(record.role_path)
    if not isinstance(role, TaskRole) or role.task_class is None:
        raise RecoveryError(f"{where}: the workflow reloaded has no task role at that path")
    if not record.command:
        raise RecoveryError(f"{where}: the store has no launch command for it (saved by a "
                            "nutshell without recovery)")
    try:
        command = TaskCommand.from_json(record.command)
        placement = placement_from_dict(record.placement, describe(role),
                                        _offer(specs.get(record.agent_id), record), where)
    except (CommandError, ValueError, PlacementRecordError) as error:
        raise RecoveryError(f"{where}: {error}") from None
    specials = TaskSpecials(role.task_class.task_name(record.task_id), record.task_id,
                            role.class_identifier, placement.hostname, env.id, role.path)
    try:
        status = TaskStatus[record.status]
    except KeyError:
        status = TaskStatus.UNDEFINED
    return DeployedTask(record.task_id, role, placement, command, record.log_path,
                        specials=specials, state=TaskState.parse(record.state), status=status,
                        pid=record.pid, launched=True)


def readopt(task: DeployedTask, remote: RemoteTask | None, listing: AgentTaskList | None
            ) -> TaskRow | None:
    """Bring `task` up to what its executor says; the row reporting it dead, or None if alive.

    Dead: its agent's executor is not connected or no longer runs it (it restarted or was
    stopped while no engine ran), its terminal status went out, or a controlled task has
    no process any more.
    """
    before = task.state
    if remote is None:
        task.mesos_state = "TASK_LOST"
        if listing is None:
            task.message = (f"agent {task.agent} is not connected: task {task.task_id} cannot "
                            "be re-adopted")
        else:
            task.message = (f"agent {task.agent} no longer runs task {task.task_id}: its "
                            "executor restarted or was stopped while no engine ran")
    elif remote.status in GONE_STATES or (task.controlled and not remote.pid
                                    and remote.status != "TASK_STARTING"):
        task.mesos_state = remote.status if remote.status in GONE_STATES else "TASK_LOST"
        task.message = (f"task {task.task_id} ended while no engine ran "
                        f"({remote.status or 'no status'}, executor state {remote.state})")
    else:
        task.state = TaskState.parse(remote.state)
        task.state_seq = listing.last_seq if listing is not None else 0  # later events are news
        task.pid = remote.pid or None
        task.mesos_state = remote.status
        task.status = TaskStatus.ACTIVE if remote.status == "TASK_RUNNING" else task.status
        task.launched = True
        return None
    task.state = GONE_STATES[task.mesos_state]
    task.status = TaskStatus.INACTIVE
    task.pid = None
    return task.row(before, task.message)


# The state a live controlled task has while its environment rests in each state.
_RESTING = {EnvState.DEPLOYED: TaskState.STANDBY, EnvState.CONFIGURED: TaskState.CONFIGURED,
            EnvState.RUNNING: TaskState.RUNNING}


def cut_short(env: Environment) -> list[TaskRow]:
    """Rows for the live controlled tasks whose state is not the one the environment's
    stored state implies: the host died in the middle of a transition (its outcome is
    committed only once it is over). Empty when everything agrees."""
    expected = _RESTING.get(env.state)
    if expected is None:
        return []
    return [task.row(task.state, f"the environment was {env.state} when its engine stopped "
                                 f"but the task is {task.state}: a transition was cut short; "
                                 "RECOVER or destroy the environment")
            for task in env.tasks.values()
            if task.controlled and not task.gone and task.state is not expected
            and task.state is not TaskState.ERROR]  # ERROR: reported by the task itself


def run_elapsed(env: Environment, now_ms: int) -> float:
    """Seconds since the current run started (its `run_start_time_ms`), 0 if unknown."""
    try:
        started = int(env.workflow.env_user_vars.get("run_start_time_ms", "") or 0)
    except ValueError:
        return 0.0
    return max(0.0, (now_ms - started) / 1000) if started else 0.0


def recovery_result(env: Environment, rows: list[TaskRow]) -> TransitionResult:
    """The table that reports the tasks found dead, as the environment's last result."""
    return TransitionResult(env.id, RECOVERY, str(env.state), env.run_number, tuple(rows))
