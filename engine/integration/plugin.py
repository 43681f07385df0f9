"""The interface every integration plugin implements (AliECS core/integration/plugin.go).

A plugin connects the engine to one outside service (DCS, ODC, the trigger
system, …). It gives call roles their functions (`call_stack`, evaluated at a
hook's trigger, e.g. `dcs.StartOfRun()`) and templates their objects
(`object_stack`, e.g. `odc.GenerateEPNTopologyFullname()`). One module under
engine/integration/plugins/ per plugin, named as the plugin, with `PLUGIN =
<its class>`; engine.integration.registry finds it there.

Plugin functions are plain blocking functions: the call mechanics run each
call on a worker thread of its own, so a slow service never stalls the
engine's event loop.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol

from engine.templates.render import Namespace

# What a call role's func reads and writes besides its arguments (reference §8).
CALL_ERROR_VAR = "__call_error"
CALL_ERROR_REASON_VAR = "__call_error_reason"


class ConnectionState(str, Enum):
    """A plugin's link to its service, in gRPC's connectivity words as AliECS reports them."""

    IDLE = "IDLE"
    CONNECTING = "CONNECTING"
    READY = "READY"
    TRANSIENT_FAILURE = "TRANSIENT_FAILURE"
    SHUTDOWN = "SHUTDOWN"


class RuntimeVars(Protocol):
    """Where a call's side effects on variables land (AliECS ParentRole).

    `set_runtime_var` writes the call role's own user vars (a `return` var
    too); `set_global_runtime_var` writes the root role's, which every role
    sees. The environment decides how they are kept.
    """

    def set_runtime_var(self, key: str, value: str) -> None: ...

    def set_global_runtime_var(self, key: str, value: str) -> None: ...


@dataclass(eq=False)
class CallContext:
    """One call of a call role as a plugin sees it (AliECS callable.Call).

    `var_stack` is the call's own copy of the role's consolidated stack with
    the `__call_*` keys; a plugin reports failure by writing `__call_error`
    (and optionally `__call_error_reason`) into it, as in AliECS, or with
    `fail()`. `abandoned` is set when nutshell gave up on the call (it
    overran its timeout by the grace); `sleep()` wakes up then, so a plugin
    waiting with it stops at once.
    """

    environment_id: str
    role_path: str
    func: str
    trigger: str
    await_: str
    timeout: str
    critical: bool
    var_stack: dict[str, str]
    runtime: RuntimeVars
    abandoned: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def fail(self, message: str, reason: str = "") -> None:
        """Mark the call failed (what AliECS plugins do by writing `__call_error`)."""
        self.var_stack[CALL_ERROR_VAR] = message
        if reason:
            self.var_stack[CALL_ERROR_REASON_VAR] = reason

    def sleep(self, seconds: float) -> bool:
        """Wait up to `seconds`; False if the call was abandoned meanwhile."""
        return not self.abandoned.wait(max(0.0, seconds))


CallFunction = Callable[..., Any]


class Plugin(ABC):
    """One integration plugin. Subclasses set the class attributes and implement
    the abstract methods; the registry makes one instance per engine with the
    endpoint read from the settings key `endpoint_key`."""

    name: ClassVar[str]            # how templates and integrationPlugins name it: "dcs"
    pretty_name: ClassVar[str]     # for people: "DCS"
    endpoint_key: ClassVar[str]    # the settings key of its endpoint: "dcsServiceEndpoint"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    @property
    @abstractmethod
    def connection_state(self) -> ConnectionState:
        """The state of the link to the service, for `nutshell` status views."""

    @abstractmethod
    def init(self, instance_id: str) -> None:
        """Connect; `instance_id` identifies this engine (AliECS: the Mesos framework id).
        Raise to report a failure; the plugin stays loaded, as in AliECS."""

    @abstractmethod
    def call_stack(self, call: CallContext) -> Mapping[str, CallFunction]:
        """The functions a call role's func may call on this plugin, bound to this call."""

    @abstractmethod
    def object_stack(self, var_stack: Mapping[str, str]) -> Mapping[str, Any]:
        """What templates see under this plugin's name while a role is processed."""

    @abstractmethod
    def environments_data(self, environment_ids: Sequence[str]) -> dict[str, str]:
        """Per environment, what the plugin knows about it (shown by GetEnvironments)."""

    @abstractmethod
    def destroy(self) -> None:
        """Disconnect and release what the plugin holds."""


class PluginNamespace(Namespace):
    """A plugin's call or object stack as templates reach it: `testplugin.Test()`.

    A name the plugin does not offer is an error that lists what it does
    offer, rather than Jinja2's bare "undefined".
    """

    __slots__ = ("_members", "_plugin")

    def __init__(self, plugin: str, members: Mapping[str, Any]) -> None:
        self._plugin = plugin
        self._members = members

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._members[name]
        except KeyError:
            offered = ", ".join(sorted(self._members)) or "nothing"
            raise LookupError(f"integration plugin {self._plugin} has no {name} "
                              f"(it offers {offered})") from None
