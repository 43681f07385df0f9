"""`nutshell agents list|stop`: the local agents, and taking their executors down.

`agents list` shows each declared agent (the console's hosts view, headless): its
attributes, cpus / mem / ports in use by the environments' tasks against its totals,
and its executor's pid when one runs; `-o json` prints the ControlExt AgentInfoList.

Executors outlive every engine on purpose (the next host re-adopts their tasks), so
stopping them is an explicit act. While environments exist it is refused: their
tasks would die with the executors and the next host would report each of them
lost; `--force` does it anyway, knowingly.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from console import json_output
from console.client import AnyEngine
from console.commands_env import UsageError
from console.tables import table
from engine import AgentInfo


def add_agent_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agents = commands.add_parser("agents", help="the local agents' executor processes")
    actions = agents.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", aliases=["ls", "l"],
                                 help="every declared agent: resources in use, executor")
    listing.add_argument("-o", "--output", choices=("text", "json"), default="text")
    listing.set_defaults(run=_list)
    stop = actions.add_parser("stop", help="stop every executor of the working directory "
                                           "(their tasks with them)")
    stop.add_argument("-f", "--force", action="store_true",
                      help="stop them even while environments exist (their tasks die)")
    stop.set_defaults(run=_stop)


async def _stop(engine: AnyEngine, options: argparse.Namespace) -> int:
    environments = await engine.list_environments()
    if environments and not options.force:
        names = ", ".join(f"{env.id} ({env.state})" for env in environments)
        raise UsageError(f"{len(environments)} environment(s) still use the agents: {names}; "
                         "destroy them first, or --force to stop the agents and kill their tasks")
    stopped = await engine.shutdown_agents()
    print(f"stopped agents: {', '.join(stopped)}" if stopped else "no agent was running")
    return 0


async def _list(engine: AnyEngine, options: argparse.Namespace) -> int:
    agents = await engine.list_agents()
    if options.output == "json":
        json_output.print_message(json_output.agents_reply(agents))
    else:
        for line in agent_lines(agents):
            print(line)
    return 0


def agent_lines(agents: Sequence[AgentInfo]) -> list[str]:
    """Name, machine, executor pid, tasks, cpus / mem / ports used of total, attributes."""
    return table(("AGENT", "MACHINE", "EXECUTOR", "TASKS", "CPUS USED/TOTAL",
                  "MEM MB USED/TOTAL", "PORTS", "PORTS IN USE", "ATTRIBUTES"),
                 ((agent.name, agent.machine_id,
                   f"pid {agent.executor_pid}" if agent.executor_running else "stopped",
                   agent.tasks, f"{agent.cpus_used:g}/{agent.cpus:g}",
                   f"{agent.mem_used:g}/{agent.mem:g}",
                   agent.port_ranges, ",".join(map(str, agent.ports_in_use)),
                   ",".join(f"{key}={value}" for key, value in sorted(agent.attributes.items())))
                  for agent in agents))
