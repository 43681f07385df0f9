"""The function library templates call: strings.*, json.*, uid.*, util.*, inventory.*,
config.*, runtime.*, dpl.*, the plugin objects and the legacy top-level names.

The semantics are AliECS's (configuration/template/stack.go and stackutil.go,
reference aliecs-control.md §4.3): string helpers take and return strings,
inventory/config/runtime helpers never fail but return `{"error":"..."}`
text, which then shows up where the value is used, and the dpl.* helpers do
fail, since an include of a workflow that cannot be generated cannot go on.
Each namespace is a small object; those that read the variable stack are
made per stack by FunctionLibrary.namespaces(stack).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Mapping, Protocol

from jinja2 import FunctionLoader, TemplateError as JinjaTemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from engine.config.service import ConfigurationError, ConfigurationService, parse_component_path
from engine.templates.expr import type_name
from engine.templates.render import Namespace, Renderer, TemplateError, Where, go_json, go_string

log = logging.getLogger("engine.templates")

Stack = Mapping[str, Any]

TRUTHY_WORDS = frozenset({"true", "yes", "y", "1", "on", "ok"})
FALSY_WORDS = frozenset({"false", "no", "n", "0", "off", "none"})


class FunctionError(Exception):
    """A template helper that must fail (dpl.* without a generator, bad argument types)."""


class DplGenerator(Protocol):
    """JIT generation of DPL sub-workflows (reference §4.6); each returns a workflow name."""

    def generate(self, command: str, stack: Stack) -> str:
        """Generate from a literal DPL command (dpl.Generate)."""
        ...

    def generate_from_uri(self, name: str, stack: Stack) -> str:
        """Generate from the command in jit/<name> of the workflow's repo (dpl.GenerateFromUri)."""
        ...

    def generate_from_uri_or_fallback(self, name: str, stack: Stack) -> str:
        """As generate_from_uri, but name itself when jit/<name> does not exist."""
        ...


def error_text(message: str) -> str:
    """AliECS's in-band error value: {"error":"<message>"}."""
    return go_json({"error": message})


def _text(value: Any, function: str, argument: str = "argument") -> str:
    if isinstance(value, str):
        return value
    raise FunctionError(f"{function}: {argument} must be a string, not {type_name(value)}")


# --- uid ------------------------------------------------------------------------------------

_BASE58 = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
_UID_EPOCH_TICKS = 1257894000 * 100   # 2009-11-10T23:00:00Z, in 10 ms ticks


class UidGenerator:
    """AliECS-style short unique ids (indigo: a Sonyflake id in base58, e.g. "2oDvieFrVTi").

    63 bits: 10 ms ticks since AliECS's epoch, an 8-bit sequence within a tick
    and a 16-bit machine id (here from host name and process id). Ids made by
    one generator never repeat, and their numeric values grow with time.
    """

    def __init__(self, machine_id: int | None = None) -> None:
        if machine_id is None:
            machine_id = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) & 0xFFFF
        self._machine = machine_id & 0xFFFF
        self._lock = threading.Lock()
        self._tick = 0
        self._sequence = 0

    def new(self) -> str:
        now = time.time_ns() // 10_000_000 - _UID_EPOCH_TICKS
        with self._lock:
            if now > self._tick:
                self._tick, self._sequence = now, 0
            else:   # same tick (or the clock went back): next sequence, borrowing a tick if full
                self._sequence = (self._sequence + 1) & 0xFF
                if self._sequence == 0:
                    self._tick += 1
            value = (self._tick << 24) | (self._sequence << 16) | self._machine
        digits: list[str] = []
        while value:
            value, remainder = divmod(value, 58)
            digits.append(_BASE58[remainder])
        return "".join(reversed(digits)) or _BASE58[0]


_UIDS = UidGenerator()


def new_uid() -> str:
    """A fresh AliECS-style unique id from the process-wide generator."""
    return _UIDS.new()


# --- stack-free namespaces -------------------------------------------------------------------

