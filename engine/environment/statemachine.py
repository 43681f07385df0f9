"""The environment state machine of reference §1.1 and the order of a transition's steps (§1.1.1).

The machine is the AliECS table, declared. Unlike AliECS, an event that is not allowed
from the current state is refused (`TransitionRefused`, naming the state and what is
allowed) and changes nothing: it never sends the environment to ERROR. `transition_steps`
and `HookSchedule` say what the pipeline does around one transition, in order, so the
environment manager runs hooks and built-in work without re-deriving the rules.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from statemachine import State, StateMachine

from engine.workflow.roles import CallRole, TaskRole, Trigger, Workflow


class EnvState(str, Enum):
    """Environment states as the wire spells them."""

    STANDBY = "STANDBY"
    DEPLOYED = "DEPLOYED"
    CONFIGURED = "CONFIGURED"
    RUNNING = "RUNNING"
    ERROR = "ERROR"
    DONE = "DONE"

    def __str__(self) -> str:
        return self.value


class EnvEvent(str, Enum):
    """Environment events as the wire spells them."""

    DEPLOY = "DEPLOY"
    CONFIGURE = "CONFIGURE"
    RESET = "RESET"
    START_ACTIVITY = "START_ACTIVITY"
    STOP_ACTIVITY = "STOP_ACTIVITY"
    EXIT = "EXIT"
    GO_ERROR = "GO_ERROR"
    RECOVER = "RECOVER"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> EnvEvent:
        """The event named by text (any case); ValueError listing the events otherwise."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            names = ", ".join(e.value for e in cls)
            raise ValueError(f"{text!r} is not an environment event; events are {names}") from None


class TransitionRefused(Exception):
    """An event not allowed from the current state; the state is unchanged."""

    def __init__(self, event: EnvEvent, state: EnvState, allowed: Sequence[EnvEvent],
                 environment_id: str = "") -> None:
        self.event = event
        self.state = state
        self.allowed = tuple(allowed)
        self.environment_id = environment_id
        who = f"environment {environment_id}" if environment_id else "the environment"
        if self.allowed:
            options = f"allowed from {state}: {', '.join(e.value for e in self.allowed)}"
        else:
            options = f"no event is allowed from {state}"
        super().__init__(f"cannot {event}: {who} is {state} ({options}); nothing was changed")


class DestroyRefused(TransitionRefused):
    """destroy of a RUNNING environment without allow_in_running_state (coconut `-a`) or
    force (`-f`); nothing was changed."""

    def __init__(self, environment_id: str, state: EnvState) -> None:
        Exception.__init__(self, f"cannot destroy environment {environment_id}: it is {state}; "
                           "stop the run first, or destroy it with allow_in_running_state "
                           "(-a) or force (-f); nothing was changed")
        self.event = EnvEvent.EXIT
        self.state = state
        self.allowed = (EnvEvent.STOP_ACTIVITY,)
        self.environment_id = environment_id


class EnvironmentStateMachine(StateMachine):
    """Reference §1.1, row by row. Listeners observe transitions from outside."""

    standby = State("STANDBY", value=EnvState.STANDBY, initial=True)
    deployed = State("DEPLOYED", value=EnvState.DEPLOYED)
    configured = State("CONFIGURED", value=EnvState.CONFIGURED)
    running = State("RUNNING", value=EnvState.RUNNING)
    error = State("ERROR", value=EnvState.ERROR)
    done = State("DONE", value=EnvState.DONE, final=True)

    deploy = standby.to(deployed)
    configure = deployed.to(configured)
    reset = configured.to(deployed)
    start_activity = configured.to(running)
    stop_activity = running.to(configured)
    exit = configured.to(done) | deployed.to(done) | standby.to(done)
    go_error = standby.to(error) | configured.to(error) | deployed.to(error) | running.to(error)
    recover = error.to(deployed)

    def __init__(self, state: EnvState = EnvState.STANDBY, environment_id: str = "",
                 listeners: list[object] | None = None) -> None:
        """Start at `state` (an environment reloaded after an engine restart keeps its own)."""
        self.environment_id = environment_id
        super().__init__(start_value=EnvState(state), listeners=listeners)

    @property
    def state(self) -> EnvState:
        return EnvState(self.current_state_value)

    def allowed(self) -> list[EnvEvent]:
        """Events allowed from the current state, in the order of the table."""
        return allowed_events(self.state)

    def can(self, event: EnvEvent | str) -> bool:
        return _as_event(event) in self.allowed()

    def fire(self, event: EnvEvent | str, *args: Any, **kwargs: Any) -> EnvState:
        """Run one event and return the new state.

        TransitionRefused, with the state unchanged, when the table does not allow it here.
        """
        chosen = _as_event(event)
        if chosen not in self.allowed():
            raise TransitionRefused(chosen, self.state, self.allowed(), self.environment_id)
        self.send(chosen.value.lower(), *args, **kwargs)
        return self.state


