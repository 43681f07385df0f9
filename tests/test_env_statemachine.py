"""The environment state machine (reference §1.1) and the steps of a transition (§1.1.1)."""
from __future__ import annotations

import pytest
from statemachine import State

from engine.environment.statemachine import (TRANSITIONS, EnvEvent, EnvironmentStateMachine,
                                             EnvState, Hook, HookPoint, HookSchedule, StepKind,
                                             TransitionRefused, WeightBand, allowed_events,
                                             destination, trigger_sequence)
from engine.workflow.roles import AggregatorRole, CallRole, TaskRole, Trigger, Workflow

S, E = EnvState, EnvEvent
TABLE = {  # §1.1 transcribed: event -> (sources, destination)
    E.DEPLOY: ({S.STANDBY}, S.DEPLOYED),
    E.CONFIGURE: ({S.DEPLOYED}, S.CONFIGURED),
    E.RESET: ({S.CONFIGURED}, S.DEPLOYED),
    E.START_ACTIVITY: ({S.CONFIGURED}, S.RUNNING),
    E.STOP_ACTIVITY: ({S.RUNNING}, S.CONFIGURED),
    E.EXIT: ({S.CONFIGURED, S.DEPLOYED, S.STANDBY}, S.DONE),
    E.GO_ERROR: ({S.STANDBY, S.CONFIGURED, S.DEPLOYED, S.RUNNING}, S.ERROR),
    E.RECOVER: ({S.ERROR}, S.DEPLOYED),
}
ALLOWED = [(event, src, dst) for event, (sources, dst) in TABLE.items() for src in sorted(sources)]
REFUSED = [(event, state) for event in E for state in S if state not in TABLE[event][0]]


def test_wire_names() -> None:
    assert [s.value for s in S] == ["STANDBY", "DEPLOYED", "CONFIGURED", "RUNNING", "ERROR", "DONE"]
    assert [e.value for e in E] == ["DEPLOY", "CONFIGURE", "RESET", "START_ACTIVITY",
                                    "STOP_ACTIVITY", "EXIT", "GO_ERROR", "RECOVER"]
    assert str(S.RUNNING) == "RUNNING" and str(E.GO_ERROR) == "GO_ERROR"


def test_initial_state_is_standby() -> None:
    assert EnvironmentStateMachine().state is S.STANDBY


def test_table_and_declared_machine_agree() -> None:
    assert {e: (set(src), dst) for e, (src, dst) in TRANSITIONS.items()} == TABLE
    declared: dict[E, tuple[set[S], S]] = {}
    for state in EnvironmentStateMachine.states:
        for transition in state.transitions:
            event = E(transition.event.upper())
            sources, _ = declared.setdefault(event, (set(), S(transition.target.value)))
            sources.add(S(state.value))
            assert declared[event][1] is S(transition.target.value)
    assert declared == TABLE


@pytest.mark.parametrize(("event", "src", "dst"), ALLOWED)
def test_allowed_transition(event: E, src: S, dst: S) -> None:
    machine = EnvironmentStateMachine(src)
    assert machine.can(event)
    assert machine.fire(event) is dst
    assert machine.state is dst
    assert destination(event, src) is dst


@pytest.mark.parametrize(("event", "state"), REFUSED)
def test_refused_transition_names_state_and_allowed_events(event: E, state: S) -> None:
    machine = EnvironmentStateMachine(state)
    assert not machine.can(event)
    with pytest.raises(TransitionRefused) as refused:
        machine.fire(event)
    assert machine.state is state  # unchanged, and not ERROR
    allowed = [e for e in E if state in TABLE[e][0]]
    assert refused.value.allowed == tuple(allowed)
    assert (refused.value.event, refused.value.state) == (event, state)
    if allowed:
        options = f"allowed from {state.value}: " + ", ".join(e.value for e in allowed)
    else:
        options = f"no event is allowed from {state.value}"
    assert str(refused.value) == (f"cannot {event.value}: the environment is {state.value} "
                                  f"({options}); nothing was changed")
    with pytest.raises(TransitionRefused):
        destination(event, state)


def test_refusal_names_the_environment() -> None:
    machine = EnvironmentStateMachine(S.DEPLOYED, environment_id="2oDvieFrVdz")
    with pytest.raises(TransitionRefused, match=r"^cannot START_ACTIVITY: environment "
                       r"2oDvieFrVdz is DEPLOYED \(allowed from DEPLOYED: CONFIGURE, EXIT, "
                       r"GO_ERROR\); nothing was changed$"):
        machine.fire("START_ACTIVITY")


def test_allowed_events_in_table_order() -> None:
    assert allowed_events(S.STANDBY) == [E.DEPLOY, E.EXIT, E.GO_ERROR]
    assert allowed_events(S.CONFIGURED) == [E.RESET, E.START_ACTIVITY, E.EXIT, E.GO_ERROR]
    assert allowed_events(S.RUNNING) == [E.STOP_ACTIVITY, E.GO_ERROR]
    assert allowed_events(S.ERROR) == [E.RECOVER]
    assert allowed_events(S.DONE) == []
    assert EnvironmentStateMachine(S.DEPLOYED).allowed() == [E.CONFIGURE, E.EXIT, E.GO_ERROR]


