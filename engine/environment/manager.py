"""The environment manager: create (DEPLOY, CONFIGURE), control, destroy, on the local agents.

AliECS's core/environment manager, reference §1.1.2–§1.1.4, with our promises
(DESIGN "Where we do better"): an event the table does not allow is refused and
changes nothing; a second transition while one runs is refused at once with who
and since when; every transition leaves a table, a row per task; a failed
creation leaves nothing deployed. Each transition's outcome (environment and
task records) is committed to the store before it is acknowledged. An environment is
stored before its creation launches anything, marked until CONFIGURE ends, so a creation
the engine's death cut short is undone by the next engine (recover).

Hooks (hook tasks and call roles, hooks.py) run at their triggers in the order
statemachine.transition_steps gives, the run number allocated between the
negative and the non-negative before_START_ACTIVITY weights; DESTROY and
after_DESTROY hooks run at destroy, before the tasks are killed; hook tasks
triggered before DEPLOY's task step are deployed first. GO_ERROR is a transition
with its hooks; a critical enter_/after_ hook failure leads to it, as AliECS's
ControlEnvironment does. EXIT and RECOVER are reachable (recover_plan.py).

The manager owns the state (environments, the task index, the event hub, the agent
pool) and orchestrates; the work is beside it: transition.py (one transition: hooks,
run-number work, each event's work on the tasks, GO_ERROR, the outcome committed),
deploy.py (placement, launch, wait-up; deployment.py the placement retries),
fanout.py (task transitions and hook triggers sent to the agents), teardown.py
(teardown hooks, EXIT, kills), agentevents.py (executor reports → task state),
automatic.py (GO_ERROR after a task failure, runs stopped by the core or the timer;
runend.py the rules), taskindex.py (tasks by id, waiting for them to change),
outcome.py (critical rows), arguments.py (START/STOP arguments), detectors.py
(detector locks), runtime_vars.py (what the store keeps of the variables),
taskresult.py (`taskResult.*`), recovery.py (re-adoption), roster.py (task queries).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from engine.emulation import emulate_workflow
from engine.environment.agentevents import apply_report, reported_task
from engine.environment.automatic import Automatic
from engine.environment.deploy import Deployer, descriptor
from engine.environment.detectors import environment_detectors
from engine.environment.environment import (
    Busy,
    DeployedTask,
    Environment,
    EnvironmentInfo,
    TaskRow,
    TransitionFailed,
    TransitionResult,
    UnknownEnvironmentError,
)
from engine.environment.events import (
    EnvironmentEvent,
    EventHub,
    EventKind,
    Subscription,
    call_event,
)
from engine.environment.fanout import run_task_hook
from engine.environment.hooks import EnvironmentHooks
from engine.environment.outcome import critical
from engine.environment.recovery import (
    CreationCutShort,
    Recovery,
    RecoveryError,
    StoredEnvironment,
    creation_tasks,
    cut_short,
    load_stored,
    pinned_reference,
    readopt,
    rebuild_environment,
    rebuild_task,
    recovery_result,
    run_elapsed,
)
from engine.environment.runend import CORE_USER, AutoStopTimer, auto_stop_delay
from engine.environment.statemachine import (
    DestroyRefused,
    EnvEvent,
    EnvironmentStateMachine,
    EnvState,
    TransitionRefused,
)
from engine.environment.taskindex import TaskIndex
from engine.environment.teardown import kill_all, kill_task, teardown_hooks
from engine.environment.transition import Transitions, persist
from engine.integration import (
    CallEvent,
    CallRunner,
    LoadedPlugins,
    PluginError,
    plugins_from_configuration,
)
from engine.scheduler.agents import AgentSpec, load_agents
from engine.scheduler.local_agent import AgentTaskList
from engine.scheduler.local_pool import LocalAgentPool
from engine.scheduler.mesos.backend import BackendChoice, build_pool
from engine.scheduler.offers import Placement
from engine.store import AsyncStore, OwedKill, Store
from engine.task.errors import ChannelError
from engine.templates.functions import new_uid
from engine.templates.render import TemplateError
from engine.workdir import WorkingDirectory
from engine.workflow.aggregation import Aggregator, TaskState
from engine.workflow.loader import WorkflowLoader
from engine.workflow.roles import WorkflowError

log = logging.getLogger("engine.environment")

# Events a client may ask for (§1.1: ControlEnvironment), and coconut's short names.
# EXIT and RECOVER too, which AliECS's API cannot send (DESIGN: "Where we do better").
CONTROLLABLE = (EnvEvent.CONFIGURE, EnvEvent.START_ACTIVITY, EnvEvent.STOP_ACTIVITY,
                EnvEvent.RESET, EnvEvent.EXIT, EnvEvent.RECOVER)
ALIASES = {"START": EnvEvent.START_ACTIVITY, "STOP": EnvEvent.STOP_ACTIVITY}


def parse_event(text: EnvEvent | str) -> EnvEvent:
    """An environment event by its name (any case) or coconut's START / STOP."""
    if isinstance(text, EnvEvent):
        return text
    return ALIASES.get(text.strip().upper()) or EnvEvent.parse(text)