_GO_INT = re.compile(r"[+-]?[0-9]+")


class StringsNamespace(Namespace):
    """strings.*: Go's strings helpers plus AliECS's truthiness words."""

    def Atoi(self, value: Any) -> int:   # noqa: N802 - template names are AliECS's
        text = _text(value, "strings.Atoi")
        if not _GO_INT.fullmatch(text):
            log.warning("strings.Atoi: %r is not an integer; using 0", text)
            return 0
        number = int(text)
        return max(-(1 << 63), min(number, (1 << 63) - 1))   # Go's int saturates

    def Itoa(self, value: Any) -> str:  # noqa: N802
        if isinstance(value, bool) or not isinstance(value, int):
            raise FunctionError(f"strings.Itoa: argument must be an int, not {type_name(value)}")
        return str(value)

    def TrimQuotes(self, value: Any) -> str:  # noqa: N802
        return _text(value, "strings.TrimQuotes").strip('"')

    def TrimSpace(self, value: Any) -> str:  # noqa: N802
        return _text(value, "strings.TrimSpace").strip()

    def ToUpper(self, value: Any) -> str:  # noqa: N802
        return _text(value, "strings.ToUpper").upper()

    def ToLower(self, value: Any) -> str:  # noqa: N802
        return _text(value, "strings.ToLower").lower()

    def IsTruthy(self, value: Any) -> bool:  # noqa: N802
        return _text(value, "strings.IsTruthy").strip().lower() in TRUTHY_WORDS

    def IsFalsy(self, value: Any) -> bool:  # noqa: N802
        word = _text(value, "strings.IsFalsy").strip().lower()
        return not word or word in FALSY_WORDS


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


class JsonNamespace(Namespace):
    """json.*: Go's encoding/json (numbers decode as floats, output is compact)."""

    def Unmarshal(self, value: Any) -> Any:  # noqa: N802
        text = _text(value, "json.Unmarshal")
        try:
            return json.loads(text, parse_int=float, parse_constant=_reject_constant)
        except ValueError as error:
            log.warning("json.Unmarshal: cannot decode %r: %s", text[:200], error)
            return None

    Deserialize = Unmarshal

    def Marshal(self, value: Any) -> str:  # noqa: N802
        try:
            return go_json(value)
        except ValueError as error:
            log.warning("json.Marshal: %s", error)
            return ""

    Serialize = Marshal

    def Sort(self, value: Any) -> Any:  # noqa: N802
        """A sorted copy of a list, ordered by the items' text."""
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise FunctionError(f"json.Sort: argument must be a list, not {type_name(value)}")
        return sorted(value, key=go_string)


class UidNamespace(Namespace):
    """uid.New()."""

    def New(self) -> str:  # noqa: N802
        return new_uid()


class InventoryNamespace(Namespace):
    """inventory.*: detectors, hosts and CRU cards from the configuration service."""

    def __init__(self, config: ConfigurationService) -> None:
        self._config = config

    def DetectorForHost(self, host: Any) -> str:  # noqa: N802
        try:
            return self._config.detector_for_host(_text(host, "inventory.DetectorForHost"))
        except ConfigurationError as error:
            return error_text(str(error))

    def DetectorsForHosts(self, hosts: Any) -> str:  # noqa: N802
        """The detectors of a JSON list of hosts, as a JSON list."""
        text = _text(hosts, "inventory.DetectorsForHosts")
        try:
            names = json.loads(text)
            if not isinstance(names, list) or not all(isinstance(h, str) for h in names):
                raise ValueError(f"expected a JSON list of host names, got {text!r}")
        except ValueError as error:
            return error_text(f"DetectorsForHosts function: {error}")
        try:
            return go_json(self._config.detectors_for_hosts(names))
        except ConfigurationError as error:
            return error_text(str(error))

    def CRUCardsForHost(self, host: Any) -> str:  # noqa: N802
        """The serials of a host's CRU cards, as a JSON list."""
        try:
            return go_json(self._config.cru_cards_for_host(_text(host, "inventory.CRUCardsForHost")))
        except ConfigurationError as error:
            return go_json([f"error: {error}"])   # AliECS's shape for this one

    def EndpointsForCRUCard(self, host: Any, serial: Any) -> str:  # noqa: N802
        """The endpoints of one card of a host, space-separated."""
        try:
            endpoints = self._config.endpoints_for_cru_card(
                _text(host, "inventory.EndpointsForCRUCard", "host"),
                _text(serial, "inventory.EndpointsForCRUCard", "serial"))
        except ConfigurationError as error:
            return error_text(str(error))
        return " ".join(endpoints)


