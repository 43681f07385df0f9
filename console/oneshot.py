"""One environment from creation to destruction: `nutshell run` and `env create --auto`.

Create (DEPLOY, CONFIGURE), START, hold while the run goes on (for a given time,
or until it ends by itself: end of stream, auto-stop, a critical failure), STOP
if still running, destroy. Whatever happens — a failed step, SIGINT, SIGTERM —
what was created is destroyed before returning: a signal only asks the
sequence to skip ahead to the destruction, never cancels an engine call (a
creation under way finishes first, so nothing it deployed is left behind).

Every step's result table is kept; the summary lists the failed rows, and a
run is a success only when no row failed and nothing interrupted it.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.client import AnyEngine
from console.tables import result_lines
from engine import USER_ERRORS, EnvironmentInfo, TaskRow, TransitionFailed, TransitionResult
from engine.api import RemoteEngineError

POLL = 0.2  # seconds between looks at a running environment's state
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class Step:
    """One step of the sequence and what came of it."""

    name: str
    seconds: float
    rows: tuple[TaskRow, ...] = ()
    error: str = ""  # the step failed as a whole (its first line)

    @property
    def failed(self) -> tuple[TaskRow, ...]:
        return tuple(row for row in self.rows if row.failed)

    @property
    def ok(self) -> bool:
        return not self.error and not self.failed


@dataclass
class Outcome:
    """What a one-shot did: the environment, its run, each step, and how it ended."""

    workflow: str
    environment: EnvironmentInfo | None = None
    run_number: int = 0
    steps: list[Step] = field(default_factory=list)
    ended_by: str = ""  # why the hold ended: "duration", "run ended (CONFIGURED)", a signal…
    interrupted: signal.Signals | None = None

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(step.ok for step in self.steps)

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return SIGNAL_EXIT.get(self.interrupted, 1)
        return 0 if self.ok else 1


class OneShot:
    """Runs the sequence on one engine; `report` is told of each step as it completes."""

    def __init__(self, engine: AnyEngine, workflow: str, variables: Mapping[str, Any],
                 *, emulate: bool, user: str, duration: float | None,
                 report: Callable[[Outcome, Step], None] = lambda outcome, step: None) -> None:
        self.engine = engine
        self.variables = dict(variables)
        self.emulate = emulate
        self.user = user
        self.duration = duration
        self.report = report
        self.outcome = Outcome(workflow)
        self._stop = asyncio.Event()

    def interrupt(self, signum: signal.Signals) -> None:
        if self.outcome.interrupted is None:
            self.outcome.interrupted = signum
        self._stop.set()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in SIGNAL_EXIT:
            loop.add_signal_handler(signum, self.interrupt, signum)
        try:
            yield
        finally:
            for signum in SIGNAL_EXIT:
                loop.remove_signal_handler(signum)

    async def run(self) -> Outcome:
        with self._signals():
            created = await self._create()
            if created is not None:
                try:
                    if not self._stop.is_set() and await self._start():
                        await self._hold()
                        await self._stop_run()
                finally:
                    await self._destroy()
        return self.outcome

    async def _step(self, name: str, work: Callable[[], Awaitable[Any]]) -> tuple[Step, Any]:
        """Run one engine call; its table kept, a user error recorded as the step's failure."""
        began = time.monotonic()
        value: Any = None
        rows: tuple[TaskRow, ...] = ()
        error = ""
        try:
            value = await work()
        except TransitionFailed as failed:
            rows, error = failed.result.rows, str(failed).splitlines()[0]
        except (*USER_ERRORS, RemoteEngineError) as failed:
            error = str(failed).splitlines()[0]
        if isinstance(value, TransitionResult):
            rows = value.rows
            self.outcome.run_number = value.run_number or self.outcome.run_number
        elif isinstance(value, EnvironmentInfo):
            rows = value.last_result
            self.outcome.environment = value
        step = Step(name, time.monotonic() - began, rows, error)
        self.outcome.steps.append(step)
        self.report(self.outcome, step)
        return step, value

    async def _create(self) -> EnvironmentInfo | None:
        _, info = await self._step("CREATE", lambda: self.engine.create_environment(
            self.outcome.workflow, self.variables, emulate=self.emulate, user=self.user))
        return info

    @property
    def _id(self) -> str:
        assert self.outcome.environment is not None
        return self.outcome.environment.id

    async def _start(self) -> bool:
        step, _ = await self._step("START_ACTIVITY", lambda: self.engine.control_environment(
            self._id, "START_ACTIVITY", user=self.user))
        return not step.error

    async def _hold(self) -> None:
        """While RUNNING: until the duration has passed, the run ended or a signal came."""
        deadline = None if self.duration is None else time.monotonic() + self.duration
        while True:
            if self._stop.is_set():
                assert self.outcome.interrupted is not None
                self.outcome.ended_by = self.outcome.interrupted.name
                return
            info = await self.engine.get_environment(self._id)
            if info.state != "RUNNING":
                self.outcome.ended_by = f"run ended ({info.state})"
                if info.state != "CONFIGURED":  # a critical failure: keep its table
                    step = Step(info.last_transition or info.state, 0.0, info.last_result,
                                f"environment {self._id} went to {info.state} during the run")
                    self.outcome.steps.append(step)
                    self.report(self.outcome, step)
                return
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0:
                self.outcome.ended_by = "duration"
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), left)

    async def _stop_run(self) -> None:
        info = await self.engine.get_environment(self._id)
        if info.state == "RUNNING":
            await self._step("STOP_ACTIVITY", lambda: self.engine.control_environment(
                self._id, "STOP_ACTIVITY", user=self.user))

    async def _destroy(self) -> None:
        await self._step("DESTROY", lambda: self.engine.destroy_environment(
            self._id, user=self.user))


