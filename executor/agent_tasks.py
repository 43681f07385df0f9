"""The task-handling core of an executor: launch, command, kill and list its tasks.

Shared by the transports: the local agent's gRPC service (agent_server.py) and
the Mesos custom executor (mesos_executor.py) both hand their requests here, so
a task behaves the same whichever way it was launched. What the tasks report
goes to a `publish` callback, or by default to a bounded backlog that a local
engine reads (and re-reads after reconnecting) by sequence number.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from executor.basic_task import CommandTask
from executor.command import CommandError, TaskCommand
from executor.controlled_task import ControlledTask
from executor.hook_task import HookTask
from executor.protos import agent_pb2
from executor.reports import HookResult, Report, StatusUpdate, TaskIdentity, TransitionResponse
from executor.task import Task
from executor.tasks import make_task

log = logging.getLogger("executor.agent")

BACKLOG = 10000  # events kept for an engine that reconnects
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # also the name of its default log file
TRANSITION = "MesosCommand_Transition"
TRIGGER_HOOK = "MesosCommand_TriggerHook"


class AgentError(Exception):
    """A request this executor refuses; `code` is the gRPC status it answers with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- event backlog

class EventBacklog:
    """Executor→core bodies with sequence numbers; the newest BACKLOG kept for late readers."""

    def __init__(self, size: int = BACKLOG) -> None:
        self._events: deque[tuple[int, str]] = deque(maxlen=size)
        self.last_seq = 0
        self._changed: asyncio.Event = asyncio.Event()

    def append(self, body: Mapping[str, Any]) -> int:
        self.last_seq += 1
        self._events.append((self.last_seq, json.dumps(body)))
        self._changed.set()
        self._changed = asyncio.Event()
        return self.last_seq

    def since(self, after: int) -> list[tuple[int, str]]:
        return [event for event in self._events if event[0] > after]

    async def follow(self, after: int) -> AsyncIterator[tuple[int, str]]:
        """Every event with seq > after, then each new one as it comes; never ends by itself."""
        cursor = after
        while True:
            changed = self._changed
            for seq, body in self.since(cursor):
                cursor = seq
                yield seq, body
            if self.last_seq <= cursor:
                await changed.wait()


# ---------------------------------------------------------------- the executor's tasks

@dataclass(frozen=True)
class Answer:
    """A command's MesosCommandResponse body and the seq of the event that tells the same
    answer to every reader of Events (0: not told there: a hook's, or under Mesos). An
    engine that did not wait for the answer (its sender died) learns it from that event;
    one that did skips it by its seq."""

    body: dict[str, Any]
    seq: int = 0


@dataclass
class AgentTask:
    """One task of this executor and the latest status it reported."""

    task: Task
    status: str = ""


