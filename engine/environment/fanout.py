"""Commands to an environment's tasks on their agents (reference §1.1.2, §7.4).

An environment event's task transition goes to many tasks at once, in parallel (one
batch call per agent), and each answer becomes a row of the transition's table; a hook
task is triggered on its agent and its run waited for (its exit code comes with
BASIC_TASK_TERMINATED).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from engine.environment.environment import DeployedTask, Environment, TaskRow
from engine.environment.statemachine import EnvEvent
from engine.scheduler.local_agent import ANSWER_SEQ, LocalAgentError
from engine.scheduler.local_pool import LocalAgentPool
from engine.templates.functions import new_uid
from engine.workflow.aggregation import TaskState
from engine.workflow.roles import TaskRole

CONFIGURE_TIMEOUT = 120.0  # seconds for a task's CONFIGURE (§1.1.2)
TRANSITION_TIMEOUT = 90.0  # seconds for the other task transitions (defaultResponseTimeout)
HOOK_TIMEOUT = 30.0  # seconds, a hook task's timeout when its role gives none (§2.6)
TERMINATION_WAIT = 2.0  # seconds to wait for a hook run's BASIC_TASK_TERMINATED (its exit code)
NOT_DEPLOYED = "-"
# The task transition of each environment event: (task event, source, destination).
TASK_TRANSITIONS: dict[EnvEvent, tuple[str, TaskState, TaskState]] = {
    EnvEvent.CONFIGURE: ("CONFIGURE", TaskState.STANDBY, TaskState.CONFIGURED),
    EnvEvent.START_ACTIVITY: ("START", TaskState.CONFIGURED, TaskState.RUNNING),
    EnvEvent.STOP_ACTIVITY: ("STOP", TaskState.RUNNING, TaskState.CONFIGURED),
    EnvEvent.RESET: ("RESET", TaskState.CONFIGURED, TaskState.STANDBY),
    EnvEvent.RECOVER: ("RECOVER", TaskState.ERROR, TaskState.STANDBY),
}

TaskChanged = Callable[[Environment, DeployedTask], None]  # a task's state changed: roll it up
Waiter = Callable[[Callable[[], bool], float], Awaitable[bool]]  # until done() or the timeout


async def fan_out(agents: LocalAgentPool, env: Environment, event: EnvEvent,
                  arguments: Mapping[str, Mapping[str, str]], changed: TaskChanged,
                  skip: Collection[str] = ()) -> list[TaskRow]:
    """Send one task transition to every task in `arguments`, in parallel: one batch call
    per agent, each command in it still for one task (§7.4). A row each, in task order:
    a task's failure is its row; an agent that cannot be reached fails each of its rows."""
    task_event, source, destination = TASK_TRANSITIONS[event]
    timeout_ns = int((CONFIGURE_TIMEOUT if event is EnvEvent.CONFIGURE
                      else TRANSITION_TIMEOUT) * 1e9)
    command_id = new_uid()
    tasks = [t for t in env.tasks.values() if t.task_id in arguments
             and t.task_id not in skip]
    rows: dict[str, TaskRow] = {}
    by_agent: dict[str, list[DeployedTask]] = {}
    for task in tasks:
        if task.gone:
            rows[task.task_id] = task.row(task.state, f"the task is gone ({task.mesos_state}"
                                          f"{': ' + task.message if task.message else ''})")
        else:
            by_agent.setdefault(task.agent, []).append(task)

    def body(task: DeployedTask) -> dict[str, Any]:
        return {"name": "MesosCommand_Transition", "id": command_id,
                "environmentId": env.id, "timeout": timeout_ns,
                "arguments": dict(arguments[task.task_id]),
                "targetList": [{"AgentId": {"value": task.agent},
                                "ExecutorId": {"value": task.agent},
                                "TaskId": {"value": task.task_id}}],
                "labels": {}, "source": source.wire, "event": task_event,
                "destination": destination.wire}

    async def on_agent(agent: str, batch: list[DeployedTask]) -> None:
        before = [task.state for task in batch]
        for task in batch:  # their answers come back here, not from the event stream
            task.commanding = True
        try:
            client = agents.client(agent)
        except LocalAgentError as error:
            outcomes: list[dict[str, Any] | LocalAgentError] = [error] * len(batch)
        else:
            outcomes = await client.command_batch([body(task) for task in batch])
        finally:
            for task in batch:
                task.commanding = False
        for task, was, outcome in zip(batch, before, outcomes, strict=True):
            if isinstance(outcome, LocalAgentError):
                rows[task.task_id] = task.row(was, str(outcome))
                continue
            task.state_seq = max(task.state_seq, int(outcome.get(ANSWER_SEQ) or 0))
            if outcome.get("state"):
                task.state = TaskState.parse(str(outcome["state"]))
            changed(env, task)
            error = str(outcome.get("error") or "")
            if not error and task.state is not destination:
                error = f"{task_event} left the task {task.state}, not {destination.wire}"
            rows[task.task_id] = task.row(was, error)

    await asyncio.gather(*(on_agent(agent, batch) for agent, batch in by_agent.items()))
    return [rows[task.task_id] for task in tasks]


async def run_task_hook(agents: LocalAgentPool, wait: Waiter, env: Environment,
                        role: TaskRole) -> TaskRow:
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
        response = await agents.client(task.agent).command(body)
    except LocalAgentError as error:
        return task.row(task.state, str(error))
    await wait(lambda: task.terminations > seen, TERMINATION_WAIT)
    return task.row(task.state, str(response.get("error") or ""))