# ---------------------------------------------------------------- as text

def _failed_rows(step: Step) -> str:
    return f"{len(step.failed)} of {len(step.rows)} rows failed (tasks, hooks, calls)"


def step_line(outcome: Outcome, step: Step) -> str:
    """`DEPLOY…: ok (1.2 s)` style progress line of a one-shot."""
    env = outcome.environment
    where = f"environment {env.id}" if env is not None else "environment"
    run = f", run {outcome.run_number}" if step.name == "START_ACTIVITY" and step.ok else ""
    status = "ok" if step.ok else f"FAILED: {step.error or _failed_rows(step)}"
    return f"{where}: {step.name} {status}{run} ({step.seconds:.2f} s)"


def outcome_lines(outcome: Outcome) -> list[str]:
    """The summary of a one-shot: what ran, how it ended, the table of every failure."""
    env = outcome.environment
    lines: list[str] = []
    if env is None:
        lines.append(f"workflow {outcome.workflow}: not created")
    else:
        hosts = sorted({task.host for task in env.tasks if task.host})
        run = f"run {outcome.run_number}" if outcome.run_number else "no run"
        lines.append(f"{run} of {outcome.workflow} in environment {env.id}: {len(env.tasks)} "
                     f"tasks on {', '.join(hosts) or 'no host'}")
    if outcome.ended_by:
        lines.append(f"held until: {outcome.ended_by}")
    for step in outcome.steps:
        if step.ok:
            continue
        lines.append(f"{step.name} failed" + (f": {step.error}" if step.error else ""))
        if step.failed:
            lines.extend(f"  {line}" for line in result_lines(step.failed))
    verdict = "OK" if outcome.ok else (f"INTERRUPTED ({outcome.interrupted.name})"
                                       if outcome.interrupted else "FAILED")
    lines.append(f"result: {verdict}")
    return lines


def outcome_reason(outcome: Outcome) -> str:
    """One line for stderr saying why a one-shot did not succeed."""
    if outcome.interrupted is not None:
        return f"{outcome.workflow}: interrupted by {outcome.interrupted.name}"
    step = next(step for step in outcome.steps if not step.ok)
    why = step.error or _failed_rows(step)
    return f"{outcome.workflow}: {step.name} failed: {why}"
