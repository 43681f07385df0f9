"""The environment manager: create (DEPLOY, CONFIGURE), control, destroy, on the local agents.

AliECS's core/environment manager, reference §1.1.2–§1.1.4, with our promises
(DESIGN "Where we do better"): an event the table does not allow is refused and
changes nothing; a second transition while one runs is refused at once with who
and since when; every transition leaves a table, a row per task; a failed
creation leaves nothing deployed. Each transition's outcome (environment and
task records) is committed to the store before it is acknowledged.

Hooks (hook tasks and call roles, hooks.py) run at their triggers in the order
statemachine.transition_steps gives, the run number allocated between the
negative and the non-negative before_START_ACTIVITY weights; DESTROY and
after_DESTROY hooks run at destroy, before the tasks are killed.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import grpc

from engine.emulation import emulate_workflow
from engine.environment.environment import (
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
)
from engine.environment.hooks import EnvironmentHooks
from engine.environment.statemachine import (
    RUN_CLEARED,
    RUN_END,
    RUN_NUMBER,
    RUN_STARTED,
    EnvEvent,
    EnvironmentStateMachine,
    EnvState,
    StepKind,
    TransitionRefused,
    destination,
    tasks_step,
)
from engine.gosyntax import parse_go_duration
from engine.integration import (
    CallRunner,
    LoadedPlugins,
    PluginError,
    plugins_from_configuration,
)
from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.local_pool import LocalAgentPool
from engine.scheduler.matching import match
from engine.scheduler.offers import ResourceUse, TaskDescriptor, needs_control_port
from engine.store import AsyncStore, RoleTreeRecord, Store
from engine.task.channels import BindMap
from engine.task.command import TaskSpecials, build_task_command
from engine.task.errors import ChannelError, TaskBuildError
from engine.task.properties import build_property_map
from engine.templates.functions import new_uid
from engine.templates.render import TemplateError, Where
from engine.workdir import WorkingDirectory
from engine.workflow.aggregation import Aggregator, TaskState, TaskStatus
from engine.workflow.loader import WorkflowLoader
from engine.workflow.roles import TaskRole, Workflow, WorkflowError
from engine.workflow.wiring import task_binds
from occlib.states import DeviceEventType

log = logging.getLogger("engine.environment")

DEFAULT_DEPLOY_TIMEOUT = 90.0  # seconds, AliECS's deploy_timeout default
CONFIGURE_TIMEOUT = 120.0  # seconds for a task's CONFIGURE (§1.1.2)
TRANSITION_TIMEOUT = 90.0  # seconds for the other task transitions (defaultResponseTimeout)
KILL_TIMEOUT = 60.0
ERROR_GRACE = 0.5  # seconds between a critical task's ERROR and the environment's GO_ERROR
NOT_DEPLOYED = "-"
# Events a client may ask for (§1.1: ControlEnvironment), and coconut's short names.
CONTROLLABLE = (EnvEvent.CONFIGURE, EnvEvent.START_ACTIVITY, EnvEvent.STOP_ACTIVITY,
                EnvEvent.RESET)
ALIASES = {"START": EnvEvent.START_ACTIVITY, "STOP": EnvEvent.STOP_ACTIVITY}
# The task transition of each environment event: (task event, source, destination).
TASK_TRANSITIONS: dict[EnvEvent, tuple[str, TaskState, TaskState]] = {
    EnvEvent.CONFIGURE: ("CONFIGURE", TaskState.STANDBY, TaskState.CONFIGURED),
    EnvEvent.START_ACTIVITY: ("START", TaskState.CONFIGURED, TaskState.RUNNING),
    EnvEvent.STOP_ACTIVITY: ("STOP", TaskState.RUNNING, TaskState.CONFIGURED),
    EnvEvent.RESET: ("RESET", TaskState.CONFIGURED, TaskState.STANDBY),
}
_GONE_STATES = {"TASK_FINISHED": TaskState.DONE, "TASK_FAILED": TaskState.ERROR,
                "TASK_KILLED": TaskState.ERROR, "TASK_LOST": TaskState.ERROR,
                "TASK_ERROR": TaskState.ERROR}
BASIC_TASK_TERMINATED = int(DeviceEventType.BASIC_TASK_TERMINATED)  # as the body carries it
HOOK_TIMEOUT = 30.0  # seconds, a hook task's timeout when its role gives none (§2.6)
TERMINATION_WAIT = 2.0  # seconds to wait for a hook run's BASIC_TASK_TERMINATED (its exit code)
DESTROY_TRIGGERS = ("DESTROY", "after_DESTROY")


def parse_event(text: EnvEvent | str) -> EnvEvent:
    """An environment event by its name (any case) or coconut's START / STOP."""
    if isinstance(text, EnvEvent):
        return text
    return ALIASES.get(text.strip().upper()) or EnvEvent.parse(text)


