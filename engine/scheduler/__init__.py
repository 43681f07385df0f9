"""Scheduling (AliECS core/task scheduler): offers, constraints, matching, local agents.

Both backends (local agents, Mesos) describe their agents as `Offer`s and
their tasks as `TaskDescriptor`s, and share one `match`: constraints, then
cpus, mem and ports, control port ≥ 30000 and data ports ≥ 9000.
"""
from engine.scheduler.agents import (AgentSpec, AgentSpecError, default_agents, load_agents,
                                     parse_agents)
from engine.scheduler.constraints import constraint_holds, satisfies, unmet_constraint
from engine.scheduler.matching import match
from engine.scheduler.offers import (CONTROL_PORT_FLOOR, DATA_PORT_FLOOR, MACHINE_ID, MatchResult,
                                     Offer, Placement, ResourceUse, TaskDescriptor, Unplaced,
                                     needs_control_port)

__all__ = [
    "CONTROL_PORT_FLOOR", "DATA_PORT_FLOOR", "MACHINE_ID", "AgentSpec", "AgentSpecError",
    "MatchResult", "Offer", "Placement", "ResourceUse", "TaskDescriptor", "Unplaced",
    "constraint_holds", "default_agents", "load_agents", "match", "needs_control_port",
    "parse_agents", "satisfies", "unmet_constraint",
]
