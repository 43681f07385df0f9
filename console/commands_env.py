"""`nutshell env …`: coconut's environment commands (create, list, show, control, destroy).

Text for people (aligned tables, every transition's result table); `-o json` for
scripts, printing the o2control reply the command stands for (json_output.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from console import json_output
from console.client import AnyEngine, current_user
from console.oneshot import OneShot, outcome_lines, outcome_reason, step_line
from console.tables import environment_lines, pairs, result_lines, table, task_lines
from console.variables import parse_variables
from engine import EnvironmentInfo, RoleInfo, TaskInfo

# What `env control -e` takes (any case): the events a client may ask for, coconut's short names.
EVENTS = {"CONFIGURE": "CONFIGURE", "START_ACTIVITY": "START_ACTIVITY", "START": "START_ACTIVITY",
          "STOP_ACTIVITY": "STOP_ACTIVITY", "STOP": "STOP_ACTIVITY", "RESET": "RESET",
          "RECOVER": "RECOVER", "EXIT": "EXIT"}
EXIT_FAILED = 1


class UsageError(ValueError):
    """A command-line value the engine is never asked about; the message says which and why."""


def add_env_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    env = commands.add_parser("environment", aliases=["env", "e"], help="environments")
    actions = env.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", aliases=["new", "c", "n"],
                                help="deploy and configure a workflow (CONFIGURED on success)")
    create.add_argument("-w", "--workflow-template", required=True, metavar="REF",
                        help="[<repo>/workflows/]<name>[@<revision>]")
    create.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                        help="variables: a JSON object or k=v[,k2=v2] (repeatable)")
    create.add_argument("-a", "--auto", action="store_true",
                        help="then START, wait until the run ends by itself, and destroy "
                             "(coconut's auto environment)")
    create.add_argument("--emulate", action="store_true",
                        help="replace every task's command with the emulator of its control mode")
    _output(create)
    create.set_defaults(run=_create)

    listing = actions.add_parser("list", aliases=["ls", "l"], help="list the environments")
    listing.add_argument("-s", "--show-all", action="store_true",
                         help="accepted for coconut; every environment is listed")
    _output(listing)
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", aliases=["get", "s", "g"], help="one environment")
    show.add_argument("id")
    show.add_argument("-t", "--tasks", action="store_true", help="with its tasks")
    show.add_argument("-w", "--workflow", action="store_true", help="with its role tree")
    _output(show)
    show.set_defaults(run=_show)

    control = actions.add_parser("control", aliases=["ctl", "ct", "t"],
                                 help="run a transition and print its result table")
    control.add_argument("id")
    control.add_argument("-e", "--event", required=True, metavar="EVENT",
                         help="CONFIGURE, START_ACTIVITY (START), STOP_ACTIVITY (STOP), RESET, "
                              "RECOVER or EXIT")
    _output(control)
    control.set_defaults(run=_control)

    destroy = actions.add_parser("destroy", aliases=["des", "d"],
                                 help="tear an environment down and kill its tasks")
    destroy.add_argument("id")
    destroy.add_argument("-k", "--keep-tasks", action="store_true",
                         help="release the tasks instead of killing them (`task clean` kills "
                              "them later)")
    destroy.add_argument("-a", "--allow-in-running-state", action="store_true",
                         help="destroy a RUNNING environment (the run is stopped first)")
    destroy.add_argument("-f", "--force", action="store_true",
                         help="tear down whatever the state, failures of STOP and RESET only "
                              "reported")
    _output(destroy)
    destroy.set_defaults(run=_destroy)


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


def _print(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def parse_event(text: str) -> str:
    try:
        return EVENTS[text.strip().upper()]
    except KeyError:
        raise UsageError(f"-e {text!r} is not an event one can ask for; events are "
                         "CONFIGURE, START_ACTIVITY (START), STOP_ACTIVITY (STOP), RESET, "
                         "RECOVER, EXIT") from None


def _ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- create

async def _create(engine: AnyEngine, options: argparse.Namespace) -> int:
    variables = parse_variables(options.extra_vars)
    if options.auto:
        return await _create_auto(engine, options, variables)
    info = await engine.create_environment(options.workflow_template, variables,
                                           emulate=options.emulate, user=current_user())
    if options.output == "json":
        root = await engine.get_workflow_tree(info.id)
        json_output.print_message(json_output.new_environment_reply(info, root))
        return 0
    hosts = sorted({task.host for task in info.tasks if task.host})
    print(f"environment {info.id} created: {info.state}, {len(info.tasks)} tasks on "
          f"{', '.join(hosts) or 'no host'}")
    failed = [row for row in info.last_result if row.failed]
    if failed:
        print("non-critical failures:")
        _print(result_lines(failed))
    return 0


async def _create_auto(engine: AnyEngine, options: argparse.Namespace,
                       variables: dict[str, str]) -> int:
    text = options.output != "json"
    oneshot = OneShot(engine, options.workflow_template, variables, emulate=options.emulate,
                      user=current_user(), duration=None,
                      report=lambda outcome, step: print(step_line(outcome, step))
                      if text else None)
    outcome = await oneshot.run()
    if text:
        _print(outcome_lines(outcome))
    elif outcome.environment is not None:
        json_output.print_message(json_output.new_environment_reply(outcome.environment, None))
    if not outcome.ok:
        print(f"error: {outcome_reason(outcome)}", file=sys.stderr)
    return outcome.exit_code


# ---------------------------------------------------------------- list, show

async def _list(engine: AnyEngine, options: argparse.Namespace) -> int:
    environments = await engine.list_environments()
    if options.output == "json":
        json_output.print_message(json_output.environments_reply(environments))
    elif not environments:
        print("no environments; create one with: nutshell env create -w <workflow>")
    else:
        _print(environment_lines(environments))
    return 0


def tree_lines(root: RoleInfo) -> list[str]:
    """The role tree, indented by depth, with each role's aggregated state and its tasks."""
    rows: list[tuple[str, str, str, str, str]] = []

    def visit(role: RoleInfo, depth: int) -> None:
        own = role.task_ids if role.kind == "task" else ()
        rows.append(("  " * depth + role.name, role.kind, role.state, role.status,
                     " ".join(own)))
        for child in role.roles:
            visit(child, depth + 1)

    visit(root, 0)
    return table(("ROLE", "KIND", "STATE", "STATUS", "TASK"), rows)


