"""Transitions nobody asked for (reference §1.2): GO_ERROR after a critical task failed,
and STOP_ACTIVITY when a run ends by itself (runend.py: its tasks say so, or the
auto-stop timer fires). They run in the background as the core or the timer; a user's
request meanwhile is answered "busy" at once, naming them (DESIGN: never a silent wait).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from engine.environment.environment import (
    DeployedTask,
    Environment,
    TaskRow,
    TransitionFailed,
)
from engine.environment.runend import CORE_USER, TIMER_USER, safe_to_stop
from engine.environment.statemachine import EnvEvent, EnvState
from engine.environment.transition import Publish, Transitions
from engine.workflow.aggregation import TaskState

log = logging.getLogger("engine.environment")

ERROR_GRACE = 0.5  # seconds between a critical task's ERROR and the environment's GO_ERROR
BUSY_POLL = 0.05  # seconds between looks at a busy environment, for a stop the core asks for


class Automatic:
    """The background transitions of the manager's environments, and their jobs."""

    def __init__(self, environments: Mapping[str, Environment],
                 transitions: Callable[[], Transitions], publish: Publish) -> None:
        self._environments = environments
        self._transitions = transitions
        self._publish = publish
        self._going_to_error: set[str] = set()
        self._ending: set[str] = set()  # environments whose run the core or timer is stopping
        self._jobs: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work of the manager; close() cancels what is left."""
        job = asyncio.get_running_loop().create_task(work)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()

    def task_changed(self, env: Environment, task: DeployedTask) -> None:
        """A critical task in ERROR while the environment is CONFIGURED or RUNNING puts it
        in ERROR (§1.2), once the grace has passed."""
        if (task.state is TaskState.ERROR and env.busy is None
                and env.aggregator.state(env.aggregator.root) is TaskState.ERROR
                and env.state in (EnvState.CONFIGURED, EnvState.RUNNING)
                and env.id not in self._going_to_error):
            self._going_to_error.add(env.id)
            self._spawn(self._go_error(env, task))

    def transition_ended(self, env: Environment) -> None:
        """A critical task that failed while a transition ran, after answering it (so the
        transition did not report it), is acted on once the transition is over."""
        failed = [t for t in env.tasks.values() if t.state is TaskState.ERROR]
        if failed:
            self.task_changed(env, next((t for t in failed if t.critical), failed[0]))

    async def _go_error(self, env: Environment, task: DeployedTask) -> None:
        """GO_ERROR after a critical task's failure, once the grace of §1.2 has passed
        (a transition that started meanwhile reports the failure itself)."""
        try:
            await asyncio.sleep(ERROR_GRACE)
            if env.busy is not None or env.id not in self._environments \
                    or env.state not in (EnvState.CONFIGURED, EnvState.RUNNING):
                return
            reason = (f"critical task '{task.role.path}' on host '{task.host}' transitioned "
                      f"to ERROR" + (f" ({task.message})" if task.message else ""))
            await self._to_error(env, [task.row(task.state, reason)])
        except Exception:
            log.exception("environment %s: GO_ERROR after task %s failed", env.id, task.task_id)
        finally:
            self._going_to_error.discard(env.id)

    def go_error(self, env: Environment, rows: list[TaskRow]) -> None:
        """GO_ERROR by the core now, `rows` saying why (recovery found a transition cut
        short by the death of the engine's host)."""
        if env.id in self._going_to_error:
            return
        self._going_to_error.add(env.id)

        async def work() -> None:
            try:
                await self._to_error(env, rows)
            except Exception:
                log.exception("environment %s: GO_ERROR after recovery failed", env.id)
            finally:
                self._going_to_error.discard(env.id)

        self._spawn(work())

    async def _to_error(self, env: Environment, rows: list[TaskRow]) -> None:
        env.begin(EnvEvent.GO_ERROR, CORE_USER)
        try:
            with contextlib.suppress(TransitionFailed):
                await self._transitions().failed(env, EnvEvent.GO_ERROR, CORE_USER, rows, False)
        finally:
            env.end()

    def ask_run_end(self, env: Environment, why: str) -> None:
        """A task said its part of the run is over (§1.2): stop the run once it is safe."""
        if env.id in self._ending or (env.state is not EnvState.RUNNING and env.busy is None):
            return
        self._ending.add(env.id)
        self._spawn(self._end_run(env, CORE_USER, why))

    def auto_stop_due(self, env: Environment, delay: float) -> None:
        """The auto-stop timer fired (runend.AutoStopTimer): stop the run as TIMER."""
        if env.id not in self._ending:
            self._ending.add(env.id)
            self._spawn(self._end_run(env, TIMER_USER, f"auto-stop after {delay:g} s"))

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
            self._publish(env, user, f"STOP_ACTIVITY by {user}: {why}")
            env.begin(EnvEvent.STOP_ACTIVITY, user)
            transitions = self._transitions()
            try:
                await transitions.run(env, EnvEvent.STOP_ACTIVITY, user)
            except TransitionFailed as error:
                log.warning("environment %s: the stop by %s failed: %s", env.id, user, error)
                if env.state is EnvState.RUNNING:  # cancelled by a hook: the run is still on
                    with contextlib.suppress(TransitionFailed):
                        await transitions.failed(env, EnvEvent.STOP_ACTIVITY, user,
                                                 list(error.result.rows), False)
            finally:
                env.end()
        except Exception:
            log.exception("environment %s: the stop by %s failed", env.id, user)
        finally:
            self._ending.discard(env.id)
