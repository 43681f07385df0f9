"""The call mechanics of call roles (AliECS core/workflow/callable/call.go, reference §8).

At its trigger a call copies its role's consolidated stack, adds
`environment_id` and the `__call_*` keys, and evaluates its `func` expression
(`testplugin.Test()`) with the template engine, the loaded plugins' call
stacks in scope. The result goes into the role's `return` var if one is
given. The call fails if the expression fails (an unknown plugin or
function, a plugin that raised) or if the plugin wrote `__call_error`
(". REASON: " + `__call_error_reason` appended when given). Calls start at
their trigger and are collected at their await (`PendingCalls`), each
evaluated on a daemon thread of its own since plugin functions block.

Timeouts: a plugin enforces `__call_timeout` itself, as in AliECS. AliECS's
core then waits for ever on a plugin that does not; nutshell does better:
a call still running `grace` seconds after its timeout is reported failed
with a message saying so, its thread is abandoned (`CallContext.abandoned`
is set, and a late result or variable write is ignored), and the transition
goes on.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from engine.integration.plugin import (CALL_ERROR_REASON_VAR, CALL_ERROR_VAR, CallContext,
                                       PluginNamespace, RuntimeVars)
from engine.integration.registry import LoadedPlugins
from engine.integration.timeouts import format_seconds, parse_go_duration
from engine.templates.render import NamespacesFactory, Renderer, TemplateError, Where, go_string
from engine.workflow.roles import CallRole, Role, Trigger

log = logging.getLogger("engine.integration.call")

DEFAULT_GRACE = 5.0              # seconds a call may overrun its timeout before it is given up
DEFAULT_CALL_TIMEOUT = 30.0      # a hook call's timeout when none is given (AliECS's default)
_PLUGIN_HEAD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\.")


class CallStatus(Enum):
    """Ev_CallEvent.callStatus, with events.proto OpStatus numbers."""

    STARTED = 1
    DONE_OK = 3
    DONE_ERROR = 4
    DONE_TIMEOUT = 5  # given up after its timeout and grace (see the module's docstring)


@dataclass(frozen=True)
class CallEvent:
    """What a call reports as it starts and ends (the fields of Ev_CallEvent)."""

    status: CallStatus
    func: str
    path: str
    environment_id: str
    trigger: str
    await_: str
    timeout: str
    critical: bool
    return_var: str = ""
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class CallResult:
    """How a call ended. `error` names the call and its role; times are Unix seconds."""

    role_path: str
    func: str
    ok: bool
    output: str
    error: str
    started: float
    ended: float
    critical: bool = True


EventSink = Callable[[CallEvent], None]


class RoleRuntimeVars:
    """RuntimeVars on the role tree: the call role's user vars, and the root role's for
    global ones (AliECS roleBase.SetRuntimeVar / SetGlobalRuntimeVar). Read them back
    with Workflow.stack_of."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def set_runtime_var(self, key: str, value: str) -> None:
        self.role.user_vars[key] = value

    def set_global_runtime_var(self, key: str, value: str) -> None:
        root = self.role
        while root.parent is not None:
            root = root.parent
        root.user_vars[key] = value


class _LoopRuntimeVars:
    """What plugins write from their worker thread, applied on the event loop in order,
    and dropped once the call is abandoned."""

    def __init__(self, target: RuntimeVars, loop: asyncio.AbstractEventLoop,
                 abandoned: threading.Event) -> None:
        self._target = target
        self._loop = loop
        self._abandoned = abandoned

    def _post(self, setter: Callable[[str, str], None], key: str, value: str) -> None:
        def apply() -> None:
            if not self._abandoned.is_set():
                setter(key, value)
        try:
            self._loop.call_soon_threadsafe(apply)
        except RuntimeError:   # the loop is closed: the engine is gone, nothing to update
            pass

    def set_runtime_var(self, key: str, value: str) -> None:
        self._post(self._target.set_runtime_var, key, value)

    def set_global_runtime_var(self, key: str, value: str) -> None:
        self._post(self._target.set_global_runtime_var, key, value)


