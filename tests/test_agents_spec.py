"""Local agents: defaults, the `agents:` section of nutshell.yaml, offers made from agents."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.scheduler import (
    AgentSpec,
    AgentSpecError,
    ResourceUse,
    default_agents,
    load_agents,
)
from engine.scheduler.agents import parse_agents
from engine.scheduler.offers import format_ranges
from engine.task.taskclass import PortRange
from engine.workdir import WorkingDirectory


def settings(tmp_path: Path, text: str) -> Path:
    path = WorkingDirectory(tmp_path).ensure().settings_file
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = settings(tmp_path, text)
    with pytest.raises(AgentSpecError) as caught:
        load_agents(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    return message.removeprefix(str(path))


# ---------------------------------------------------------------- defaults

def test_default_agents_are_flp001_to_flp004() -> None:
    agents = default_agents()
    assert [a.name for a in agents] == ["flp001", "flp002", "flp003", "flp004"]
    assert all(a.machine_id == a.name for a in agents)
    assert all(a.cpus > 0 and a.mem >= 60000 for a in agents)  # the corpus's largest wants


def test_default_agents_have_disjoint_data_and_control_ports() -> None:
    seen: set[int] = set()
    for agent in default_agents():
        ports = {p for r in agent.port_ranges for p in range(r.begin, r.end + 1)}
        assert not ports & seen, agent.name
        seen |= ports
        assert sum(1 for p in ports if 9000 <= p < 30000) >= 500
        assert sum(1 for p in ports if p >= 30000) >= 500
    assert format_ranges(default_agents()[1].port_ranges) == "10000-10999,30500-30999"


def test_missing_file_or_section_gives_defaults(tmp_path: Path) -> None:
    assert load_agents(tmp_path / "nutshell.yaml") == default_agents()
    assert load_agents(settings(tmp_path, "backend: local\nplugins: [testplugin]\n")) == \
        default_agents()
    assert load_agents(settings(tmp_path, "")) == default_agents()


# ---------------------------------------------------------------- parsing

def test_full_agents_section(tmp_path: Path) -> None:
    path = settings(tmp_path, """
backend: local
agents:
  flp001:
    attributes: {machine_type: flp, detectors: "TPC,ITS", primary: yes}
    cpus: 8
    mem: 16384
    ports: 9000-9099,30000-30099
  qc:
    machine_id: qcserver01
    attributes:
      machine_type: qcserver
    cpus: 2.5
    ports: [9100-9199, 30100-30199, 40000]
  flp003:
