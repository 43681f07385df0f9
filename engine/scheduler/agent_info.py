"""What each local agent is and holds, for the console's hosts view and `agents list`.

An agent's totals come from nutshell.yaml (AgentSpec); what is in use is what the
environments' live tasks were placed with (the scheduler subtracts the same from its
offers), so the view shows what the next deployment can still get.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.scheduler.agents import AgentSpec
from engine.scheduler.local_agent import RunningAgent
from engine.scheduler.offers import ResourceUse, format_ranges


@dataclass(frozen=True)
class AgentInfo:
    """One declared local agent: attributes, resources (total and in use), ports, executor.

    `port_ranges` is in the `wants.ports` notation (`9000-9999,30000-30999`);
    `executor_pid` is None when no executor runs for the agent; `tasks` counts the
    environments' live tasks placed on it."""

    name: str
    machine_id: str
    hostname: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    cpus: float = 0.0
    cpus_used: float = 0.0
    mem: float = 0.0
    mem_used: float = 0.0
    port_ranges: str = ""
    ports_in_use: tuple[int, ...] = ()
    executor_running: bool = False
    executor_pid: int | None = None
    tasks: int = 0


def describe_agents(specs: Iterable[AgentSpec], in_use: Mapping[str, Iterable[ResourceUse]],
                    running: Mapping[str, RunningAgent]) -> list[AgentInfo]:
    """Every agent of `specs` in their order: `in_use` is what each task holds, by agent
    name (TaskIndex.in_use), `running` the live executors by agent name (find_running)."""
    agents: list[AgentInfo] = []
    for spec in specs:
        uses = list(in_use.get(spec.name, ()))
        executor = running.get(spec.name)
        agents.append(AgentInfo(
            name=spec.name, machine_id=spec.machine_id, hostname=spec.hostname,
            attributes=dict(spec.attributes), cpus=spec.cpus,
            cpus_used=sum(use.cpus for use in uses), mem=spec.mem,
            mem_used=sum(use.mem for use in uses), port_ranges=format_ranges(spec.port_ranges),
            ports_in_use=tuple(sorted({port for use in uses for port in use.ports})),
            executor_running=executor is not None,
            executor_pid=executor.pid if executor is not None else None, tasks=len(uses)))
    return agents
