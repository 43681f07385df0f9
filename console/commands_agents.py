"""`nutshell agents stop`: take the local agents' executors down when the work is over.

Executors outlive every engine on purpose (the next host re-adopts their tasks), so
stopping them is an explicit act. While environments exist it is refused: their
tasks would die with the executors and the next host would report each of them
lost; `--force` does it anyway, knowingly.
"""
from __future__ import annotations

import argparse

from console.client import AnyEngine
from console.commands_env import UsageError


def add_agent_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    agents = commands.add_parser("agents", help="the local agents' executor processes")
    actions = agents.add_subparsers(dest="action", required=True, metavar="ACTION")
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