class RuntimeNamespace(Namespace):
    """runtime.*: the runtime key-value store (o2/runtime/<component>/<key>)."""

    def __init__(self, config: ConfigurationService) -> None:
        self._config = config

    def Get(self, component: Any, key: Any) -> str:  # noqa: N802
        try:
            return self._config.runtime_get(_text(component, "runtime.Get", "component"),
                                            _text(key, "runtime.Get", "key"))
        except ConfigurationError as error:
            return error_text(str(error))

    def Set(self, component: Any, key: Any, value: Any) -> str:  # noqa: N802
        text = _text(value, "runtime.Set", "value")
        try:
            self._config.runtime_set(_text(component, "runtime.Set", "component"),
                                     _text(key, "runtime.Set", "key"), text)
        except ConfigurationError as error:
            return error_text(str(error))
        return text


class OdcPlaceholder(Namespace):
    """The `odc` object when no ODC plugin provides one (AliECS keeps a dummy, so the
    root role's `odc.GenerateEPNTopologyFullname()` works without EPNs)."""

    def GenerateEPNTopologyFullname(self) -> str:  # noqa: N802
        return ""

    def GenerateEPNWorkflowScript(self) -> str:  # noqa: N802
        return ""


# --- namespaces bound to a stack ---------------------------------------------------------------

class UtilNamespace(Namespace):
    """util.*: PrefixedOverride reads the stack; the rest are plain helpers."""

    __slots__ = ("_stack", "_dump_dir")

    def __init__(self, stack: Stack, dump_dir: Path | None = None) -> None:
        self._stack = stack
        self._dump_dir = dump_dir

    def PrefixedOverride(self, varname: Any, prefix: Any) -> str:  # noqa: N802
        """`<prefix>_<varname>` if set and not none/blank, else `<varname>` likewise, else ""."""
        name = _text(varname, "util.PrefixedOverride", "varname")
        for key in (f"{_text(prefix, 'util.PrefixedOverride', 'prefix')}_{name}", name):
            value = self._stack.get(key)
            if isinstance(value, str) and value != "none" and value.strip():
                return value
        return ""

    def Dump(self, value: Any, path: Any) -> str:  # noqa: N802
        """Write value to a file (a debugging aid); returns value.

        AliECS writes anywhere; a template must not be able to overwrite the
        engine's files, so nutshell confines dumps to the working directory's
        dumps/ folder (a relative path inside it) and refuses anything else.
        """
        text = _text(value, "util.Dump", "value")
        name = _text(path, "util.Dump", "path")
        if self._dump_dir is None:
            log.warning("util.Dump: no dump folder here; %s not written", name)
            return text
        target = (self._dump_dir / name).resolve()
        if not target.is_relative_to(self._dump_dir.resolve()):
            log.warning("util.Dump: %s is outside %s; not written", name, self._dump_dir)
            return text
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as error:
            log.warning("util.Dump: could not dump variable to file: %s", error)
        return text

    def Nullable(self, value: Any) -> str:  # noqa: N802
        return "" if value is None else _text(value, "util.Nullable")

    def SuffixInRange(self, value: Any, prefix: Any, low: Any, high: Any) -> str:  # noqa: N802
        """"true" if value is prefix + an integer within [low, high], else "false"."""
        text = _text(value, "util.SuffixInRange", "input")
        start = _text(prefix, "util.SuffixInRange", "prefix")
        if not start or not text.startswith(start):
            return "false"
        bounds = (_text(low, "util.SuffixInRange", "min"), _text(high, "util.SuffixInRange", "max"))
        suffix = text[len(start):]
        if not _GO_INT.fullmatch(suffix):
            return "false"
        if not all(_GO_INT.fullmatch(b) for b in bounds):
            log.error("util.SuffixInRange: min %r or max %r is not a number", *bounds)
            return "false"
        return "true" if int(bounds[0]) <= int(suffix) <= int(bounds[1]) else "false"


