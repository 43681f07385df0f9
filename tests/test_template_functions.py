"""The function library over the embedded configuration service (a real configuration.yaml
and sqlite store in a tmp dir): every helper's semantics, the {"error":...} answers, dpl.*
delegation, plugin objects and legacy names, driven through real template rendering."""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from engine.config.embedded import EmbeddedConfiguration
from engine.templates.functions import (
    FALSY_WORDS,
    TRUTHY_WORDS,
    FunctionLibrary,
    UidGenerator,
    new_uid,
)
from engine.templates.render import Namespace, Renderer, TemplateError, Where
from engine.workdir import WorkingDirectory

WHERE = Where(repo="repo", file="workflows/wf.yaml", role_path="wf.host-flp1", field="vars")

CONFIGURATION = """
o2:
  hardware:
    detectors:
      ITS:
        flps:
          alio2-cr1-flp187: {}
          alio2-cr1-flp188: {}
      TPC:
        flps:
          alio2-cr1-flp001: {}
      TRG:
        flps:
          alio2-cr1-flp163: {}
    flps:
      alio2-cr1-flp187:
        cards: '{"0": {"type": "CRU", "serial": 1041, "endpoint": 0},
                 "1": {"type": "CRU", "serial": 1041, "endpoint": 1},
                 "2": {"type": "CRU", "serial": 1150, "endpoint": 0}}'
  components:
    readout:
      ANY:
        any:
          readout-stfb-alio2-cr1-flp187: "[readout]\\nrate=1\\n"
          common: "common=1"
      PHYSICS:
        standalone:
          readout-standalone-alio2-cr1-flp187: |
            [readout]
            host={{ it }}
            detector={{ strings.ToLower(detector) }}
            {% if missing_var %}never{% endif %}{% include "readout/ANY/any/common" %}
          legacy-alio2-cr1-flp187: "host={{ it }} up={{ strings.ToUpper(it) }}"
          broken: "{% if %}"
  runtime:
    trg:
      ctp:
        run-config: "from the file"
"""


@pytest.fixture
def config(tmp_path: Path) -> Iterator[EmbeddedConfiguration]:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.configuration_file.write_text(CONFIGURATION, encoding="utf-8")
    service = EmbeddedConfiguration(workdir, hostname="core.local")
    yield service
    service.close()


