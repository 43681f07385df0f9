"""The embedded configuration service: apricot's file backend, in process.

AliECS can run apricot on a single YAML document whose nested mappings mirror
the Consul key tree (`o2/hardware/...`, `o2/components/...`,
`o2/runtime/aliecs/defaults/...`), so an existing configuration dump works as
it is. We read `$NUTSHELL_HOME/configuration.yaml` that way, reload it when it
changes on disk, and treat a missing file as an empty inventory. Unlike the
AliECS file backend (which refuses them), inventory lookups and the runtime
key-value store work here: runtime entries live in a table of the engine's
sqlite store, and entries under `o2/runtime/` in the file are read as a
fallback, so a dump's runtime keys are visible too.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from engine.config.service import (
    ANY_ROLE,
    ANY_RUN_TYPE,
    RUN_TYPES,
    ComponentQuery,
    ConfigurationError,
    parse_component_path,
)
from engine.workdir import WorkingDirectory

log = logging.getLogger("engine.config")

# Where apricot would be: AliECS's default backend, so `consul_endpoint` & co. have local values.
DEFAULT_BACKEND_URI = "consul://127.0.0.1:8500"

DETECTORS_KEY = "o2/hardware/detectors"
FLPS_KEY = "o2/hardware/flps"
COMPONENTS_KEY = "o2/components"
RUNTIME_KEY = "o2/runtime"
DEFAULTS_KEY = "o2/runtime/aliecs/defaults"
VARS_KEY = "o2/runtime/aliecs/vars"
HIDDEN_DETECTOR = "TRG"  # ListDetectors hides it unless asked for all

# Global defaults every AliECS installation's Consul has under o2/runtime/aliecs/defaults and
# the corpus's task templates use without defining them (template-language reference §7):
# seeded here so a workflow runs on a machine with no configuration.yaml; the file wins.
# `modulepath` empty picks the plain command line over `module load`; `infologger_mode`
# "stdout" sends the tasks' InfoLogger messages to their captured output.
INSTALLATION_DEFAULTS: dict[str, str] = {
    "modulepath": "",
    "infologger_mode": "stdout",
}

_RUNTIME_TABLE = """
CREATE TABLE IF NOT EXISTS config_runtime (
    path  TEXT PRIMARY KEY,   -- <component>/<key> under o2/runtime/
    value TEXT NOT NULL
)
"""


class _TextLoader(yaml.SafeLoader):
    """SafeLoader whose scalars stay the text that was written (`8500`, `true`, `01`).

    Keys are always their text (a run type folder named `NULL` stays "NULL").
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = key_node.value
            else:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found a non-scalar key", key_node.start_mark)
            result[key] = self.construct_object(value_node, deep=deep)
        return result


def _scalar_text(loader: _TextLoader, node: yaml.ScalarNode) -> str | None:
    if node.style is None and node.value in ("", "~", "null", "Null", "NULL"):
        return None
    return node.value


for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
             "tag:yaml.org,2002:null", "tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
    _TextLoader.add_constructor(_tag, _scalar_text)


_MISSING = object()


@dataclass(frozen=True)
class _Snapshot:
    """One parse of the file, with the lookups templates make per host precomputed."""

    tree: dict[str, Any]
    stamp: tuple[int, int, int] | None
    host_detector: dict[str, str] = field(default_factory=dict)


