"""The configuration service interface: what the engine asks apricot for.

AliECS talks to apricot (Consul or a file backend) for the global defaults and
vars, the hardware inventory, component configuration payloads and the
runtime key-value store. The engine codes against this Protocol only, so the
embedded implementation (engine.config.embedded) and any remote one are
interchangeable. Every method is synchronous and safe to call from threads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# apricot's RunType enum (reference §6.1), by name; an unknown name counts as NULL.
RUN_TYPES: tuple[str, ...] = (
    "NULL", "PHYSICS", "TECHNICAL", "PEDESTAL", "PULSER", "LASER", "CALIBRATION_ITHR_TUNING",
    "CALIBRATION_VCASN_TUNING", "CALIBRATION_THR_SCAN", "CALIBRATION_DIGITAL_SCAN",
    "CALIBRATION_ANALOG_SCAN", "CALIBRATION_FHR", "CALIBRATION_ALPIDE_SCAN", "CALIBRATION",
    "COSMICS", "SYNTHETIC", "NOISE", "CALIBRATION_PULSE_LENGTH", "CALIBRATION_VRESETD", "ANY",
)
ANY_RUN_TYPE = "ANY"
ANY_ROLE = "any"

# component/RUNTYPE/role/entry, as apricot's query regex (componentcfg/query.go) accepts it.
_QUERY_PATH = re.compile(r"^([a-zA-Z0-9_-]+)/([A-Z0-9_-]+)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_/-]+)$")


class ConfigurationError(Exception):
    """A configuration lookup failed; the message names the key path (and file)."""


@dataclass(frozen=True)
class ComponentQuery:
    """One component configuration entry: o2/components/<component>/<run_type>/<role>/<entry>."""

    component: str
    run_type: str
    role: str
    entry: str

    @property
    def path(self) -> str:
        return f"{self.component}/{self.run_type}/{self.role}/{self.entry}"


def parse_component_path(path: str) -> ComponentQuery:
    """`component/RUNTYPE/role/entry` as config.Get/GetLegacy/ResolvePath take it.

    The format is apricot's; RUNTYPE must be a RunType name and the entry must
    not end in "resolve" (that suffix is the HTTP service's resolve verb).
    """
    text = path.strip()
    match = _QUERY_PATH.match(text)
    if match is None:
        raise ConfigurationError(
            f"bad component configuration path {path!r}: expected component/RUNTYPE/role/entry")
    component, run_type, role, entry = match.groups()
    if run_type not in RUN_TYPES:
        raise ConfigurationError(
            f"bad component configuration path {path!r}: unknown run type {run_type!r} "
            f"(one of {', '.join(RUN_TYPES)})")
    if entry.endswith("resolve"):
        raise ConfigurationError(
            f"bad component configuration path {path!r}: an entry must not end in 'resolve'")
    return ComponentQuery(component, run_type, role, entry)


@runtime_checkable
class ConfigurationService(Protocol):
    """apricot's API as the engine uses it (reference §6.1)."""

    def defaults(self) -> dict[str, str]:
        """o2/runtime/aliecs/defaults plus the globals apricot's GetDefaults adds
        (consul_endpoint, consul_base_uri, consul_hostname, consul_port,
        core_hostname, framework_id)."""
        ...

    def vars(self) -> dict[str, str]:
        """o2/runtime/aliecs/vars."""
        ...

    def list_detectors(self, get_all: bool = False) -> list[str]:
        """Detectors of the inventory, sorted; TRG hidden unless get_all."""
        ...

    def hosts(self, detector: str = "") -> list[str]:
        """FLP hosts of one detector (o2/hardware/detectors/<DET>/flps), or all FLPs."""
        ...

    def detector_for_host(self, host: str) -> str:
        """The detector whose flps hold host; ConfigurationError if none."""
        ...

    def detectors_for_hosts(self, hosts: list[str]) -> list[str]:
        """The detectors of the hosts, sorted and without duplicates."""
        ...

    def cru_cards_for_host(self, host: str) -> list[str]:
        """Serials of the CRU cards of a host (o2/hardware/flps/<host>/cards)."""
        ...

    def endpoints_for_cru_card(self, host: str, serial: str) -> list[str]:
        """Endpoints of the cards of a host with this serial (from o2/hardware/flps/<host>/cards)."""
        ...

    def resolve_component(self, component: str, run_type: str, role: str, entry: str) -> str:
        """The path `component/RUNTYPE/role/entry` that exists, trying in order
        RT/role, ANY/role, RT/any, ANY/any (an unknown run type counts as NULL);
        ConfigurationError if none exists or the parts are malformed."""
        ...

    def get_component(self, path: str) -> str:
        """The raw payload at o2/components/<path> (path as parse_component_path
        takes it); ConfigurationError if malformed or missing."""
        ...

    def runtime_get(self, component: str, key: str) -> str:
        """o2/runtime/<component>/<key>; ConfigurationError if unset."""
        ...

    def runtime_set(self, component: str, key: str, value: str) -> None:
        """Store o2/runtime/<component>/<key>."""
        ...

    def runtime_entries(self, component: str) -> dict[str, str]:
        """All runtime keys of one component."""
        ...