class EnvironmentManager:
    """Every environment of one engine, and the local agents they run on."""

    def __init__(self, workdir: WorkingDirectory, loader: Callable[[], WorkflowLoader],
                 store: AsyncStore, backend: BackendChoice | None = None) -> None:
        self.workdir = workdir
        self._loader = loader
        self.store = store
        self.events = EventHub()
        self.tasks = TaskIndex()
        # The local agents, or a Mesos cluster when the settings (or `--mesos`) choose it.
        self.agents: LocalAgentPool = build_pool(  # type: ignore[assignment]
            backend, workdir, store, self._placement_of, self._on_agent_event,
            self._on_agent_lost)
        self._environments: dict[str, Environment] = {}
        self.automatic = Automatic(self._environments, lambda: self.transitions,
                                   self._publish_env)
        self.timer = AutoStopTimer(self.automatic.auto_stop_due)
        self.transitions = Transitions(store, loader, self.agents, self.tasks,
                                       Deployer(loader, workdir, self.agents, self.tasks),
                                       self.timer, self._task_changed, self._publish_env)
        self._plugins: LoadedPlugins | None = None
        self._plugins_lock = asyncio.Lock()

    # ---------------------------------------------------------------- queries

    def subscribe(self) -> Subscription:
        return self.events.subscribe()

    def list(self) -> list[EnvironmentInfo]:
        return [env.info() for env in self._environments.values()]

    def get(self, environment_id: str) -> EnvironmentInfo:
        return self._environment(environment_id).info()

    def _environment(self, environment_id: str) -> Environment:
        try:
            return self._environments[environment_id]
        except KeyError:
            raise UnknownEnvironmentError(environment_id) from None

    # ---------------------------------------------------------------- create

    async def create(self, reference: str, variables: Mapping[str, Any] | None = None, *,
                     emulate: bool = False, user: str = "",
                     environment_id: str = "") -> EnvironmentInfo:
        """Load the workflow, DEPLOY and CONFIGURE; the environment is CONFIGURED on return.

        On any failure every task deployed is killed, the environment is forgotten
        (memory and store) and TransitionFailed carries the table.
        """
        if environment_id:  # chosen by the caller (the API names it before it exists)
            check_new_environment_id(environment_id, self._environments)
        else:
            environment_id = new_uid()
        user_vars = {str(k): str(v) for k, v in (variables or {}).items()}
        if "hosts" not in user_vars:  # the embedded default: every local agent's machine
            cluster_hosts = getattr(self.agents, "default_hosts", None)  # Mesos: its agents
            if cluster_hosts is not None:
                user_vars["hosts"] = json.dumps(await cluster_hosts())
            else:
                agents = await asyncio.to_thread(load_agents, self.workdir.settings_file)
                user_vars["hosts"] = json.dumps([agent.machine_id for agent in agents])
        loader = await asyncio.to_thread(self._loader)
        workflow = await asyncio.to_thread(loader.load, reference, user_vars,
                                           environment_id=environment_id)
        if emulate:
            emulate_workflow(workflow)
        auto_stop_delay(workflow.root.stack, workflow.origin)  # a bad timeout fails here, not at START
        detectors = environment_detectors(workflow)
        plugins = await self.loaded_plugins(loader)
        await self.agents.start()
        env = Environment(id=environment_id, reference=reference, workflow=workflow,
                          created_by=user, user_vars=user_vars,
                          machine=EnvironmentStateMachine(environment_id=environment_id),
                          aggregator=Aggregator.from_workflow(workflow), emulate=emulate)
        self._attach_hooks(env, loader, plugins)
        env.detectors = detectors
        # Saved, marked as being created, before anything is launched: an engine killed
        # from here on leaves a record the next one undoes (recover). The detector locks
        # go with it: DetectorInUseError, nothing deployed.
        env.creating = True
        await persist(self.store, env)
        self._environments[env.id] = env
        self._publish_env(env, user, "created")
        env.begin("CREATE", user)
        try:
            await self.transitions.run(env, EnvEvent.DEPLOY, user, creating=True)
            await self.transitions.run(env, EnvEvent.CONFIGURE, user, creating=True)
            env.creating = False
            await persist(self.store, env)
        except BaseException:
            await self._forget(env, user)
            raise
        finally:
            env.end()
        return env.info()

    async def loaded_plugins(self, loader: WorkflowLoader) -> LoadedPlugins:
        """The integration plugins the core settings enable, loaded and initialised once."""
        async with self._plugins_lock:
            if self._plugins is None:
                try:
                    plugins = await asyncio.to_thread(plugins_from_configuration, loader.config)
                except PluginError as error:
                    raise WorkflowError(f"cannot load the integration plugins: {error}") from None
                await plugins.init_all(f"nutshell-{self.workdir.root}")
                self._plugins = plugins
            return self._plugins

    def _attach_hooks(self, env: Environment, loader: WorkflowLoader,
                      plugins: LoadedPlugins) -> None:
        """The environment's hooks: its calls on the plugins, its hook tasks on the agents,
        and the events that tell a transition began and ended."""
        calls = CallRunner(plugins, namespaces=loader.library.namespaces,
                           emulate_unloaded=env.emulate, on_event=self._call_event_sink(env))
        env.hooks = EnvironmentHooks(
            env.workflow, env.id, calls,
            lambda role: run_task_hook(self.agents, self.tasks.wait, env, role))
        env.on_busy = self._transition_busy

    # ---------------------------------------------------------------- transitions

    async def control(self, environment_id: str, event: EnvEvent | str,
                      user: str = "") -> TransitionResult:
        """Run one transition, hooks and calls included. TransitionRefused (nothing changed)
        when the table does not allow it here; EnvironmentBusy while another runs;
        TransitionFailed when a critical hook cancelled it (the state is kept) or a critical
        task failed it (the environment is then ERROR)."""
        env = self._environment(environment_id)
        chosen = parse_event(event)
        if env.busy is not None:
            env.begin(chosen, user)  # raises EnvironmentBusy
        if not env.machine.can(chosen) or chosen not in CONTROLLABLE:  # name what a user may send
            raise TransitionRefused(chosen, env.state,
                                    [e for e in env.machine.allowed() if e in CONTROLLABLE],
                                    env.id)
        env.begin(chosen, user)
        try:
            await self.transitions.run(env, chosen, user)
        finally:
            env.end()
        assert env.last_result is not None
        if env.state is EnvState.DONE:  # EXIT: the tasks are gone, and so is the environment
            await self._forget(env, user)
        return env.last_result

    # ---------------------------------------------------------------- destroy

    async def destroy(self, environment_id: str, user: str = "", *, keep_tasks: bool = False,
                      allow_in_running_state: bool = True, force: bool = False
                      ) -> TransitionResult:
        """STOP if RUNNING, RESET if CONFIGURED (failures only logged, as a forced teardown),
        the teardown hooks, kill every task, release the detectors and forget the
        environment (§1.1.4). `force` skips STOP and RESET; `keep_tasks` releases the
        tasks instead of killing them (they run on, unlocked, until a task cleanup);
        `allow_in_running_state=False` refuses a RUNNING environment (DestroyRefused,
        nothing changed) unless forced."""
        env = self._environment(environment_id)
        if env.state is EnvState.RUNNING and not (allow_in_running_state or force):
            raise DestroyRefused(env.id, env.state)
        env.begin("DESTROY", user)
        rows: list[TaskRow] = []
        try:
            for state, event in ((EnvState.RUNNING, EnvEvent.STOP_ACTIVITY),
                                 (EnvState.CONFIGURED, EnvEvent.RESET)):
                if env.state is state and not force:
                    try:
                        await self.transitions.run(env, event, user)
                    except TransitionFailed as error:
                        log.warning("destroy of %s: %s; killing the tasks anyway", env.id, error)
            rows = await teardown_hooks(env)
            if not keep_tasks:
                rows += await kill_all(self.agents, env, self._task_changed)
        finally:
            env.end()
        result = TransitionResult(env.id, "DESTROY", EnvState.DONE.value, 0, tuple(rows), user)
        await self._forget(env, user, kill=not keep_tasks)
        return result

    async def _forget(self, env: Environment, user: str, *, kill: bool = True) -> None:
        """Kill what is left of the environment (or, without `kill`, release its tasks:
        unlocked, they run on), and drop it from memory and the store."""
        self.timer.disarm(env)
        if kill and any(not t.gone and t.state is not TaskState.DONE
                        for t in env.tasks.values()):
            await kill_all(self.agents, env, self._task_changed)
        self.tasks.drop(env.tasks)
        self._environments.pop(env.id, None)
        task_ids = list(env.tasks)
        owed = [OwedKill(t.task_id, t.agent, env.id) for t in env.tasks.values() if t.kill_owed]

        def delete(store: Store) -> None:
            if kill:
                store.tasks.delete(task_ids)
                store.owed_kills.add(owed)  # an engine that dies first leaves them to the next
            else:
                store.tasks.release(env.id)
            store.environments.delete(env.id)

        await self.store.transaction(delete)
        env.machine = EnvironmentStateMachine(EnvState.DONE, env.id)
        self._publish_env(env, user, "destroyed")

    # ---------------------------------------------------------------- tasks changing

    def _on_agent_event(self, agent: str, body: dict[str, Any], seq: int = 0) -> None:
        """Executor reports (§7.4 bodies; `seq`: their event's, 0 if unknown) update the
        task they name (agentevents.py)."""
        entry = self.tasks.get(reported_task(body))
        if entry is None:
            return
        env, task = entry
        applied = apply_report(task, body, seq)
        if applied is None:
            return
        self._task_changed(env, task)
        self.tasks.signal()
        if applied.run_end:
            self.automatic.ask_run_end(env, applied.run_end)
        if applied.late:
            self._late_answer(env, task)

    def _late_answer(self, env: Environment, task: DeployedTask) -> None:
        """A transition sent by an engine that died ended after this one re-adopted the task.
        A task now at odds with its resting environment was cut short in that transition:
        GO_ERROR, as when recovery finds one at start (a transition under way here decides
        for itself)."""
        if env.busy is not None:
            return
        rows = [row for row in cut_short(env) if row.task_id == task.task_id]
        if any(critical(env, row) for row in rows):
            self.automatic.go_error(env, rows)

    def _placement_of(self, task_id: str) -> Placement | None:
        """Where a deployed task was placed (the Mesos backend launches it from there)."""
        entry = self.tasks.get(task_id)
        return None if entry is None else entry[1].placement

    def _on_agent_lost(self, agent: str, why: str) -> None:
        """An executor died under a running engine: its tasks died with it, each reported
        TASK_LOST as Mesos reports a lost agent's tasks (§1.2: ERROR, INACTIVE; a critical
        one puts its environment in ERROR)."""
        for _, task in self.tasks.on_agent(agent):
            if not task.gone:
                self._on_agent_event(agent, {"_messageType": "StatusUpdate",
                                             "taskId": task.task_id, "state": "TASK_LOST",
                                             "message": why})

    def _task_changed(self, env: Environment, task: DeployedTask) -> None:
        """Roll the task's state up the role tree and tell the subscribers; a critical task
        in ERROR while the environment is CONFIGURED or RUNNING puts it in ERROR (§1.2)."""
        env.aggregator.update(task.role.path, task.state, task.status)
        self._publish_task(env, task)
        self.automatic.task_changed(env, task)

    def _publish_env(self, env: Environment, user: str, message: str) -> None:
        self.events.publish(EnvironmentEvent(EventKind.ENVIRONMENT, env.id, str(env.state),
                                             user=user, message=message))

    def _transition_busy(self, env: Environment, busy: Busy, began: bool) -> None:
        """Every begin and end (a user's, the core's, the timer's) is told, so any front-end
        can show the transition under way, not only the one that asked for it."""
        self._publish_env(env, busy.user, f"{busy.transition} {'started' if began else 'ended'}")
        if not began:
            self.automatic.transition_ended(env)

    def _publish_task(self, env: Environment, task: DeployedTask) -> None:
        self.events.publish(EnvironmentEvent(EventKind.TASK, env.id, str(task.state),
                                             user=_requester(env), task_id=task.task_id,
                                             role_path=task.role.path, status=str(task.status),
                                             message=task.message))

    def _call_event_sink(self, env: Environment) -> Callable[[CallEvent], None]:
        """Where an environment's CallRunner reports its calls: the event hub (Ev_CallEvent)."""
        def publish(call: CallEvent) -> None:
            self.events.publish(call_event(env.id, str(env.state), _requester(env), call))
        return publish

    async def close(self) -> None:
        """Disconnect from the agents; tasks and executors keep running."""
        for env in self._environments.values():
            self.timer.disarm(env)
        self.automatic.close()
        self.events.close()
        await self.agents.close()
        plugins, self._plugins = self._plugins, None
        if plugins is not None:
            await plugins.destroy_all()

    # --- recovery: the store's environments re-adopted when an engine starts hosting

    recovery: Recovery | None = None  # what recover() found

    async def recover(self) -> Recovery:
        """Reload every environment of the store, reconnect the executors and re-adopt the
        live tasks with the states their executors report (recovery.py).

        A task that died while no engine ran is reported: a row in its environment's last
        result and a task event; a critical one puts a CONFIGURED or RUNNING environment in
        ERROR through the GO_ERROR path (§1.2). An environment that cannot be rebuilt stays
        in the store untouched and is named in `failures`. One whose creation was cut short
        (still marked as being created) is not rebuilt but undone (_undo_creation). Kills a
        destroy owed to tasks behind a cut channel are carried out (_settle_owed_kills).
        """
        stored = await asyncio.to_thread(load_stored, self.store.store)
        owed = await self.store.transaction(lambda store: store.owed_kills.list())
        if not stored and not owed:
            self.recovery = Recovery()
            return self.recovery
        unfinished = [entry for entry in stored if entry.record.creating]
        stored = [entry for entry in stored if not entry.record.creating]
        loader = await asyncio.to_thread(self._loader)
        specs = {spec.name: spec
                 for spec in await asyncio.to_thread(load_agents, self.workdir.settings_file)}
        rebuilt: list[Environment] = []
        failures: list[str] = []
        for entry in stored:
            try:
                rebuilt.append(await self._rebuild(entry, loader, specs))
            except (RecoveryError, WorkflowError, ChannelError, TemplateError) as error:
                log.error("recovery: environment %s left in the store: %s", entry.record.id,
                          error)
                failures.append(f"environment {entry.record.id}: {error}")
        for env in rebuilt:
            self._environments[env.id] = env
            for task in env.tasks.values():
                self.tasks.add(env, task)
        await self.agents.start()
        # No await from here to the end of the loop: events newer than the listings wait.
        listings = self.agents.listings
        lost: list[TaskRow] = []
        for env in rebuilt:
            rows = []
            for task in env.tasks.values():
                listing = listings.get(task.agent)
                remote = None if listing is None else next(
                    (t for t in listing.tasks if t.task_id == task.task_id), None)
                row = readopt(task, remote, listing)
                if row is not None:
                    rows.append(row)
            dead = len(rows)
            mismatched = cut_short(env)
            rows += mismatched
            if rows:
                env.last_result = recovery_result(env, rows)
                lost += rows
            for task in env.tasks.values():
                self._task_changed(env, task)
            if env.state is EnvState.RUNNING:  # the run keeps its auto-stop deadline
                self.timer.arm(env, run_elapsed(env, int(time.time() * 1000)))
            if any(critical(env, row) for row in mismatched):
                self.automatic.go_error(env, mismatched)
            self._publish_env(env, "", f"recovered: {len(env.tasks) - dead} task(s) "
                                       f"re-adopted, {dead} died while no engine ran"
                                       + (f", {len(mismatched)} left mid-transition"
                                          if mismatched else ""))
        launched = [(entry, creation_tasks(entry.record.id, listings)) for entry in unfinished]
        creations = [await self._undo_creation(entry, tasks) for entry, tasks in launched]
        settled = await self._settle_owed_kills(owed, listings)
        for env in rebuilt:
            await persist(self.store, env)
        self.recovery = Recovery(tuple(env.id for env in rebuilt), tuple(lost), tuple(failures),
                                 tuple(creations), tuple(settled))
        return self.recovery

    async def _settle_owed_kills(self, owed: list[OwedKill],
                                 listings: Mapping[str, AgentTaskList]) -> list[str]:
        """Kills a destroy owed to tasks behind a cut channel, left by an engine that died
        before their agent answered: carried out if the task still runs, dropped if it is
        gone; kept for the next engine if its agent cannot be asked or the kill fails.
        Returns a line per task killed."""
        settled: list[str] = []
        killed: list[str] = []
        for debt in owed:
            listing = listings.get(debt.agent_id)
            if listing is None:
                continue
            if any(remote.task_id == debt.task_id for remote in listing.tasks):
                error = await kill_task(self.agents, debt.agent_id, debt.task_id)
                if error is not None:
                    log.error("recovery: task %s owed a kill, still running: %s",
                              debt.task_id, error)
                    continue
                killed.append(f"task {debt.task_id} of environment {debt.environment_id}, "
                              f"destroyed while agent {debt.agent_id} was unreachable, killed")
                log.warning("recovery: %s", killed[-1])
            settled.append(debt.task_id)
        if settled:
            await self.store.transaction(lambda store: store.owed_kills.delete(settled))
        return killed

    async def _undo_creation(self, entry: StoredEnvironment,
                             launched: list[tuple[str, str]]) -> CreationCutShort:
        """A creation whose engine died before it ended: its user never got the environment,
        so every task the executors hold for it, `launched` as (agent, task id), is killed
        and its record deleted, its detector locks with it. Tasks of environments the store
        does not know (released by destroy with keep_tasks) are not touched. If a task
        cannot be killed the record stays, still marked, for the next engine to undo."""
        record = entry.record

        async def kill(agent: str, task_id: str) -> str:
            error = await kill_task(self.agents, agent, task_id)
            return "" if error is None else f"task {task_id} on agent {agent}: {error}"

        failed = tuple(f for f in await asyncio.gather(*(kill(*t) for t in launched)) if f)
        stored_tasks = [task.task_id for task in entry.tasks]

        def delete(store: Store) -> None:
            store.tasks.delete(stored_tasks)
            store.environments.delete(record.id)

        if not failed:
            await self.store.transaction(delete)
        undone = CreationCutShort(record.id, record.workflow, record.created_by,
                                  len(launched) - len(failed), failed)
        log.warning("recovery: %s", undone.message)
        self.events.publish(EnvironmentEvent(
            EventKind.ENVIRONMENT, record.id, record.state if failed else EnvState.DONE.value,
            user=CORE_USER, message=undone.message))
        return undone

    async def _rebuild(self, entry: StoredEnvironment, loader: WorkflowLoader,
                       specs: Mapping[str, AgentSpec]) -> Environment:
        """One environment as create() built it: its workflow at the stored commit with the
        stored variables and id, its tasks from their records, its hooks."""
        record = entry.record
        workflow = await asyncio.to_thread(loader.load, pinned_reference(record),
                                           record.user_vars, environment_id=record.id)
        if record.emulate:
            emulate_workflow(workflow)
        env = rebuild_environment(record, workflow, entry.runtime_vars)
        for task_record in entry.tasks:
            task = rebuild_task(env, task_record, specs,
                                lambda role: descriptor(env.id, role, loader))
            env.tasks[task.task_id] = task
        self._attach_hooks(env, loader, await self.loaded_plugins(loader))
        return env

    # --- roster: what roster.py (task listing, cleanup, role queries, logs) reads

    def environments(self) -> list[Environment]:
        """The environments in memory, in creation order."""
        return list(self._environments.values())


# ---------------------------------------------------------------- helpers

_ENVIRONMENT_ID = re.compile(r"[0-9A-Za-z]{1,64}")


def check_new_environment_id(environment_id: str, existing: Mapping[str, object]) -> None:
    """A caller-chosen id: letters and digits, and not one already in use."""
    if not _ENVIRONMENT_ID.fullmatch(environment_id):
        raise WorkflowError(f"environment id {environment_id!r} must be 1 to 64 letters or "
                            "digits")
    if environment_id in existing:
        raise WorkflowError(f"environment id {environment_id} is already in use")

def _requester(env: Environment) -> str:
    """Who the environment's current change is for: the user of the transition under way,
    else the core (a task changing on its own)."""
    return env.busy.user if env.busy is not None and env.busy.user else CORE_USER