class EnvironmentManager:
    """Every environment of one engine, and the local agents they run on."""

    def __init__(self, workdir: WorkingDirectory, loader: Callable[[], WorkflowLoader],
                 store: AsyncStore) -> None:
        self.workdir = workdir
        self._loader = loader
        self.store = store
        self.events = EventHub()
        self.agents = LocalAgentPool(workdir, self._on_agent_event)
        self._environments: dict[str, Environment] = {}
        self._tasks: dict[str, tuple[Environment, DeployedTask]] = {}
        self._changed = asyncio.Event()
        self._going_to_error: set[str] = set()
        self._jobs: set[asyncio.Task[None]] = set()
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
                     emulate: bool = False, user: str = "") -> EnvironmentInfo:
        """Load the workflow, DEPLOY and CONFIGURE; the environment is CONFIGURED on return.

        On any failure every task deployed is killed, the environment is forgotten
        (memory and store) and TransitionFailed carries the table.
        """
        environment_id = new_uid()
        user_vars = {str(k): str(v) for k, v in (variables or {}).items()}
        loader = await asyncio.to_thread(self._loader)
        workflow = await asyncio.to_thread(loader.load, reference, user_vars,
                                           environment_id=environment_id)
        if emulate:
            emulate_workflow(workflow)
        plugins = await self._loaded_plugins(loader)
        await self.agents.start()
        env = Environment(id=environment_id, reference=reference, workflow=workflow,
                          created_by=user, user_vars=user_vars,
                          machine=EnvironmentStateMachine(environment_id=environment_id),
                          aggregator=Aggregator.from_workflow(workflow))
        calls = CallRunner(plugins, namespaces=loader.library.namespaces,
                           emulate_unloaded=emulate)
        env.hooks = EnvironmentHooks(workflow, env.id, calls,
                                     lambda role: self._run_task_hook(env, role))
        self._environments[env.id] = env
        self._publish_env(env, user, "created")
        env.begin("CREATE", user)
        try:
            await self._transition(env, EnvEvent.DEPLOY, user, creating=True)
            await self._transition(env, EnvEvent.CONFIGURE, user, creating=True)
        except BaseException:
            await self._forget(env, user)
            raise
        finally:
            env.end()
        return env.info()

    async def _loaded_plugins(self, loader: WorkflowLoader) -> LoadedPlugins:
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

    async def _transition(self, env: Environment, event: EnvEvent, user: str, *,
                          creating: bool = False) -> None:
        """One transition as §1.1.1 orders it: the hooks of each trigger band, the run-number
        work and the transition's own work (the state changes there).

        A critical hook failing before the state changed cancels the transition and keeps the
        old state (TransitionFailed with the hook's row); one failing after it (enter_,
        after_) is reported in the table, as the change cannot be undone. A critical task
        failing the work sends the environment to ERROR (TransitionFailed).
        """
        hooks = env.hooks
        assert hooks is not None
        source = env.state
        schedule = hooks.schedule.transition(event, source, destination(event, source))
        rows: list[TaskRow] = []
        changed = False
        try:
            for scheduled in schedule.steps:
                step = scheduled.step
                if step.kind is StepKind.WORK:
                    if step.name == tasks_step(event):
                        rows += await self._work(env, event, user, rows, creating)
                        env.machine.fire(event)
                        changed = True
                    else:
                        await self._run_work(env, step.name)
                    continue
                outcome = await hooks.run(scheduled.points, str(env.state))
                rows += outcome.rows
                if outcome.critical_failure and not changed:
                    await self._cancel(env, event, user, rows, creating)
        except BaseException:
            hooks.drop(point.trigger for point in schedule.points())
            raise
        await self._acknowledge(env, event, user, rows)

    async def _run_work(self, env: Environment, name: str) -> None:
        """The core's own work between hooks (§1.1.1): the run number and its variables."""
        root = env.workflow.root
        if name == RUN_NUMBER:
            run = await self.store.next_run_number()  # committed before anyone sees it
            env.run_number = run
            root.vars["run_number"] = root.vars["runNumber"] = str(run)
            env.workflow.env_user_vars["run_start_time_ms"] = str(int(time.time() * 1000))
            env.workflow.env_user_vars["run_end_time_ms"] = ""
        elif name == RUN_STARTED:
            env.starts += 1
        elif name == RUN_CLEARED:
            if env.run_number:
                env.last_run_number = env.run_number
                root.vars["last_run_number"] = str(env.run_number)
            env.run_number = 0
            root.vars.pop("run_number", None)
            root.vars.pop("runNumber", None)
        elif name == RUN_END and not env.workflow.env_user_vars.get("run_end_time_ms"):
            env.workflow.env_user_vars["run_end_time_ms"] = str(int(time.time() * 1000))

    async def _record_failure(self, env: Environment, event: EnvEvent, user: str,
                              rows: list[TaskRow], creating: bool, what: str) -> TransitionResult:
        """Keep a failed or cancelled transition's table as the environment's last result."""
        result = TransitionResult(env.id, event.value, str(env.state), env.run_number,
                                  tuple(rows), user)
        env.last_transition, env.last_result = event.value, result
        if not creating:
            await self._persist(env)
        self._publish_env(env, user, f"{event} {what}")
        return result

    async def _cancel(self, env: Environment, event: EnvEvent, user: str, rows: list[TaskRow],
                      creating: bool) -> None:
        """A critical hook failed before the state changed: the transition is cancelled,
        the environment keeps its state (a run number taken is not reused); raises."""
        if event is EnvEvent.START_ACTIVITY and env.run_number:
            await self._run_work(env, RUN_CLEARED)
        result = await self._record_failure(env, event, user, rows, creating, "cancelled by a hook")
        where = "creation" if creating else event.value
        raise TransitionFailed(f"{where} of environment {env.id} cancelled: a critical hook "
                               f"failed; the environment stays {env.state}", result)

    async def _work(self, env: Environment, event: EnvEvent, user: str, rows: list[TaskRow],
                    creating: bool) -> list[TaskRow]:
        """The transition's own work (§1.1.2); its rows. `rows` are the hooks' so far, for
        the table of a failure."""
        if event is EnvEvent.DEPLOY:
            return await self._deploy(env, user, rows)
        if event is EnvEvent.CONFIGURE:
            return await self._configure(env, user, rows, creating=creating)
        if event is EnvEvent.START_ACTIVITY:
            return await self._start(env, user, rows)
        return await self._simple(env, event, user, rows)

    async def _deploy(self, env: Environment, user: str, hook_rows: list[TaskRow]
                      ) -> list[TaskRow]:
        """Place and launch every task; wait until each runs (§1.1.2 DEPLOY)."""
        loader = self._loader()
        timeout = _deploy_timeout(env.workflow)
        roles = {role.path: role for role in env.workflow.task_roles()}
        descriptors: list[TaskDescriptor] = []
        rows: list[TaskRow] = list(hook_rows)
        for role in roles.values():
            try:
                descriptors.append(_descriptor(env.id, role, loader))
            except (WorkflowError, ChannelError, TemplateError) as error:
                rows.append(_unplaced_row(role, str(error)))
        offers = self.agents.offers(self._in_use())
        placed = match(descriptors, offers)
        for unplaced in (*placed.undeployable, *placed.undeployed):
            rows.append(_unplaced_row(roles[unplaced.descriptor.role_path], unplaced.reason))
        if any(roles[row.role_path].critical for row in rows):
            self._fail(env, EnvEvent.DEPLOY, user, rows, "cannot deploy environment")
        for placement in placed.deployed:
            role = roles[placement.descriptor.role_path]
            task_id = new_uid()
            specials = TaskSpecials(role.task_class.task_name(task_id), task_id,
                                    role.class_identifier, placement.hostname, env.id, role.path)
            try:
                command = build_task_command(role.task_class, role.stack, specials,
                                             loader.renderer, placement.control_port,
                                             Where(file=role.origin, role_path=role.path),
                                             hook=role.trigger is not None,
                                             timeout_ns=_timeout_ns(role))
            except (TaskBuildError, TemplateError) as error:
                rows.append(_unplaced_row(role, str(error)))
                continue
            log_path = str(self.workdir.logs / env.id / f"{task_id}.log")
            task = DeployedTask(task_id, role, placement, command, log_path, specials=specials)
            env.tasks[task_id] = task
            self._tasks[task_id] = (env, task)
        if any(roles[row.role_path].critical for row in rows):
            self._fail(env, EnvEvent.DEPLOY, user, rows, "cannot deploy environment")
        await asyncio.to_thread((self.workdir.logs / env.id).mkdir, parents=True, exist_ok=True)
        await asyncio.gather(*(self._launch(env, task) for task in env.tasks.values()))
        await self._wait(lambda: all(_up(t) or t.gone or t.message for t in env.tasks.values()),
                         timeout)
        for task in env.tasks.values():
            reason = ""
            if not _up(task):
                reason = task.message or (f"not running after {timeout:g} s (deploy_timeout)")
            rows.append(task.row(NOT_DEPLOYED, reason))
        if any(row.failed and self._critical(env, row) for row in rows):
            self._fail(env, EnvEvent.DEPLOY, user, rows, "cannot deploy environment")
        return rows[len(hook_rows):]

    async def _launch(self, env: Environment, task: DeployedTask) -> None:
        try:
            await self.agents.client(task.agent).launch(
                task.task_id, task.command, environment_id=env.id, log_path=task.log_path)
        except LocalAgentError as error:
            task.message = str(error)
            self._signal()

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
        if not env.machine.can(chosen):
            raise TransitionRefused(chosen, env.state, env.machine.allowed(), env.id)
        if chosen not in CONTROLLABLE:
            raise TransitionRefused(chosen, env.state,
                                    [e for e in env.machine.allowed() if e in CONTROLLABLE],
                                    env.id)
        env.begin(chosen, user)
        try:
            await self._transition(env, chosen, user)
        finally:
            env.end()
        assert env.last_result is not None
        return env.last_result

    async def _configure(self, env: Environment, user: str, hook_rows: list[TaskRow], *,
                         creating: bool) -> list[TaskRow]:
        """Every controlled task STANDBY → CONFIGURE → CONFIGURED with its property map."""
        loader = self._loader()
        binds = BindMap()
        rows: list[TaskRow] = list(hook_rows)
        try:
            for task in env.tasks.values():
                binds.add_task(task.role.path, task.placement.hostname,
                               task.placement.local_bind_map())
        except ChannelError as error:
            rows.append(TaskRow("", env.workflow.root.path, "", str(env.state), str(env.state),
                                str(error)))
            await self._failed_transition(env, EnvEvent.CONFIGURE, user, rows, creating)
        arguments: dict[str, dict[str, str]] = {}
        for task in env.tasks.values():
            if not task.controlled:
                continue
            role = task.role
            try:
                arguments[task.task_id] = build_property_map(
                    role.task_class, role.stack, task.specials, loader.renderer,
                    task.placement.endpoints, binds, Where(file=role.origin, role_path=role.path),
                    role_bind=role.collected_bind(), role_connect=role.collected_connect())
            except (TaskBuildError, TemplateError) as error:
                rows.append(task.row(task.state, str(error)))
        if not any(self._critical(env, row) for row in rows):
            rows += await self._fan_out(env, EnvEvent.CONFIGURE, arguments,
                                        skip={row.task_id for row in rows})
        if any(row.failed and self._critical(env, row) for row in rows):
            await self._failed_transition(env, EnvEvent.CONFIGURE, user, rows, creating)
        return rows[len(hook_rows):]

    async def _start(self, env: Environment, user: str, hook_rows: list[TaskRow]
                     ) -> list[TaskRow]:
        """START every controlled task with the run number the run-number step allocated."""
        run = env.run_number
        common = {"runNumber": str(run), "run_number": str(run), "cleanup": str(env.starts)}
        arguments = {task.task_id: dict(common) for task in env.tasks.values() if task.controlled}
        rows = await self._fan_out(env, EnvEvent.START_ACTIVITY, arguments)
        if any(row.failed and self._critical(env, row) for row in rows):
            await self._failed_transition(env, EnvEvent.START_ACTIVITY, user,
                                          [*hook_rows, *rows], False)
        return rows

    async def _simple(self, env: Environment, event: EnvEvent, user: str,
                      hook_rows: list[TaskRow]) -> list[TaskRow]:
        """STOP_ACTIVITY or RESET: one task transition, no arguments."""
        arguments = {task.task_id: {} for task in env.tasks.values() if task.controlled}
        rows = await self._fan_out(env, event, arguments)
        if any(row.failed and self._critical(env, row) for row in rows):
            await self._failed_transition(env, event, user, [*hook_rows, *rows], False)
        return rows

    async def _run_task_hook(self, env: Environment, role: TaskRole) -> TaskRow:
        """Trigger a hook task on its agent and wait for its run; its row (exit code)."""
        task = next((t for t in env.tasks.values() if t.role.path == role.path), None)
        if task is None:
            return TaskRow("", role.path, "", NOT_DEPLOYED, NOT_DEPLOYED,
                           f"hook task {role.path} is not deployed (hooks before DEPLOY's "
                           "task step cannot run tasks)")
        if task.gone:
            return task.row(task.state, f"hook task is gone ({task.mesos_state})")
        timeout = (task.command.timeout_ns / 1e9) or HOOK_TIMEOUT
        arguments = {"environment_id": env.id}
        if env.run_number:
            arguments["run_number"] = str(env.run_number)
        body = {"name": "MesosCommand_TriggerHook", "id": new_uid(), "environmentId": env.id,
                "timeout": int(timeout * 1e9), "arguments": arguments,
                "targetList": [{"AgentId": {"value": task.agent},
                                "ExecutorId": {"value": task.agent},
                                "TaskId": {"value": task.task_id}}],
                "labels": {}}
        seen = task.terminations
        task.exit_code = None
        try:
            response = await self.agents.client(task.agent).command(body)
        except LocalAgentError as error:
            return task.row(task.state, str(error))
        await self._wait(lambda: task.terminations > seen, TERMINATION_WAIT)
        return task.row(task.state, str(response.get("error") or ""))

    async def _fan_out(self, env: Environment, event: EnvEvent,
                       arguments: Mapping[str, Mapping[str, str]],
                       skip: Collection[str] = ()) -> list[TaskRow]:
        """Send one task transition to every task in `arguments`, in parallel; a row each."""
        task_event, source, destination = TASK_TRANSITIONS[event]
        timeout = CONFIGURE_TIMEOUT if event is EnvEvent.CONFIGURE else TRANSITION_TIMEOUT
        command_id = new_uid()

        async def one(task: DeployedTask) -> TaskRow:
            before = task.state
            if task.gone:
                return task.row(before, f"the task is gone ({task.mesos_state}"
                                        f"{': ' + task.message if task.message else ''})")
            body = {"name": "MesosCommand_Transition", "id": command_id,
                    "environmentId": env.id, "timeout": int(timeout * 1e9),
                    "arguments": dict(arguments[task.task_id]),
                    "targetList": [{"AgentId": {"value": task.agent},
                                    "ExecutorId": {"value": task.agent},
                                    "TaskId": {"value": task.task_id}}],
                    "labels": {}, "source": source.wire, "event": task_event,
                    "destination": destination.wire}
            try:
                response = await self.agents.client(task.agent).command(body)
            except LocalAgentError as error:
                return task.row(before, str(error))
            if response.get("state"):
                task.state = TaskState.parse(str(response["state"]))
            self._task_changed(env, task)
            error = str(response.get("error") or "")
            if not error and task.state is not destination:
                error = f"{task_event} left the task {task.state}, not {destination.wire}"
            return task.row(before, error)

        tasks = [t for t in env.tasks.values() if t.task_id in arguments
                 and t.task_id not in skip]
        return list(await asyncio.gather(*(one(task) for task in tasks)))

    async def _failed_transition(self, env: Environment, event: EnvEvent, user: str,
                                 rows: list[TaskRow], creating: bool) -> None:
        """A critical task failed `event`: the environment goes to ERROR (RUNNING tasks are
        stopped first, as AliECS's GO_ERROR does); raises TransitionFailed."""
        running = {t.task_id: {} for t in env.tasks.values()
                   if t.controlled and t.state is TaskState.RUNNING}
        if running:
            await self._fan_out(env, EnvEvent.STOP_ACTIVITY, running)
        await self._run_work(env, RUN_CLEARED)
        env.machine.fire(EnvEvent.GO_ERROR)
        result = await self._record_failure(env, event, user, rows, creating, "failed")
        where = "creation" if creating else event.value
        raise TransitionFailed(f"{where} of environment {env.id} failed; the environment is "
                               f"{env.state}", result)

    def _fail(self, env: Environment, event: EnvEvent, user: str, rows: list[TaskRow],
              message: str) -> None:
        result = TransitionResult(env.id, event.value, str(env.state), 0, tuple(rows), user)
        env.last_transition, env.last_result = event.value, result
        raise TransitionFailed(f"{message} {env.id}", result)

    def _critical(self, env: Environment, row: TaskRow) -> bool:
        if not row.failed:
            return False
        entry = env.tasks.get(row.task_id)
        if entry is not None:
            return entry.critical
        role = env.workflow.find(row.role_path)
        return bool(getattr(role, "critical", True))

    async def _acknowledge(self, env: Environment, event: EnvEvent, user: str,
                           rows: list[TaskRow]) -> None:
        """Keep the result, commit it to the store, then tell the subscribers."""
        env.last_transition = event.value
        env.last_result = TransitionResult(env.id, event.value, str(env.state), env.run_number,
                                           tuple(rows), user)
        await self._persist(env)
        self._publish_env(env, user, f"{event} done")

    async def _persist(self, env: Environment) -> None:
        record, tasks = env.record(), env.task_records()
        tree = (RoleTreeRecord(env.id, env.workflow.to_dict())
                if env.last_transition == EnvEvent.DEPLOY.value else None)

        def save(store: Store) -> None:
            store.environments.save(record)
            store.tasks.upsert(tasks)
            if tree is not None:  # the workflow as deployed, once
                store.environments.save_role_tree(tree)

        await self.store.transaction(save)

    # ---------------------------------------------------------------- destroy

    async def destroy(self, environment_id: str, user: str = "") -> TransitionResult:
        """STOP if RUNNING, RESET if CONFIGURED (failures only logged, as a forced teardown),
        kill every task, release the detectors and forget the environment."""
        env = self._environment(environment_id)
        env.begin("DESTROY", user)
        rows: list[TaskRow] = []
        try:
            for state, event in ((EnvState.RUNNING, EnvEvent.STOP_ACTIVITY),
                                 (EnvState.CONFIGURED, EnvEvent.RESET)):
                if env.state is state:
                    try:
                        await self._transition(env, event, user)
                    except TransitionFailed as error:
                        log.warning("destroy of %s: %s; killing the tasks anyway", env.id, error)
            rows = await self._teardown_hooks(env)
            rows += await self._kill_all(env)
        finally:
            env.end()
        result = TransitionResult(env.id, "DESTROY", EnvState.DONE.value, 0, tuple(rows), user)
        await self._forget(env, user)
        return result

    async def _teardown_hooks(self, env: Environment) -> list[TaskRow]:
        """Teardown (§1.1.4): leave_<state> hooks, then DESTROY and after_DESTROY, calls
        waited for at their trigger; failures are reported and logged, never stop it.
        Calls still awaited later are dropped."""
        hooks = env.hooks
        if hooks is None:
            return []
        rows: list[TaskRow] = []
        for names in ((f"leave_{env.state.value}",), DESTROY_TRIGGERS):
            for point in hooks.teardown_points(names):
                outcome = await hooks.run([point], str(env.state), synchronous=True)
                rows += outcome.rows
        for row in rows:
            if row.failed:
                log.warning("destroy of %s: hook %s failed: %s", env.id, row.role_path,
                            row.reason)
        hooks.drop_all()
        return rows

    async def _kill_all(self, env: Environment) -> list[TaskRow]:
        async def kill(task: DeployedTask) -> TaskRow:
            before = task.state
            try:
                await self.agents.client(task.agent).kill(task.task_id, KILL_TIMEOUT)
            except LocalAgentError as error:
                if error.code is not grpc.StatusCode.NOT_FOUND:
                    return task.row(before, str(error))
            task.state = TaskState.DONE
            task.status = TaskStatus.INACTIVE
            self._task_changed(env, task)
            return task.row(before)

        return list(await asyncio.gather(*(kill(task) for task in env.tasks.values())))

    async def _forget(self, env: Environment, user: str) -> None:
        """Kill what is left of the environment, and drop it from memory and the store."""
        if any(not t.gone and t.state is not TaskState.DONE for t in env.tasks.values()):
            await self._kill_all(env)
        for task_id in env.tasks:
            self._tasks.pop(task_id, None)
        self._environments.pop(env.id, None)
        task_ids = list(env.tasks)

        def delete(store: Store) -> None:
            store.tasks.delete(task_ids)
            store.environments.delete(env.id)

        await self.store.transaction(delete)
        env.machine = EnvironmentStateMachine(EnvState.DONE, env.id)
        self._publish_env(env, user, "destroyed")

    # ---------------------------------------------------------------- agent events

    def _on_agent_event(self, agent: str, body: dict[str, Any]) -> None:
        """Executor reports (§7.4 bodies) update the task they name."""
        kind = body.get("_messageType")
        task_id = body.get("taskId") or body.get("origin", {}).get("taskId", {}).get("value", "")
        entry = self._tasks.get(str(task_id))
        if entry is None:
            return
        env, task = entry
        if kind == "StatusUpdate":
            state = str(body.get("state", ""))
            task.mesos_state = state
            if state == "TASK_RUNNING":
                task.status = TaskStatus.ACTIVE
                task.launched = True
            elif state in _GONE_STATES:
                task.status = TaskStatus.INACTIVE
                task.state = _GONE_STATES[state]
                task.message = str(body.get("message") or "") or task.message
        elif kind == "AnnounceTaskPIDEvent":
            task.pid = int(body.get("pid") or 0) or None
        elif kind == "DeviceEvent" and body.get("type") == BASIC_TASK_TERMINATED:
            task.exit_code = body.get("exitCode")
            task.terminations += 1
        else:
            return
        self._task_changed(env, task)
        self._signal()

    def _task_changed(self, env: Environment, task: DeployedTask) -> None:
        """Roll the task's state up the role tree and tell the subscribers; a critical task
        in ERROR while the environment is CONFIGURED or RUNNING puts it in ERROR (§1.2)."""
        env.aggregator.update(task.role.path, task.state, task.status)
        self._publish_task(env, task)
        if (task.state is TaskState.ERROR and env.busy is None
                and env.aggregator.state(env.aggregator.root) is TaskState.ERROR
                and env.state in (EnvState.CONFIGURED, EnvState.RUNNING)
                and env.id not in self._going_to_error):
            self._going_to_error.add(env.id)
            job = asyncio.get_running_loop().create_task(self._go_error(env, task))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _go_error(self, env: Environment, task: DeployedTask) -> None:
        """GO_ERROR after a critical task's failure, once the grace of §1.2 has passed
        (a transition that started meanwhile reports the failure itself)."""
        try:
            await asyncio.sleep(ERROR_GRACE)
            if env.busy is not None or env.id not in self._environments \
                    or env.state not in (EnvState.CONFIGURED, EnvState.RUNNING):
                return
            env.begin(EnvEvent.GO_ERROR, "")
            try:
                reason = (f"critical task '{task.role.path}' on host '{task.host}' transitioned "
                          f"to ERROR" + (f" ({task.message})" if task.message else ""))
                rows = [task.row(task.state, reason)]
                with contextlib.suppress(TransitionFailed):
                    await self._failed_transition(env, EnvEvent.GO_ERROR, "", rows, False)
            finally:
                env.end()
        except Exception:
            log.exception("environment %s: GO_ERROR after task %s failed", env.id, task.task_id)
        finally:
            self._going_to_error.discard(env.id)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def _in_use(self) -> dict[str, list[ResourceUse]]:
        uses: dict[str, list[ResourceUse]] = {}
        for _, task in self._tasks.values():
            if not task.gone:
                uses.setdefault(task.agent, []).append(task.placement.use())
        return uses

    def _publish_env(self, env: Environment, user: str, message: str) -> None:
        self.events.publish(EnvironmentEvent(EventKind.ENVIRONMENT, env.id, str(env.state),
                                             user=user, message=message))

    def _publish_task(self, env: Environment, task: DeployedTask) -> None:
        self.events.publish(EnvironmentEvent(EventKind.TASK, env.id, str(task.state),
                                             task_id=task.task_id, role_path=task.role.path,
                                             status=str(task.status), message=task.message))

    async def close(self) -> None:
        """Disconnect from the agents; tasks and executors keep running."""
        for job in list(self._jobs):
            job.cancel()
        self.events.close()
        await self.agents.close()
        plugins, self._plugins = self._plugins, None
        if plugins is not None:
            await plugins.destroy_all()