# The table of §1.1: event -> (sources in table order, destination).
TRANSITIONS: dict[EnvEvent, tuple[tuple[EnvState, ...], EnvState]] = {
    EnvEvent.DEPLOY: ((EnvState.STANDBY,), EnvState.DEPLOYED),
    EnvEvent.CONFIGURE: ((EnvState.DEPLOYED,), EnvState.CONFIGURED),
    EnvEvent.RESET: ((EnvState.CONFIGURED,), EnvState.DEPLOYED),
    EnvEvent.START_ACTIVITY: ((EnvState.CONFIGURED,), EnvState.RUNNING),
    EnvEvent.STOP_ACTIVITY: ((EnvState.RUNNING,), EnvState.CONFIGURED),
    EnvEvent.EXIT: ((EnvState.CONFIGURED, EnvState.DEPLOYED, EnvState.STANDBY), EnvState.DONE),
    EnvEvent.GO_ERROR: ((EnvState.STANDBY, EnvState.CONFIGURED, EnvState.DEPLOYED,
                         EnvState.RUNNING), EnvState.ERROR),
    EnvEvent.RECOVER: ((EnvState.ERROR,), EnvState.DEPLOYED),
}


def allowed_events(state: EnvState) -> list[EnvEvent]:
    """Events the table allows from state, in table order."""
    return [event for event, (sources, _) in TRANSITIONS.items() if state in sources]


def destination(event: EnvEvent, source: EnvState) -> EnvState:
    """Where event leads from source; TransitionRefused if the table has no such row."""
    sources, target = TRANSITIONS[event]
    if source not in sources:
        raise TransitionRefused(event, source, allowed_events(source))
    return target


def _as_event(event: EnvEvent | str) -> EnvEvent:
    return event if isinstance(event, EnvEvent) else EnvEvent.parse(event)


# ---- The pipeline of one transition (§1.1.1) ----

class StepKind(str, Enum):
    HOOKS = "hooks"  # the hooks of one trigger, in one weight band
    WORK = "work"  # built-in work of the core


class WeightBand(str, Enum):
    """AliECS runs each trigger in two passes: negative weights, then weights >= 0."""

    NEGATIVE = "-"
    NON_NEGATIVE = "+"

    def holds(self, weight: int) -> bool:
        return weight < 0 if self is WeightBand.NEGATIVE else weight >= 0


# Built-in work, named as the pipeline labels it.
RUN_NUMBER = "run_number"  # START_ACTIVITY: allocate the run number, set run vars, SOR event
RUN_END = "run_end"  # STOP_ACTIVITY/GO_ERROR: set run_end_time_ms if empty
RUN_STARTED = "run_started"  # START_ACTIVITY: cleanup count, auto-stop timer, EOSOR
RUN_STOPPED = "run_stopped"  # STOP_ACTIVITY/GO_ERROR: EOEOR, cancel auto-stop
RUN_CLEARED = "run_cleared"  # STOP_ACTIVITY/GO_ERROR: last_run_number, clear run_number


def tasks_step(event: EnvEvent) -> str:
    """The label of a transition's own work (`do()`), as AliECS's transitionStep."""
    return f"tasks_{event.value}"


@dataclass(frozen=True)
class Step:
    """One step of a transition: a trigger's hooks in one weight band, or built-in work."""

    kind: StepKind
    name: str  # the trigger name for HOOKS, the work label for WORK
    band: WeightBand | None = None

    @property
    def label(self) -> str:
        """`before_CONFIGURE-` / `before_CONFIGURE+` for hook bands, the bare name for work."""
        return self.name + self.band.value if self.band is not None else self.name


def _hooks(trigger: str) -> list[Step]:
    return [Step(StepKind.HOOKS, trigger, WeightBand.NEGATIVE),
            Step(StepKind.HOOKS, trigger, WeightBand.NON_NEGATIVE)]


def transition_steps(event: EnvEvent, source: EnvState, target: EnvState) -> list[Step]:
    """The steps of one transition in the order §1.1.1 runs them.

    before_<EVENT> (negative weights, event work, weights >= 0), leave_<SRC> (both bands)
    then the transition's work tasks_<EVENT>, enter_<DST> (both bands), after_<EVENT>
    (negative, event work, >= 0) and, for STOP_ACTIVITY/GO_ERROR, the run-number cleanup.
    TransitionRefused when the table has no such transition.
    """
    if destination(event, source) is not target:
        raise ValueError(f"{event} from {source} leads to {destination(event, source)}, "
                         f"not {target}")
    before, after = f"before_{event.value}", f"after_{event.value}"
    stopping = event in (EnvEvent.STOP_ACTIVITY, EnvEvent.GO_ERROR)
    steps = _hooks(before)
    if event is EnvEvent.START_ACTIVITY:
        steps.insert(1, Step(StepKind.WORK, RUN_NUMBER))
    elif stopping:
        steps.insert(1, Step(StepKind.WORK, RUN_END))
    steps += _hooks(f"leave_{source.value}")
    steps.append(Step(StepKind.WORK, tasks_step(event)))
    steps += _hooks(f"enter_{target.value}")
    after_steps = _hooks(after)
    if event is EnvEvent.START_ACTIVITY:
        after_steps.insert(1, Step(StepKind.WORK, RUN_STARTED))
    elif stopping:
        after_steps.insert(1, Step(StepKind.WORK, RUN_STOPPED))
        after_steps.append(Step(StepKind.WORK, RUN_CLEARED))
    return steps + after_steps


