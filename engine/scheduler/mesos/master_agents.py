"""The agents a Mesos master knows (`/master/slaves`): who to wait offers from, where
each one's HTTP endpoint is (sandbox logs), and what the engine's agent listing shows.
Blocking HTTP GETs: call them from a worker thread."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.scheduler.agents import AgentSpec
from engine.scheduler.offers import MACHINE_ID, normalize_ranges
from engine.task.taskclass import PortRange

HTTP_TIMEOUT = 5.0  # seconds


class MasterUnreachable(ConnectionError):
    """The master's HTTP endpoint did not answer; the message names the URL."""


@dataclass(frozen=True)
class MasterAgent:
    agent_id: str
    hostname: str
    attributes: Mapping[str, str]
    cpus: float
    mem: float
    ports: tuple[PortRange, ...]
    active: bool
    endpoint: str = ""  # host:port of the agent's HTTP API (/state, /files)

    @property
    def machine_id(self) -> str:
        return self.attributes.get(MACHINE_ID, "")

    def spec(self) -> AgentSpec:
        return AgentSpec(name=self.machine_id, machine_id=self.machine_id,
                         attributes={k: v for k, v in self.attributes.items() if k != MACHINE_ID},
                         cpus=self.cpus, mem=self.mem, port_ranges=self.ports,
                         hostname=self.hostname)


def parse_ports(text: Any) -> tuple[PortRange, ...]:
    """`[9000-9099, 30000-30499]` (the /master/slaves form) as ranges."""
    ranges = []
    for part in str(text or "").strip("[] ").split(","):
        begin, _, end = part.strip().partition("-")
        if begin.strip().isdigit():
            ranges.append(PortRange(int(begin), int(end or begin)))
    return normalize_ranges(ranges)


def parse_agent(entry: Mapping[str, Any]) -> MasterAgent:
    resources = entry.get("resources", {})
    return MasterAgent(agent_id=str(entry.get("id", "")), hostname=str(entry.get("hostname", "")),
                       attributes={str(k): str(v) for k, v in
                                   (entry.get("attributes") or {}).items()},
                       cpus=float(resources.get("cpus", 0.0)),
                       mem=float(resources.get("mem", 0.0)),
                       ports=parse_ports(resources.get("ports")), active=bool(entry.get("active")),
                       endpoint=agent_endpoint(entry))


def agent_endpoint(entry: Mapping[str, Any]) -> str:
    """host:port of an agent, from its libprocess pid (`slave(1)@10.0.0.7:5051`)."""
    return str(entry.get("pid", "")).rpartition("@")[2]


def fetch_json(url: str, who: str = "Mesos master") -> Any:
    """The JSON document at `url`; MasterUnreachable naming `who` and the URL otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as reply:
            return json.loads(reply.read().decode())
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise MasterUnreachable(f"{who} {url}: {error}") from None


def get_json(url: str, who: str = "Mesos master") -> dict[str, Any]:
    """The JSON object at `url` ({} when it is something else)."""
    document = fetch_json(url, who)
    return document if isinstance(document, dict) else {}


def fetch_agents(master_url: str) -> list[MasterAgent]:
    """Every agent the master lists, active or not."""
    return [parse_agent(entry) for entry in get_json(f"{master_url}/master/slaves").get("slaves", [])]


def fetch_executor_agents(master_url: str, framework_id: str) -> set[str]:
    """The agent ids where the framework has an executor running."""
    document = get_json(f"{master_url}/master/frameworks?framework_id={framework_id}")
    return {str(executor.get("slave_id", ""))
            for framework in document.get("frameworks", []) if framework.get("id") == framework_id
            for executor in framework.get("executors", [])}