class RecordingDpl:
    """A DplGenerator (the interface the workflow package implements) that records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def generate(self, command: str, stack: Mapping[str, Any]) -> str:
        self.calls.append(("generate", command, dict(stack)))
        return "jit-0123abcd"

    def generate_from_uri(self, name: str, stack: Mapping[str, Any]) -> str:
        self.calls.append(("from_uri", name, dict(stack)))
        return f"jit-{name}"

    def generate_from_uri_or_fallback(self, name: str, stack: Mapping[str, Any]) -> str:
        self.calls.append(("fallback", name, dict(stack)))
        return name


@pytest.fixture
def library(config: EmbeddedConfiguration) -> FunctionLibrary:
    return FunctionLibrary(config)


def run(library: FunctionLibrary, text: str, **stack: Any) -> str:
    return Renderer(library.namespaces).render(text, stack, WHERE)


def value(library: FunctionLibrary, expression: str, **stack: Any) -> Any:
    return Renderer(library.namespaces).evaluate(expression, stack, WHERE)


def error_message(text: str) -> str:
    decoded = json.loads(text)
    assert list(decoded) == ["error"]
    return decoded["error"]


# --- strings -----------------------------------------------------------------------------------

def test_is_falsy_and_is_truthy_word_lists(library: FunctionLibrary) -> None:
    assert FALSY_WORDS == {"false", "no", "n", "0", "off", "none"}
    assert TRUTHY_WORDS == {"true", "yes", "y", "1", "on", "ok"}
    for word in ["", "  ", "false", " FALSE ", "No", "n", "0", "off", "None"]:
        assert value(library, "strings.IsFalsy(w)", w=word) is True, word
    for word in ["true", "x", "null", "nil", "-", "00"]:
        assert value(library, "strings.IsFalsy(w)", w=word) is False, word
    for word in ["true", " Yes", "Y", "1", "ON", "ok"]:
        assert value(library, "strings.IsTruthy(w)", w=word) is True, word
    for word in ["", "false", "2", "yess", "sure"]:
        assert value(library, "strings.IsTruthy(w)", w=word) is False, word


def test_string_helpers(library: FunctionLibrary) -> None:
    assert run(library, "{{ strings.ToLower(d) }}-{{ strings.ToUpper(d) }}", d="Its") == "its-ITS"
    assert run(library, "[{{ strings.TrimSpace(s) }}]", s="\t a b \n") == "[a b]"
    assert run(library, "{{ strings.TrimQuotes(s) }}", s='""quoted" x"') == 'quoted" x'
    assert value(library, "strings.Atoi(s) + 1", s="-41") == -40
    assert value(library, "strings.Atoi(s)", s="+7") == 7
    assert value(library, "strings.Itoa(strings.Atoi(s))", s="12") == "12"


def test_atoi_of_a_non_number_is_zero_with_a_warning(
        library: FunctionLibrary, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.templates"):
        assert value(library, "strings.Atoi(s)", s="1_000") == 0
        assert value(library, "strings.Atoi(s)", s=" 3") == 0
    assert "strings.Atoi: '1_000' is not an integer" in caplog.text


def test_helpers_reject_wrong_argument_types_with_a_clear_error(library: FunctionLibrary) -> None:
    with pytest.raises(TemplateError) as caught:
        run(library, "{{ strings.ToLower(x) }}", x=None)
    assert str(caught.value) == (f"{WHERE}: {{{{ strings.ToLower(x) }}}}: "
                                 "strings.ToLower: argument must be a string, not nil")
    with pytest.raises(TemplateError, match="strings.Itoa: argument must be an int, not string"):
        run(library, "{{ strings.Itoa(x) }}", x="1")


# --- json ------------------------------------------------------------------------------------

def test_json_unmarshal_marshal_sort(library: FunctionLibrary) -> None:
    detectors = '["TPC","ITS","MCH"]'
    assert run(library, "{{ json.Marshal(json.Sort(json.Unmarshal(detectors))) }}",
               detectors=detectors) == '["ITS","MCH","TPC"]'
    assert value(library, "json.Unmarshal(s)", s='{"a": [1, 2.5], "b": null}') == \
        {"a": [1.0, 2.5], "b": None}
    assert run(library, "{{ json.Unmarshal(s) }}", s="[1, 2.5, true]") == "[1,2.5,true]"
    assert run(library, "{{ json.Marshal(json.Unmarshal(s)) }}",
               s='{"z": "<b>", "a": 1e21}') == '{"a":1e+21,"z":"\\u003cb\\u003e"}'
    assert run(library, "{{ json.Serialize(json.Deserialize(s)) }}", s="[3]") == "[3]"
    assert value(library, "'MCH' in json.Unmarshal(detectors)", detectors=detectors) is True


def test_json_unmarshal_of_bad_text_is_nil(library: FunctionLibrary,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.templates"):
        assert value(library, "json.Unmarshal(s)", s="[ITS]") is None
        assert value(library, "json.Unmarshal(s)", s="NaN") is None
    assert run(library, "<{{ json.Unmarshal(s) }}>", s="{") == "<>"
    assert "json.Unmarshal: cannot decode '[ITS]'" in caplog.text
    assert run(library, "{{ json.Marshal(json.Sort(json.Unmarshal(s))) }}", s="") == "null"


# --- uid -------------------------------------------------------------------------------------

def test_uid_new_gives_short_unique_ids(library: FunctionLibrary) -> None:
    ids = [run(library, "{{ uid.New() }}") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[1-9a-km-zA-HJ-NP-Z]{10,12}", uid) for uid in ids), ids[:5]
    assert run(library, "{{ NewID() }}") != new_uid()


def test_uid_generator_is_unique_across_threads_and_bursts() -> None:
    generator = UidGenerator(machine_id=0x1234)
    found: list[str] = []
    lock = threading.Lock()

    def burst() -> None:
        ids = [generator.new() for _ in range(3000)]   # more than 256 per 10 ms tick
        with lock:
            found.extend(ids)

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 12000


# --- util ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stack", "expected"), [
    ({"its_dpl_workflow": "its-wf", "dpl_workflow": "default-wf"}, "its-wf"),
    ({"its_dpl_workflow": "none", "dpl_workflow": "default-wf"}, "default-wf"),
    ({"its_dpl_workflow": "  ", "dpl_workflow": "default-wf"}, "default-wf"),
    ({"dpl_workflow": "default-wf"}, "default-wf"),
    ({"its_dpl_workflow": "none", "dpl_workflow": "none"}, ""),
    ({}, ""),
])
def test_prefixed_override(library: FunctionLibrary, stack: dict[str, str], expected: str) -> None:
    text = "{{ util.PrefixedOverride( 'dpl_workflow', strings.ToLower( d ) ) }}"
    assert run(library, text, d="ITS", **stack) == expected
    assert run(library, "{{ PrefixedOverride('dpl_workflow', 'its') }}", **stack) == expected


@pytest.mark.parametrize(("host", "low", "high", "expected"), [
    ("alio2-cr1-flp001", "001", "072", "true"),
    ("alio2-cr1-flp072", "001", "072", "true"),
    ("alio2-cr1-flp073", "001", "072", "false"),
    ("alio2-cr1-flp145", "073", "144", "false"),
    ("alio2-cr2-flp010", "001", "072", "false"),   # other prefix
    ("alio2-cr1-flpX10", "001", "072", "false"),   # no number
    ("alio2-cr1-flp010", "one", "072", "false"),   # bad bound
])
def test_suffix_in_range_returns_true_or_false_text(
        library: FunctionLibrary, host: str, low: str, high: str, expected: str) -> None:
    text = f"{{{{ util.SuffixInRange(it, 'alio2-cr1-flp', '{low}', '{high}') }}}}"
    assert run(library, text, it=host) == expected
    assert value(library, f"SuffixInRange(it, 'alio2-cr1-flp', '{low}', '{high}') == 'true'",
                 it=host) is (expected == "true")


def test_nullable_and_dump(config: EmbeddedConfiguration, tmp_path: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    library = FunctionLibrary(config, dump_dir=tmp_path / "dumps")
    assert run(library, "[{{ util.Nullable(x) }}|{{ Nullable(y) }}]", x=None, y="v") == "[|v]"
    assert run(library, "{{ util.Dump(v, path) }}", v="payload", path="env/dump.txt") == "payload"
    assert (tmp_path / "dumps" / "env" / "dump.txt").read_text() == "payload"
    # a template may not write outside the dump folder
    outside = tmp_path / "outside.txt"
    for path in (str(outside), "../outside.txt"):
        assert run(library, "{{ Dump(v, path) }}", v="x", path=path) == "x"
    assert not outside.exists()
    assert "is outside" in caplog.text


# --- inventory ---------------------------------------------------------------------------------

def test_inventory_answers(library: FunctionLibrary) -> None:
    assert run(library, "{{ inventory.DetectorForHost( it ) }}", it="alio2-cr1-flp187") == "ITS"
    assert run(library, "{{ inventory.DetectorsForHosts(hosts) }}",
               hosts='["alio2-cr1-flp001","alio2-cr1-flp188","alio2-cr1-flp187"]') == \
        '["ITS","TPC"]'
    assert run(library, "{{ inventory.CRUCardsForHost( it ) }}", it="alio2-cr1-flp187") == \
        '["1041","1150"]'
    assert run(library, "{{ inventory.EndpointsForCRUCard( host, card ) }}",
               host="alio2-cr1-flp187", card="1041") == "0 1"
    # as readout-dataflow uses it: the detectors default and a for range over cards
    assert json.loads(run(library, "{{ inventory.CRUCardsForHost( it ) }}",
                          it="alio2-cr1-flp187")) == ["1041", "1150"]


def test_inventory_errors_come_back_as_error_text(library: FunctionLibrary) -> None:
    assert "alio2-cr1-flp999" in error_message(
        run(library, "{{ inventory.DetectorForHost(h) }}", h="alio2-cr1-flp999"))
    assert error_message(run(library, "{{ inventory.DetectorsForHosts(h) }}", h="flp1")) \
        .startswith("DetectorsForHosts function: ")
    assert "alio2-cr1-flp999" in error_message(
        run(library, "{{ inventory.DetectorsForHosts(h) }}", h='["alio2-cr1-flp999"]'))
    [only] = json.loads(run(library, "{{ inventory.CRUCardsForHost(h) }}", h="alio2-cr1-flp001"))
    assert only.startswith("error: no CRU cards for host 'alio2-cr1-flp001'")
    assert "alio2-cr1-flp001" in error_message(
        run(library, "{{ inventory.EndpointsForCRUCard(h, '1') }}", h="alio2-cr1-flp001"))


# --- config ----------------------------------------------------------------------------------

def test_config_resolve_follows_the_fallbacks(library: FunctionLibrary) -> None:
    text = "{{config.Resolve('readout', run_type, 'stfb', 'readout-stfb-' + it)}}"
    assert run(library, text, run_type="PHYSICS", it="alio2-cr1-flp187") == \
        "readout/ANY/any/readout-stfb-alio2-cr1-flp187"
    text = "{{config.Resolve('readout', run_type, 'standalone', 'readout-standalone-' + it)}}"
    assert run(library, text, run_type="PHYSICS", it="alio2-cr1-flp187") == \
        "readout/PHYSICS/standalone/readout-standalone-alio2-cr1-flp187"
    assert "could not resolve" in error_message(
        run(library, text, run_type="COSMICS", it="alio2-cr1-flp001"))
    assert run(library, "{{ config.ResolvePath('readout/TECHNICAL/x/common') }}") == \
        "readout/ANY/any/common"
    assert "bad component configuration path" in error_message(
        run(library, "{{ config.ResolvePath('readout/x') }}"))


def test_config_get_renders_the_payload_as_jinja2_with_the_stack(library: FunctionLibrary) -> None:
    text = "{{ config.Get('readout/PHYSICS/standalone/readout-standalone-alio2-cr1-flp187') }}"
    assert run(library, text, it="flp187", detector="ITS") == \
        "[readout]\nhost=flp187\ndetector=its\ncommon=1\n"
    assert error_message(run(library, "{{ config.Get('readout/ANY/x/nothing') }}")).startswith(
        "o2/components/readout/ANY/x/nothing: could not resolve configuration path")
    broken = error_message(run(library, "{{ config.Get('readout/PHYSICS/standalone/broken') }}"))
    assert broken.startswith("o2/components/readout/PHYSICS/standalone/broken: ")


def test_config_get_legacy_renders_tags_like_a_template_field(library: FunctionLibrary) -> None:
    text = "{{ config.GetLegacy('readout/PHYSICS/standalone/legacy-alio2-cr1-flp187') }}"
    assert run(library, text, it="flp187") == "host=flp187 up=FLP187"
    missing = error_message(run(library, text))
    assert missing.endswith("{{ it }}: unknown name it")
    assert "file o2/components/readout/PHYSICS/standalone/legacy-alio2-cr1-flp187" in missing


# --- runtime ---------------------------------------------------------------------------------

def test_runtime_get_and_set(library: FunctionLibrary) -> None:
    assert run(library, "{{ runtime.Get('trg/ctp', key) }}", key="run-config") == "from the file"
    assert run(library, "{{ runtime.Set('trg/ltu', 'cfg', v) }}", v="L1") == "L1"
    assert run(library, "{{ runtime.Get('trg/ltu', 'cfg') }}") == "L1"
    assert run(library, "{{ GetRuntimeConfig('trg/ltu', 'cfg') }}") == "L1"
    assert "o2/runtime/trg/ltu/other" in error_message(
        run(library, "{{ runtime.Get('trg/ltu', 'other') }}"))


# --- dpl, plugins, legacy names ------------------------------------------------------------

def test_dpl_helpers_delegate_with_the_stack(config: EmbeddedConfiguration) -> None:
    dpl = RecordingDpl()
    library = FunctionLibrary(config, dpl=dpl)
    stack = {"flp_workflows_jit_enabled": "true", "dpl_command": "o2-dpl-raw-proxy | o2-qc",
             "dpl_workflow": "tpc-sac"}
    renderer = Renderer(library.namespaces)
    assert renderer.render(
        "{{ flp_workflows_jit_enabled == 'true' ? dpl.Generate(dpl_command) : '' }}",
        stack, WHERE) == "jit-0123abcd"
    assert renderer.render("{{ dpl.GenerateFromUri('tpc-sac') }}", stack, WHERE) == "jit-tpc-sac"
    assert renderer.render("{{ dpl.GenerateFromUriOrFallbackToTemplate(dpl_workflow) }}",
                           stack, WHERE) == "tpc-sac"
    assert renderer.render("{{ GenerateDplSubworkflowFromUri('x') }}", stack, WHERE) == "jit-x"
    assert [(kind, arg) for kind, arg, _ in dpl.calls] == [
        ("generate", "o2-dpl-raw-proxy | o2-qc"), ("from_uri", "tpc-sac"),
        ("fallback", "tpc-sac"), ("from_uri", "x")]
    assert all(seen == stack for _, _, seen in dpl.calls)


def test_dpl_without_a_generator_is_a_template_error(library: FunctionLibrary) -> None:
    with pytest.raises(TemplateError) as caught:
        run(library, "{{ dpl.GenerateFromUri('tpc-sac') }}")
    assert caught.value.reason.startswith(
        "dpl.GenerateFromUri: no JIT workflow generator is available here")
    assert run(library, "{{ false ? dpl.Generate('x') : 'plain' }}") == "plain"


def test_odc_placeholder_and_plugin_objects(config: EmbeddedConfiguration) -> None:
    library = FunctionLibrary(config)
    text = "[{{ epn_enabled == \"true\" ? odc.GenerateEPNTopologyFullname() : \"\" }}]"
    assert run(library, text, epn_enabled="true") == "[]"
    assert run(library, "[{{ odc.GenerateEPNWorkflowScript() }}]") == "[]"

    class Odc(Namespace):
        def GenerateEPNTopologyFullname(self) -> str:  # noqa: N802
            return "topology-from-plugin"

    class Bookkeeping(Namespace):
        def Ping(self) -> str:  # noqa: N802
            return "pong"

    with_plugins = FunctionLibrary(config, plugin_objects={"odc": Odc(), "bookkeeping": Bookkeeping()})
    assert run(with_plugins, text, epn_enabled="true") == "[topology-from-plugin]"
    assert run(with_plugins, "{{ bookkeeping.Ping() }}") == "pong"


def test_legacy_top_level_names(library: FunctionLibrary, caplog: pytest.LogCaptureFixture) -> None:
    assert run(library, "{{ IsFalsy(a) }} {{ IsTruthy(a) }} {{ ToUpper(b) }} {{ TrimSpace(c) }}",
               a="off", b="x", c=" y ") == "true false X y"
    assert run(library, "{{ ToJson(FromJson(s)) }}", s='["b", "a"]') == '["b","a"]'
    assert run(library, "{{ Atoi('5') + 1 }} {{ Itoa(3) }} {{ TrimQuotes(q) }} {{ ToLower('A') }}",
               q='"z"') == "6 3 z a"
    with caplog.at_level(logging.WARNING, logger="engine.templates"):
        for _ in range(3):
            assert run(library, "{{ DetectorForHost('alio2-cr1-flp001') }}") == "TPC"
        assert run(library, "{{ DetectorsForHosts(h) }}", h='["alio2-cr1-flp001"]') == '["TPC"]'
        assert run(library, "{{ CRUCardsForHost('alio2-cr1-flp187') }}") == '["1041","1150"]'
        assert run(library, "{{ EndpointsForCRUCard('alio2-cr1-flp187', '1150') }}") == "0"
        assert run(library, "{{ ResolveConfigPath('readout/COSMICS/r/common') }}") == \
            "readout/ANY/any/common"
        assert run(library, "{{ GetConfig('readout/ANY/any/common') }}") == "common=1"
        assert run(library, "{{ GetConfigLegacy('readout/ANY/any/common') }}") == "common=1"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings.count(
        "DetectorForHost is deprecated in templates, use inventory.DetectorForHost instead") == 1
    assert "GetConfig is deprecated in templates, use config.Get instead" in warnings


def test_namespaces_cover_the_reference_list(library: FunctionLibrary) -> None:
    names = library.namespaces({})
    expected = {
        "strings", "json", "uid", "util", "inventory", "config", "runtime", "dpl", "odc",
        "Atoi", "Itoa", "TrimQuotes", "TrimSpace", "ToUpper", "ToLower", "IsTruthy", "IsFalsy",
        "FromJson", "ToJson", "NewID", "PrefixedOverride", "Dump", "Nullable", "SuffixInRange",
        "GetConfig", "GetConfigLegacy", "ResolveConfigPath", "DetectorForHost",
        "DetectorsForHosts", "CRUCardsForHost", "EndpointsForCRUCard", "GetRuntimeConfig",
        "GenerateDplSubworkflow", "GenerateDplSubworkflowFromUri",
    }
    assert set(names) == expected
    methods = {
        "strings": {"Atoi", "Itoa", "TrimQuotes", "TrimSpace", "ToUpper", "ToLower", "IsTruthy",
                    "IsFalsy"},
        "json": {"Unmarshal", "Deserialize", "Marshal", "Serialize", "Sort"},
        "uid": {"New"},
        "util": {"PrefixedOverride", "Dump", "Nullable", "SuffixInRange"},
        "inventory": {"DetectorForHost", "DetectorsForHosts", "CRUCardsForHost",
                      "EndpointsForCRUCard"},
        "config": {"Get", "GetLegacy", "Resolve", "ResolvePath"},
        "runtime": {"Get", "Set"},
        "dpl": {"Generate", "GenerateFromUri", "GenerateFromUriOrFallbackToTemplate"},
    }
    for namespace, wanted in methods.items():
        assert {m for m in dir(names[namespace]) if not m.startswith("_")} == wanted, namespace


def test_corpus_expressions_end_to_end(library: FunctionLibrary) -> None:
    stack = {"it": "alio2-cr1-flp187", "hosts": '["alio2-cr1-flp187","alio2-cr1-flp001"]',
             "its_dpl_workflow": "its-qc", "dpl_workflow": "none", "detector": "ITS",
             "qc_remote_workflow": "none", "glo_qc_remote_workflow": "glo-wf",
             "fmq_cleanup_enabled": "true"}
    renderer = Renderer(library.namespaces)
    for text, expected in [
        ("{{ util.PrefixedOverride( 'dpl_workflow', strings.ToLower( inventory.DetectorForHost( it ) ) ) }}",
         "its-qc"),
        ("{{ inventory.DetectorsForHosts(hosts) }}", '["ITS","TPC"]'),
        ("{{ fmq_cleanup_enabled == 'true' && !strings.IsFalsy(qc_remote_workflow) }}", "false"),
        ("{{ util.PrefixedOverride( 'qc_remote_workflow', 'glo' ) }}", "glo-wf"),
        ("{{ util.SuffixInRange(it, 'alio2-cr1-flp', '073', '144') }}", "false"),
        ("{{ it == 'alio2-cr1-flp145' }}", "false"),
    ]:
        assert renderer.render(text, stack, WHERE) == expected, text