def trigger_sequence(event: EnvEvent, source: EnvState, target: EnvState) -> list[str]:
    """`transition_steps` as labels: `before_START_ACTIVITY-`, `run_number`, …

    A trailing `-`/`+` marks a trigger's negative / non-negative weight band.
    """
    return [step.label for step in transition_steps(event, source, target)]


# ---- Hooks at their triggers (§1.1.1 "Hook execution within one trigger") ----

@dataclass(frozen=True)
class Hook:
    """A hook role: started at `trigger`, collected at `await_` (task hooks: await == trigger)."""

    path: str
    trigger: Trigger
    await_: Trigger


@dataclass(frozen=True)
class HookPoint:
    """One (trigger, weight) of a transition: the hooks started there, then those awaited there."""

    trigger: Trigger
    starts: tuple[str, ...]
    awaits: tuple[str, ...]


@dataclass(frozen=True)
class ScheduledStep:
    """A step of a transition with its hook points (none for built-in work)."""

    step: Step
    points: tuple[HookPoint, ...] = ()


@dataclass(frozen=True)
class TransitionSchedule:
    """Everything one transition runs, in order, and the hooks it leaves pending."""

    steps: tuple[ScheduledStep, ...]
    # Started in this transition, awaited at a trigger this transition does not reach
    # (a later transition, or teardown, collects or cancels them).
    left_pending: tuple[str, ...]

    def points(self) -> list[HookPoint]:
        return [point for scheduled in self.steps for point in scheduled.points]


class HookSchedule:
    """The hooks of a workflow, ordered as AliECS's handleHooks runs them.

    Within one trigger band the weights run in ascending order; at each weight the hooks
    triggered there start (ties in template order), then every hook whose await is that
    same trigger and weight is collected, whenever it was started.
    """

    def __init__(self, hooks: Iterable[Hook | tuple[str, Trigger, Trigger | None]]) -> None:
        self.hooks: list[Hook] = [self._hook(item) for item in hooks]

    @staticmethod
    def _hook(item: Hook | tuple[str, Trigger, Trigger | None]) -> Hook:
        if isinstance(item, Hook):
            return item
        path, trigger, await_ = item
        return Hook(path, trigger, await_ if await_ is not None else trigger)

    @classmethod
    def from_workflow(cls, workflow: Workflow) -> HookSchedule:
        """Task and call roles with a trigger, in template order (no await: the trigger)."""
        return cls(Hook(role.path, role.trigger, role.await_ or role.trigger)
                   for role in workflow.roles()
                   if isinstance(role, (TaskRole, CallRole)) and role.trigger is not None)

    def phase(self, trigger: str, band: WeightBand) -> list[HookPoint]:
        """The points of one trigger band: its weights ascending, starts then awaits at each."""
        weights = sorted({h.trigger.weight for h in self.hooks
                          if h.trigger.name == trigger and band.holds(h.trigger.weight)}
                         | {h.await_.weight for h in self.hooks
                            if h.await_.name == trigger and band.holds(h.await_.weight)})
        points = []
        for weight in weights:
            at = Trigger(trigger, weight)
            points.append(HookPoint(at, tuple(h.path for h in self.hooks if h.trigger == at),
                                    tuple(h.path for h in self.hooks if h.await_ == at)))
        return points

    def transition(self, event: EnvEvent, source: EnvState, target: EnvState) -> TransitionSchedule:
        """The schedule of one transition; awaits listed whether or not their hook started in it."""
        steps: list[ScheduledStep] = []
        started: dict[str, int] = {}  # path -> position of its start point
        awaited: dict[str, int] = {}
        position = 0
        for step in transition_steps(event, source, target):
            if step.kind is StepKind.WORK or step.band is None:
                steps.append(ScheduledStep(step))
                continue
            points = tuple(self.phase(step.name, step.band))
            for point in points:
                for path in point.starts:
                    started.setdefault(path, position)
                for path in point.awaits:
                    awaited.setdefault(path, position)
                position += 1
            steps.append(ScheduledStep(step, points))
        pending = tuple(path for path in started
                        if path not in awaited or awaited[path] < started[path])
        return TransitionSchedule(tuple(steps), pending)
