"""Which plugins exist, which are loaded, and the loaded set the engine calls.

Adding a plugin is one module: engine/integration/plugins/<name>.py with
`PLUGIN = <its Plugin class>`. The registry lists those modules without
importing them and imports a plugin only when it is enabled, so a plugin's
client libraries cost nothing unless it is used. `PluginRegistry.register`
adds a class from elsewhere (tests, site-specific plugins).

Which plugins are enabled comes from the core settings, as in AliECS: the
YAML entry `aliecs/ANY/any/settings` of the configuration service
(`o2/components/aliecs/ANY/any/settings` in configuration.yaml), keys
`integrationPlugins` (a list) and each plugin's endpoint key (e.g.
`testPluginEndpoint`). Keys are case-insensitive, as viper's. A listed plugin
is loaded only if its endpoint key is set; otherwise it is skipped with a
message saying which key to set, and so is a name no module provides.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.config.service import ConfigurationError, ConfigurationService
from engine.integration.plugin import CallContext, Plugin, PluginNamespace

log = logging.getLogger("engine.integration")

PLUGINS_PACKAGE = "engine.integration.plugins"
CORE_SETTINGS_PATH = "aliecs/ANY/any/settings"
PLUGINS_KEY = "integrationPlugins"


class PluginError(Exception):
    """A plugin module is broken, or the core settings cannot be read; says which and why."""


class PluginRegistry:
    """The plugins this engine could load: the modules of engine.integration.plugins
    plus classes registered by hand (which win over a module of the same name)."""

    def __init__(self, package: str = PLUGINS_PACKAGE,
                 extra: Iterable[type[Plugin]] = ()) -> None:
        self._package = package
        self._registered: dict[str, type[Plugin]] = {}
        for cls in extra:
            self.register(cls)

    def register(self, cls: type[Plugin]) -> None:
        self._registered[cls.name] = cls

    def _modules(self) -> list[str]:
        package = importlib.import_module(self._package)
        return [info.name for info in pkgutil.iter_modules(package.__path__)
                if not info.name.startswith("_")]

    def names(self) -> list[str]:
        """Every plugin name that can be enabled, sorted."""
        return sorted(set(self._modules()) | set(self._registered))

    def plugin_class(self, name: str) -> type[Plugin] | None:
        """The class of a plugin (importing its module), or None if there is none."""
        if name in self._registered:
            return self._registered[name]
        if name not in self._modules():
            return None
        module_name = f"{self._package}.{name}"
        module = importlib.import_module(module_name)
        cls = getattr(module, "PLUGIN", None)
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginError(f"{module_name} must set PLUGIN to its Plugin subclass")
        if cls.name != name:
            raise PluginError(f"{module_name} defines plugin {cls.name!r}; a plugin's module "
                              f"must be named as the plugin ({name!r})")
        return cls


_LIST_SEPARATORS = re.compile(r"[\s,]+")


def _plugin_names(value: Any) -> list[str]:
    """integrationPlugins as a YAML list, or as text separated by commas or spaces."""
    if value is None:
        return []
    if isinstance(value, str):
        return [name for name in _LIST_SEPARATORS.split(value) if name]
    if isinstance(value, (list, tuple)):
        return [str(name).strip() for name in value if str(name).strip()]
    raise PluginError(f"{PLUGINS_KEY} must be a list of plugin names, not {value!r}")


@dataclass(frozen=True)
class SkippedPlugin:
    """A plugin listed in integrationPlugins that was not loaded, and why."""

    name: str
    reason: str


@dataclass
class LoadedPlugins:
    """The plugins an engine uses (AliECS integration.Plugins), in settings order."""

    plugins: list[Plugin] = field(default_factory=list)
    skipped: list[SkippedPlugin] = field(default_factory=list)
    registry: PluginRegistry | None = None
    init_errors: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Plugin]:
        return iter(self.plugins)

    def __len__(self) -> int:
        return len(self.plugins)

    def names(self) -> list[str]:
        return [plugin.name for plugin in self.plugins]

    def get(self, name: str) -> Plugin | None:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        return None

    def why_missing(self, name: str) -> str:
        """Why no loaded plugin has this name, for error messages."""
        loaded = ", ".join(self.names()) or "none"
        for skipped in self.skipped:
            if skipped.name == name:
                return f"integration plugin {name} is not loaded: {skipped.reason}"
        if self.registry is not None and name in self.registry.names():
            cls = self.registry.plugin_class(name)
            key = cls.endpoint_key if cls is not None else "its endpoint key"
            return (f"integration plugin {name} is not loaded: list it in {PLUGINS_KEY} and set "
                    f"{key} in the core settings ({CORE_SETTINGS_PATH}); loaded: {loaded}")
        return f"there is no integration plugin {name} (loaded: {loaded})"

    def call_stack(self, call: CallContext) -> dict[str, PluginNamespace]:
        """What a call role's func sees: each plugin's functions under its name."""
        return {plugin.name: PluginNamespace(plugin.name, plugin.call_stack(call))
                for plugin in self.plugins}

    def object_stack(self, var_stack: Mapping[str, str]) -> dict[str, PluginNamespace]:
        """What templates see from the plugins while a role with this stack is processed."""
        return {plugin.name: PluginNamespace(plugin.name, plugin.object_stack(var_stack))
                for plugin in self.plugins}

    def environments_data(self, environment_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """environment id → plugin name → that plugin's data (AliECS GetEnvironmentsData)."""
        data: dict[str, dict[str, str]] = {}
        for plugin in self.plugins:
            for environment_id, text in plugin.environments_data(environment_ids).items():
                data.setdefault(environment_id, {})[plugin.name] = text
        return data

    async def init_all(self, instance_id: str) -> None:
        """Initialise every plugin at once, each on a worker thread. A failure is logged
        and kept in `init_errors`; the plugin stays loaded, as in AliECS."""
        async def init(plugin: Plugin) -> None:
            try:
                await asyncio.to_thread(plugin.init, instance_id)
            except Exception as error:   # noqa: BLE001 - any plugin failure is reported, not raised
                self.init_errors[plugin.name] = f"{type(error).__name__}: {error}"
                log.error("integration plugin %s failed to initialise: %s", plugin.name, error)
        await asyncio.gather(*(init(plugin) for plugin in self.plugins))

    async def destroy_all(self) -> None:
        """Destroy every plugin in turn; a failure is logged and the rest still go."""
        for plugin in self.plugins:
            try:
                await asyncio.to_thread(plugin.destroy)
            except Exception as error:   # noqa: BLE001
                log.error("integration plugin %s failed to destroy: %s", plugin.name, error)