# What processing a payload can fail with; config.Get answers {"error":...} for each, as
# apricot does, rather than failing the template.
_PAYLOAD_ERRORS = (ConfigurationError, JinjaTemplateError, FunctionError, TypeError, ValueError,
                   ArithmeticError, LookupError)


class ConfigNamespace(Namespace):
    """config.*: component configuration (o2/components), Get processed with the stack."""

    __slots__ = ("_library", "_stack")

    def __init__(self, library: "FunctionLibrary", stack: Stack) -> None:
        self._library = library
        self._stack = stack

    def Get(self, path: Any) -> str:  # noqa: N802
        """The payload at path (with run type and role fallbacks), rendered as a Jinja2
        template with the stack (apricot's pongo2 processing)."""
        text = _text(path, "config.Get")
        try:
            payload = self._library.component_payload(text)
            return self._library.process_payload(payload, self._stack)
        except _PAYLOAD_ERRORS as error:
            return error_text(f"o2/components/{text}: {error}")

    def GetLegacy(self, path: Any) -> str:  # noqa: N802
        """The payload at path with its `{{ }}` tags rendered like a template field."""
        text = _text(path, "config.GetLegacy")
        try:
            payload = self._library.component_payload(text)
            return self._library.legacy_renderer.render(
                payload, self._stack, Where(file=f"o2/components/{text}", field="payload"))
        except (ConfigurationError, TemplateError) as error:
            return error_text(str(error))

    def Resolve(self, component: Any, run_type: Any, role: Any, entry: Any) -> str:  # noqa: N802
        """The path that exists for this query: RT/role, ANY/role, RT/any, ANY/any."""
        try:
            return self._library.config.resolve_component(
                _text(component, "config.Resolve", "component"),
                _text(run_type, "config.Resolve", "runType"),
                _text(role, "config.Resolve", "roleName"),
                _text(entry, "config.Resolve", "entryKey"))
        except ConfigurationError as error:
            return error_text(str(error))

    def ResolvePath(self, path: Any) -> str:  # noqa: N802
        try:
            query = parse_component_path(_text(path, "config.ResolvePath"))
            return self._library.config.resolve_component(
                query.component, query.run_type, query.role, query.entry)
        except ConfigurationError as error:
            return error_text(str(error))


class DplNamespace(Namespace):
    """dpl.*: JIT DPL sub-workflows, delegated to the DplGenerator; each returns the
    name of the workflow to include."""

    __slots__ = ("_generator", "_stack")

    def __init__(self, generator: DplGenerator | None, stack: Stack) -> None:
        self._generator = generator
        self._stack = stack

    def _require(self, function: str) -> DplGenerator:
        if self._generator is None:
            raise FunctionError(f"{function}: no JIT workflow generator is available here "
                                f"(the workflow is not being loaded from a repository)")
        return self._generator

    def Generate(self, command: Any) -> str:  # noqa: N802
        text = _text(command, "dpl.Generate")
        return self._require("dpl.Generate").generate(text, self._stack)

    def GenerateFromUri(self, name: Any) -> str:  # noqa: N802
        text = _text(name, "dpl.GenerateFromUri")
        return self._require("dpl.GenerateFromUri").generate_from_uri(text, self._stack)

    def GenerateFromUriOrFallbackToTemplate(self, name: Any) -> str:  # noqa: N802
        text = _text(name, "dpl.GenerateFromUriOrFallbackToTemplate")
        return self._require("dpl.GenerateFromUriOrFallbackToTemplate") \
            .generate_from_uri_or_fallback(text, self._stack)


