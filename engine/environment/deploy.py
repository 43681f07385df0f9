"""DEPLOY's work (reference §1.1.2): an environment's task roles placed on the agents'
offers, their tasks launched, and waited for until each runs.

Placement retries as §7.2 (deployment.py). A task is up once launched and, for a
controlled task, once its pid is announced; whatever is not up by the workflow's
`deploy_timeout` gets a row saying so. A critical role left out fails the transition
(DEPLOY, or RECOVER deploying gone tasks again) before anything else is launched.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from engine.environment.deployment import place
from engine.environment.environment import DeployedTask, Environment, TaskRow
from engine.environment.fanout import NOT_DEPLOYED
from engine.environment.outcome import critical, fail
from engine.environment.statemachine import EnvEvent
from engine.environment.taskindex import TaskIndex
from engine.gosyntax import parse_go_duration
from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.local_pool import LocalAgentPool
from engine.scheduler.offers import TaskDescriptor, needs_control_port
from engine.task.command import TaskSpecials, build_task_command
from engine.task.errors import ChannelError, TaskBuildError
from engine.templates.functions import new_uid
from engine.templates.render import TemplateError, Where
from engine.workdir import WorkingDirectory
from engine.workflow.loader import WorkflowLoader
from engine.workflow.roles import TaskRole, Workflow, WorkflowError
from engine.workflow.wiring import task_binds

DEFAULT_DEPLOY_TIMEOUT = 90.0  # seconds, AliECS's deploy_timeout default


class Deployer:
    """Deploys task roles of the manager's environments on its local agents."""

    def __init__(self, loader: Callable[[], WorkflowLoader], workdir: WorkingDirectory,
                 agents: LocalAgentPool, tasks: TaskIndex) -> None:
        self._loader = loader
        self._workdir = workdir
        self._agents = agents
        self._tasks = tasks

    async def deploy(self, env: Environment, user: str, hook_rows: list[TaskRow], *,
                     only: Collection[str] | None = None,
                     event: EnvEvent = EnvEvent.DEPLOY) -> list[TaskRow]:
        """Place and launch every task role that has no task yet (or those of them `only`
        names); wait until each runs (§1.1.2 DEPLOY). Placement retries as §7.2
        (deployment.py). A critical role left out fails `event` (TransitionFailed)."""
        loader = self._loader()
        timeout = deploy_timeout(env.workflow)
        have = {task.role.path for task in env.tasks.values()}
        roles = {role.path: role for role in env.workflow.task_roles()
                 if role.path not in have and (only is None or role.path in only)}
        descriptors: list[TaskDescriptor] = []
        rows: list[TaskRow] = []

        def check() -> None:
            if any(row.failed and critical(env, row) for row in rows):
                fail(env, event, user, [*hook_rows, *rows], "cannot deploy environment")

        for role in roles.values():
            try:
                descriptors.append(descriptor(env.id, role, loader))
            except (WorkflowError, ChannelError, TemplateError) as error:
                rows.append(_unplaced_row(role, str(error)))
        if descriptors:  # as create does: agents connected, offers revived (Mesos) and held
            await self._agents.start()
        placed = await place(descriptors,
                             lambda so_far: self._agents.offers(self._tasks.in_use(so_far)))
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
            log_path = str(self._workdir.logs / env.id / f"{task_id}.log")
            task = DeployedTask(task_id, role, placement, command, log_path, specials=specials)
            env.tasks[task_id] = task
            self._tasks.add(env, task)
            new.append(task)
        check()
        await asyncio.to_thread((self._workdir.logs / env.id).mkdir, parents=True,
                                exist_ok=True)
        await asyncio.gather(*(self._launch(env, task) for task in new))
        await self._tasks.wait(lambda: all(_up(t) or t.gone or t.message for t in new), timeout)
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
            await self._agents.client(task.agent).launch(
                task.task_id, task.command, environment_id=env.id, log_path=task.log_path,
                timeout=deploy_timeout(env.workflow))
        except LocalAgentError as error:
            task.message = str(error)
            self._tasks.signal()


def descriptor(environment_id: str, role: TaskRole, loader: WorkflowLoader) -> TaskDescriptor:
    """What placement needs of a task role (also rebuilt for re-adopted tasks, recovery.py)."""
    task_class = role.task_class
    if task_class is None:
        raise WorkflowError(f"{role.origin}: role {role.path}: no task class loaded")
    return TaskDescriptor(role_path=role.path, task_class=role.class_identifier,
                          wants=task_class.wants, critical=role.critical,
                          constraints=role.constraints,
                          binds=tuple(task_binds(role, loader.renderer)),
                          needs_control_port=needs_control_port(task_class.control_mode),
                          environment_id=environment_id)


def deploy_timeout(workflow: Workflow) -> float:
    text = workflow.root.stack.get("deploy_timeout", "")
    if not text:
        return DEFAULT_DEPLOY_TIMEOUT
    try:
        return parse_go_duration(text) or DEFAULT_DEPLOY_TIMEOUT
    except ValueError:
        raise WorkflowError(f"{workflow.origin}: deploy_timeout {text!r} is not a duration "
                            "(e.g. 90s)") from None


def _timeout_ns(role: TaskRole) -> int:
    """The role's `timeout` (a Go duration; the loader checked it) in nanoseconds."""
    try:
        return int(parse_go_duration(role.timeout or "0s") * 1e9)
    except ValueError:
        return 0


def _unplaced_row(role: TaskRole, reason: str) -> TaskRow:
    return TaskRow("", role.path, "", NOT_DEPLOYED, NOT_DEPLOYED, reason)


def _up(task: DeployedTask) -> bool:
    """Launched and, for a controlled task, its pid announced."""
    return task.launched and (task.pid is not None or not task.controlled)
