"""Integration plugins: the registry, loading from the core settings (real configuration
files), the loaded set's stacks, and testplugin's functions run as real calls."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.config.embedded import EmbeddedConfiguration
from engine.integration import (CallRunner, ConnectionState, Plugin, PluginError,
                                PluginRegistry, SkippedPlugin, core_settings, load_plugins,
                                plugins_from_configuration)
from engine.integration.plugin import CallContext, CallFunction
from engine.integration.plugins.testplugin import TestPlugin
from engine.templates.functions import FunctionLibrary
from engine.templates.render import Renderer, Where
from engine.workdir import WorkingDirectory
from engine.workflow.roles import AggregatorRole, CallRole, Trigger, Workflow

TESTPLUGIN_ON = {"integrationPlugins": ["testplugin"], "testPluginEndpoint": "//127.0.0.1:00000"}


class FlakyPlugin(Plugin):
    """A plugin whose init fails, to check that init_all reports and keeps going."""

    name = "flaky"
    pretty_name = "Flaky"
    endpoint_key = "flakyEndpoint"

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.destroyed = False

    @property
    def connection_state(self) -> ConnectionState:
        return ConnectionState.TRANSIENT_FAILURE

    def init(self, instance_id: str) -> None:
        raise ConnectionError(f"cannot reach {self.endpoint}")

    def call_stack(self, call: CallContext) -> Mapping[str, CallFunction]:
        return {}

    def object_stack(self, var_stack: Mapping[str, str]) -> Mapping[str, Any]:
        return {"Where": lambda: self.endpoint}

    def environments_data(self, environment_ids: Sequence[str]) -> dict[str, str]:
        return {environment_ids[0]: "flaky"} if environment_ids else {}

    def destroy(self) -> None:
        self.destroyed = True


# ------------------------------------------------------------------ registry

def test_registry_finds_plugin_modules_without_importing_them_all() -> None:
    registry = PluginRegistry()
    assert "testplugin" in registry.names()
    assert registry.plugin_class("testplugin") is TestPlugin
    assert registry.plugin_class("nosuch") is None


def test_a_registered_class_is_available_and_wins_over_a_module() -> None:
    class SiteTestPlugin(TestPlugin):
        pass

    registry = PluginRegistry(extra=[FlakyPlugin, SiteTestPlugin])
    assert registry.names() == ["flaky", "testplugin"]
    assert registry.plugin_class("flaky") is FlakyPlugin
    assert registry.plugin_class("testplugin") is SiteTestPlugin


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A fresh package of plugin modules (its own name: imported modules are cached)."""
    name = f"site_plugins_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    return package, name


def test_adding_a_plugin_is_one_module(plugin_package: tuple[Path, str]) -> None:
    folder, package = plugin_package
    (folder / "hello.py").write_text(
        "from engine.integration.plugins.testplugin import TestPlugin\n"
        "class Hello(TestPlugin):\n"
        "    name = 'hello'\n"
        "    pretty_name = 'Hello'\n"
        "    endpoint_key = 'helloEndpoint'\n"
        "PLUGIN = Hello\n")
    registry = PluginRegistry(package=package)
    assert registry.names() == ["hello"]
    loaded = load_plugins({"integrationPlugins": ["hello"], "helloEndpoint": "x:1"}, registry)
    assert loaded.names() == ["hello"] and loaded.get("hello").endpoint == "x:1"


@pytest.mark.parametrize("body, message", [
    ("PLUGIN = 3\n", "must set PLUGIN to its Plugin subclass"),
    ("from engine.integration.plugins.testplugin import TestPlugin as PLUGIN\n",
     "defines plugin 'testplugin'; a plugin's module must be named as the plugin ('broken')"),
])
def test_a_broken_plugin_module_is_named(plugin_package: tuple[Path, str], body: str,
                                         message: str) -> None:
    folder, package = plugin_package
    (folder / "broken.py").write_text(body)
    with pytest.raises(PluginError) as caught:
        PluginRegistry(package=package).plugin_class("broken")
    assert f"{package}.broken" in str(caught.value) and message in str(caught.value)


# ------------------------------------------------------------------ loading

