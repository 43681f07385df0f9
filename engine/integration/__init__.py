"""Integration plugins (AliECS core/integration) and the calls of call roles.

`Plugin` is the interface, `PluginRegistry` finds plugins (one module each
under engine.integration.plugins), `plugins_from_configuration` /
`load_plugins` load the enabled ones into `LoadedPlugins`, and `CallRunner`
runs call roles' funcs against them at their triggers.
"""
from engine.integration.call import (Call, CallEvent, CallResult, CallRunner, CallStatus,
                                     PendingCalls, RoleRuntimeVars)
from engine.integration.plugin import (CallContext, ConnectionState, Plugin, PluginNamespace,
                                       RuntimeVars)
from engine.integration.registry import (LoadedPlugins, PluginError, PluginRegistry,
                                         SkippedPlugin, core_settings, load_plugins,
                                         plugins_from_configuration)

__all__ = [
    "Call", "CallContext", "CallEvent", "CallResult", "CallRunner", "CallStatus",
    "ConnectionState", "LoadedPlugins", "PendingCalls", "Plugin", "PluginError",
    "PluginNamespace", "PluginRegistry", "RoleRuntimeVars", "RuntimeVars", "SkippedPlugin",
    "core_settings", "load_plugins", "plugins_from_configuration",
]