def environment_summary(info: EnvironmentInfo) -> list[str]:
    active = sum(1 for task in info.tasks if task.status == "ACTIVE")
    run = str(info.current_run_number) if info.current_run_number else "-"
    if info.last_run_number:
        run += f" (last run {info.last_run_number})"
    return pairs((
        ("id", info.id), ("workflow", info.workflow), ("state", info.state),
        ("run number", run),
        ("created", f"{info.created.strftime('%Y-%m-%d %H:%M:%S %Z')} by "
                    f"{info.created_by or 'unknown user'}"),
        ("last transition", info.last_transition),
        ("tasks", f"{len(info.tasks)} ({active} active)")))


async def _show(engine: AnyEngine, options: argparse.Namespace) -> int:
    info = await engine.get_environment(options.id)
    if options.output == "json":
        root = await engine.get_workflow_tree(options.id)
        json_output.print_message(json_output.environment_reply(info, root, options.workflow))
        return 0
    _print(environment_summary(info))
    failed = [row for row in info.last_result if row.failed]
    if failed:
        print(f"\nfailures of the last transition ({info.last_transition}):")
        _print(result_lines(failed))
    if options.tasks:
        print()
        _print(task_lines(info.tasks) if info.tasks else ["no tasks"])
    if options.workflow:
        print()
        _print(tree_lines(await engine.get_workflow_tree(options.id)))
    return 0


# ---------------------------------------------------------------- control, destroy

async def _control(engine: AnyEngine, options: argparse.Namespace) -> int:
    event = parse_event(options.event)
    before = await engine.get_environment(options.id)
    started = _ms()
    result = await engine.control_environment(options.id, event, user=current_user())
    ended = _ms()
    if options.output == "json":
        json_output.print_message(json_output.control_reply(result, started, ended))
        return 0
    run = f", run {result.run_number}" if result.run_number else ""
    print(f"environment {result.environment_id}: {result.event} {before.state} → "
          f"{result.state}{run} ({ended - started} ms)")
    if result.rows:
        _print(result_lines(result.rows))
    return 0


def _split_tasks(tasks: Sequence[TaskInfo], keep: bool) -> tuple[list[TaskInfo], list[TaskInfo]]:
    return ([], list(tasks)) if keep else (list(tasks), [])


async def _destroy(engine: AnyEngine, options: argparse.Namespace) -> int:
    before = await engine.get_environment(options.id)
    result = await engine.destroy_environment(
        options.id, user=current_user(), keep_tasks=options.keep_tasks,
        allow_in_running_state=options.allow_in_running_state, force=options.force)
    failed = [row for row in result.rows if row.failed]
    if options.output == "json":
        killed, running = _split_tasks(before.tasks, options.keep_tasks)
        left = {row.task_id for row in failed}
        json_output.print_message(json_output.destroy_reply(
            [t for t in killed if t.task_id not in left],
            running + [t for t in killed if t.task_id in left]))
    else:
        what = "released" if options.keep_tasks else "killed"
        print(f"environment {options.id} destroyed ({before.state} → {result.state}); "
              f"{len(before.tasks)} tasks {what}")
        if failed:
            print("failures during the teardown:")
            _print(result_lines(failed))
    if failed:
        print(f"error: teardown of environment {options.id}: {len(failed)} task(s) failed",
              file=sys.stderr)
        return EXIT_FAILED
    return 0