def test_exit_and_recover_are_reachable() -> None:
    machine = EnvironmentStateMachine()
    for event, expected in [("DEPLOY", S.DEPLOYED), ("CONFIGURE", S.CONFIGURED),
                            ("START_ACTIVITY", S.RUNNING), ("GO_ERROR", S.ERROR),
                            ("RECOVER", S.DEPLOYED), ("CONFIGURE", S.CONFIGURED),
                            ("RESET", S.DEPLOYED), ("EXIT", S.DONE)]:
        assert machine.fire(event) is expected
    with pytest.raises(TransitionRefused, match="no event is allowed from DONE"):
        machine.fire(E.RECOVER)


def test_event_names_parse_in_any_case() -> None:
    assert E.parse(" start_activity ") is E.START_ACTIVITY
    assert EnvironmentStateMachine().fire("deploy") is S.DEPLOYED
    with pytest.raises(ValueError, match="'START' is not an environment event; events are "
                       "DEPLOY, CONFIGURE, RESET, START_ACTIVITY"):
        E.parse("START")


def test_a_failing_callback_keeps_the_state_and_listeners_see_transitions() -> None:
    class Listener:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str]] = []

        def on_transition(self, source: State, target: State) -> None:
            self.seen.append((source.value, target.value))

        def on_configure(self) -> None:
            raise RuntimeError("critical hook failed")

    listener = Listener()
    machine = EnvironmentStateMachine(listeners=[listener])
    machine.fire(E.DEPLOY)
    with pytest.raises(RuntimeError, match="critical hook failed"):
        machine.fire(E.CONFIGURE)
    assert machine.state is S.DEPLOYED
    assert listener.seen[0] == (S.STANDBY, S.DEPLOYED)


# ---- trigger sequences (§1.1.1) ----

def _plain(event: E, src: S, dst: S) -> list[str]:
    return [f"before_{event.value}-", f"before_{event.value}+", f"leave_{src.value}-",
            f"leave_{src.value}+", f"tasks_{event.value}", f"enter_{dst.value}-",
            f"enter_{dst.value}+", f"after_{event.value}-", f"after_{event.value}+"]


@pytest.mark.parametrize(("event", "src", "dst"), [
    (E.DEPLOY, S.STANDBY, S.DEPLOYED), (E.CONFIGURE, S.DEPLOYED, S.CONFIGURED),
    (E.RESET, S.CONFIGURED, S.DEPLOYED), (E.EXIT, S.DEPLOYED, S.DONE),
    (E.RECOVER, S.ERROR, S.DEPLOYED)])
def test_trigger_sequence_without_run_work(event: E, src: S, dst: S) -> None:
    assert trigger_sequence(event, src, dst) == _plain(event, src, dst)


def test_trigger_sequence_start_allocates_the_run_number_between_before_bands() -> None:
    assert trigger_sequence(E.START_ACTIVITY, S.CONFIGURED, S.RUNNING) == [
        "before_START_ACTIVITY-", "run_number", "before_START_ACTIVITY+",
        "leave_CONFIGURED-", "leave_CONFIGURED+", "tasks_START_ACTIVITY",
        "enter_RUNNING-", "enter_RUNNING+",
        "after_START_ACTIVITY-", "run_started", "after_START_ACTIVITY+"]


@pytest.mark.parametrize(("event", "src", "dst"), [(E.STOP_ACTIVITY, S.RUNNING, S.CONFIGURED),
                                                   (E.GO_ERROR, S.RUNNING, S.ERROR)])
def test_trigger_sequence_stop_and_go_error(event: E, src: S, dst: S) -> None:
    name = event.value
    assert trigger_sequence(event, src, dst) == [
        f"before_{name}-", "run_end", f"before_{name}+", f"leave_{src.value}-",
        f"leave_{src.value}+", f"tasks_{name}", f"enter_{dst.value}-", f"enter_{dst.value}+",
        f"after_{name}-", "run_stopped", f"after_{name}+", "run_cleared"]


def test_trigger_sequence_of_a_transition_not_in_the_table_is_refused() -> None:
    with pytest.raises(TransitionRefused, match="cannot START_ACTIVITY: the environment is RUNNING"):
        trigger_sequence(E.START_ACTIVITY, S.RUNNING, S.RUNNING)
    with pytest.raises(ValueError, match="RESET from CONFIGURED leads to DEPLOYED, not STANDBY"):
        trigger_sequence(E.RESET, S.CONFIGURED, S.STANDBY)


# ---- hooks at their triggers ----

T = Trigger


