"""The hosts view of a Mesos cluster: each agent as the master sees it now.

On local agents the engine knows what each one holds (its own placements) and which
executor runs (its info file). On Mesos both are the master's to tell, for every
framework sharing the agents: totals and what is in use come from the master's
`/state` (`resources`, `used_resources`), our executor on each agent and our live task
count from our framework's entry there, and the executor's pid from the agent's
`/containers`. Blocking HTTP: call it from a worker thread.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from engine.scheduler.agent_info import AgentInfo
from engine.scheduler.mesos.master_agents import (
    MasterUnreachable,
    fetch_json,
    get_json,
    parse_agent,
    parse_ports,
)
from engine.scheduler.offers import MACHINE_ID, format_ranges

log = logging.getLogger("engine.scheduler.mesos")

LIVE_TASK_STATES = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}


def _ports_used(resources: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(port for span in parse_ports(resources.get("ports"))
                 for port in range(span.begin, span.end + 1))


def executor_pid(endpoint: str, framework_id: str, executor_id: str) -> int | None:
    """The pid the agent at `endpoint` reports for our executor's container (`/containers`:
    the containerizer's launcher, whose child is the executor process), None when the
    agent runs no such container or does not answer."""
    try:
        containers = fetch_json(f"http://{endpoint}/containers", "Mesos agent")
    except MasterUnreachable as error:
        log.warning("no executor pid: %s", error)
        return None
    for container in containers if isinstance(containers, list) else ():
        if (container.get("framework_id") == framework_id
                and container.get("executor_id") == executor_id):
            pid = (container.get("status") or {}).get("executor_pid")
            if isinstance(pid, int):
                return pid
    return None


def describe_cluster(master_url: str, framework_id: str) -> list[AgentInfo]:
    """Every agent the master lists (by machine_id), with our framework's executor and tasks
    on it; MasterUnreachable when the master does not answer."""
    state = get_json(f"{master_url}/state")
    ours = next((f for f in state.get("frameworks", ()) if framework_id
                 and f.get("id") == framework_id), {})
    executors = {str(e.get("slave_id", "")): str(e.get("executor_id", ""))
                 for e in ours.get("executors", ())}
    tasks: dict[str, int] = {}
    for task in ours.get("tasks", ()):
        if task.get("state") in LIVE_TASK_STATES:
            agent_id = str(task.get("slave_id", ""))
            tasks[agent_id] = tasks.get(agent_id, 0) + 1
    agents: list[AgentInfo] = []
    for entry in state.get("slaves", ()):
        agent = parse_agent(entry)
        if not agent.machine_id:
            continue
        used = entry.get("used_resources") or {}
        executor = executors.get(agent.agent_id, "")
        agents.append(AgentInfo(
            name=agent.machine_id, machine_id=agent.machine_id, hostname=agent.hostname,
            attributes={k: v for k, v in agent.attributes.items() if k != MACHINE_ID},
            cpus=agent.cpus, cpus_used=float(used.get("cpus", 0.0)), mem=agent.mem,
            mem_used=float(used.get("mem", 0.0)), port_ranges=format_ranges(agent.ports),
            ports_in_use=_ports_used(used), executor_running=bool(executor),
            executor_pid=(executor_pid(agent.endpoint, framework_id, executor)
                          if executor and agent.endpoint else None),
            tasks=tasks.get(agent.agent_id, 0)))
    return sorted(agents, key=lambda info: info.name)