class _UnloadedPlugin(PluginNamespace):
    """Stands in for a plugin that is not loaded when the engine emulates: every
    function answers "" and logs that it did nothing."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        plugin = self._plugin

        def noop(*args: Any) -> str:
            shown = ", ".join(repr(arg) for arg in args)
            log.warning("emulation: %s.%s(%s) answered with a no-op (plugin %s is not loaded)",
                        plugin, name, shown, plugin)
            return ""
        return noop


class Call:
    """One call of a call role, from its trigger (`start`) to its await (`wait`)."""

    def __init__(self, runner: CallRunner, role: CallRole, environment_id: str,
                 stack: Mapping[str, str], runtime: RuntimeVars) -> None:
        self.runner = runner
        self.role = role
        self.environment_id = environment_id
        self.trigger = role.trigger
        self.await_ = role.await_ or role.trigger
        self._stack = stack
        self._runtime = runtime
        self._future: asyncio.Future[CallResult] | None = None
        self._overrun_timer: asyncio.TimerHandle | None = None
        self._started = 0.0
        self.context: CallContext | None = None

    @property
    def describe(self) -> str:
        return f"call {self.role.func} of role {self.role.path}"

    def _event(self, status: CallStatus, output: str = "", error: str = "") -> None:
        role = self.role
        event = CallEvent(status, role.func, role.path, self.environment_id,
                           str(self.trigger) if self.trigger else "",
                           str(self.await_) if self.await_ else "", role.timeout,
                           role.critical, role.return_var, output, error)
        self.runner.emit(event)

    def start(self) -> None:
        """Copy the stack, emit STARTED and begin evaluating on a thread of its own.
        Must run on the event loop that will await the call."""
        if self._future is not None:
            raise RuntimeError(f"{self.describe} was already started")
        loop = asyncio.get_running_loop()
        role = self.role
        trigger = str(self.trigger) if self.trigger else ""
        var_stack = dict(self._stack)
        var_stack.update({
            "environment_id": self.environment_id,
            "__call_func": role.func,
            "__call_timeout": role.timeout,
            "__call_trigger": trigger,
            "__call_await": str(self.await_) if self.await_ else trigger,
            "__call_critical": "true" if role.critical else "false",
            "__call_rolepath": role.path,
        })
        abandoned = threading.Event()
        self.context = CallContext(
            environment_id=self.environment_id, role_path=role.path, func=role.func,
            trigger=trigger, await_=var_stack["__call_await"], timeout=role.timeout,
            critical=role.critical, var_stack=var_stack,
            runtime=_LoopRuntimeVars(self._runtime, loop, abandoned), abandoned=abandoned)
        self._future = loop.create_future()
        self._started = time.time()
        self._event(CallStatus.STARTED)
        limit = self.runner.timeout_seconds(role) + self.runner.grace
        self._overrun_timer = loop.call_later(limit, self._overrun)
        threading.Thread(target=self._evaluate, args=(loop,), daemon=True,
                         name=f"call {role.path}").start()

    def _evaluate(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the call's thread: evaluate func; hand the outcome to the loop."""
        assert self.context is not None
        output, failure = "", None
        try:
            value = self.runner.evaluate(self.context)
            output = go_string(value)
        except TemplateError as error:
            failure = error.reason
        except Exception as error:   # noqa: BLE001 - a failing call is reported, never raised
            log.exception("%s raised", self.describe)
            failure = f"{type(error).__name__}: {error}"
        try:
            loop.call_soon_threadsafe(self._finish, output, failure)
        except RuntimeError:   # the loop is closed: nobody waits for this call any more
            pass

    def _finish(self, output: str, failure: str | None) -> None:
        """On the loop: set the return var, check __call_error, report."""
        assert self.context is not None
        if self._future is None or self._future.done():
            return   # already reported as overrun
        if failure is None and self.role.return_var:
            self._runtime.set_runtime_var(self.role.return_var, output)
        if failure is None:
            message = self.context.var_stack.get(CALL_ERROR_VAR, "")
            if message:
                reason = self.context.var_stack.get(CALL_ERROR_REASON_VAR, "")
                failure = f"{message}. REASON: {reason}" if reason else message
        self._settle(output, None if failure is None else f"{self.describe} failed: {failure}")

    def _overrun(self) -> None:
        assert self.context is not None
        if self._future is None or self._future.done():
            return
        self.context.abandoned.set()
        runner = self.runner
        self._settle("", (
            f"{self.describe} failed: no answer within its timeout of "
            f"{format_seconds(runner.timeout_seconds(self.role))} plus "
            f"{format_seconds(runner.grace)} grace; the plugin does not enforce __call_timeout, "
            f"so nutshell gave up on it (a late answer is ignored)"), CallStatus.DONE_TIMEOUT)

    def _settle(self, output: str, error: str | None,
                status: CallStatus = CallStatus.DONE_ERROR) -> None:
        assert self._future is not None
        if self._overrun_timer is not None:
            self._overrun_timer.cancel()
        result = CallResult(self.role.path, self.role.func, error is None, output, error or "",
                            self._started, time.time(), self.role.critical)
        self._future.set_result(result)
        if error is None:
            self._event(CallStatus.DONE_OK, output=output)
        else:
            log.log(logging.ERROR if self.role.critical else logging.WARNING, "%s", error)
            self._event(status, output=output, error=error)

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    async def wait(self) -> CallResult:
        """The result, once the call has ended (at its await)."""
        if self._future is None:
            raise RuntimeError(f"{self.describe} was never started")
        return await asyncio.shield(self._future)


