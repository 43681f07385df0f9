"""The roster: every task the engine knows of, locked or not, their roles and their logs.

AliECS's task roster (GetTasks, CleanupTasks, GetRoles, §3.1): a task of an
environment is *locked* to it and never killed by a cleanup; a task the
executors run that belongs to no environment (left after a crash, or released
by a destroy that kept its tasks) is *unlocked*, and a cleanup kills it. A task
whose environment is still in the store counts as locked even before recovery
re-adopts it, so a cleanup never kills what an engine is about to take back.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.environment.environment import Environment, TaskInfo, UnknownEnvironmentError
from engine.environment.roleglob import compile_role_glob
from engine.environment.teardown import kill_task
from engine.scheduler.local_agent import LocalAgentError, RemoteTask
from engine.scheduler.local_pool import unreachable
from executor.redaction import redact_mapping
from engine.workflow.roles import Role

if TYPE_CHECKING:
    from engine.environment.manager import EnvironmentManager



class UnknownTaskError(KeyError):
    """No task with this id: not in any environment, not run by any executor."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return f"no task {self.task_id}"


@dataclass(frozen=True)
class RoleInfo:
    """A role as front-ends show it (o2control RoleInfo): its aggregated state and status,
    the tasks under it and its variables (its own layers and the consolidated stack)."""

    name: str
    full_path: str
    kind: str
    state: str
    status: str
    task_ids: tuple[str, ...]
    roles: tuple[RoleInfo, ...]
    defaults: dict[str, str]
    vars: dict[str, str]
    user_vars: dict[str, str]
    consolidated_stack: dict[str, str]
    description: str = ""


def role_info(env: Environment, role: Role) -> RoleInfo:
    """`role` of `env` with its subtree."""
    [info] = _role_infos(env, [role])
    return info


def _role_infos(env: Environment, roles: Iterable[Role]) -> list[RoleInfo]:
    """Several roles of `env`, the aggregated values and task map computed once."""
    values = env.aggregator.values()
    tasks_by_role: dict[str, list[str]] = {}
    for task in env.tasks.values():
        tasks_by_role.setdefault(task.role.path, []).append(task.task_id)
    return [_role_info(env, role, values, tasks_by_role) for role in roles]


def _role_info(env: Environment, role: Role, values: dict[str, tuple[object, object]],
               tasks_by_role: dict[str, list[str]]) -> RoleInfo:
    children = tuple(_role_info(env, child, values, tasks_by_role) for child in role.children)
    own = tuple(tasks_by_role.get(role.path, ()))
    state, status = values.get(role.path, ("UNKNOWN", "UNKNOWN"))
    description = env.workflow.description if role is env.workflow.root else ""
    return RoleInfo(name=role.name, full_path=role.path, kind=role.kind.value, state=str(state),
                    status=str(status),
                    task_ids=own + tuple(t for child in children for t in child.task_ids),
                    roles=children, defaults=redact_mapping(role.defaults),
                    vars=redact_mapping(role.vars), user_vars=redact_mapping(role.user_vars),
                    consolidated_stack=redact_mapping(env.workflow.stack_of(role)),
                    description=description)  # secret-named variables show *** to operators


def workflow_tree(env: Environment) -> RoleInfo:
    return role_info(env, env.workflow.root)


def query_roles(env: Environment, path_glob: str) -> list[RoleInfo]:
    """Every role whose full path matches the glob, depth first, each with its subtree.

    RoleGlobError when the glob is malformed."""
    pattern = compile_role_glob(path_glob)
    return _role_infos(env, (role for role in env.workflow.roles() if pattern.match(role.path)))