def test_a_listed_plugin_with_its_endpoint_is_loaded() -> None:
    loaded = load_plugins(TESTPLUGIN_ON)
    assert loaded.names() == ["testplugin"] and not loaded.skipped
    plugin = loaded.get("testplugin")
    assert isinstance(plugin, TestPlugin)
    assert plugin.endpoint == "//127.0.0.1:00000"
    assert plugin.pretty_name == "Test plugin"
    assert plugin.connection_state is ConnectionState.READY


def test_a_listed_plugin_without_endpoint_is_skipped_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    loaded = load_plugins({"integrationPlugins": ["testplugin"], "testPluginEndpoint": " "})
    assert len(loaded) == 0
    [skipped] = loaded.skipped
    assert skipped.name == "testplugin"
    assert "its endpoint testPluginEndpoint is not set" in skipped.reason
    assert "integration plugin testplugin not loaded" in caplog.text


def test_unknown_and_unlisted_plugins() -> None:
    loaded = load_plugins({"integrationPlugins": ["dcs"], "testPluginEndpoint": "x"})
    assert len(loaded) == 0   # testplugin has an endpoint but is not listed
    assert loaded.skipped == [SkippedPlugin(
        "dcs", "requested plugin unavailable: no module engine.integration.plugins.dcs "
               "(available: testplugin)")]
    assert load_plugins({}).names() == []


def test_settings_keys_are_case_insensitive_and_lists_may_be_text() -> None:
    loaded = load_plugins({"INTEGRATIONPLUGINS": "testplugin, testplugin",
                           "testpluginendpoint": "//h:1"})
    assert loaded.names() == ["testplugin"]
    with pytest.raises(PluginError, match="must be a list of plugin names"):
        load_plugins({"integrationPlugins": {"testplugin": 1}})


SETTINGS_YAML = """\
o2:
  components:
    aliecs:
      ANY:
        any:
          settings: |
            integrationPlugins:
              - testplugin
              - trg
            testPluginEndpoint: "//127.0.0.1:00000"
"""


@pytest.fixture
def configuration(tmp_path: Path) -> Iterator[tuple[WorkingDirectory, EmbeddedConfiguration]]:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    service = EmbeddedConfiguration(workdir, hostname="core.example")
    yield workdir, service
    service.close()


def test_plugins_from_the_core_settings_entry(configuration) -> None:
    workdir, service = configuration
    assert core_settings(service) == {}   # no configuration file: no plugins
    assert plugins_from_configuration(service).names() == []
    workdir.configuration_file.write_text(SETTINGS_YAML)
    service.reload()
    loaded = plugins_from_configuration(service)
    assert loaded.names() == ["testplugin"]
    assert [s.name for s in loaded.skipped] == ["trg"]


@pytest.mark.parametrize("payload, message", [
    ("'[unclosed'", "not valid YAML"),
    ("'- a list'", "must be a YAML mapping, not list"),
])
def test_bad_core_settings_are_named(configuration, payload: str, message: str) -> None:
    workdir, service = configuration
    workdir.configuration_file.write_text(
        "o2: {components: {aliecs: {ANY: {any: {settings: " + payload + "}}}}}\n")
    service.reload()
    with pytest.raises(PluginError) as caught:
        core_settings(service)
    assert "aliecs/ANY/any/settings" in str(caught.value) and message in str(caught.value)


# ------------------------------------------------------------------ the loaded set

def test_object_stack_reaches_templates_through_the_function_library(configuration) -> None:
    _, service = configuration
    loaded = load_plugins(TESTPLUGIN_ON)
    library = FunctionLibrary(service, plugin_objects=loaded.object_stack({}))
    renderer = Renderer(library.namespaces)
    where = Where(file="t.yaml", role_path="root")
    assert renderer.render("{{ testplugin.test }}-{{ odc.GenerateEPNTopologyFullname() }}",
                           {}, where) == "test_data-"
    with pytest.raises(Exception, match="testplugin has no nope"):
        renderer.render("{{ testplugin.nope }}", {}, where)


def test_environments_data_init_and_destroy() -> None:
    loaded = load_plugins({"integrationPlugins": "testplugin flaky", "testPluginEndpoint": "t",
                           "flakyEndpoint": "f:1"}, PluginRegistry(extra=[FlakyPlugin]))
    assert loaded.environments_data(["e1", "e2"]) == {
        "e1": {"testplugin": "test_data_e1", "flaky": "flaky"},
        "e2": {"testplugin": "test_data_e2"}}
    asyncio.run(loaded.init_all("framework-1"))
    assert loaded.names() == ["testplugin", "flaky"]   # a failed init keeps the plugin
    assert loaded.init_errors == {"flaky": "ConnectionError: cannot reach f:1"}
    asyncio.run(loaded.destroy_all())
    assert loaded.get("flaky").destroyed


