"""The embedded configuration service on real files in a tmp working directory."""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

import pytest

from engine.config import (
    ConfigurationError,
    ConfigurationService,
    EmbeddedConfiguration,
    parse_component_path,
)
from engine.workdir import WorkingDirectory

CONFIGURATION = """\
o2:
  hardware:
    detectors:
      TST:
        flps:
          flp001: ""
          flp002: {}
      ITS:
        flps:
          flp010:
      TRG:
        flps:
          flp100: ""
    flps:
      flp001:
        cards: '{"key0": {"type": "CRU", "pciAddress": "3b:00.0", "serial": "1041", "endpoint": "0"},
                 "key1": {"type": "CRU", "pciAddress": "3c:00.0", "serial": "1041", "endpoint": "1"},
                 "key2": {"type": "CRU", "pciAddress": "af:00.0", "serial": "0203", "endpoint": "0"}}'
      flp010:
        cards:
          - {serial: 7, endpoint: 0}
          - {serial: 7, endpoint: 1}
      flp011:
        cards:
          first: {serial: "9", endpoint: "1"}
      flpbad:
        cards: '{not json'
      flpodd:
        cards: ["just text"]
  components:
    readout:
      PHYSICS:
        flp001:
          exact: "physics flp001"
      ANY:
        flp001:
          anyrt: "any-runtype flp001"
        any:
          anyany: |
            [readout]
            rate = 8500
      TECHNICAL:
        any:
          rtany: "technical any"
      NULL:
        any:
          nulled: "for unknown run types"
    qc:
      ANY:
        any:
          folder:
            inner: "in a folder"
          listed: [a, b]
          empty:
  runtime:
    aliecs:
      defaults:
        modulepath: "  /opt/modules  "
        consul_port: "1"
        port: 8500
        flag: true
        octal: 010
        ratio: 1.50
        nested: {a: b}
        listed: [x]
      vars:
        lhc_period: LHC25a
      mesos_fid: file-framework
    trg:
      ctp:
        config: from-the-file
"""


@pytest.fixture
def workdir(tmp_path: Path) -> WorkingDirectory:
    return WorkingDirectory(tmp_path / "home")


@pytest.fixture
def config(workdir: WorkingDirectory) -> Iterator[EmbeddedConfiguration]:
    workdir.root.mkdir(parents=True)
    workdir.configuration_file.write_text(CONFIGURATION)
    service = EmbeddedConfiguration(workdir, hostname="core.example")
    yield service
    service.close()


@pytest.fixture
def empty(workdir: WorkingDirectory) -> Iterator[EmbeddedConfiguration]:
    service = EmbeddedConfiguration(workdir)
    yield service
    service.close()