class AgentTasks:
    """What an executor does, apart from the wire: launch, command, kill, list, report.

    `publish` receives every report but the answers to commands (those are returned);
    without it they go to `backlog`. `agent_id` and `executor_id` are what the tasks'
    DeviceEvent origins name: the agent's name by default, the Mesos ids under Mesos.
    """

    def __init__(self, name: str, log_dir: Path | None = None, *,
                 publish: Callable[[Report], None] | None = None) -> None:
        self.name = name
        self.log_dir = log_dir
        self.agent_id = name
        self.executor_id = name
        self.instance = executor_instance()
        self.backlog = EventBacklog()
        self._publish = publish
        self._tasks: dict[str, AgentTask] = {}
        self._starting: set[asyncio.Task[bool]] = set()
        self._transitions: set[asyncio.Task[Answer]] = set()

    def _reporter(self, task_id: str) -> Callable[[Report], None]:
        def report(record: Report) -> None:
            if isinstance(record, StatusUpdate) and task_id in self._tasks:
                self._tasks[task_id].status = record.state.name
            if isinstance(record, (TransitionResponse, HookResult)):
                return  # the answer to a Command call: its reply carries it
            if self._publish is not None:
                self._publish(record)
            else:
                self.backlog.append(record.to_message())
        return report

    def launch(self, task_id: str, command_json: str, environment_id: str = "",
               detector: str = "", log_path: str = "") -> None:
        """Register the task and start it in the background; its statuses are published."""
        if not TASK_ID.fullmatch(task_id):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"launch: task id {task_id!r} is not letters, digits, '.', '_', '-'")
        if task_id in self._tasks:
            raise AgentError(grpc.StatusCode.ALREADY_EXISTS,
                             f"launch: task {task_id} already exists on agent {self.name}")
        try:
            command = TaskCommand.from_json(command_json)
        except (CommandError, ValueError) as error:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"launch of task {task_id}: bad TaskCommandInfo: {error}") from None
        path = Path(log_path) if log_path else (
            self.log_dir / f"{task_id}.log" if self.log_dir is not None else None)
        identity = TaskIdentity(task_id=task_id, agent_id=self.agent_id,
                                executor_id=self.executor_id, environment_id=environment_id,
                                detector=detector)
        try:
            task = make_task(identity, command, self._reporter(task_id), log_path=path)
        except CommandError as error:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"launch of task {task_id}: {error}") from None
        self._tasks[task_id] = AgentTask(task)
        starting = asyncio.ensure_future(task.launch())
        self._starting.add(starting)
        starting.add_done_callback(self._started)

    def _started(self, starting: asyncio.Task[bool]) -> None:
        self._starting.discard(starting)
        if not starting.cancelled() and starting.exception() is not None:
            log.error("agent %s: a launch failed", self.name, exc_info=starting.exception())

    def find(self, task_id: str) -> Task | None:
        """The task of that id, None if this executor has none (or forgot it at its kill)."""
        entry = self._tasks.get(task_id)
        return entry.task if entry is not None else None

    def _task(self, task_id: str, what: str) -> Task:
        entry = self._tasks.get(task_id)
        if entry is None:
            raise AgentError(grpc.StatusCode.NOT_FOUND,
                             f"{what}: no task {task_id!r} on agent {self.name}")
        return entry.task

    async def command(self, body_json: str) -> Answer:
        """Run a §7.4 MesosCommand; the MesosCommandResponse body it gives.

        A transition runs to its end even if the caller goes (the engine that sent it died):
        cut off, the executor would no longer know the state its task is in."""
        try:
            body = json.loads(body_json)
        except ValueError as error:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"command body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT, "command body is not a JSON object")
        name = body.get("name")
        targets = body.get("targetList") or []
        arguments = body.get("arguments") or {}
        if not isinstance(targets, list) or len(targets) != 1:
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: exactly one target required in targetList, got {targets!r}")
        try:
            task_id = str(targets[0]["TaskId"]["value"])
        except (KeyError, TypeError):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: target has no TaskId.value") from None
        if not isinstance(arguments, dict):
            raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: arguments must be an object, not {arguments!r}")
        task = self._task(task_id, str(name))
        arguments = {str(k): str(v) for k, v in arguments.items()}
        command_id = str(body.get("id", ""))
        environment_id = str(body.get("environmentId", ""))
        if name == TRANSITION:
            timeout = body.get("timeout")
            seconds = timeout / 1e9 if isinstance(timeout, (int, float)) and timeout > 0 else None
            running = asyncio.ensure_future(self._transition(
                task, str(body.get("source", "")), str(body.get("event", "")), arguments,
                seconds, command_id, environment_id))
            self._transitions.add(running)
            running.add_done_callback(self._transitions.discard)
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:  # the caller went: nobody else hears how it ends
                running.add_done_callback(self._ended_unheard)
                raise
        if name == TRIGGER_HOOK:
            if not isinstance(task, HookTask):
                raise AgentError(grpc.StatusCode.FAILED_PRECONDITION,
                                 f"{name}: task {task_id} is not a hook task")
            result = await task.trigger(arguments, command_id=command_id,
                                        environment_id=environment_id)
            return Answer(result.to_message())
        raise AgentError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"unknown command {name!r} (expected {TRANSITION} or {TRIGGER_HOOK})")

    async def _transition(self, task: Task, source: str, event: str,
                          arguments: Mapping[str, str], seconds: float | None,
                          command_id: str, environment_id: str) -> Answer:
        response = await task.transition(source, event, arguments, seconds,
                                         command_id=command_id, environment_id=environment_id)
        body = response.to_message()
        return Answer(body, self.backlog.append(body) if self._publish is None else 0)

    def _ended_unheard(self, running: asyncio.Task[Answer]) -> None:
        """The end of a transition whose caller went (its answer is on the event stream)."""
        if running.cancelled():
            return
        if (error := running.exception()) is not None:
            log.error("agent %s: a transition whose caller went failed", self.name,
                      exc_info=error)
            return
        body = running.result().body
        log.warning("agent %s: task %s: a transition whose caller went ended in %s%s", self.name,
                    body.get("taskId"), body.get("state"),
                    f" ({body['error']})" if body.get("error") else "")

    async def command_batch(self, bodies: Sequence[str]) -> list[agent_pb2.CommandOutcome]:
        """Run several MesosCommands at once, each as `command` would; an outcome per body,
        in order. A refused body (AgentError) is its own outcome: the others still run."""
        async def one(body_json: str) -> agent_pb2.CommandOutcome:
            try:
                answer = await self.command(body_json)
            except AgentError as error:
                return agent_pb2.CommandOutcome(code=error.code.value[0], error=str(error))
            except Exception as error:  # a fault of ours: this command's outcome, not all's
                log.exception("agent %s: command %.200s failed", self.name, body_json)
                return agent_pb2.CommandOutcome(code=grpc.StatusCode.UNKNOWN.value[0],
                                                error=f"agent {self.name}: {error!r}")
            return agent_pb2.CommandOutcome(body_json=json.dumps(answer.body), seq=answer.seq)
        return list(await asyncio.gather(*(one(body) for body in bodies)))

    async def kill(self, task_id: str) -> None:
        """Take the task down and forget it; its terminal status is published."""
        task = self._task(task_id, "kill")
        await task.kill()
        self._tasks.pop(task_id, None)

    async def kill_all(self) -> None:
        """Every task down at once; a task still starting is stopped by its kill."""
        task_ids = list(self._tasks)
        outcomes = await asyncio.gather(*(self.kill(task_id) for task_id in task_ids),
                                        return_exceptions=True)
        for task_id, outcome in zip(task_ids, outcomes):
            if isinstance(outcome, BaseException):
                log.error("agent %s: taking task %s down failed", self.name, task_id,
                          exc_info=outcome)

    def list_tasks(self) -> agent_pb2.ListTasksReply:
        reply = agent_pb2.ListTasksReply(agent_name=self.name, last_seq=self.backlog.last_seq,
                                         instance=self.instance)
        for task_id, entry in self._tasks.items():
            task = entry.task
            reply.tasks.append(agent_pb2.TaskInfo(
                task_id=task_id, environment_id=task.identity.environment_id,
                detector=task.identity.detector, control_mode=str(task.command.control_mode),
                pid=_pid(task), state=str(task.state), control_port=task.command.control_port or 0,
                status=entry.status, log_path=str(task.log_path or "")))
        return reply


def executor_instance() -> str:
    """This run of the executor: its pid and start, which no later process shares."""
    pid = os.getpid()
    return f"{pid}-{process_start(pid) or time.time_ns()}"


def _pid(task: Task) -> int:
    """The task's live process, 0 when it has none."""
    process = None
    if isinstance(task, ControlledTask):
        process = task.process
    elif isinstance(task, CommandTask) and task.run is not None:
        process = task.run.process
    if process is None or process.returncode is not None:
        return 0
    if isinstance(task, ControlledTask) and task.pid:
        return task.pid  # as announced (AnnounceTaskPIDEvent): the one its GetState reports
    return process.pid


def process_start(pid: int) -> int | None:
    """When a live process started (clock ticks since boot, /proc/PID/stat); None if gone or a zombie.

    With the pid it names one process for good: a reused pid has another start.
    """
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line[stat_line.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5), starttime
