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
after_DESTROY hooks run at destroy, before the tasks are killed; hook tasks
triggered before DEPLOY's task step are deployed first. GO_ERROR is a transition
with its hooks; a critical enter_/after_ hook failure leads to it, as AliECS's
ControlEnvironment does. EXIT and RECOVER are reachable (recover_plan.py).

Beside this module: runend.py (runs that end by themselves, auto-stop, the core
and timer users), deployment.py (placement retries), arguments.py (START/STOP
arguments), detectors.py (detector locks), runtime_vars.py (what the store keeps
of the variables), taskresult.py (`taskResult.*`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from typing import Any

import grpc

from engine.emulation import emulate_workflow
from engine.environment import runtime_vars
from engine.environment.arguments import start_arguments, stop_arguments
from engine.environment.deployment import place
from engine.environment.detectors import environment_detectors
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
    call_event,
)
from engine.environment.hooks import EnvironmentHooks
from engine.environment.recover_plan import recovery_plan
from engine.environment.recovery import (
    Recovery,
    RecoveryError,
    StoredEnvironment,
    load_stored,
    pinned_reference,
    readopt,
    rebuild_environment,
    rebuild_task,
    recovery_result,
)
from engine.environment.runend import (
    CORE_USER,
    TIMER_USER,
    auto_stop_delay,
    safe_to_stop,
)
from engine.environment.statemachine import (
    RUN_CLEARED,
    RUN_END,
    RUN_NUMBER,
    RUN_STARTED,
    RUN_STOPPED,
    DestroyRefused,
    EnvEvent,
    EnvironmentStateMachine,
    EnvState,
    StepKind,
    TransitionRefused,
    destination,
    tasks_step,
)
from engine.environment.taskresult import killed_by_engine, task_result_vars
from engine.gosyntax import parse_go_duration
from engine.integration import (
    CallEvent,
    CallRunner,
    LoadedPlugins,
    PluginError,
    plugins_from_configuration,
)
from engine.scheduler.agents import AgentSpec, load_agents
from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.local_pool import LocalAgentPool
from engine.scheduler.offers import (
    Placement,
    ResourceUse,
    TaskDescriptor,
    needs_control_port,
)
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
# EXIT and RECOVER too, which AliECS's API cannot send (DESIGN: "Where we do better").
CONTROLLABLE = (EnvEvent.CONFIGURE, EnvEvent.START_ACTIVITY, EnvEvent.STOP_ACTIVITY,
                EnvEvent.RESET, EnvEvent.EXIT, EnvEvent.RECOVER)
AUTOMATIC_USERS = (CORE_USER, TIMER_USER)  # transitions nobody asked for: users wait for them
ALIASES = {"START": EnvEvent.START_ACTIVITY, "STOP": EnvEvent.STOP_ACTIVITY}
# The task transition of each environment event: (task event, source, destination).
TASK_TRANSITIONS: dict[EnvEvent, tuple[str, TaskState, TaskState]] = {
    EnvEvent.CONFIGURE: ("CONFIGURE", TaskState.STANDBY, TaskState.CONFIGURED),
    EnvEvent.START_ACTIVITY: ("START", TaskState.CONFIGURED, TaskState.RUNNING),
    EnvEvent.STOP_ACTIVITY: ("STOP", TaskState.RUNNING, TaskState.CONFIGURED),
    EnvEvent.RESET: ("RESET", TaskState.CONFIGURED, TaskState.STANDBY),
    EnvEvent.RECOVER: ("RECOVER", TaskState.ERROR, TaskState.STANDBY),
}
_GONE_STATES = {"TASK_FINISHED": TaskState.DONE, "TASK_FAILED": TaskState.ERROR,
                "TASK_KILLED": TaskState.ERROR, "TASK_LOST": TaskState.ERROR,
                "TASK_ERROR": TaskState.ERROR}
