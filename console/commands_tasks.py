"""`nutshell task …` and `nutshell role query`: the roster, as coconut shows it.

`task list` shows every task, locked (held by an environment) or not; `task
clean` kills unlocked ones (tasks of environments are never killed); `task log`
prints the tail of a task's captured output; `role query` matches role paths of
an environment with a glob (`*` within a path element, `**` across).
"""
from __future__ import annotations

import argparse

from console import json_output
from console.client import AnyEngine
from console.tables import table, task_lines

DEFAULT_LOG_LINES = 50


def add_task_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    task = commands.add_parser("task", aliases=["t"], help="tasks of all environments")
    actions = task.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", aliases=["ls", "l"],
                                 help="every task, locked (in an environment) or not")
    listing.add_argument("-o", "--output", choices=("text", "json"), default="text")
    listing.set_defaults(run=_list)

    clean = actions.add_parser("clean", aliases=["cleanup", "cl"],
                               help="kill the unlocked tasks named, or all of them")
    clean.add_argument("ids", nargs="*", metavar="TASK_ID")
    clean.add_argument("-o", "--output", choices=("text", "json"), default="text")
    clean.set_defaults(run=_clean)

    log = actions.add_parser("log", help="the last lines of a task's captured output")
    log.add_argument("id", metavar="TASK_ID")
    log.add_argument("-n", "--lines", type=int, default=DEFAULT_LOG_LINES,
                     help=f"how many lines (default {DEFAULT_LOG_LINES})")
    log.set_defaults(run=_log)

    role = commands.add_parser("role", aliases=["r"], help="roles of an environment")
    role_actions = role.add_subparsers(dest="action", required=True, metavar="ACTION")
    query = role_actions.add_parser("query", aliases=["q"],
                                    help="roles whose path matches a glob ('.' separates)")
    query.add_argument("id", metavar="ENVIRONMENT_ID")
    query.add_argument("path", metavar="PATH_GLOB", help="e.g. 'demo.*.dummy' or 'demo.**'")
    query.add_argument("-o", "--output", choices=("text", "json"), default="text")
    query.set_defaults(run=_query)


async def _list(engine: AnyEngine, options: argparse.Namespace) -> int:
    tasks = await engine.list_tasks()
    if options.output == "json":
        json_output.print_message(json_output.tasks_reply(tasks))
    elif not tasks:
        print("no tasks")
    else:
        for line in task_lines(tasks):
            print(line)
    return 0


async def _clean(engine: AnyEngine, options: argparse.Namespace) -> int:
    killed, running = await engine.cleanup_tasks(options.ids)
    if options.output == "json":
        json_output.print_message(json_output.cleanup_reply(killed, running))
        return 0
    print(f"{len(killed)} task(s) killed, {len(running)} still running")
    if killed:
        for line in task_lines(killed):
            print(line)
    return 0


async def _log(engine: AnyEngine, options: argparse.Namespace) -> int:
    text = await engine.task_log(options.id, lines=max(options.lines, 0))
    print(text, end="" if text.endswith("\n") or not text else "\n")
    return 0


async def _query(engine: AnyEngine, options: argparse.Namespace) -> int:
    roles = await engine.query_roles(options.id, options.path)
    if options.output == "json":
        json_output.print_message(json_output.roles_reply(roles))
    elif not roles:
        print(f"no role of environment {options.id} matches {options.path!r}")
    else:
        for line in table(("ROLE", "KIND", "STATE", "STATUS", "TASKS"),
                          ((role.full_path, role.kind, role.state, role.status,
                            len(role.task_ids)) for role in roles)):
            print(line)
    return 0