class DeprecatedNames(Namespace):
    """The deprecated top-level names; each logs a warning (once) and delegates."""

    __slots__ = ("_library", "_config", "_dpl")

    def __init__(self, library: "FunctionLibrary", config: ConfigNamespace,
                 dpl: DplNamespace) -> None:
        self._library = library
        self._config = config
        self._dpl = dpl

    def GetConfig(self, path: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("GetConfig", "config.Get")
        return self._config.Get(path)

    def GetConfigLegacy(self, path: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("GetConfigLegacy", "config.GetLegacy")
        return self._config.GetLegacy(path)

    def GenerateDplSubworkflow(self, command: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("GenerateDplSubworkflow", "dpl.Generate")
        return self._dpl.Generate(command)

    def GenerateDplSubworkflowFromUri(self, name: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("GenerateDplSubworkflowFromUri", "dpl.GenerateFromUri")
        return self._dpl.GenerateFromUri(name)


class StackFreeDeprecatedNames(Namespace):
    """The deprecated top-level names that do not read the stack."""

    def __init__(self, library: "FunctionLibrary") -> None:
        self._library = library
        self._inventory = library.inventory
        self._runtime = library.runtime

    def ResolveConfigPath(self, path: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("ResolveConfigPath", "config.ResolvePath")
        return ConfigNamespace(self._library, {}).ResolvePath(path)

    def DetectorForHost(self, host: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("DetectorForHost", "inventory.DetectorForHost")
        return self._inventory.DetectorForHost(host)

    def DetectorsForHosts(self, hosts: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("DetectorsForHosts", "inventory.DetectorsForHosts")
        return self._inventory.DetectorsForHosts(hosts)

    def CRUCardsForHost(self, host: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("CRUCardsForHost", "inventory.CRUCardsForHost")
        return self._inventory.CRUCardsForHost(host)

    def EndpointsForCRUCard(self, host: Any, serial: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("EndpointsForCRUCard", "inventory.EndpointsForCRUCard")
        return self._inventory.EndpointsForCRUCard(host, serial)

    def GetRuntimeConfig(self, component: Any, key: Any) -> str:  # noqa: N802
        self._library.warn_deprecated("GetRuntimeConfig", "runtime.Get")
        return self._runtime.Get(component, key)


# --- the library -----------------------------------------------------------------------------

class FunctionLibrary:
    """Everything templates can call besides the variables, for one engine.

    `namespaces(stack)` is the Renderer's namespaces factory (compose it with
    the role objects Parent()/Up()/This()). Plugin objects replace the names
    they share with the library (a real `odc` replaces the placeholder).
    """

    def __init__(self, config: ConfigurationService, dpl: DplGenerator | None = None,
                 plugin_objects: Mapping[str, Any] | None = None,
                 dump_dir: Path | None = None) -> None:
        self.config = config
        self.dpl = dpl
        self.dump_dir = dump_dir
        self.strings = StringsNamespace()
        self.json = JsonNamespace()
        self.uid = UidNamespace()
        self.inventory = InventoryNamespace(config)
        self.runtime = RuntimeNamespace(config)
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()
        self._payloads = SandboxedEnvironment(
            loader=FunctionLoader(self._load_include), keep_trailing_newline=True,
            autoescape=False)
        self._payloads.globals.clear()
        self._payload_template = functools.lru_cache(maxsize=256)(self._payloads.from_string)
        self.legacy_renderer = Renderer(self.namespaces)
        legacy = StackFreeDeprecatedNames(self)
        plain_util = UtilNamespace({}, dump_dir)
        self._static: dict[str, Any] = {
            "strings": self.strings, "json": self.json, "uid": self.uid,
            "inventory": self.inventory, "runtime": self.runtime, "odc": OdcPlaceholder(),
            # legacy top-level names (MakeUtilFuncMap)
            "Atoi": self.strings.Atoi, "Itoa": self.strings.Itoa,
            "TrimQuotes": self.strings.TrimQuotes, "TrimSpace": self.strings.TrimSpace,
            "ToUpper": self.strings.ToUpper, "ToLower": self.strings.ToLower,
            "IsTruthy": self.strings.IsTruthy, "IsFalsy": self.strings.IsFalsy,
            "FromJson": self.json.Unmarshal, "ToJson": self.json.Marshal, "NewID": self.uid.New,
            "Dump": plain_util.Dump, "Nullable": plain_util.Nullable,
            "SuffixInRange": plain_util.SuffixInRange,
            # deprecated ones (warn, then delegate)
            "ResolveConfigPath": legacy.ResolveConfigPath, "DetectorForHost": legacy.DetectorForHost,
            "DetectorsForHosts": legacy.DetectorsForHosts, "CRUCardsForHost": legacy.CRUCardsForHost,
            "EndpointsForCRUCard": legacy.EndpointsForCRUCard,
            "GetRuntimeConfig": legacy.GetRuntimeConfig,
        }
        self._plugins = dict(plugin_objects or {})
        self._static.update(self._plugins)

    def namespaces(self, stack: Stack) -> dict[str, Any]:
        """The names templates see besides the variables, bound to this stack."""
        names = self._static.copy()
        util = UtilNamespace(stack, self.dump_dir)
        config = ConfigNamespace(self, stack)
        dpl = DplNamespace(self.dpl, stack)
        deprecated = DeprecatedNames(self, config, dpl)
        names.update(
            util=util, config=config, dpl=dpl, PrefixedOverride=util.PrefixedOverride,
            GetConfig=deprecated.GetConfig, GetConfigLegacy=deprecated.GetConfigLegacy,
            GenerateDplSubworkflow=deprecated.GenerateDplSubworkflow,
            GenerateDplSubworkflowFromUri=deprecated.GenerateDplSubworkflowFromUri)
        if self._plugins:
            names.update(self._plugins)   # plugin objects win over the library's names
        return names

    # --- component payloads (config.Get) ---------------------------------------------------

    def component_payload(self, path: str) -> str:
        """The raw payload for a component path, after the run type and role fallbacks."""
        query = parse_component_path(path)
        resolved = self.config.resolve_component(query.component, query.run_type, query.role,
                                                 query.entry)
        return self.config.get_component(resolved)

    def process_payload(self, payload: str, stack: Stack) -> str:
        """A payload rendered as a (sandboxed) Jinja2 template with the stack and the
        stack-free helpers, as apricot renders it with pongo2. Undefined names render
        empty, as in pongo2; `{% include "component/RUNTYPE/role/entry" %}` reads another
        payload."""
        template = self._payload_template(payload)
        context: dict[str, Any] = dict(stack)
        context.update(self._payload_names(stack))
        return template.render(context)

    def _payload_names(self, stack: Stack) -> dict[str, Any]:
        """What apricot binds for payload templates besides the stack (MakeUtilFuncMap)."""
        names = {key: self._static[key] for key in (
            "strings", "json", "uid", "Atoi", "Itoa", "TrimQuotes", "TrimSpace", "ToUpper",
            "ToLower", "IsTruthy", "IsFalsy", "FromJson", "ToJson", "NewID", "Dump", "Nullable",
            "SuffixInRange")}
        util = UtilNamespace(stack, self.dump_dir)
        names["util"] = util
        names["PrefixedOverride"] = util.PrefixedOverride
        return names

    def _load_include(self, name: str) -> tuple[str, None, Any]:
        try:
            return self.component_payload(name), None, lambda: False
        except ConfigurationError as error:
            raise TemplateNotFound(name, f"cannot include {name!r}: {error}") from None

    def warn_deprecated(self, name: str, replacement: str) -> None:
        """Log, once per name, that a deprecated top-level name was used."""
        with self._warned_lock:
            if name in self._warned:
                return
            self._warned.add(name)
        log.warning("%s is deprecated in templates, use %s instead", name, replacement)