class Roster:
    """Task queries and cleanup across the environments of one manager and its executors."""

    def __init__(self, manager: EnvironmentManager) -> None:
        self.manager = manager

    def _locked(self) -> dict[str, TaskInfo]:
        return {task.task_id: task.info() for env in self.manager.environments()
                for task in env.tasks.values()}

    async def _executor_tasks(self) -> list[tuple[str, RemoteTask]]:
        """(agent, task) for every task the executors of the working directory run; the
        agents are connected only when some already run (a listing starts none)."""
        agents = self.manager.agents
        if not agents.started:
            if not await agents.executors_running():
                return []
            await agents.start()
        reachable = {name: client for name, client in agents.clients.items()
                     if not unreachable(agents, name)}  # not a listing's deadline per call
        listings = await asyncio.gather(*(client.list_tasks() for client in
                                          reachable.values()), return_exceptions=True)
        found: list[tuple[str, RemoteTask]] = []
        for name, listing in zip(list(reachable), listings):
            if isinstance(listing, BaseException):
                if not isinstance(listing, LocalAgentError):
                    raise listing
                continue  # an executor that stopped meanwhile runs nothing
            found.extend((name, task) for task in listing.tasks)
        return found

    async def _stored_environments(self) -> set[str]:
        return {record.id for record in await self.manager.store.list_environments()}

    def _unlocked_info(self, agent: str, task: RemoteTask) -> TaskInfo:
        hosts = {spec.name: spec.machine_id for spec in self.manager.agents.specs}
        return TaskInfo(task_id=task.task_id, role_path="", class_name="",
                        host=hosts.get(agent, agent), agent=agent, state=task.state,
                        status=task.status, pid=task.pid or None,
                        control_port=task.control_port or None, critical=False,
                        log_path=task.log_path, locked=False)

    async def _unlocked(self, locked: Iterable[str]) -> dict[str, tuple[str, RemoteTask]]:
        """Executor tasks that belong to no environment, in memory or in the store."""
        held = set(locked)
        stored = await self._stored_environments()
        return {task.task_id: (agent, task) for agent, task in await self._executor_tasks()
                if task.task_id not in held and task.environment_id not in stored}

    async def list_tasks(self) -> list[TaskInfo]:
        """Every task: those of the environments first, then the unlocked ones."""
        locked = self._locked()
        unlocked = await self._unlocked(locked)
        return [*locked.values(),
                *(self._unlocked_info(agent, task) for agent, task in unlocked.values())]

    async def cleanup(self, task_ids: Sequence[str] = ()) -> tuple[list[TaskInfo], list[TaskInfo]]:
        """Kill the unlocked tasks named (all of them when none is named); (killed, running).

        A locked task named is not killed: it is reported among the running ones.
        UnknownTaskError for an id no environment and no executor knows."""
        locked = self._locked()
        unlocked = await self._unlocked(locked)
        for task_id in task_ids:
            if task_id not in locked and task_id not in unlocked:
                raise UnknownTaskError(task_id)
        chosen = [unlocked[t] for t in dict.fromkeys(task_ids) if t in unlocked] \
            if task_ids else list(unlocked.values())

        async def kill(agent: str, task: RemoteTask) -> bool:
            return await kill_task(self.manager.agents, agent, task.task_id) is None

        outcomes = await asyncio.gather(*(kill(agent, task) for agent, task in chosen))
        killed = [self._unlocked_info(agent, task)
                  for (agent, task), done in zip(chosen, outcomes) if done]
        gone = {info.task_id for info in killed}
        running = [*locked.values(), *(self._unlocked_info(agent, task)
                                       for agent, task in unlocked.values()
                                       if task.task_id not in gone)]
        return killed, running

    async def log_source(self, task_id: str) -> tuple[str, str]:
        """(agent, log path) of the task."""
        for env in self.manager.environments():
            task = env.tasks.get(task_id)
            if task is not None:
                return task.agent, task.log_path
        for agent, task in await self._executor_tasks():
            if task.task_id == task_id:
                return agent, task.log_path
        raise UnknownTaskError(task_id)

    async def task_log(self, task_id: str, lines: int) -> str:
        """The last `lines` lines of the task's captured output ("" before it wrote any),
        read where the agent pool keeps it (a local file, a Mesos agent's sandbox)."""
        agent, path = await self.log_source(task_id)
        return await self.manager.agents.task_log(agent, task_id, path, lines)

    def environment(self, environment_id: str) -> Environment:
        for env in self.manager.environments():
            if env.id == environment_id:
                return env
        raise UnknownEnvironmentError(environment_id)