# ---------------------------------------------------------------- helpers

def _timeout_ns(role: TaskRole) -> int:
    """The role's `timeout` (a Go duration; the loader checked it) in nanoseconds."""
    try:
        return int(parse_go_duration(role.timeout or "0s") * 1e9)
    except ValueError:
        return 0


def _descriptor(environment_id: str, role: TaskRole, loader: WorkflowLoader) -> TaskDescriptor:
    task_class = role.task_class
    if task_class is None:
        raise WorkflowError(f"{role.origin}: role {role.path}: no task class loaded")
    return TaskDescriptor(role_path=role.path, task_class=role.class_identifier,
                          wants=task_class.wants, critical=role.critical,
                          constraints=role.constraints,
                          binds=tuple(task_binds(role, loader.renderer)),
                          needs_control_port=needs_control_port(task_class.control_mode),
                          environment_id=environment_id)


def _unplaced_row(role: TaskRole, reason: str) -> TaskRow:
    return TaskRow("", role.path, "", NOT_DEPLOYED, NOT_DEPLOYED, reason)


def _up(task: DeployedTask) -> bool:
    """Launched and, for a controlled task, its pid announced."""
    return task.launched and (task.pid is not None or not task.controlled)


def _deploy_timeout(workflow: Workflow) -> float:
    text = workflow.root.stack.get("deploy_timeout", "")
    if not text:
        return DEFAULT_DEPLOY_TIMEOUT
    try:
        return parse_go_duration(text) or DEFAULT_DEPLOY_TIMEOUT
    except ValueError:
        raise WorkflowError(f"{workflow.origin}: deploy_timeout {text!r} is not a duration "
                            "(e.g. 90s)") from None