# ------------------------------------------------------------------ testplugin, as real calls

def tree(*calls: tuple[str, str, str]) -> tuple[Workflow, list[CallRole]]:
    """A root with call roles (name, func, trigger), each with a short timeout."""
    root = AggregatorRole(name="root", path="root", origin="test")
    roles = []
    for name, func, trigger in calls:
        role = CallRole(name=name, path=f"root.{name}", origin="test", func=func,
                        trigger=Trigger.parse(trigger), timeout="200ms", parent=root)
        role.await_ = role.trigger
        root.children.append(role)
        roles.append(role)
    return Workflow(root=root, name="root", origin="test"), roles


@pytest.fixture
def runner() -> CallRunner:
    return CallRunner(load_plugins(TESTPLUGIN_ON), grace=2.0)


async def test_noop_sleeps_for_the_call_timeout(runner: CallRunner) -> None:
    workflow, [role] = tree(("noop", "testplugin.Noop()", "before_CONFIGURE"))
    started = time.monotonic()
    result = await runner.start(role, "env1", workflow.stack_of(role)).wait()
    took = time.monotonic() - started
    assert result.ok and result.output == "" and result.error == ""
    assert 0.19 <= took < 1.0


async def test_test_marks_the_role_called(runner: CallRunner) -> None:
    workflow, [role] = tree(("t", "testplugin.Test()", "before_CONFIGURE"))
    result = await runner.start(role, "env1", workflow.stack_of(role)).wait()
    assert result.ok
    assert workflow.stack_of(role)["root.t_called"] == "true"


async def test_test_fails_when_asked(runner: CallRunner) -> None:
    workflow, [role] = tree(("t", "testplugin.Test()", "before_CONFIGURE"))
    workflow.root.vars["testplugin_fail"] = "True"   # Go's ParseBool spellings
    result = await runner.start(role, "env1", workflow.stack_of(role)).wait()
    assert not result.ok
    assert result.error == ("call testplugin.Test() of role root.t failed: "
                            "error triggered in testplugin.Test call")


async def test_test_hangs_until_the_call_timeout(runner: CallRunner) -> None:
    workflow, [role] = tree(("t", "testplugin.Test()", "before_CONFIGURE"))
    workflow.root.vars["testplugin_hang"] = "1"
    started = time.monotonic()
    result = await runner.start(role, "env1", workflow.stack_of(role)).wait()
    took = time.monotonic() - started
    assert not result.ok and 0.19 <= took < 1.5   # its own timeout, well before the grace
    assert "testplugin.Test hung until its timeout of 200ms" in result.error


async def test_timestamp_observer_sees_the_run_timestamps(runner: CallRunner) -> None:
    workflow, [role] = tree(("ts", "testplugin.TimestampObserver()", "after_START_ACTIVITY"))
    workflow.root.user_vars.update(run_start_time_ms="1700000000000",
                                   run_start_completion_time_ms="", run_end_time_ms="0")
    result = await runner.start(role, "env1", workflow.stack_of(role)).wait()
    assert result.ok
    seen = {k: v for k, v in workflow.root.user_vars.items() if k.startswith("root.ts_")}
    assert seen == {"root.ts_called": "true", "root.ts_saw_run_start_time_ms": "true"}


async def test_call_order_observer_records_arrival_order(runner: CallRunner) -> None:
    workflow, roles = tree(("a", "testplugin.CallOrderObserver()", "before_START_ACTIVITY"),
                           ("b", "testplugin.CallOrderObserver()", "before_START_ACTIVITY"))
    for role in reversed(roles):
        assert (await runner.start(role, "env1", workflow.stack_of(role)).wait()).ok
    plugin = runner.plugins.get("testplugin")
    assert plugin.call_order("env1") == ["root.b", "root.a"]
    assert workflow.root.user_vars["call_history"] == "root.b,root.a"
    assert plugin.call_order("other") == []