def test_weights_ascending_negative_band_first_ties_in_template_order() -> None:
    schedule = HookSchedule([
        ("env.b", T("before_CONFIGURE", 5), T("before_CONFIGURE", 5)),
        ("env.a", T("before_CONFIGURE", -10), T("before_CONFIGURE", -10)),
        ("env.c", T("before_CONFIGURE", 0), T("before_CONFIGURE", 0)),
        ("env.d", T("before_CONFIGURE", -10), T("before_CONFIGURE", -10)),
        ("env.e", T("before_CONFIGURE", 0), None),  # await defaults to the trigger
        ("env.x", T("before_START_ACTIVITY", 0), T("before_START_ACTIVITY", 0)),
    ])
    assert schedule.phase("before_CONFIGURE", WeightBand.NEGATIVE) == [
        HookPoint(T("before_CONFIGURE", -10), ("env.a", "env.d"), ("env.a", "env.d"))]
    assert schedule.phase("before_CONFIGURE", WeightBand.NON_NEGATIVE) == [
        HookPoint(T("before_CONFIGURE", 0), ("env.c", "env.e"), ("env.c", "env.e")),
        HookPoint(T("before_CONFIGURE", 5), ("env.b",), ("env.b",))]
    plan = schedule.transition(E.CONFIGURE, S.DEPLOYED, S.CONFIGURED)
    assert [str(p.trigger) for p in plan.points()] == [
        "before_CONFIGURE-10", "before_CONFIGURE", "before_CONFIGURE+5"]
    assert plan.left_pending == ()
    assert "env.x" not in {path for p in plan.points() for path in p.starts}


def test_calls_start_at_their_trigger_and_are_awaited_at_their_await() -> None:
    schedule = HookSchedule([
        Hook("env.call1", T("before_START_ACTIVITY", -1), T("after_START_ACTIVITY", 2)),
        Hook("env.call2", T("leave_CONFIGURED"), T("enter_RUNNING", -5)),
        Hook("env.call3", T("before_START_ACTIVITY", 3), T("before_START_ACTIVITY", 3)),
        Hook("env.task", T("enter_RUNNING", -5), T("enter_RUNNING", -5)),
    ])
    plan = schedule.transition(E.START_ACTIVITY, S.CONFIGURED, S.RUNNING)
    by_label = {s.step.label: s.points for s in plan.steps}
    assert by_label["before_START_ACTIVITY-"] == (
        HookPoint(T("before_START_ACTIVITY", -1), ("env.call1",), ()),)
    assert by_label["run_number"] == ()
    assert by_label["before_START_ACTIVITY+"] == (
        HookPoint(T("before_START_ACTIVITY", 3), ("env.call3",), ("env.call3",)),)
    assert by_label["leave_CONFIGURED+"] == (HookPoint(T("leave_CONFIGURED"), ("env.call2",), ()),)
    assert by_label["enter_RUNNING-"] == (
        HookPoint(T("enter_RUNNING", -5), ("env.task",), ("env.call2", "env.task")),)
    assert by_label["after_START_ACTIVITY+"] == (
        HookPoint(T("after_START_ACTIVITY", 2), (), ("env.call1",)),)
    assert [s.step.kind for s in plan.steps].count(StepKind.WORK) == 3
    assert plan.left_pending == ()


def test_awaits_beyond_the_transition_are_left_pending_and_collected_later() -> None:
    schedule = HookSchedule([
        ("env.long", T("after_CONFIGURE"), T("before_START_ACTIVITY", -2)),
        ("env.early", T("after_CONFIGURE", 1), T("before_CONFIGURE")),  # await never reached again
    ])
    configure = schedule.transition(E.CONFIGURE, S.DEPLOYED, S.CONFIGURED)
    assert configure.left_pending == ("env.long", "env.early")
    start = schedule.transition(E.START_ACTIVITY, S.CONFIGURED, S.RUNNING)
    assert start.steps[0].points == (HookPoint(T("before_START_ACTIVITY", -2), (), ("env.long",)),)
    assert start.left_pending == ()


def test_schedule_from_a_workflow_in_template_order() -> None:
    root = AggregatorRole(name="env", path="env", origin="o")
    hook = TaskRole(name="hook", path="env.hook", origin="o", trigger=T("enter_RUNNING", 1))
    call = CallRole(name="call", path="env.call", origin="o", func="testplugin.Noop()",
                    trigger=T("before_START_ACTIVITY"), await_=T("after_START_ACTIVITY", -1))
    plain = TaskRole(name="worker", path="env.worker", origin="o")
    lazy = CallRole(name="lazy", path="env.lazy", origin="o", func="x()")
    root.children = [hook, call, plain, lazy]
    for child in root.children:
        child.parent = root
    schedule = HookSchedule.from_workflow(Workflow(root=root, name="env", origin="o"))
    assert schedule.hooks == [
        Hook("env.hook", T("enter_RUNNING", 1), T("enter_RUNNING", 1)),
        Hook("env.call", T("before_START_ACTIVITY"), T("after_START_ACTIVITY", -1))]
