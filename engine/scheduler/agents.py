"""Local agents: the logical agents of the embedded scheduler backend.

Declared in the `agents:` section of nutshell.yaml (the working directory's
settings file); without one, four agents `flp001`…`flp004` on this machine,
each with `machine_id` = its name. All local agents share one machine, so
each must have port ranges of its own: two agents never hand out one port.

```yaml
agents:
  flp001:
    machine_id: flp001          # default: the agent's name
    attributes: {machine_type: flp}
    cpus: 32
    mem: 131072                 # MB
    ports: 9000-9999,30000-30999
```
`cpus`, `mem` and `ports` default as for the built-in agents (ports by
position: the n-th agent gets 9000+1000n… and 30000+500n…, below 32768 where
Linux's ephemeral ports begin).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.scheduler.offers import (MACHINE_ID, Offer, ResourceUse, format_ranges,
                                     normalize_ranges, ranges_without)
from engine.task.errors import TaskClassError
from engine.task.taskclass import PortRange, parse_port_ranges

DEFAULT_AGENT_COUNT = 4
DEFAULT_CPUS = 32.0
DEFAULT_MEM = 131072.0
DEFAULT_HOSTNAME = "127.0.0.1"
DATA_PORTS_PER_AGENT = 1000
DATA_PORTS_BASE = 9000
# Control ports stay below 32768, where Linux starts handing out ports to outgoing
# connections (ip_local_port_range): a port in use by a connection cannot be listened on.
CONTROL_PORTS_PER_AGENT = 500
CONTROL_PORTS_BASE = 30000
SECTION = "agents"
_AGENT_KEYS = frozenset({"machine_id", "attributes", "cpus", "mem", "ports"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class AgentSpecError(ValueError):
    """The `agents:` section of nutshell.yaml is wrong; the message names file, agent, field."""


def default_ports(position: int) -> tuple[PortRange, ...]:
    """The n-th agent's ranges: data ports ≥ 9000, control ports ≥ 30000, its own per agent
    (the first five agents' control ports all lie below the kernel's ephemeral range)."""
    data = DATA_PORTS_BASE + DATA_PORTS_PER_AGENT * position
    control = CONTROL_PORTS_BASE + CONTROL_PORTS_PER_AGENT * position
    return (PortRange(data, data + DATA_PORTS_PER_AGENT - 1),
            PortRange(control, control + CONTROL_PORTS_PER_AGENT - 1))


@dataclass(frozen=True)
class AgentSpec:
    """One logical agent: what it offers when nothing runs on it.

    `hostname` is where peers reach its tasks: this machine.
    """

    name: str
    machine_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    cpus: float = DEFAULT_CPUS
    mem: float = DEFAULT_MEM
    port_ranges: tuple[PortRange, ...] = ()
    hostname: str = DEFAULT_HOSTNAME

    @property
    def all_attributes(self) -> dict[str, str]:
        """The attributes as offered, `machine_id` included."""
        return {**self.attributes, MACHINE_ID: self.machine_id}

    def offer(self, in_use: Iterable[ResourceUse] = (), executor_ids: Iterable[str] = ()
              ) -> Offer:
        """What the agent offers with `in_use` (its live tasks' resources) subtracted."""
        uses = list(in_use)
        held = {port for use in uses for port in use.ports}
        return Offer(agent_id=self.name, hostname=self.hostname,
                     attributes=self.all_attributes,
                     cpus=self.cpus - sum(use.cpus for use in uses),
                     mem=self.mem - sum(use.mem for use in uses),
                     ports=ranges_without(self.port_ranges, held),
                     executor_ids=tuple(executor_ids))


def default_agents() -> tuple[AgentSpec, ...]:
    """flp001…flp004 on this machine, machine_id = name, disjoint port ranges."""
    return tuple(AgentSpec(name=f"flp{n + 1:03d}", machine_id=f"flp{n + 1:03d}",
                           port_ranges=default_ports(n))
                 for n in range(DEFAULT_AGENT_COUNT))


# ---------------------------------------------------------------- parsing

def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def positive_number(value: Any, where: str, default: float) -> float:
    """A positive, finite number of nutshell.yaml (`default` when absent); AgentSpecError
    naming `where` otherwise."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AgentSpecError(f"{where}: must be a positive number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise AgentSpecError(f"{where}: must be a positive number, not {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise AgentSpecError(f"{where}: must be a positive number, not {value!r}")
    return number


def _ports(value: Any, where: str, position: int) -> tuple[PortRange, ...]:
    if value is None:
        return default_ports(position)
    if isinstance(value, list):
        parts = [_text(item).strip() for item in value]
        expression = ",".join(parts)
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        expression = _text(value).strip()
    else:
        raise AgentSpecError(f"{where}: must be ranges such as 9000-9999,30000-30999, "
                             f"not {value!r}")
    if not expression:
        raise AgentSpecError(f"{where}: is empty; give ranges such as 9000-9999,30000-30999")
    try:
        ranges = parse_port_ranges(expression, where)
    except TaskClassError as error:
        raise AgentSpecError(str(error)) from None
    return normalize_ranges(ranges)


def _attributes(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AgentSpecError(f"{where}: must be a mapping of attribute: value, "
                             f"not {type(value).__name__}")
    attributes: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, (Mapping, list)):
            raise AgentSpecError(f"{where}.{key}: must be text (a comma list for a set), "
                                 f"not a {type(item).__name__}")
        attributes[str(key)] = _text(item)
    return attributes


def _agent(name: Any, entry: Any, position: int, origin: str) -> AgentSpec:
    text = _text(name).strip()
    if not _NAME.fullmatch(text):
        raise AgentSpecError(f"{origin}: agents: agent name {text!r} must be letters, digits, "
                             "'.', '_' or '-'")
    where = f"{origin}: agents.{text}"
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise AgentSpecError(f"{where}: must be a mapping with machine_id, attributes, cpus, "
                             f"mem, ports, not {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in _AGENT_KEYS)
    if unknown:
        raise AgentSpecError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(sorted(_AGENT_KEYS))}")
    machine_id = _text(entry.get("machine_id")).strip() or text
    attributes = _attributes(entry.get("attributes"), f"{where}.attributes")
    declared = attributes.pop(MACHINE_ID, None)
    if declared is not None and declared != machine_id:
        raise AgentSpecError(f"{where}.attributes.{MACHINE_ID}: {declared!r} contradicts the "
                             f"agent's machine_id {machine_id!r}; give it once, as machine_id")
    return AgentSpec(name=text, machine_id=machine_id, attributes=attributes,
                     cpus=positive_number(entry.get("cpus"), f"{where}.cpus", DEFAULT_CPUS),
                     mem=positive_number(entry.get("mem"), f"{where}.mem", DEFAULT_MEM),
                     port_ranges=_ports(entry.get("ports"), f"{where}.ports", position))


def _check_distinct(agents: Iterable[AgentSpec], origin: str) -> None:
    """Agents on one machine must not share a machine_id or a port."""
    seen_ids: dict[str, str] = {}
    owners: list[tuple[AgentSpec, PortRange]] = []
    for agent in agents:
        other = seen_ids.setdefault(agent.machine_id, agent.name)
        if other != agent.name:
            raise AgentSpecError(f"{origin}: agents.{agent.name}.machine_id: "
                                 f"{agent.machine_id!r} is already agent {other}'s")
        for mine in agent.port_ranges:
            for owner, theirs in owners:
                if mine.begin <= theirs.end and theirs.begin <= mine.end:
                    raise AgentSpecError(
                        f"{origin}: agents.{agent.name}.ports: {format_ranges([mine])} overlaps "
                        f"{format_ranges([theirs])} of agent {owner.name}; local agents share "
                        "this machine, so each needs ports of its own")
        owners.extend((agent, r) for r in agent.port_ranges)


def parse_agents(document: Any, origin: str) -> tuple[AgentSpec, ...]:
    """The agents of a parsed nutshell.yaml; `origin` names the file in messages.

    No document or no `agents:` section gives the default agents; other
    sections belong to other parts of the engine and are left alone.
    """
    if document is None:
        return default_agents()
    if not isinstance(document, Mapping):
        raise AgentSpecError(f"{origin}: must be a mapping of sections (agents, …), "
                             f"not {type(document).__name__}")
    if SECTION not in document:
        return default_agents()
    section = document[SECTION]
    if not isinstance(section, Mapping):
        raise AgentSpecError(f"{origin}: agents: must be a mapping of agent name to its "
                             f"settings, not {type(section).__name__}")
    if not section:
        raise AgentSpecError(f"{origin}: agents: declares no agent; declare at least one or "
                             "remove the section for the default flp001…flp004")
    agents = tuple(_agent(name, entry, position, origin)
                   for position, (name, entry) in enumerate(section.items()))
    _check_distinct(agents, origin)
    return agents


def read_settings(settings_file: Path) -> Any:
    """nutshell.yaml parsed (None when there is none); AgentSpecError names the file and
    line of a document that cannot be read."""
    try:
        text = settings_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AgentSpecError(f"{settings_file}: cannot be read: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise AgentSpecError(f"{settings_file}{line}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise AgentSpecError(f"{settings_file}: not valid YAML: {error}") from None


def load_agents(settings_file: Path) -> tuple[AgentSpec, ...]:
    """The agents declared in nutshell.yaml (`WorkingDirectory.settings_file`).

    A missing file means the default agents.
    """
    return parse_agents(read_settings(settings_file), str(settings_file))
