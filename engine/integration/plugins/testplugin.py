"""`testplugin`: the plugin AliECS ships for testing hooks (core/integration/testplugin).

Noop sleeps for the call's timeout; Test fails when `testplugin_fail` is
true and hangs when `testplugin_hang` is true; the observers write global
runtime vars that a test reads back. Two differences, both for testing
without waiting forever: a hanging Test stops at the call's timeout and fails
with a message saying so (AliECS's hangs for good), and CallOrderObserver
keeps its history in the plugin under a lock (also readable with
`call_order`), so calls running at once never lose each other's entries.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from engine.integration.plugin import CallContext, CallFunction, ConnectionState, Plugin
from engine.integration.timeouts import acquire_timeout, format_seconds, parse_go_bool

log = logging.getLogger("engine.integration.testplugin")

GENERAL_OP_TIMEOUT = 3.0   # seconds, AliECS TESTPLUGIN_GENERAL_OP_TIMEOUT
RUN_TIMESTAMPS = ("run_start_time_ms", "run_start_completion_time_ms", "run_end_time_ms",
                  "run_end_completion_time_ms")
CALL_HISTORY_VAR = "call_history"


class TestPlugin(Plugin):
    """Test plugin, DO NOT USE IN PRODUCTION."""

    __test__ = False   # not a pytest test class, despite its name

    name = "testplugin"
    pretty_name = "Test plugin"
    endpoint_key = "testPluginEndpoint"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self._lock = threading.Lock()
        self._history: dict[str, list[str]] = {}
        log.info("initializing test plugin at %s, DO NOT USE IN PRODUCTION", endpoint)

    @property
    def connection_state(self) -> ConnectionState:
        return ConnectionState.READY

    def init(self, instance_id: str) -> None:
        log.debug("test plugin initialized for %s", instance_id)

    def destroy(self) -> None:
        with self._lock:
            self._history.clear()

    def environments_data(self, environment_ids: Sequence[str]) -> dict[str, str]:
        return {environment_id: f"test_data_{environment_id}" for environment_id in environment_ids}

    def object_stack(self, var_stack: Mapping[str, str]) -> Mapping[str, Any]:
        return {"test": "test_data"}

    def call_order(self, environment_id: str) -> list[str]:
        """The role paths of the CallOrderObserver calls of an environment, in arrival order."""
        with self._lock:
            return list(self._history.get(environment_id, ()))

    def call_stack(self, call: CallContext) -> Mapping[str, CallFunction]:
        stack = call.var_stack
        message = stack.get("testplugin_message", "running testplugin.Noop")
        do_fail = parse_go_bool(stack.get("testplugin_fail"))
        do_hang = parse_go_bool(stack.get("testplugin_hang"))
        where = (f"environment {call.environment_id}, role {call.role_path}, "
                 f"trigger {call.trigger}, await {call.await_}")

        def noop() -> str:
            log.info("executing testplugin.Noop call (%s): %s", where, message)
            timeout = acquire_timeout(GENERAL_OP_TIMEOUT, stack, "Noop")
            call.sleep(timeout)
            log.info("executed testplugin.Noop call in %s (%s, run %s)", format_seconds(timeout),
                     where, stack.get("run_number", "0"))
            return ""

        def test() -> str:
            log.info("executing testplugin.Test call (%s): %s", where, message)
            call.runtime.set_global_runtime_var(f"{call.role_path}_called", "true")
            if do_fail:
                call.fail("error triggered in testplugin.Test call")
            if do_hang:
                timeout = acquire_timeout(GENERAL_OP_TIMEOUT, stack, "Test")
                if call.sleep(timeout) and not do_fail:
                    call.fail(f"testplugin.Test hung until its timeout of "
                              f"{format_seconds(timeout)} (testplugin_hang is true)")
            return ""

        def timestamp_observer() -> str:
            call.runtime.set_global_runtime_var(f"{call.role_path}_called", "true")
            for key in RUN_TIMESTAMPS:
                value = stack.get(key, "")
                if value and value != "0":
                    call.runtime.set_global_runtime_var(f"{call.role_path}_saw_{key}", "true")
            return ""

        def call_order_observer() -> str:
            with self._lock:
                history = self._history.setdefault(call.environment_id, [])
                history.append(call.role_path)
                # written under the lock, so concurrent calls' writes land in arrival order
                call.runtime.set_global_runtime_var(CALL_HISTORY_VAR, ",".join(history))
            return ""

        return {"Noop": noop, "Test": test, "TimestampObserver": timestamp_observer,
                "CallOrderObserver": call_order_observer}


PLUGIN = TestPlugin