""")
    flp001, qc, flp003 = load_agents(path)
    assert flp001 == AgentSpec(name="flp001", machine_id="flp001",
                               attributes={"machine_type": "flp", "detectors": "TPC,ITS",
                                           "primary": "true"},
                               cpus=8.0, mem=16384.0,
                               port_ranges=(PortRange(9000, 9099), PortRange(30000, 30099)))
    assert qc.machine_id == "qcserver01"
    assert qc.cpus == 2.5 and qc.mem == default_agents()[0].mem
    assert format_ranges(qc.port_ranges) == "9100-9199,30100-30199,40000"
    assert flp003.machine_id == "flp003"
    assert flp003.port_ranges == default_agents()[2].port_ranges


def test_offer_from_agent(tmp_path: Path) -> None:
    (agent,) = parse_agents({"agents": {"flp007": {"attributes": {"machine_type": "flp"},
                                                   "ports": "9000-9009,30000-30009"}}}, "x")
    offer = agent.offer(executor_ids=["exec-flp007"])
    assert offer.agent_id == "flp007"
    assert offer.hostname == "127.0.0.1"
    assert dict(offer.attributes) == {"machine_type": "flp", "machine_id": "flp007"}
    assert offer.executor_ids == ("exec-flp007",)
    used = [ResourceUse(1.0, 100, frozenset({9000, 9001, 30000})),
            ResourceUse(0.5, 50, frozenset({9005, 30009}))]
    left = agent.offer(used)
    assert (left.cpus, left.mem) == (agent.cpus - 1.5, agent.mem - 150)
    assert format_ranges(left.ports) == "9002-9004,9006-9009,30001-30008"


# ---------------------------------------------------------------- errors

def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "agents:\n  flp001:\n    cpus: [1\n")
    assert message.startswith(", line ") and "not valid YAML" in message


ERROR_CASES: list[tuple[str, str]] = [
    ("- a\n- b\n",
     ": must be a mapping of sections (agents, …), not list"),
    ("agents: [flp001]\n",
     ": agents: must be a mapping of agent name to its settings, not list"),
    ("agents: {}\n",
     (": agents: declares no agent; declare at least one or remove the section for the "
      "default flp001…flp004")),
    ("agents:\n  flp001: 4\n",
     (": agents.flp001: must be a mapping with machine_id, attributes, cpus, mem, ports, "
      "not int")),
    ("agents:\n  flp001: {cpu: 4}\n",
     (": agents.flp001: unknown field(s) cpu; allowed: attributes, cpus, machine_id, mem, "
      "ports")),
    ("agents:\n  flp001: {cpus: many}\n",
     ": agents.flp001.cpus: must be a positive number, not 'many'"),
    ("agents:\n  flp001: {cpus: -1}\n",
     ": agents.flp001.cpus: must be a positive number, not -1"),
    ("agents:\n  flp001: {cpus: true}\n",
     ": agents.flp001.cpus: must be a positive number, not True"),
    ("agents:\n  flp001: {mem: 0}\n",
     ": agents.flp001.mem: must be a positive number, not 0"),
    ("agents:\n  flp001: {ports: 9000-}\n",
     ": agents.flp001.ports: '9000-' is not a port or a port range such as 10000-10010"),
    ("agents:\n  flp001: {ports: 9999-9000}\n",
     ": agents.flp001.ports: port range '9999-9000' is out of order or outside 1-65535"),
    ("agents:\n  flp001: {ports: ''}\n",
     ": agents.flp001.ports: is empty; give ranges such as 9000-9999,30000-30999"),
    ("agents:\n  flp001: {ports: {a: 1}}\n",
     ": agents.flp001.ports: must be ranges such as 9000-9999,30000-30999, not {'a': 1}"),
    ("agents:\n  flp001: {attributes: [a]}\n",
     ": agents.flp001.attributes: must be a mapping of attribute: value, not list"),
    ("agents:\n  flp001: {attributes: {detectors: [TPC, ITS]}}\n",
     (": agents.flp001.attributes.detectors: must be text (a comma list for a set), not a "
      "list")),
    ("agents:\n  flp001: {attributes: {machine_id: flp002}}\n",
     (": agents.flp001.attributes.machine_id: 'flp002' contradicts the agent's machine_id "
      "'flp001'; give it once, as machine_id")),
    ("agents:\n  'flp 1': {}\n",
     ": agents: agent name 'flp 1' must be letters, digits, '.', '_' or '-'"),
    ("agents:\n  a: {machine_id: flp001}\n  b: {machine_id: flp001}\n",
     ": agents.b.machine_id: 'flp001' is already agent a's"),
    ("agents:\n  a: {ports: 9000-9100}\n  b: {ports: '9100,30000-30010'}\n",
     (": agents.b.ports: 9100 overlaps 9000-9100 of agent a; local agents share this "
      "machine, so each needs ports of its own")),
]


@pytest.mark.parametrize("text, expected", ERROR_CASES)
def test_errors_name_file_agent_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert load_error(tmp_path, text) == expected


def test_attributes_machine_id_equal_to_machine_id_is_accepted() -> None:
    (agent,) = parse_agents({"agents": {"flp001": {"attributes": {"machine_id": "flp001"}}}}, "f")
    assert agent.attributes == {}
    assert agent.all_attributes == {"machine_id": "flp001"}


def test_ports_other_processes_listen_on_are_not_offered(tmp_path: Path) -> None:
    import socket

    from engine.scheduler.local_agent import LocalAgentClient
    from engine.scheduler.local_pool import LocalAgentPool, listening_ports

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert port in listening_ports()
        pool = LocalAgentPool(WorkingDirectory(tmp_path), on_event=lambda *_: None)
        pool.specs = (AgentSpec(name="a1", machine_id="a1", port_ranges=(PortRange(port - 1, port + 1),)),)
        pool.clients = {"a1": LocalAgentClient.__new__(LocalAgentClient)}  # connected, never called
        (offer,) = pool.offers({})
        offered = {p for r in offer.ports for p in range(r.begin, r.end + 1)}
        assert offered == {port - 1, port + 1}
    assert port not in listening_ports()
