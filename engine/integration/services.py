"""What the integration plugins look like from outside (o2control GetIntegratedServices)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from engine.integration.registry import LoadedPlugins


@dataclass(frozen=True)
class IntegratedService:
    """One plugin the settings list: loaded (enabled) or skipped, and its link's state."""

    name: str  # the plugin id templates use, e.g. "testplugin"
    pretty_name: str
    enabled: bool
    endpoint: str
    connection_state: str  # READY, CONNECTING, TRANSIENT_FAILURE, IDLE, SHUTDOWN or UNKNOWN
    data: str  # a JSON map: why it was skipped or failed to initialise, when it was


def describe_services(plugins: LoadedPlugins) -> list[IntegratedService]:
    services = [IntegratedService(
        name=plugin.name, pretty_name=plugin.pretty_name, enabled=True,
        endpoint=plugin.endpoint, connection_state=plugin.connection_state.value,
        data=json.dumps({"initError": plugins.init_errors[plugin.name]}
                        if plugin.name in plugins.init_errors else {}))
        for plugin in plugins]
    services += [IntegratedService(name=skipped.name, pretty_name=skipped.name, enabled=False,
                                   endpoint="", connection_state="UNKNOWN",
                                   data=json.dumps({"skipped": skipped.reason}))
                 for skipped in plugins.skipped]
    return services
