"""The call mechanics of call roles: the call's stack, func evaluation with the real
Renderer, the return var, __call_error, the overrun grace, events, and calls started at
their trigger and collected at their await, on real CallRole trees."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from engine.integration import (CallEvent, CallRunner, CallStatus, ConnectionState,
                                PendingCalls, Plugin, PluginRegistry, load_plugins)
from engine.integration.plugin import CallContext, CallFunction
from engine.templates.functions import StringsNamespace
from engine.workflow.roles import AggregatorRole, CallRole, Trigger, Workflow


class ProbePlugin(Plugin):
    """Records what calls see and misbehaves on demand."""

    name = "probe"
    pretty_name = "Probe"
    endpoint_key = "probeEndpoint"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.stacks: list[dict[str, str]] = []
        self.release = threading.Event()

    @property
    def connection_state(self) -> ConnectionState:
        return ConnectionState.READY

    def init(self, instance_id: str) -> None:
        pass

    def destroy(self) -> None:
        self.release.set()

    def object_stack(self, var_stack: Mapping[str, str]) -> Mapping[str, Any]:
        return {}

    def environments_data(self, environment_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def call_stack(self, call: CallContext) -> Mapping[str, CallFunction]:
        def record() -> str:
            self.stacks.append(dict(call.var_stack))
            return "recorded"

        def echo(value: Any) -> Any:
            return value

        def error(message: str, reason: str = "") -> str:
            call.var_stack["__call_error"] = message
            if reason:
                call.var_stack["__call_error_reason"] = reason
            return "partial"

        def explode() -> str:
            raise RuntimeError("service said no")

        def ignore_timeout() -> str:
            self.release.wait(2.0)   # a plugin that does not enforce __call_timeout
            call.runtime.set_global_runtime_var("late", "written")
            return "too late"

        return {"Record": record, "Echo": echo, "Error": error, "Explode": explode,
                "IgnoreTimeout": ignore_timeout}


SETTINGS = {"integrationPlugins": ["testplugin", "probe"], "testPluginEndpoint": "t",
            "probeEndpoint": "p"}


def make_tree(*calls: tuple[str, str, str, str], timeout: str = "500ms"
              ) -> tuple[Workflow, list[CallRole]]:
    """A workflow root with call roles (name, func, trigger, await)."""
    root = AggregatorRole(name="readout", path="readout", origin="test",
                          vars={"detector": "tpc"})
    roles = []
    for name, func, trigger, await_ in calls:
        role = CallRole(name=name, path=f"readout.{name}", origin="test", func=func,
                        trigger=Trigger.parse(trigger),
                        await_=Trigger.parse(await_ or trigger), timeout=timeout, parent=root)
        root.children.append(role)
        roles.append(role)
    workflow = Workflow(root=root, name="readout", origin="test",
                        global_defaults={"fromdefaults": "d"})
    return workflow, roles


@pytest.fixture
def events() -> list[CallEvent]:
    return []


@pytest.fixture
def runner(events: list[CallEvent]) -> Iterator[CallRunner]:
    plugins = load_plugins(SETTINGS, PluginRegistry(extra=[ProbePlugin]))
    yield CallRunner(plugins, on_event=events.append, grace=0.3,
                     namespaces=lambda stack: {"strings": StringsNamespace()})
    plugins.get("probe").release.set()


def probe(runner: CallRunner) -> ProbePlugin:
    plugin = runner.plugins.get("probe")
    assert isinstance(plugin, ProbePlugin)
    return plugin


async def test_the_call_sees_a_copy_of_the_stack_with_the_call_keys(runner: CallRunner) -> None:
    workflow, [role] = make_tree(("sor", "probe.Record()", "before_START_ACTIVITY+100",
                                  "after_START_ACTIVITY-10"))
    role.critical = False
    stack = workflow.stack_of(role)
    result = await runner.start(role, "2oDvieFrVTi", stack).wait()
    assert result.ok and result.output == "recorded" and not result.critical
    [seen] = probe(runner).stacks
    assert seen["detector"] == "tpc" and seen["fromdefaults"] == "d"
    assert {k: v for k, v in seen.items() if k.startswith("__") or k == "environment_id"} == {
        "environment_id": "2oDvieFrVTi", "__call_func": "probe.Record()",
        "__call_timeout": "500ms", "__call_trigger": "before_START_ACTIVITY+100",
        "__call_await": "after_START_ACTIVITY-10", "__call_critical": "false",
        "__call_rolepath": "readout.sor"}
    assert "__call_func" not in stack   # the role's stack is copied, not written


async def test_the_return_var_lands_in_the_role_user_vars(runner: CallRunner) -> None:
    workflow, [role] = make_tree(("fill", "probe.Echo(strings.ToUpper(detector) + '-1')",
                                  "before_START_ACTIVITY", ""))
    role.return_var = "fill_info"
    result = await runner.start(role, "env", workflow.stack_of(role)).wait()
    assert result.ok and result.output == "TPC-1"
    assert role.user_vars == {"fill_info": "TPC-1"}
    assert workflow.stack_of(role)["fill_info"] == "TPC-1"


async def test_a_return_value_is_stored_go_style(runner: CallRunner) -> None:
    workflow, [role] = make_tree(("b", "probe.Echo(1 == 1)", "before_CONFIGURE", ""))
    role.return_var = "flag"
    assert (await runner.start(role, "env", workflow.stack_of(role)).wait()).output == "true"
    assert role.user_vars["flag"] == "true"


async def test_call_error_fails_the_call_with_its_reason(runner: CallRunner) -> None:
    workflow, roles = make_tree(("a", "probe.Error('DCS refused')", "before_START_ACTIVITY", ""),
                                ("b", "probe.Error('DCS refused', 'busy')",
                                 "before_START_ACTIVITY", ""))
    roles[0].return_var = "answer"
    a, b = [await runner.start(r, "env", workflow.stack_of(r)).wait() for r in roles]
    assert not a.ok and a.error == "call probe.Error('DCS refused') of role readout.a failed: " \
                                   "DCS refused"
    assert b.error.endswith("failed: DCS refused. REASON: busy")
    assert roles[0].user_vars == {"answer": "partial"}   # set before the error check, as AliECS


async def test_an_expression_or_plugin_error_fails_the_call(runner: CallRunner) -> None:
    workflow, roles = make_tree(("x", "probe.Explode()", "before_CONFIGURE", ""),
                                ("y", "probe.Echo(undefined_var)", "before_CONFIGURE", ""),
                                ("z", "probe.Nope()", "before_CONFIGURE", ""),
                                ("s", "probe.Echo(", "before_CONFIGURE", ""))
    results = [await runner.start(r, "env", workflow.stack_of(r)).wait() for r in roles]
    assert [r.ok for r in results] == [False] * 4
    assert results[0].error == "call probe.Explode() of role readout.x failed: service said no"
    assert results[1].error.endswith("failed: unknown name undefined_var")
    assert "integration plugin probe has no Nope (it offers Echo, Error, Explode, " \
           "IgnoreTimeout, Record)" in results[2].error
    assert "syntax error" in results[3].error


async def test_an_unknown_plugin_is_named_with_role_and_func(runner: CallRunner) -> None:
    workflow, roles = make_tree(("sor", "dcs.StartOfRun()", "before_START_ACTIVITY", ""),
                                ("x", "bogus.Thing()", "before_START_ACTIVITY", ""))
    dcs, bogus = [await runner.start(r, "env", workflow.stack_of(r)).wait() for r in roles]
    assert dcs.error.startswith("call dcs.StartOfRun() of role readout.sor failed: ")
    assert "there is no integration plugin dcs (loaded: testplugin, probe)" in dcs.error
    assert bogus.error == ("call bogus.Thing() of role readout.x failed: there is no "
                           "integration plugin bogus (loaded: testplugin, probe)")


async def test_a_known_but_unlisted_plugin_says_how_to_enable_it() -> None:
    runner = CallRunner(load_plugins({}, PluginRegistry(extra=[ProbePlugin])))
    workflow, [role] = make_tree(("p", "probe.Record()", "before_CONFIGURE", ""))
    result = await runner.start(role, "env", workflow.stack_of(role)).wait()
    assert ("integration plugin probe is not loaded: list it in integrationPlugins and set "
            "probeEndpoint in the core settings (aliecs/ANY/any/settings)") in result.error


async def test_emulation_answers_unloaded_plugins_with_a_noop(
        caplog: pytest.LogCaptureFixture) -> None:
    runner = CallRunner(load_plugins({}), emulate_unloaded=True)
    workflow, [role] = make_tree(("sor", "dcs.StartOfRun(detector)", "before_START_ACTIVITY",
                                  ""))
    role.return_var = "r"
    result = await runner.start(role, "env", workflow.stack_of(role)).wait()
    assert result.ok and result.output == "" and role.user_vars == {"r": ""}
    assert "dcs.StartOfRun('tpc') answered with a no-op" in caplog.text


async def test_an_overrunning_call_is_given_up_after_the_grace(
        runner: CallRunner, events: list[CallEvent]) -> None:
    workflow, [role] = make_tree(("slow", "probe.IgnoreTimeout()", "before_STOP_ACTIVITY", ""),
                                 timeout="100ms")
    role.return_var = "slow_result"
    started = time.monotonic()
    result = await runner.start(role, "env", workflow.stack_of(role)).wait()
    took = time.monotonic() - started
    assert 0.35 <= took < 1.5
    assert not result.ok
    assert result.error == (
        "call probe.IgnoreTimeout() of role readout.slow failed: no answer within its timeout "
        "of 100ms plus 300ms grace; the plugin does not enforce __call_timeout, so nutshell "
        "gave up on it (a late answer is ignored)")
    assert [e.status for e in events] == [CallStatus.STARTED, CallStatus.DONE_TIMEOUT]
    probe(runner).release.set()          # the plugin answers at last …
    await asyncio.sleep(0.1)
    assert "late" not in workflow.root.user_vars and role.user_vars == {}   # … and is ignored
    assert len(events) == 2


async def test_events_carry_the_call_fields(runner: CallRunner, events: list[CallEvent]) -> None:
    workflow, [role] = make_tree(("t", "testplugin.Test()", "after_CONFIGURE-1", ""))
    await runner.start(role, "env7", workflow.stack_of(role)).wait()
    started, done = events
    assert started == CallEvent(CallStatus.STARTED, "testplugin.Test()", "readout.t", "env7",
                                "after_CONFIGURE-1", "after_CONFIGURE-1", "500ms", True)
    assert done.status is CallStatus.DONE_OK and done.error == ""
    assert CallStatus.DONE_ERROR.value == 4   # events.proto OpStatus numbers


async def test_a_broken_event_listener_does_not_break_the_call(
        caplog: pytest.LogCaptureFixture) -> None:
    def listener(event: CallEvent) -> None:
        raise ValueError("listener bug")

    runner = CallRunner(load_plugins(SETTINGS), on_event=listener)
    workflow, [role] = make_tree(("t", "testplugin.Test()", "before_CONFIGURE", ""))
    assert (await runner.start(role, "env", workflow.stack_of(role)).wait()).ok
    assert "call event listener failed" in caplog.text


async def test_a_call_starts_once_and_waits_only_when_started(runner: CallRunner) -> None:
    workflow, [role] = make_tree(("t", "testplugin.Test()", "before_CONFIGURE", ""))
    call = runner.start(role, "env", workflow.stack_of(role))
    with pytest.raises(RuntimeError, match="already started"):
        call.start()
    assert (await call.wait()).ok and call.done()


async def test_the_default_stack_and_runtime_vars_are_the_roles() -> None:
    runner = CallRunner(load_plugins(SETTINGS))
    workflow, [role] = make_tree(("t", "testplugin.Test()", "before_CONFIGURE", ""))
    role.stack = {"testplugin_fail": "true"}
    result = await runner.start(role, "env").wait()
    assert not result.ok and workflow.root.user_vars == {"readout.t_called": "true"}


# ------------------------------------------------------------------ trigger and await

async def test_calls_start_at_their_trigger_and_end_at_their_await(runner: CallRunner) -> None:
    workflow, roles = make_tree(
        ("a", "testplugin.CallOrderObserver()", "before_START_ACTIVITY-10", ""),
        ("slow", "testplugin.Noop()", "before_START_ACTIVITY-10", "after_START_ACTIVITY+5"),
        ("b", "testplugin.CallOrderObserver()", "before_START_ACTIVITY+0", ""),
        ("c", "testplugin.CallOrderObserver()", "before_START_ACTIVITY+10", ""),
        timeout="300ms")
    pending = PendingCalls()

    def at(trigger: str) -> list[CallRole]:
        moment = Trigger.parse(trigger)
        return [r for r in roles if r.trigger == moment]

    started = time.monotonic()
    for weight in (-10, 0, 10):   # what the hook runner does at each weight of the trigger
        pending.add(runner.start(r, "env", workflow.stack_of(r))
                    for r in at(f"before_START_ACTIVITY{weight:+d}"))
        assert pending.weights("before_START_ACTIVITY") == {weight}
        [result] = await pending.collect("before_START_ACTIVITY", weight)
        assert result.ok
    assert time.monotonic() - started < 0.25   # the Noop runs on meanwhile
    assert [c.role.path for c in pending.outstanding()] == ["readout.slow"]
    assert pending.weights("after_START_ACTIVITY") == {5}
    [slow] = await pending.collect(Trigger("after_START_ACTIVITY", 5))
    assert slow.ok and slow.ended - slow.started >= 0.29
    assert pending.outstanding() == []
    assert workflow.root.user_vars["call_history"] == "readout.a,readout.b,readout.c"
    assert await pending.collect("after_START_ACTIVITY+5") == []


async def test_concurrent_calls_are_all_recorded_in_arrival_order(runner: CallRunner) -> None:
    names = [f"c{i}" for i in range(8)]
    workflow, roles = make_tree(*[(n, "testplugin.CallOrderObserver()", "enter_RUNNING", "")
                                  for n in names])
    pending = PendingCalls()
    pending.add(runner.start(r, "env", workflow.stack_of(r)) for r in roles)
    results = await pending.collect("enter_RUNNING")
    assert [r.role_path for r in results] == [r.path for r in roles]   # in the order added
    order = runner.plugins.get("testplugin").call_order("env")
    assert sorted(order) == sorted(r.path for r in roles)   # none lost
    assert workflow.root.user_vars["call_history"] == ",".join(order)


def test_a_call_without_trigger_or_await_cannot_be_pending(runner: CallRunner) -> None:
    workflow, [role] = make_tree(("t", "testplugin.Test()", "before_CONFIGURE", ""))

    async def main() -> None:
        role.trigger = role.await_ = None
        call = runner.start(role, "env", workflow.stack_of(role))
        with pytest.raises(ValueError, match="has neither trigger nor await"):
            PendingCalls().add([call])
        assert (await call.wait()).ok
    asyncio.run(main())