def rewrite(path: Path, text: str) -> None:
    """Replace the file and make sure its stamp differs even on coarse clocks."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10_000_000, before + 10_000_000))


def test_it_is_a_configuration_service(config: EmbeddedConfiguration) -> None:
    assert isinstance(config, ConfigurationService)


# --- globals ---------------------------------------------------------------------------------------

def test_missing_file_is_an_empty_inventory_with_globals(empty: EmbeddedConfiguration) -> None:
    assert empty.defaults() == {
        "modulepath": "",
        "infologger_mode": "stdout",
        "consul_base_uri": "consul://127.0.0.1:8500",
        "consul_hostname": "127.0.0.1",
        "consul_port": "8500",
        "consul_endpoint": "127.0.0.1:8500",
        "framework_id": "",
        "core_hostname": socket.gethostname(),
    }
    assert empty.vars() == {}
    assert empty.list_detectors(get_all=True) == []
    assert empty.hosts() == []
    with pytest.raises(ConfigurationError, match="detector not found for host 'flp001'"):
        empty.detector_for_host("flp001")


def test_defaults_keep_source_text_trimmed_and_globals_win(config: EmbeddedConfiguration,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.config"):
        defaults = config.defaults()
    assert defaults["modulepath"] == "/opt/modules"  # the file over the installation default
    assert defaults["infologger_mode"] == "stdout"  # an installation default the file lacks
    assert "o2/runtime/aliecs/defaults/modulepath has leading or trailing space" in caplog.text
    assert (defaults["port"], defaults["flag"], defaults["octal"], defaults["ratio"]) == \
        ("8500", "true", "010", "1.50")
    assert "nested" not in defaults and "listed" not in defaults
    assert defaults["consul_port"] == "8500"          # the global, as apricot's GetDefaults does
    assert defaults["core_hostname"] == "core.example"
    assert defaults["framework_id"] == "file-framework"
    assert config.vars() == {"lhc_period": "LHC25a"}


def test_backend_uri_and_framework_id_from_the_store(workdir: WorkingDirectory) -> None:
    service = EmbeddedConfiguration(workdir, backend_uri="consul://consul.example:9500")
    try:
        service.runtime_set("aliecs", "mesos_fid", "fid-1")
        defaults = service.defaults()
    finally:
        service.close()
    assert (defaults["consul_base_uri"], defaults["consul_hostname"], defaults["consul_port"],
            defaults["consul_endpoint"], defaults["framework_id"]) == (
        "consul://consul.example:9500", "consul.example", "9500", "consul.example:9500", "fid-1")


# --- inventory -------------------------------------------------------------------------------------

def test_detectors_and_hosts(config: EmbeddedConfiguration) -> None:
    assert config.list_detectors() == ["ITS", "TST"]
    assert config.list_detectors(get_all=True) == ["ITS", "TRG", "TST"]
    assert config.hosts("TST") == ["flp001", "flp002"]
    assert config.hosts("NOPE") == []
    assert config.hosts() == ["flp001", "flp002", "flp010", "flp011", "flp100", "flpbad", "flpodd"]


def test_detector_for_hosts(config: EmbeddedConfiguration) -> None:
    assert config.detector_for_host("flp002") == "TST"
    assert config.detector_for_host("flp100") == "TRG"
    assert config.detectors_for_hosts(["flp010", "flp001", "flp002"]) == ["ITS", "TST"]
    assert config.detectors_for_hosts([]) == []
    with pytest.raises(ConfigurationError) as error:
        config.detectors_for_hosts(["flp001", "flp011"])
    assert str(error.value) == (
        f"detector not found for host 'flp011': no o2/hardware/detectors/<DET>/flps/flp011 in "
        f"{config.file}")


def test_cru_cards_and_endpoints(config: EmbeddedConfiguration) -> None:
    assert config.cru_cards_for_host("flp001") == ["1041", "0203"]
    assert config.endpoints_for_cru_card("flp001", "1041") == ["0", "1"]
    assert config.endpoints_for_cru_card("flp001", "0203") == ["0"]
    assert config.endpoints_for_cru_card("flp001", "9999") == []
    assert config.cru_cards_for_host("flp010") == ["7"]           # a YAML list of cards
    assert config.endpoints_for_cru_card("flp010", "7") == ["0", "1"]
    assert config.cru_cards_for_host("flp011") == ["9"]           # a YAML mapping of cards


def test_cru_card_errors(config: EmbeddedConfiguration) -> None:
    with pytest.raises(ConfigurationError, match=r"no CRU cards for host 'flp002': no value for key "
                                                 r"o2/hardware/flps/flp002/cards in .*configuration\.yaml"):
        config.cru_cards_for_host("flp002")
    with pytest.raises(ConfigurationError, match=r"o2/hardware/flps/flpbad/cards in .*configuration\.yaml "
                                                 r"is not valid JSON: "):
        config.endpoints_for_cru_card("flpbad", "1")
    with pytest.raises(ConfigurationError, match=r"o2/hardware/flps/flpodd/cards in .*: each card must be "
                                                 r"a mapping with serial and endpoint, not 'just text'"):
        config.cru_cards_for_host("flpodd")


# --- component configuration -----------------------------------------------------------------------

@pytest.mark.parametrize("run_type, role, entry, resolved", [
    ("PHYSICS", "flp001", "exact", "readout/PHYSICS/flp001/exact"),     # 1. exact
    ("PHYSICS", "flp001", "anyrt", "readout/ANY/flp001/anyrt"),         # 2. ANY run type
    ("TECHNICAL", "flp009", "rtany", "readout/TECHNICAL/any/rtany"),    # 3. any role
    ("PHYSICS", "flp009", "anyany", "readout/ANY/any/anyany"),          # 4. ANY/any
    ("physics", "flp009", "nulled", "readout/NULL/any/nulled"),         # unknown run type = NULL
])
def test_resolve_fallback_order(config: EmbeddedConfiguration, run_type: str, role: str, entry: str,
                                resolved: str) -> None:
    assert config.resolve_component("readout", run_type, role, entry) == resolved


def test_resolve_prefers_the_earlier_fallback(config: EmbeddedConfiguration) -> None:
    rewrite(config.file, CONFIGURATION.replace("        any:\n          anyany:",
                                               "        any:\n          anyrt: x\n          anyany:"))
    assert config.resolve_component("readout", "PHYSICS", "flp001", "anyrt") == "readout/ANY/flp001/anyrt"


def test_resolve_errors(config: EmbeddedConfiguration) -> None:
    with pytest.raises(ConfigurationError) as error:
        config.resolve_component("readout", "PHYSICS", "flp009", "missing")
    assert str(error.value) == (
        f"could not resolve configuration path o2/components/readout/PHYSICS/flp009/missing in "
        f"{config.file} (tried readout/PHYSICS/flp009/missing, readout/ANY/flp009/missing, "
        f"readout/PHYSICS/any/missing, readout/ANY/any/missing)")
    with pytest.raises(ConfigurationError, match=r"could not resolve configuration path "
                                                 r"o2/components/qc/ANY/any/folder"):
        config.resolve_component("qc", "ANY", "any", "folder")        # a folder is no entry
    with pytest.raises(ConfigurationError, match=r"cannot resolve o2/components/readout/ANY/any/"
                                                 r"x-resolve: an entry must not end in 'resolve'"):
        config.resolve_component("readout", "ANY", "any", "x-resolve")
    with pytest.raises(ConfigurationError, match=r"the component must be one non-empty path segment, "
                                                 r"not 'a/b'"):
        config.resolve_component("a/b", "ANY", "any", "x")
    with pytest.raises(ConfigurationError, match=r"the role must be one non-empty path segment, not ''"):
        config.resolve_component("readout", "ANY", "", "x")
    with pytest.raises(ConfigurationError, match=r"the entry must be a non-empty key path, not '/x'"):
        config.resolve_component("readout", "ANY", "any", "/x")


def test_get_component_payloads(config: EmbeddedConfiguration) -> None:
    assert config.get_component("readout/ANY/any/anyany") == "[readout]\nrate = 8500\n"
    assert config.get_component(" readout/PHYSICS/flp001/exact ") == "physics flp001"
    assert config.get_component("qc/ANY/any/folder/inner") == "in a folder"
    assert config.get_component("qc/ANY/any/empty") == ""


@pytest.mark.parametrize("path, message", [
    ("readout/ANY/any", r"bad component configuration path 'readout/ANY/any': "
                        r"expected component/RUNTYPE/role/entry"),
    ("readout/any/any/x", "expected component/RUNTYPE/role/entry"),
    ("readout/BOGUS/any/x", r"unknown run type 'BOGUS' \(one of NULL, PHYSICS, "),
    ("readout/ANY/any/xresolve", "an entry must not end in 'resolve'"),
    ("readout/ANY/any/missing", r"no payload at configuration path o2/components/readout/ANY/any/"
                                r"missing in .*configuration\.yaml"),
    ("qc/ANY/any/folder", r"o2/components/qc/ANY/any/folder in .* is a directory, not an entry"),
    ("qc/ANY/any/listed", r"found a list at key o2/components/qc/ANY/any/listed in .* but a text "
                          r"payload was expected"),
])
def test_get_component_errors(config: EmbeddedConfiguration, path: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        config.get_component(path)


def test_parse_component_path() -> None:
    query = parse_component_path("readout-card/CALIBRATION_FHR/flp-1/dir/entry_1")
    assert (query.component, query.run_type, query.role, query.entry) == (
        "readout-card", "CALIBRATION_FHR", "flp-1", "dir/entry_1")
    assert query.path == "readout-card/CALIBRATION_FHR/flp-1/dir/entry_1"


# --- runtime key-value store -----------------------------------------------------------------------

def test_runtime_entries_round_trip_and_persist(config: EmbeddedConfiguration,
                                                workdir: WorkingDirectory) -> None:
    config.runtime_set("trg/ltu", "cfg", "first")
    config.runtime_set("trg/ltu", "cfg", "second")
    config.runtime_set("trg", "ltu/other", "x")
    assert config.runtime_get("trg/ltu", "cfg") == "second"
    assert config.runtime_get("trg", "ltu/cfg") == "second"       # Consul paths: o2/runtime/trg/ltu/cfg
    assert config.runtime_entries("trg/ltu") == {"cfg": "second", "other": "x"}
    assert config.runtime_entries("trg") == {"ctp/config": "from-the-file", "ltu/cfg": "second",
                                             "ltu/other": "x"}
    assert config.runtime_get("trg/ctp", "config") == "from-the-file"   # the file as fallback
    config.runtime_set("trg/ctp", "config", "overridden")
    assert config.runtime_get("trg/ctp", "config") == "overridden"
    config.close()
    again = EmbeddedConfiguration(workdir)
    try:
        assert again.runtime_get("trg/ltu", "cfg") == "second"
    finally:
        again.close()
    with sqlite3.connect(workdir.store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT path, value FROM config_runtime ORDER BY path").fetchall()
    assert rows == [("trg/ctp/config", "overridden"), ("trg/ltu/cfg", "second"),
                    ("trg/ltu/other", "x")]


def test_runtime_errors(config: EmbeddedConfiguration, workdir: WorkingDirectory) -> None:
    with pytest.raises(ConfigurationError) as error:
        config.runtime_get("trg/ltu", "missing")
    assert str(error.value) == (f"no runtime value at o2/runtime/trg/ltu/missing (neither in "
                                f"{workdir.store} nor in {config.file})")
    with pytest.raises(ConfigurationError, match=r"runtime entry o2/runtime//k: empty component"):
        config.runtime_set("", "k", "v")
    with pytest.raises(ConfigurationError, match=r"runtime entry o2/runtime/c/: empty key"):
        config.runtime_get("c", "")
    with pytest.raises(ConfigurationError, match=r"'\.' and '\.\.' are not key segments"):
        config.runtime_entries("../aliecs")
    with pytest.raises(ConfigurationError, match="no runtime value at o2/runtime/aliecs/defaults"):
        config.runtime_get("aliecs", "defaults")                        # a folder, not a value


def test_runtime_store_is_thread_safe(config: EmbeddedConfiguration) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                config.runtime_set("load", f"t{n}/k{i}", str(i))
                assert config.runtime_get("load", f"t{n}/k{i}") == str(i)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(config.runtime_entries("load")) == 8 * 40


# --- the file ----------------------------------------------------------------------------------------

def test_file_changes_are_picked_up(config: EmbeddedConfiguration) -> None:
    assert config.hosts("TST") == ["flp001", "flp002"]
    rewrite(config.file, "o2:\n  hardware:\n    detectors:\n      TST:\n        flps:\n          flp003:\n")
    assert config.hosts("TST") == ["flp003"]
    assert config.detector_for_host("flp003") == "TST"
    config.file.unlink()
    assert config.list_detectors() == []
    config.file.write_text("o2:\n  runtime:\n    aliecs:\n      vars:\n        a: b\n")
    config.reload()
    assert config.vars() == {"a": "b"}


def test_yaml_errors_name_the_file_and_line(config: EmbeddedConfiguration) -> None:
    rewrite(config.file, "o2:\n  hardware:\n    detectors: [unclosed\n  other: x\n")
    with pytest.raises(ConfigurationError) as error:
        config.list_detectors()
    assert str(error.value).startswith(f"{config.file}:4:")
    assert "invalid YAML" in str(error.value)
    rewrite(config.file, "- just\n- a list\n")
    with pytest.raises(ConfigurationError, match=r"configuration\.yaml: the configuration must be one "
                                                 r"mapping mirroring the Consul key tree \(o2/\.\.\.\), "
                                                 r"not a list"):
        config.vars()
    rewrite(config.file, "")
    assert config.vars() == {}
