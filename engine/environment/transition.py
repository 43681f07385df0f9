"""One environment transition as §1.1.1 orders it: the hooks of each trigger band, the
run-number work and the transition's own work on the tasks (§1.1.2), then its outcome.

A critical hook failing before the state changed cancels the transition and keeps the
old state; one failing after it (enter_, after_) is reported in the table, as the
change cannot be undone, and leads to GO_ERROR, as AliECS's ControlEnvironment does.
A critical task failing the work sends the environment to ERROR through GO_ERROR, a
transition with its hooks. RECOVER brings every task back to STANDBY (recover_plan.py).
Each outcome (environment and task records) is committed to the store before it is
acknowledged.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

from engine.environment import runtime_vars
from engine.environment.arguments import start_arguments, stop_arguments
from engine.environment.deploy import Deployer
from engine.environment.environment import (
    DeployedTask,
    Environment,
    TaskRow,
    TransitionFailed,
    TransitionResult,
)
from engine.environment.fanout import TaskChanged, fan_out
from engine.environment.outcome import critical
from engine.environment.recover_plan import recovery_plan
from engine.environment.runend import CORE_USER, AutoStopTimer
from engine.environment.statemachine import (
    RUN_CLEARED,
    RUN_END,
    RUN_NUMBER,
    RUN_STARTED,
    RUN_STOPPED,
    EnvEvent,
    EnvironmentStateMachine,
    EnvState,
    StepKind,
    destination,
    tasks_step,
)
from engine.environment.taskindex import TaskIndex
from engine.environment.teardown import exit_environment
from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.local_pool import LocalAgentPool, unreachable
from engine.store import AsyncStore, RoleTreeRecord, Store, StoreError
from engine.task.channels import BindMap
from engine.task.errors import ChannelError, TaskBuildError
from engine.task.properties import build_property_map
from engine.templates.render import TemplateError, Where
from engine.workflow.aggregation import TaskState
from engine.workflow.loader import WorkflowLoader

Publish = Callable[[Environment, str, str], None]  # (environment, user, message) to subscribers
# What a transition's work did to the tasks, for the error when its outcome cannot be stored.
DONE_TO_TASKS = {EnvEvent.DEPLOY: "were deployed", EnvEvent.CONFIGURE: "were configured",
                 EnvEvent.START_ACTIVITY: "started", EnvEvent.STOP_ACTIVITY: "stopped",
                 EnvEvent.RESET: "were reset", EnvEvent.RECOVER: "recovered",
                 EnvEvent.GO_ERROR: "were stopped for the error"}


class Transitions:
    """Runs the transitions of the manager's environments."""

    def __init__(self, store: AsyncStore, loader: Callable[[], WorkflowLoader],
                 agents: LocalAgentPool, tasks: TaskIndex, deployer: Deployer,
                 timer: AutoStopTimer, changed: TaskChanged, publish: Publish) -> None:
        self._store = store
        self._loader = loader
        self._agents = agents
        self._tasks = tasks
        self._deployer = deployer
        self._timer = timer
        self._changed = changed
        self._publish = publish
        self._unrecorded: set[str] = set()  # environments whose last outcome the store lacks

    async def run(self, env: Environment, event: EnvEvent, user: str, *,
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
        await self._catch_up(env)
        if event is EnvEvent.RECOVER:
            await self._refuse_behind_cut(env, user)
        source = env.state
        schedule = hooks.schedule.transition(event, source, destination(event, source))
        rows: list[TaskRow] = []
        changed = late_failure = False
        try:
            if event is EnvEvent.DEPLOY:  # hook tasks triggered before the tasks exist
                early = hooks.task_hooks_before(schedule, tasks_step(event))
                if early:
                    rows += await self._deployer.deploy(env, user, [], only=early)
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
            await self.failed(env, event, user, rows, creating)
        await self._acknowledge(env, event, user, rows, announce=acknowledge)

    async def _run_work(self, env: Environment, name: str) -> None:
        """The core's own work between hooks (§1.1.1): the run number and its variables."""
        root = env.workflow.root
        if name == RUN_NUMBER:
            run = await self._store.next_run_number()  # committed before anyone sees it
            env.run_number = run
            root.vars["run_number"] = root.vars["runNumber"] = str(run)
            env.workflow.env_user_vars["run_start_time_ms"] = str(int(time.time() * 1000))
            env.workflow.env_user_vars["run_end_time_ms"] = ""
        elif name == RUN_STARTED:
            env.starts += 1
            self._timer.arm(env)
        elif name == RUN_STOPPED:
            self._timer.disarm(env)
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
                              rows: list[TaskRow], creating: bool, what: str
                              ) -> TransitionResult:
        """Keep a failed or cancelled transition's table as the environment's last result."""
        result = TransitionResult(env.id, event.value, str(env.state), env.run_number,
                                  tuple(rows), user)
        env.last_transition, env.last_result = event.value, result
        if not creating:
            await persist(self._store, env)
        self._publish(env, user, f"{event} {what}")
        return result

    async def _cancel(self, env: Environment, event: EnvEvent, user: str, rows: list[TaskRow],
                      creating: bool) -> None:
        """A critical hook failed before the state changed: the transition is cancelled,
        the environment keeps its state (a run number taken is not reused); raises."""
        if event is EnvEvent.START_ACTIVITY and env.run_number:
            await self._run_work(env, RUN_CLEARED)
        result = await self._record_failure(env, event, user, rows, creating,
                                            "cancelled by a hook")
        where = "creation" if creating else event.value
        raise TransitionFailed(f"{where} of environment {env.id} cancelled: a critical hook "
                               f"failed; the environment stays {env.state}", result)

    async def _work(self, env: Environment, event: EnvEvent, user: str, rows: list[TaskRow],
                    creating: bool) -> list[TaskRow]:
        """The transition's own work (§1.1.2); its rows. `rows` are the hooks' so far, for
        the table of a failure."""
        if event is EnvEvent.DEPLOY:
            return await self._deployer.deploy(env, user, rows)
        if event is EnvEvent.CONFIGURE:
            return await self._configure(env, user, rows, creating=creating)
        if event is EnvEvent.START_ACTIVITY:
            return await self._start(env, user, rows)
        if event is EnvEvent.GO_ERROR:
            return await self._stop_running(env)
        if event is EnvEvent.EXIT:
            return await exit_environment(self._agents, env, self._changed)
        if event is EnvEvent.RECOVER:
            return await self._recover(env, user, rows)
        return await self._simple(env, event, user, rows)

    async def _refuse_behind_cut(self, env: Environment, user: str) -> None:
        """RECOVER deploys lost tasks again; one lost behind a cut channel may still run, and
        would run twice once its agent answers: refused until then (destroy is not)."""
        rows = [task.row(task.state, f"agent {task.agent} is unreachable: the task may still "
                                     "run behind the cut channel; RECOVER once the agent "
                                     "answers again, or destroy the environment")
                for task in env.tasks.values() if unreachable(self._agents, task.agent)]
        if rows:
            agents = ", ".join(sorted({task.agent for task in env.tasks.values()
                                       if unreachable(self._agents, task.agent)}))
            result = await self._record_failure(env, EnvEvent.RECOVER, user, rows, False,
                                                "refused")
            raise TransitionFailed(f"RECOVER of environment {env.id} refused: agent(s) "
                                   f"{agents} unreachable; the environment stays {env.state}",
                                   result)

    async def _refresh_states(self, env: Environment) -> None:
        """RECOVER plans from what the executors say now, not from the last answers this
        engine got: a transition a previous engine sent may have ended after it died, and
        executors tell a command's outcome only to the engine that sent it."""
        for agent in {t.agent for t in env.tasks.values() if t.launched and t.controlled}:
            try:
                listing = await self._agents.client(agent).list_tasks()
            except LocalAgentError:
                continue  # not reachable: the plan deploys its tasks again
            live = {remote.task_id: remote for remote in listing.tasks}
            for task in env.tasks.values():
                remote = live.get(task.task_id)
                if task.agent == agent and task.controlled and remote is not None and remote.pid:
                    task.state = TaskState.parse(remote.state)
                    task.state_seq = max(task.state_seq, listing.last_seq)

    async def _recover(self, env: Environment, user: str, hook_rows: list[TaskRow]
                       ) -> list[TaskRow]:
        """RECOVER's work (recover_plan.py): every task back in STANDBY, gone ones deployed
        again. A critical task that cannot be brought back keeps the environment in ERROR
        (TransitionFailed with its row)."""
        await self._refresh_states(env)
        plan = recovery_plan(env.tasks.values())
        rows: list[TaskRow] = []
        if plan.redeploy:
            await self._drop_tasks(env, plan.redeploy)
            rows += await self._deployer.deploy(env, user, hook_rows, event=EnvEvent.RECOVER,
                                                only={task.role.path for task in plan.redeploy})
        if plan.stop:
            rows += [row for row in await self._fan_out(
                env, EnvEvent.STOP_ACTIVITY, {t.task_id: {} for t in plan.stop}) if row.failed]
        reset = plan.reset + [t for t in plan.stop if t.state is TaskState.CONFIGURED]
        for event, tasks in ((EnvEvent.RESET, reset), (EnvEvent.RECOVER, plan.recover)):
            if tasks:
                rows += await self._fan_out(env, event, {t.task_id: {} for t in tasks})
        if any(row.failed and critical(env, row) for row in rows):
            result = await self._record_failure(env, EnvEvent.RECOVER, user,
                                                [*hook_rows, *rows], False, "failed")
            raise TransitionFailed(f"RECOVER of environment {env.id} failed; the environment "
                                   f"stays {env.state}", result)
        return rows

    async def _drop_tasks(self, env: Environment, tasks: list[DeployedTask]) -> None:
        """Forget tasks whose process is gone (their roles are deployed again)."""
        for task in tasks:
            env.tasks.pop(task.task_id, None)
        task_ids = [task.task_id for task in tasks]
        self._tasks.drop(task_ids)
        await self._store.transaction(lambda store: store.tasks.delete(task_ids))

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
            await self.failed(env, EnvEvent.CONFIGURE, user, rows, creating)
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
        if not any(critical(env, row) for row in rows):
            rows += await self._fan_out(env, EnvEvent.CONFIGURE, arguments,
                                        skip={row.task_id for row in rows})
        if any(row.failed and critical(env, row) for row in rows):
            await self.failed(env, EnvEvent.CONFIGURE, user, rows, creating)
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
        if any(row.failed and critical(env, row) for row in rows):
            await self.failed(env, EnvEvent.START_ACTIVITY, user, [*hook_rows, *rows], False)
        return rows

    async def _simple(self, env: Environment, event: EnvEvent, user: str,
                      hook_rows: list[TaskRow]) -> list[TaskRow]:
        """STOP_ACTIVITY (with the run's end variables, arguments.py) or RESET (none): one
        task transition for every task but hooks."""
        common = (stop_arguments(env.workflow.stack_of(env.workflow.root))
                  if event is EnvEvent.STOP_ACTIVITY else {})
        arguments = {task.task_id: dict(common) for task in env.tasks.values() if not task.hook}
        rows = await self._fan_out(env, event, arguments)
        if any(row.failed and critical(env, row) for row in rows):
            await self.failed(env, event, user, [*hook_rows, *rows], False)
        return rows

    async def _stop_running(self, env: Environment) -> list[TaskRow]:
        """GO_ERROR's work: STOP every RUNNING task with the snake_case stop arguments only;
        the outcome is reported, never a reason to stay out of ERROR."""
        common = stop_arguments(env.workflow.stack_of(env.workflow.root), camel=False)
        running = {t.task_id: dict(common) for t in env.tasks.values()
                   if not t.hook and t.state is TaskState.RUNNING}
        if not running:
            return []
        return await self._fan_out(env, EnvEvent.STOP_ACTIVITY, running)

    async def _fan_out(self, env: Environment, event: EnvEvent,
                       arguments: Mapping[str, Mapping[str, str]],
                       skip: Collection[str] = ()) -> list[TaskRow]:
        """One task transition to the tasks in `arguments` (fanout.py); a row each."""
        return await fan_out(self._agents, env, event, arguments, self._changed, skip)

    async def failed(self, env: Environment, event: EnvEvent, user: str,
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
            await self.run(env, EnvEvent.GO_ERROR, user, acknowledge=False)
        except TransitionFailed as error:
            self._timer.disarm(env)
            await self._run_work(env, RUN_CLEARED)
            env.machine = EnvironmentStateMachine(EnvState.ERROR, env.id)
            return list(error.result.failed)
        assert env.last_result is not None
        return list(env.last_result.failed)

    async def _acknowledge(self, env: Environment, event: EnvEvent, user: str,
                           rows: list[TaskRow], *, announce: bool = True) -> None:
        """Keep the result, commit it to the store, then tell the subscribers; without
        `announce` (a GO_ERROR inside a failed transition, which reports it) only keep it."""
        env.last_transition = event.value
        env.last_result = TransitionResult(env.id, event.value, str(env.state), env.run_number,
                                           tuple(rows), user)
        if not announce:
            return
        try:
            await persist(self._store, env)
        except StoreError as error:
            # The tasks did move: memory follows them, the store catches up at the next
            # transition of this environment (_catch_up) or any later commit of it.
            self._unrecorded.add(env.id)
            self._publish(env, user, f"{event} done; the store could not record it")
            done = DONE_TO_TASKS.get(event, "changed")
            raise StoreError(f"{event}: the tasks {done} (environment {env.id} is {env.state})"
                             f" but the store could not record it: {error}; it will be "
                             "recorded at the next commit") from error
        self._unrecorded.discard(env.id)
        self._publish(env, user, f"{event} done")

    async def _catch_up(self, env: Environment) -> None:
        """Commit the state a full disk kept from the store, before the next transition
        moves the tasks again; if it still cannot, that transition's own commits will say."""
        if env.id not in self._unrecorded:
            return
        try:
            await persist(self._store, env)
        except StoreError:
            return
        self._unrecorded.discard(env.id)


async def persist(store: AsyncStore, env: Environment) -> None:
    """Commit the environment's record, its tasks and its role tree's variables.

    A task's full record is written once; later commits set only its state, status and pid."""
    record, (new_tasks, task_changes) = env.record(), env.task_saves()
    runtime = runtime_vars.collect(env.workflow)
    tree = (RoleTreeRecord(env.id, env.workflow.to_dict(), runtime)
            if env.last_transition == EnvEvent.DEPLOY.value else None)

    def save(target: Store) -> None:
        target.environments.save(record)
        target.tasks.upsert(new_tasks)
        target.tasks.update(task_changes)
        if tree is not None:  # the workflow as deployed, once
            target.environments.save_role_tree(tree)
        elif env.last_transition:  # deployed: the tree is there; its variables change
            target.environments.save_runtime_vars(env.id, runtime)

    await store.transaction(save)
    for saved in new_tasks:  # committed: from now on only their changes are written
        task = env.tasks.get(saved.task_id)
        if task is not None:
            task.stored = True