def load_plugins(settings: Mapping[str, Any], registry: PluginRegistry | None = None
                 ) -> LoadedPlugins:
    """The plugins the settings enable, made with their endpoints (AliECS PluginsInstance)."""
    registry = registry or PluginRegistry()
    keys = {str(key).lower(): value for key, value in settings.items()}
    loaded = LoadedPlugins(registry=registry)
    for name in dict.fromkeys(_plugin_names(keys.get(PLUGINS_KEY.lower()))):
        cls = registry.plugin_class(name)
        if cls is None:
            reason = (f"requested plugin unavailable: no module {PLUGINS_PACKAGE}.{name} "
                      f"(available: {', '.join(registry.names()) or 'none'})")
        else:
            endpoint = keys.get(cls.endpoint_key.lower())
            text = "" if endpoint is None else str(endpoint).strip()
            if text:
                loaded.plugins.append(cls(text))
                log.info("integration plugin %s (%s) loaded, endpoint %s",
                         name, cls.pretty_name, text)
                continue
            reason = (f"listed in {PLUGINS_KEY} but its endpoint {cls.endpoint_key} is not set "
                      f"in the core settings ({CORE_SETTINGS_PATH})")
        loaded.skipped.append(SkippedPlugin(name, reason))
        log.error("integration plugin %s not loaded: %s", name, reason)
    return loaded


def core_settings(config: ConfigurationService) -> dict[str, Any]:
    """The core settings YAML (`aliecs/ANY/any/settings`, a text entry holding YAML, as
    in Consul); empty when there is none."""
    component, run_type, role, entry = CORE_SETTINGS_PATH.split("/")
    try:
        config.resolve_component(component, run_type, role, entry)
    except ConfigurationError:
        return {}   # no settings entry: no plugins, as an AliECS core without integrationPlugins
    try:
        text = config.get_component(CORE_SETTINGS_PATH)
    except ConfigurationError as error:
        raise PluginError(f"cannot read the core settings {CORE_SETTINGS_PATH}: {error}") from None
    try:
        settings = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        raise PluginError(f"the core settings {CORE_SETTINGS_PATH} are not valid YAML: "
                          f"{error}") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise PluginError(f"the core settings {CORE_SETTINGS_PATH} must be a YAML mapping, "
                          f"not {type(settings).__name__}")
    return settings


def plugins_from_configuration(config: ConfigurationService,
                               registry: PluginRegistry | None = None) -> LoadedPlugins:
    """The plugins enabled by the core settings of this configuration service."""
    return load_plugins(core_settings(config), registry)