class CallRunner:
    """Starts the calls of call roles for one engine: the loaded plugins, where events
    go, the namespaces funcs see besides the plugins (e.g. FunctionLibrary.namespaces)
    and the grace after which an overrunning call is given up.

    With `emulate_unloaded`, a call to a plugin that is not loaded answers "" and
    logs a no-op instead of failing (for running real workflows in emulation).
    """

    def __init__(self, plugins: LoadedPlugins, *, on_event: EventSink | None = None,
                 namespaces: NamespacesFactory | None = None, grace: float = DEFAULT_GRACE,
                 emulate_unloaded: bool = False) -> None:
        self.plugins = plugins
        self.on_event = on_event
        self.namespaces = namespaces
        self.grace = grace
        self.emulate_unloaded = emulate_unloaded

    def start(self, role: CallRole, environment_id: str, stack: Mapping[str, str] | None = None,
              runtime: RuntimeVars | None = None) -> Call:
        """Start a role's call now (its trigger). `stack` is the role's consolidated stack
        at this moment (Workflow.stack_of(role), so runtime vars count), by default the
        one it was loaded with; `runtime` takes its variable writes, by default the role
        tree itself."""
        call = Call(self, role, environment_id, role.stack if stack is None else stack,
                    runtime if runtime is not None else RoleRuntimeVars(role))
        call.start()
        return call

    @staticmethod
    def timeout_seconds(role: CallRole) -> float:
        try:
            return max(0.0, parse_go_duration(role.timeout))
        except ValueError:
            return DEFAULT_CALL_TIMEOUT

    def emit(self, event: CallEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:   # noqa: BLE001 - a broken listener must not break the call
            log.exception("call event listener failed on %s of %s", event.status.name, event.path)

    def evaluate(self, context: CallContext) -> Any:
        """The value of the call's func (on the call's thread); TemplateError if it fails."""
        where = Where(role_path=context.role_path, field="call.func")
        plugins = self.plugins.call_stack(context)

        def namespaces(stack: Mapping[str, Any]) -> Mapping[str, Any]:
            names: dict[str, Any] = dict(self.namespaces(stack)) if self.namespaces else {}
            names.update(plugins)
            return names

        head = _PLUGIN_HEAD.match(context.func)
        if head is not None:
            name = head.group(1)
            if name not in namespaces(context.var_stack):
                if not self.emulate_unloaded:
                    raise TemplateError(where, context.func, self.plugins.why_missing(name))
                plugins[name] = _UnloadedPlugin(name, {})
        return Renderer(namespaces).evaluate(context.func, context.var_stack, where)


class PendingCalls:
    """Calls started and not yet collected, by their await (name and weight).

    The hook runner asks `weights(name)` to merge the weights of calls awaited
    at a trigger with those of the hooks it runs there (reference §1.1.1), and
    `collect(name, weight)` at each weight.
    """

    def __init__(self) -> None:
        self._calls: dict[tuple[str, int], list[Call]] = {}

    def add(self, calls: Iterable[Call]) -> None:
        for call in calls:
            if call.await_ is None:
                raise ValueError(f"{call.describe} has neither trigger nor await")
            key = (call.await_.name, call.await_.weight)
            self._calls.setdefault(key, []).append(call)

    def weights(self, name: str) -> set[int]:
        return {weight for (await_name, weight) in self._calls if await_name == name}

    def outstanding(self) -> list[Call]:
        return [call for calls in self._calls.values() for call in calls]

    async def collect(self, await_: Trigger | str, weight: int | None = None) -> list[CallResult]:
        """Wait for every call awaited at this moment; results in the order they were added."""
        trigger = Trigger.parse(await_) if isinstance(await_, str) else await_
        key = (trigger.name, trigger.weight if weight is None else weight)
        calls = self._calls.pop(key, [])
        return list(await asyncio.gather(*(call.wait() for call in calls)))
