"""Taking an environment down (reference §1.1.4): its teardown hooks and its tasks killed.

destroy runs the leave_<state> hooks, then DESTROY and after_DESTROY, every call
waited for at its trigger; their failures are reported and logged, never a reason to
stop. EXIT is destroy without its STOP and RESET: the DESTROY hooks, then the kill.
A task its executor no longer knows counts as killed; one behind a cut channel is killed
when its agent answers again.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from engine.environment.environment import DeployedTask, Environment, TaskRow
from engine.environment.fanout import TaskChanged
from engine.scheduler.local_agent import LocalAgentError
from engine.scheduler.local_pool import LocalAgentPool, unreachable
from engine.workflow.aggregation import TaskState, TaskStatus

log = logging.getLogger("engine.environment")

KILL_TIMEOUT = 60.0  # seconds for an executor to take one task down
DESTROY_TRIGGERS = ("DESTROY", "after_DESTROY")


async def teardown_hooks(env: Environment) -> list[TaskRow]:
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


async def exit_environment(agents: LocalAgentPool, env: Environment,
                           changed: TaskChanged) -> list[TaskRow]:
    """EXIT's work: the DESTROY and after_DESTROY hooks, then every task killed, as
    destroy does (EXIT is destroy without its STOP and RESET)."""
    hooks = env.hooks
    assert hooks is not None
    rows: list[TaskRow] = []
    for point in hooks.teardown_points(DESTROY_TRIGGERS):
        rows += (await hooks.run([point], str(env.state), synchronous=True)).rows
    hooks.drop_all()
    return rows + await kill_all(agents, env, changed)


async def kill_task(agents: LocalAgentPool, agent: str, task_id: str) -> LocalAgentError | None:
    """Kill one task on its agent: None once it is gone (one its executor no longer knows
    counts as killed), else why it could not be."""
    try:
        await agents.client(agent).kill(task_id, KILL_TIMEOUT)
    except LocalAgentError as error:
        if error.code is not grpc.StatusCode.NOT_FOUND:
            return error
    return None


async def kill_all(agents: LocalAgentPool, env: Environment,
                   changed: TaskChanged) -> list[TaskRow]:
    """Kill every task of `env` on its agent, in parallel; a row each."""
    async def kill(task: DeployedTask) -> TaskRow:
        before = task.state
        error = await kill_task(agents, task.agent, task.task_id)
        if error is not None:
            if unreachable(agents, task.agent):  # alive behind a cut channel
                agents.kill_when_back(task.agent, task.task_id)
                task.kill_owed = True  # the store keeps the debt too (manager._forget)
                return task.row(before, f"{error}; the task will be killed when the "
                                        "agent answers again")
            return task.row(before, str(error))
        task.state = TaskState.DONE
        task.status = TaskStatus.INACTIVE
        changed(env, task)
        return task.row(before)

    return list(await asyncio.gather(*(kill(task) for task in env.tasks.values())))