BASIC_TASK_TERMINATED = int(DeviceEventType.BASIC_TASK_TERMINATED)  # as the body carries it
END_OF_STREAM = int(DeviceEventType.END_OF_STREAM)
TASK_INTERNAL_ERROR = int(DeviceEventType.TASK_INTERNAL_ERROR)
BUSY_POLL = 0.05  # seconds between looks at a busy environment, for a stop the core asks for
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
        self._ending: set[str] = set()  # environments whose run the core or timer is stopping
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
        if "hosts" not in user_vars:  # the embedded default: every local agent's machine
            agents = await asyncio.to_thread(load_agents, self.workdir.settings_file)
            user_vars["hosts"] = json.dumps([agent.machine_id for agent in agents])
        loader = await asyncio.to_thread(self._loader)
        workflow = await asyncio.to_thread(loader.load, reference, user_vars,
                                           environment_id=environment_id)
        if emulate:
            emulate_workflow(workflow)
        auto_stop_delay(workflow.root.stack, workflow.origin)  # a bad timeout fails here, not at START
        detectors = environment_detectors(workflow)
        plugins = await self._loaded_plugins(loader)
        await self.agents.start()
        env = Environment(id=environment_id, reference=reference, workflow=workflow,
                          created_by=user, user_vars=user_vars,
                          machine=EnvironmentStateMachine(environment_id=environment_id),
                          aggregator=Aggregator.from_workflow(workflow), emulate=emulate)
        calls = CallRunner(plugins, namespaces=loader.library.namespaces,
                           emulate_unloaded=emulate, on_event=self._call_event_sink(env))
        env.hooks = EnvironmentHooks(workflow, env.id, calls,
                                     lambda role: self._run_task_hook(env, role))
        env.detectors = detectors
        if detectors:  # the locks go with the record: DetectorInUseError, nothing deployed
            await self._persist(env)
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
                          creating: bool = False, acknowledge: bool = True) -> None:
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
        changed = late_failure = False
        try:
            if event is EnvEvent.DEPLOY:  # hook tasks triggered before the tasks exist
                early = hooks.task_hooks_before(schedule, tasks_step(event))
                if early:
                    rows += await self._deploy(env, user, [], only=early)
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
                late_failure = late_failure or outcome.critical_failure
        except BaseException:
            hooks.drop(point.trigger for point in schedule.points())
            raise
        if late_failure and env.machine.can(EnvEvent.GO_ERROR):
            # A critical enter_/after_ hook failed: the state cannot be undone, and AliECS's
            # ControlEnvironment answers the transition's error with GO_ERROR; so do we.
            await self._failed_transition(env, event, user, rows, creating)
        await self._acknowledge(env, event, user, rows, announce=acknowledge)

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
            self._arm_auto_stop(env)
        elif name == RUN_STOPPED:
            self._disarm_auto_stop(env)
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
        if event is EnvEvent.GO_ERROR:
            return await self._stop_running(env)
        if event is EnvEvent.EXIT:
            return await self._exit(env)
        if event is EnvEvent.RECOVER:
            return await self._recover(env, user, rows)
        return await self._simple(env, event, user, rows)

    async def _deploy(self, env: Environment, user: str, hook_rows: list[TaskRow], *,
                      only: Collection[str] | None = None,
                      event: EnvEvent = EnvEvent.DEPLOY) -> list[TaskRow]:
        """Place and launch every task role that has no task yet (or those of them `only`
        names); wait until each runs (§1.1.2 DEPLOY). Placement retries as §7.2
        (deployment.py). A critical role left out fails `event` (TransitionFailed)."""
        loader = self._loader()
        timeout = _deploy_timeout(env.workflow)
        have = {task.role.path for task in env.tasks.values()}
        roles = {role.path: role for role in env.workflow.task_roles()
                 if role.path not in have and (only is None or role.path in only)}
        descriptors: list[TaskDescriptor] = []
        rows: list[TaskRow] = []

        def check() -> None:
            if any(row.failed and self._critical(env, row) for row in rows):
                self._fail(env, event, user, [*hook_rows, *rows], "cannot deploy environment")

        for role in roles.values():
            try:
                descriptors.append(_descriptor(env.id, role, loader))
            except (WorkflowError, ChannelError, TemplateError) as error:
                rows.append(_unplaced_row(role, str(error)))
        placed = await place(descriptors,
                             lambda so_far: self.agents.offers(self._in_use(so_far)))
        for unplaced, reason in placed.reasons():
            rows.append(_unplaced_row(roles[unplaced.descriptor.role_path], reason))
        check()
        new: list[DeployedTask] = []
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
            new.append(task)
        check()
        await asyncio.to_thread((self.workdir.logs / env.id).mkdir, parents=True, exist_ok=True)
        await asyncio.gather(*(self._launch(env, task) for task in new))
        await self._wait(lambda: all(_up(t) or t.gone or t.message for t in new), timeout)
        for task in new:
            reason = ""
            if not _up(task):
                reason = task.message or (f"not running after {timeout:g} s (deploy_timeout)")
            rows.append(task.row(NOT_DEPLOYED, reason))
        check()
        return rows

    async def _launch(self, env: Environment, task: DeployedTask) -> None:
        try:
            # The deploy timeout, not the client's 10 s: an executor launching many tasks
            # on a busy machine answers late (200 at once on 2 cores took > 10 s).
            await self.agents.client(task.agent).launch(
                task.task_id, task.command, environment_id=env.id, log_path=task.log_path,
                timeout=_deploy_timeout(env.workflow))
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
        await self._after_automatic(env)
        if env.busy is not None:
            env.begin(chosen, user)  # raises EnvironmentBusy
        if not env.machine.can(chosen) or chosen not in CONTROLLABLE:  # name what a user may send
            raise TransitionRefused(chosen, env.state,
                                    [e for e in env.machine.allowed() if e in CONTROLLABLE],
                                    env.id)
        env.begin(chosen, user)
        try:
            await self._transition(env, chosen, user)
        finally:
            env.end()
        assert env.last_result is not None
        if env.state is EnvState.DONE:  # EXIT: the tasks are gone, and so is the environment
            await self._forget(env, user)
        return env.last_result

    async def _after_automatic(self, env: Environment) -> None:
        """Let a transition the core or the timer started (a run ending, GO_ERROR) finish
        before a user's request is judged: it takes moments, and answering "busy" would
        only make the user race the engine."""
        deadline = time.monotonic() + TRANSITION_TIMEOUT
        while (env.busy is not None and env.busy.user in AUTOMATIC_USERS
               and time.monotonic() < deadline):
            await asyncio.sleep(BUSY_POLL)

    async def _exit(self, env: Environment) -> list[TaskRow]:
        """EXIT's work: the DESTROY and after_DESTROY hooks, then every task killed, as
        destroy does (EXIT is destroy without its STOP and RESET)."""
        hooks = env.hooks
        assert hooks is not None
        rows: list[TaskRow] = []
        for point in hooks.teardown_points(DESTROY_TRIGGERS):
            rows += (await hooks.run([point], str(env.state), synchronous=True)).rows
        hooks.drop_all()
        return rows + await self._kill_all(env)

    async def _recover(self, env: Environment, user: str, hook_rows: list[TaskRow]
                       ) -> list[TaskRow]:
        """RECOVER's work (recover_plan.py): every task back in STANDBY, gone ones deployed
        again. A critical task that cannot be brought back keeps the environment in ERROR
        (TransitionFailed with its row)."""
        plan = recovery_plan(env.tasks.values())
        rows: list[TaskRow] = []
        if plan.redeploy:
            await self._drop_tasks(env, plan.redeploy)
            rows += await self._deploy(env, user, hook_rows, event=EnvEvent.RECOVER,
                                       only={task.role.path for task in plan.redeploy})
        if plan.stop:
            rows += [row for row in await self._fan_out(
                env, EnvEvent.STOP_ACTIVITY, {t.task_id: {} for t in plan.stop}) if row.failed]
        reset = plan.reset + [t for t in plan.stop if t.state is TaskState.CONFIGURED]
        for event, tasks in ((EnvEvent.RESET, reset), (EnvEvent.RECOVER, plan.recover)):
            if tasks:
                rows += await self._fan_out(env, event, {t.task_id: {} for t in tasks})
        if any(row.failed and self._critical(env, row) for row in rows):
            result = await self._record_failure(env, EnvEvent.RECOVER, user,
                                                [*hook_rows, *rows], False, "failed")
            raise TransitionFailed(f"RECOVER of environment {env.id} failed; the environment "
                                   f"stays {env.state}", result)
        return rows

    async def _drop_tasks(self, env: Environment, tasks: list[DeployedTask]) -> None:
        """Forget tasks whose process is gone (their roles are deployed again)."""
        for task in tasks:
            env.tasks.pop(task.task_id, None)
            self._tasks.pop(task.task_id, None)
        task_ids = [task.task_id for task in tasks]
        await self.store.transaction(lambda store: store.tasks.delete(task_ids))

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
            if task.hook:
                continue
            if not task.controlled:  # a basic task: the transition only, no properties
                arguments[task.task_id] = {}
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
        """START every task but hooks with the run number the run-number step allocated
        and the run's variables (arguments.py)."""
        common = start_arguments(env.workflow.stack_of(env.workflow.root), env.run_number,
                                 env.starts)
        for task in env.tasks.values():
            task.safe_to_stop = False  # a new run: nobody has ended their part yet
        arguments = {task.task_id: dict(common) for task in env.tasks.values() if not task.hook}
        rows = await self._fan_out(env, EnvEvent.START_ACTIVITY, arguments)
        if any(row.failed and self._critical(env, row) for row in rows):
            await self._failed_transition(env, EnvEvent.START_ACTIVITY, user,
                                          [*hook_rows, *rows], False)
        return rows

    async def _simple(self, env: Environment, event: EnvEvent, user: str,
                      hook_rows: list[TaskRow]) -> list[TaskRow]:
        """STOP_ACTIVITY (with the run's end variables, arguments.py) or RESET (none): one
        task transition for every task but hooks."""
        common = (stop_arguments(env.workflow.stack_of(env.workflow.root))
                  if event is EnvEvent.STOP_ACTIVITY else {})
        arguments = {task.task_id: dict(common) for task in env.tasks.values() if not task.hook}
        rows = await self._fan_out(env, event, arguments)
        if any(row.failed and self._critical(env, row) for row in rows):
            await self._failed_transition(env, event, user, [*hook_rows, *rows], False)
        return rows

    async def _run_task_hook(self, env: Environment, role: TaskRole) -> TaskRow:
        """Trigger a hook task on its agent and wait for its run; its row (exit code)."""
        task = next((t for t in env.tasks.values() if t.role.path == role.path), None)
        if task is None:
            return TaskRow("", role.path, "", NOT_DEPLOYED, NOT_DEPLOYED,
                           f"hook task {role.path} is not deployed")
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
        """A critical task or hook failed `event`: the environment goes to ERROR through
        GO_ERROR (its hooks, RUNNING tasks stopped); raises TransitionFailed whose table
        holds `rows` and what failed in GO_ERROR itself."""
        error_rows = await self._go_error_after(env, user or CORE_USER)
        result = await self._record_failure(env, event, user, [*rows, *error_rows], creating,
                                            "failed")
        where = "creation" if creating else event.value
        raise TransitionFailed(f"{where} of environment {env.id} failed; the environment is "
                               f"{env.state}", result)

    async def _go_error_after(self, env: Environment, user: str) -> list[TaskRow]:
        """GO_ERROR as a transition (§1.1.1, §1.1.2): before_GO_ERROR hooks, the RUNNING
        tasks stopped, after_GO_ERROR hooks, the run cleared. A critical GO_ERROR hook
        cannot keep the environment out of ERROR: the state is then forced, as AliECS's
        Sm.SetState("ERROR"). Returns the failed rows of GO_ERROR itself."""
        try:
            await self._transition(env, EnvEvent.GO_ERROR, user, acknowledge=False)
        except TransitionFailed as error:
            self._disarm_auto_stop(env)
            await self._run_work(env, RUN_CLEARED)
            env.machine = EnvironmentStateMachine(EnvState.ERROR, env.id)
            return list(error.result.failed)
        assert env.last_result is not None
        return list(env.last_result.failed)

    async def _stop_running(self, env: Environment) -> list[TaskRow]:
        """GO_ERROR's work: STOP every RUNNING task with the snake_case stop arguments only;
        the outcome is reported, never a reason to stay out of ERROR."""
        common = stop_arguments(env.workflow.stack_of(env.workflow.root), camel=False)
        running = {t.task_id: dict(common) for t in env.tasks.values()
                   if not t.hook and t.state is TaskState.RUNNING}
        if not running:
            return []
        return await self._fan_out(env, EnvEvent.STOP_ACTIVITY, running)

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
                           rows: list[TaskRow], *, announce: bool = True) -> None:
        """Keep the result, commit it to the store, then tell the subscribers; without
        `announce` (a GO_ERROR inside a failed transition, which reports it) only keep it."""
        env.last_transition = event.value
        env.last_result = TransitionResult(env.id, event.value, str(env.state), env.run_number,
                                           tuple(rows), user)
        if announce:
            await self._persist(env)
            self._publish_env(env, user, f"{event} done")

    async def _persist(self, env: Environment) -> None:
        record, tasks = env.record(), env.task_records()
        runtime = runtime_vars.collect(env.workflow)
        tree = (RoleTreeRecord(env.id, env.workflow.to_dict(), runtime)
                if env.last_transition == EnvEvent.DEPLOY.value else None)

        def save(store: Store) -> None:
            store.environments.save(record)
            store.tasks.upsert(tasks)
            if tree is not None:  # the workflow as deployed, once
                store.environments.save_role_tree(tree)
            elif env.last_transition:  # deployed: the tree is there; its variables change
                store.environments.save_runtime_vars(env.id, runtime)

        await self.store.transaction(save)

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
        await self._after_automatic(env)
        if env.state is EnvState.RUNNING and not (allow_in_running_state or force):
            raise DestroyRefused(env.id, env.state)
        env.begin("DESTROY", user)
        rows: list[TaskRow] = []
        try:
            for state, event in ((EnvState.RUNNING, EnvEvent.STOP_ACTIVITY),
                                 (EnvState.CONFIGURED, EnvEvent.RESET)):
                if env.state is state and not force:
                    try:
                        await self._transition(env, event, user)
                    except TransitionFailed as error:
                        log.warning("destroy of %s: %s; killing the tasks anyway", env.id, error)
            rows = await self._teardown_hooks(env)
            if not keep_tasks:
                rows += await self._kill_all(env)
        finally:
            env.end()
        result = TransitionResult(env.id, "DESTROY", EnvState.DONE.value, 0, tuple(rows), user)
        await self._forget(env, user, kill=not keep_tasks)
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

    async def _forget(self, env: Environment, user: str, *, kill: bool = True) -> None:
        """Kill what is left of the environment (or, without `kill`, release its tasks:
        unlocked, they run on), and drop it from memory and the store."""
        self._disarm_auto_stop(env)
        if kill and any(not t.gone and t.state is not TaskState.DONE
                        for t in env.tasks.values()):
            await self._kill_all(env)
        for task_id in env.tasks:
            self._tasks.pop(task_id, None)
        self._environments.pop(env.id, None)
        task_ids = list(env.tasks)

        def delete(store: Store) -> None:
            if kill:
                store.tasks.delete(task_ids)
            else:
                store.tasks.release(env.id)
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
        ends_run = False
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
            task.role.user_vars.update(task_result_vars(body))
            # A command the engine killed (STOP, destroy) did not end its part of a run.
            ends_run = task.safe_to_stop = not task.hook and not killed_by_engine(body)
        elif kind == "DeviceEvent" and body.get("type") == END_OF_STREAM:
            ends_run = task.safe_to_stop = True
        elif kind == "DeviceEvent" and body.get("type") == TASK_INTERNAL_ERROR:
            # The process went to ERROR by itself (§1.2): a critical one takes the
            # environment to ERROR through _task_changed; a non-critical one only shows.
            task.state = TaskState.ERROR
            task.message = "the process reported an internal error (TASK_INTERNAL_ERROR)"
        else:
            return
        self._task_changed(env, task)
        self._signal()
        if ends_run:
            why = ("end of stream" if body.get("type") == END_OF_STREAM
                   else f"its command ended (exit code {task.exit_code})")
            self._ask_run_end(env, f"task {task.role.path} on {task.host}: {why}")

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
            env.begin(EnvEvent.GO_ERROR, CORE_USER)
            try:
                reason = (f"critical task '{task.role.path}' on host '{task.host}' transitioned "
                          f"to ERROR" + (f" ({task.message})" if task.message else ""))
                rows = [task.row(task.state, reason)]
                with contextlib.suppress(TransitionFailed):
                    await self._failed_transition(env, EnvEvent.GO_ERROR, CORE_USER, rows,
                                                  False)
            finally:
                env.end()
        except Exception:
            log.exception("environment %s: GO_ERROR after task %s failed", env.id, task.task_id)
        finally:
            self._going_to_error.discard(env.id)

    # ---------------------------------------------------------------- runs ending by themselves

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work of the manager; close() cancels what is left."""
        job = asyncio.get_running_loop().create_task(work)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def _ask_run_end(self, env: Environment, why: str) -> None:
        """A task said its part of the run is over (§1.2): stop the run once it is safe."""
        if env.id in self._ending or (env.state is not EnvState.RUNNING and env.busy is None):
            return
        self._ending.add(env.id)
        self._spawn(self._end_run(env, CORE_USER, why))

    def _arm_auto_stop(self, env: Environment) -> None:
        """After START_ACTIVITY: the auto-stop timer, when the workflow asks for one."""
        self._disarm_auto_stop(env)
        delay = auto_stop_delay(env.workflow.stack_of(env.workflow.root), env.workflow.origin)
        if delay is None:
            return

        def fire() -> None:
            env.auto_stop = None
            if env.id not in self._ending:
                self._ending.add(env.id)
                self._spawn(self._end_run(env, TIMER_USER, f"auto-stop after {delay:g} s"))

        env.auto_stop = asyncio.get_running_loop().call_later(delay, fire)

    @staticmethod
    def _disarm_auto_stop(env: Environment) -> None:
        if env.auto_stop is not None:
            env.auto_stop.cancel()
            env.auto_stop = None

    async def _end_run(self, env: Environment, user: str, why: str) -> None:
        """STOP_ACTIVITY asked for by the core or the timer, once the transition under way
        (if any) is over; a stop the tasks asked for needs the run to be safe to stop
        then. If that STOP fails and the run is still on, GO_ERROR (§1.2)."""
        try:
            while env.busy is not None and env.id in self._environments:
                await asyncio.sleep(BUSY_POLL)
            if env.id not in self._environments or env.state is not EnvState.RUNNING:
                return
            if user == CORE_USER and not safe_to_stop(env.tasks.values()):
                return
            log.info("environment %s: %s stops run %d: %s", env.id, user, env.run_number, why)
            self._publish_env(env, user, f"STOP_ACTIVITY by {user}: {why}")
            env.begin(EnvEvent.STOP_ACTIVITY, user)
            try:
                await self._transition(env, EnvEvent.STOP_ACTIVITY, user)
            except TransitionFailed as error:
                log.warning("environment %s: the stop by %s failed: %s", env.id, user, error)
                if env.state is EnvState.RUNNING:  # cancelled by a hook: the run is still on
                    with contextlib.suppress(TransitionFailed):
                        await self._failed_transition(env, EnvEvent.STOP_ACTIVITY, user,
                                                      list(error.result.rows), False)
            finally:
                env.end()
        except Exception:
            log.exception("environment %s: the stop by %s failed", env.id, user)
        finally:
            self._ending.discard(env.id)

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

    def _in_use(self, placed: Iterable[Placement] = ()) -> dict[str, list[ResourceUse]]:
        """What every live task holds on its agent, and what `placed` (not launched yet) will."""
        uses: dict[str, list[ResourceUse]] = {}
        for _, task in self._tasks.values():
            if not task.gone:
                uses.setdefault(task.agent, []).append(task.placement.use())
        for placement in placed:
            uses.setdefault(placement.agent_id, []).append(placement.use())
        return uses

    def _publish_env(self, env: Environment, user: str, message: str) -> None:
        self.events.publish(EnvironmentEvent(EventKind.ENVIRONMENT, env.id, str(env.state),
                                             user=user, message=message))

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
            self._disarm_auto_stop(env)
        for job in list(self._jobs):
            job.cancel()
        self.events.close()
        await self.agents.close()
        plugins, self._plugins = self._plugins, None
        if plugins is not None:
            await plugins.destroy_all()

    # --- recovery (H1): the store's environments re-adopted when an engine starts hosting

    recovery: Recovery | None = None  # what recover() found

    async def recover(self) -> Recovery:
        """Reload every environment of the store, reconnect the executors and re-adopt the
        live tasks with the states their executors report (recovery.py).

        A task that died while no engine ran is reported: a row in its environment's last
        result and a task event; a critical one puts a CONFIGURED or RUNNING environment in
        ERROR through the GO_ERROR path (§1.2). An environment that cannot be rebuilt stays
        in the store untouched and is named in `failures`.
        """
        stored = await asyncio.to_thread(load_stored, self.store.store)
        if not stored:
            self.recovery = Recovery()
            return self.recovery
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
                self._tasks[task.task_id] = (env, task)
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
            if rows:
                env.last_result = recovery_result(env, rows)
                lost += rows
            for task in env.tasks.values():
                self._task_changed(env, task)
            if env.state is EnvState.RUNNING:
                self._arm_auto_stop(env)  # the timer starts again, with its full delay
            self._publish_env(env, "", f"recovered: {len(env.tasks) - len(rows)} task(s) "
                                       f"re-adopted, {len(rows)} died while no engine ran")
        for env in rebuilt:
            await self._persist(env)
        self.recovery = Recovery(tuple(env.id for env in rebuilt), tuple(lost), tuple(failures))
        return self.recovery

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
                                lambda role: _descriptor(env.id, role, loader))
            env.tasks[task.task_id] = task
        plugins = await self._loaded_plugins(loader)
        calls = CallRunner(plugins, namespaces=loader.library.namespaces,
                           emulate_unloaded=env.emulate, on_event=self._call_event_sink(env))
        env.hooks = EnvironmentHooks(workflow, env.id, calls,
                                     lambda role: self._run_task_hook(env, role))
        return env

    # --- roster (H4): what roster.py (task listing, cleanup, role queries, logs) reads

    def environments(self) -> list[Environment]:
        """The environments in memory, in creation order."""
        return list(self._environments.values())


# ---------------------------------------------------------------- helpers

def _requester(env: Environment) -> str:
    """Who the environment's current change is for: the user of the transition under way,
    else the core (a task changing on its own)."""
    return env.busy.user if env.busy is not None and env.busy.user else CORE_USER


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