def _split_key(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _lookup(tree: dict[str, Any], path: str) -> Any:
    """The node at a Consul-style key path, or _MISSING."""
    node: Any = tree
    for part in _split_key(path):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_value(node: Any) -> bool:
    return node is None or isinstance(node, str)


class EmbeddedConfiguration:
    """ConfigurationService on configuration.yaml plus the engine's sqlite store.

    Thread-safe: the parsed file is an immutable snapshot swapped under a lock
    when the file's mtime/size/inode change; the sqlite connection is shared
    under a lock (WAL mode, so other connections to the store are not blocked).
    """

    def __init__(self, workdir: WorkingDirectory, *, backend_uri: str = DEFAULT_BACKEND_URI,
                 hostname: str | None = None) -> None:
        self._workdir = workdir
        self._backend_uri = backend_uri
        self._hostname = hostname if hostname is not None else socket.gethostname()
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._db_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    # --- the file -----------------------------------------------------------------------------

    @property
    def file(self) -> Path:
        return self._workdir.configuration_file

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.file)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _current(self) -> _Snapshot:
        """The parsed file, re-read if it changed since the last call."""
        stamp = self._stamp()
        with self._lock:
            if self._snapshot is None or self._snapshot.stamp != stamp:
                self._snapshot = self._load(stamp)
            return self._snapshot

    def reload(self) -> None:
        """Re-read the file now, even if its stamp did not change."""
        stamp = self._stamp()
        with self._lock:
            self._snapshot = self._load(stamp)

    def _load(self, stamp: tuple[int, int, int] | None) -> _Snapshot:
        if stamp is None:
            return _Snapshot(tree={}, stamp=None)
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Snapshot(tree={}, stamp=None)
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigurationError(f"{self.file}: cannot read the configuration: {error}") from None
        try:
            tree = yaml.load(text, Loader=_TextLoader)  # noqa: S506 - _TextLoader is a SafeLoader
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            where = f"{self.file}:{mark.line + 1}:{mark.column + 1}" if mark else str(self.file)
            raise ConfigurationError(f"{where}: invalid YAML: {error.problem or error}") from None
        except yaml.YAMLError as error:
            raise ConfigurationError(f"{self.file}: invalid YAML: {error}") from None
        if tree is None:
            tree = {}
        if not isinstance(tree, dict):
            raise ConfigurationError(
                f"{self.file}: the configuration must be one mapping mirroring the Consul key tree "
                f"(o2/...), not a {type(tree).__name__}")
        return _Snapshot(tree=tree, stamp=stamp, host_detector=self._index_hosts(tree))

    def _index_hosts(self, tree: dict[str, Any]) -> dict[str, str]:
        detectors = _lookup(tree, DETECTORS_KEY)
        index: dict[str, str] = {}
        if not isinstance(detectors, dict):
            return index
        for detector in sorted(detectors, key=str):
            flps = _lookup(tree, f"{DETECTORS_KEY}/{detector}/flps")
            if isinstance(flps, dict):
                for host in flps:
                    index.setdefault(str(host), str(detector))
        return index

    def _string_map(self, key: str) -> dict[str, str]:
        """The value entries directly under a key, whitespace-trimmed as AliECS does by default."""
        node = _lookup(self._current().tree, key)
        result: dict[str, str] = {}
        if not isinstance(node, dict):
            return result
        for name, value in node.items():
            if not _is_value(value):
                continue  # a sub-directory or list is no variable (apricot getStringMap)
            text = "" if value is None else value
            trimmed = text.strip()
            if trimmed != text:
                log.warning("%s: %s/%s has leading or trailing space; using the trimmed value",
                            self.file, key, name)
            result[str(name)] = trimmed
        return result

    # --- globals -----------------------------------------------------------------------------

    def defaults(self) -> dict[str, str]:
        result = {**INSTALLATION_DEFAULTS, **self._string_map(DEFAULTS_KEY)}
        # The globals apricot's GetDefaults adds, over whatever the file says (as apricot does).
        result["consul_base_uri"] = self._backend_uri
        parts = urlsplit(self._backend_uri)
        result["consul_hostname"] = parts.hostname or ""
        result["consul_port"] = str(parts.port) if parts.port is not None else ""
        result["consul_endpoint"] = parts.netloc
        try:
            result["framework_id"] = self.runtime_get("aliecs", "mesos_fid")
        except ConfigurationError:
            result["framework_id"] = ""
        result["core_hostname"] = self._hostname
        return result

    def vars(self) -> dict[str, str]:
        return self._string_map(VARS_KEY)

    # --- inventory ---------------------------------------------------------------------------

    def list_detectors(self, get_all: bool = False) -> list[str]:
        node = _lookup(self._current().tree, DETECTORS_KEY)
        if not isinstance(node, dict):
            return []
        return sorted(str(d) for d in node if get_all or str(d) != HIDDEN_DETECTOR)

    def hosts(self, detector: str = "") -> list[str]:
        snapshot = self._current()
        if detector:
            flps = _lookup(snapshot.tree, f"{DETECTORS_KEY}/{detector}/flps")
            return sorted(str(h) for h in flps) if isinstance(flps, dict) else []
        # All FLPs: o2/hardware/flps (apricot's answer) plus every detector's flps, so a
        # configuration that only lists detectors still has hosts.
        flps = _lookup(snapshot.tree, FLPS_KEY)
        found = set(snapshot.host_detector)
        if isinstance(flps, dict):
            found.update(str(h) for h in flps)
        return sorted(found)

    def detector_for_host(self, host: str) -> str:
        detector = self._current().host_detector.get(host)
        if detector is None:
            raise ConfigurationError(
                f"detector not found for host {host!r}: no {DETECTORS_KEY}/<DET>/flps/{host} "
                f"in {self.file}")
        return detector

    def detectors_for_hosts(self, hosts: list[str]) -> list[str]:
        return sorted({self.detector_for_host(host) for host in hosts})

    def _cards(self, host: str) -> list[dict[str, Any]]:
        key = f"{FLPS_KEY}/{host}/cards"
        node = _lookup(self._current().tree, key)
        if node is _MISSING or node is None:
            raise ConfigurationError(f"no CRU cards for host {host!r}: no value for key {key} "
                                     f"in {self.file}")
        if isinstance(node, str):
            try:
                node = json.loads(node)
            except ValueError as error:
                raise ConfigurationError(f"{key} in {self.file} is not valid JSON: {error}") from None
        if isinstance(node, dict):
            cards = list(node.values())
        elif isinstance(node, list):
            cards = node
        else:
            raise ConfigurationError(f"{key} in {self.file} must be a map or list of cards")
        for card in cards:
            if not isinstance(card, dict):
                raise ConfigurationError(
                    f"{key} in {self.file}: each card must be a mapping with serial and endpoint, "
                    f"not {card!r}")
        return cards

    def cru_cards_for_host(self, host: str) -> list[str]:
        serials: list[str] = []
        for card in self._cards(host):
            serial = card.get("serial")
            text = "" if serial is None else str(serial)
            if text not in serials:
                serials.append(text)
        return serials

    def endpoints_for_cru_card(self, host: str, serial: str) -> list[str]:
        return ["" if card.get("endpoint") is None else str(card.get("endpoint"))
                for card in self._cards(host)
                if ("" if card.get("serial") is None else str(card.get("serial"))) == serial]

    # --- component configuration ---------------------------------------------------------------

    def _entry(self, query: ComponentQuery) -> Any:
        return _lookup(self._current().tree, f"{COMPONENTS_KEY}/{query.path}")

    def resolve_component(self, component: str, run_type: str, role: str, entry: str) -> str:
        for name, part in (("component", component), ("role", role)):
            if not part or "/" in part:
                raise ConfigurationError(
                    f"cannot resolve o2/components/{component}/{run_type}/{role}/{entry}: "
                    f"the {name} must be one non-empty path segment, not {part!r}")
        if not _split_key(entry) or entry.startswith("/") or entry.endswith("/"):
            raise ConfigurationError(
                f"cannot resolve o2/components/{component}/{run_type}/{role}/{entry}: "
                f"the entry must be a non-empty key path, not {entry!r}")
        if entry.endswith("resolve"):
            raise ConfigurationError(
                f"cannot resolve o2/components/{component}/{run_type}/{role}/{entry}: "
                f"an entry must not end in 'resolve'")
        rt = run_type if run_type in RUN_TYPES else "NULL"
        candidates = [ComponentQuery(component, rt, role, entry),
                      ComponentQuery(component, ANY_RUN_TYPE, role, entry),
                      ComponentQuery(component, rt, ANY_ROLE, entry),
                      ComponentQuery(component, ANY_RUN_TYPE, ANY_ROLE, entry)]
        for candidate in candidates:
            if _is_value(self._entry(candidate)):
                return candidate.path
        tried = ", ".join(dict.fromkeys(c.path for c in candidates))
        raise ConfigurationError(
            f"could not resolve configuration path o2/components/{component}/{rt}/{role}/{entry} "
            f"in {self.file} (tried {tried})")

    def get_component(self, path: str) -> str:
        query = parse_component_path(path)
        node = self._entry(query)
        key = f"{COMPONENTS_KEY}/{query.path}"
        if node is _MISSING:
            raise ConfigurationError(f"no payload at configuration path {key} in {self.file}")
        if isinstance(node, dict):
            raise ConfigurationError(f"{key} in {self.file} is a directory, not an entry")
        if isinstance(node, list):
            raise ConfigurationError(f"found a list at key {key} in {self.file} "
                                     f"but a text payload was expected")
        return "" if node is None else node

    # --- runtime key-value store -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The store connection, opened on first use (caller holds _db_lock)."""
        if self._db is None:
            self._workdir.store.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._workdir.store, timeout=30.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_RUNTIME_TABLE)
            self._db = db
        return self._db

    @staticmethod
    def _runtime_path(component: str, key: str) -> str:
        parts = _split_key(component)
        key_parts = _split_key(key)
        if not parts:
            raise ConfigurationError(f"runtime entry o2/runtime/{component}/{key}: empty component")
        if not key_parts:
            raise ConfigurationError(f"runtime entry o2/runtime/{component}/{key}: empty key")
        if any(p in (".", "..") for p in parts + key_parts):
            raise ConfigurationError(
                f"runtime entry o2/runtime/{component}/{key}: '.' and '..' are not key segments")
        return "/".join(parts + key_parts)

    def runtime_get(self, component: str, key: str) -> str:
        path = self._runtime_path(component, key)
        with self._db_lock:
            row = self._connection().execute(
                "SELECT value FROM config_runtime WHERE path = ?", (path,)).fetchone()
        if row is not None:
            return str(row[0])
        node = _lookup(self._current().tree, f"{RUNTIME_KEY}/{path}")
        if node is not _MISSING and _is_value(node):
            return "" if node is None else node
        raise ConfigurationError(f"no runtime value at o2/runtime/{path} "
                                 f"(neither in {self._workdir.store} nor in {self.file})")

    def runtime_set(self, component: str, key: str, value: str) -> None:
        path = self._runtime_path(component, key)
        with self._db_lock:
            self._connection().execute(
                "INSERT INTO config_runtime (path, value) VALUES (?, ?) "
                "ON CONFLICT(path) DO UPDATE SET value = excluded.value", (path, str(value)))

    def runtime_entries(self, component: str) -> dict[str, str]:
        prefix = self._runtime_path(component, "_").rsplit("/", 1)[0] + "/"
        entries: dict[str, str] = {}
        node = _lookup(self._current().tree, f"{RUNTIME_KEY}/{prefix}")
        if isinstance(node, dict):
            self._flatten(node, "", entries)
        with self._db_lock:
            rows = self._connection().execute(
                "SELECT path, value FROM config_runtime WHERE substr(path, 1, ?) = ? ORDER BY path",
                (len(prefix), prefix)).fetchall()
        for path, value in rows:
            entries[str(path)[len(prefix):]] = str(value)
        return dict(sorted(entries.items()))

    @classmethod
    def _flatten(cls, node: dict[str, Any], prefix: str, into: dict[str, str]) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            if isinstance(value, dict):
                cls._flatten(value, key + "/", into)
            elif _is_value(value):
                into[key] = "" if value is None else value

    def close(self) -> None:
        """Close the store connection; a later runtime call opens it again."""
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None
