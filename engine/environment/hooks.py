"""The hooks of one environment, run at their triggers (reference §1.1.1, §1.1.4, §8).

Hooks are call roles (an integration-plugin call, started at its trigger and
collected at its await) and hook tasks (a basic task whose role has a trigger,
deployed with the others and run on its agent when triggered; await = trigger).
`HookSchedule` says which hooks start and which are collected at each (trigger,
weight); `EnvironmentHooks` does it: at each point it starts the calls, collects
the calls awaited there, then runs the hook tasks, and stops at the first point
where a critical hook failed. Every failure becomes a row of the transition's
table (role, reason, exit code) and is logged; a successful hook task gets a row
too, with its exit code, so the table shows it ran.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from engine.environment.environment import TaskRow
from engine.environment.statemachine import (
    HookPoint,
    HookSchedule,
    TransitionSchedule,
    WeightBand,
)
from engine.integration import Call, CallResult, CallRunner, PendingCalls
from engine.workflow.roles import CallRole, Role, TaskRole, Trigger, Workflow

log = logging.getLogger("engine.environment.hooks")

TaskHookRunner = Callable[[TaskRole], Awaitable[TaskRow]]  # triggers one hook task: its row


@dataclass(frozen=True)
class HookOutcome:
    """What the hooks of some points did: their rows, and whether a critical one failed."""

    rows: tuple[TaskRow, ...]
    critical_failure: bool

    @property
    def failures(self) -> tuple[TaskRow, ...]:
        return tuple(row for row in self.rows if row.failed)


class EnvironmentHooks:
    """The hook roles of one environment, the calls it has under way, and how to run them."""

    def __init__(self, workflow: Workflow, environment_id: str, calls: CallRunner,
                 run_task_hook: TaskHookRunner) -> None:
        self.workflow = workflow
        self.environment_id = environment_id
        self.calls = calls
        self.run_task_hook = run_task_hook
        self.schedule = HookSchedule.from_workflow(workflow)
        self.pending = PendingCalls()
        self.roles: dict[str, Role] = {
            role.path: role for role in workflow.roles()
            if isinstance(role, (TaskRole, CallRole)) and role.trigger is not None}

    async def run(self, points: Iterable[HookPoint], state: str, *,
                  synchronous: bool = False) -> HookOutcome:
        """The hooks of `points`, in order; stops after the first point where a critical
        hook failed. `state` is the environment's, for the rows of calls. `synchronous`
        (teardown) waits for each call at its trigger, whatever its await."""
        rows: list[TaskRow] = []
        for point in points:
            started = [self._start(self.roles[path]) for path in point.starts
                       if isinstance(self.roles[path], CallRole)]
            if synchronous:
                results = list(await asyncio.gather(*(call.wait() for call in started)))
            else:
                self.pending.add(started)
                results = await self.pending.collect(point.trigger)
            failed = False
            for result in results:
                if not result.ok:
                    rows.append(failed_call_row(result, state))
                    failed = failed or result.critical
            tasks = [role for path in point.starts
                     if isinstance(role := self.roles[path], TaskRole)]
            for role, row in zip(tasks, await asyncio.gather(
                    *(self.run_task_hook(role) for role in tasks))):
                rows.append(row)
                if row.failed:
                    log.log(logging.ERROR if role.critical else logging.WARNING,
                            "environment %s: hook task %s at %s failed: %s",
                            self.environment_id, role.path, point.trigger, row.reason)
                    failed = failed or role.critical
            if failed:
                return HookOutcome(tuple(rows), True)
        return HookOutcome(tuple(rows), False)

    def task_hooks_before(self, schedule: TransitionSchedule, work: str) -> set[str]:
        """Paths of the hook tasks a transition triggers before its step `work` (e.g. the
        before_DEPLOY ones, which must be deployed before DEPLOY's own task step)."""
        paths: set[str] = set()
        for scheduled in schedule.steps:
            if scheduled.step.name == work:
                break
            paths.update(path for point in scheduled.points for path in point.starts
                         if isinstance(self.roles[path], TaskRole))
        return paths

    def teardown_points(self, names: Sequence[str]) -> list[HookPoint]:
        """Every point of these triggers, both weight bands, ascending (DESTROY, after_DESTROY)."""
        return [point for name in names for band in (WeightBand.NEGATIVE, WeightBand.NON_NEGATIVE)
                for point in self.schedule.phase(name, band)]

    def drop(self, awaits: Iterable[Trigger]) -> list[Call]:
        """Stop waiting for the calls awaited at `awaits` (a cancelled transition, a teardown):
        they finish on their own threads and their results are ignored; returns them."""
        gone = set(awaits)
        kept = PendingCalls()
        dropped: list[Call] = []
        for call in self.pending.outstanding():
            if call.await_ in gone:
                dropped.append(call)
            else:
                kept.add([call])
        self.pending = kept
        for call in dropped:
            log.warning("environment %s: %s is no longer awaited (at %s); its result will be "
                        "ignored", self.environment_id, call.describe, call.await_)
        return dropped

    def drop_all(self) -> list[Call]:
        return self.drop(call.await_ for call in self.pending.outstanding()
                         if call.await_ is not None)

    def _start(self, role: Role) -> Call:
        assert isinstance(role, CallRole)
        return self.calls.start(role, self.environment_id, self.workflow.stack_of(role))


def failed_call_row(result: CallResult, state: str) -> TaskRow:
    """The table row of a failed call: the role path and the call's own message."""
    return TaskRow("", result.role_path, "", state, state, result.error)
