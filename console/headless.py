"""Headless commands: coconut's names, exit codes, JSON output.

`template` and `repo` are here; `env`, `task`, `role`, `run` and `agents` are in
their own modules (commands_env, commands_tasks, commands_run, commands_agents),
wired from add_commands.

Each command opens the engine of the working directory (console/client.py: the
hosted one, or its own), does one thing, prints it for people (or as JSON with
`-o json`) and closes the engine. Errors
the engine reports for bad input are printed as they are (they name the repo,
file, role, field and expression) with exit code 1.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any, Awaitable, Callable

from console.client import AnyEngine, open_engine
from console.commands_agents import add_agent_commands
from console.commands_env import UsageError, add_env_commands
from console.commands_run import add_run_command
from console.commands_tasks import add_task_commands
from console.tables import result_lines
from console.tree_text import tree_lines
from console.variables import VariablesError, parse_variables
from engine import USER_ERRORS, RepoInfo, TransitionFailed, WorkflowTemplateInfo
from engine.api import RemoteEngineError

EXIT_FAILED = 1


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    add_env_commands(commands)
    add_task_commands(commands)
    add_run_command(commands)
    add_agent_commands(commands)
    template = commands.add_parser("template", aliases=["templ"], help="workflow templates")
    template_commands = template.add_subparsers(dest="action", required=True, metavar="ACTION")

    render = template_commands.add_parser(
        "render", help="resolve a workflow without deploying it and print its role tree")
    render.add_argument("workflow", help="[<repo>/workflows/]<name>[@<revision>]")
    render.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                        help='variables: a JSON object or k=v[,k2=v2] (repeatable), e.g. '
                             '-e \'{"hosts": ["flp001"]}\'')
    render.add_argument("--repo", metavar="PATH",
                        help="read the workflow from this local git repository without adding it")
    render.add_argument("-o", "--output", choices=("text", "json"), default="text")
    render.set_defaults(run=_render)

    listing = template_commands.add_parser("list", aliases=["ls", "l"],
                                           help="list workflow templates and their public variables")
    listing.add_argument("pattern", nargs="?", default="", metavar="REPO[@REVISION]",
                         help="glob over repositories (or an index), optionally @revision glob")
    listing.add_argument("-r", "--repository", default="", help="repository glob or index")
    listing.add_argument("-i", "--revision", default="", help="revision glob or commit hash")
    listing.add_argument("-b", "--all-branches", action="store_true")
    listing.add_argument("-t", "--all-tags", action="store_true")
    listing.add_argument("-a", "--all-workflows", action="store_true",
                         help="also workflows whose name is not !public")
    listing.add_argument("-d", "--show-description", action="store_true")
    listing.add_argument("--repo", metavar="PATH", help="list one local git repository")
    listing.add_argument("-o", "--output", choices=("text", "json"), default="text")
    listing.set_defaults(run=_list_templates)

    repo = commands.add_parser("repository", aliases=["repo"], help="template repositories")
    repo_commands = repo.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = repo_commands.add_parser("add", aliases=["new", "a"], help="add a repository")
    add.add_argument("repo", help="host/path/name, host:/path or an absolute local path")
    add.add_argument("-d", "--default-revision", default="")
    add.set_defaults(run=_repo_add)
    listed = repo_commands.add_parser("list", aliases=["l", "ls"], help="list repositories")
    listed.add_argument("-o", "--output", choices=("text", "json"), default="text")
    listed.set_defaults(run=_repo_list)
    remove = repo_commands.add_parser("remove", aliases=["r", "delete", "del", "d"],
                                      help="remove the repository at an index")
    remove.add_argument("index", type=int)
    remove.set_defaults(run=_repo_remove)
    refresh = repo_commands.add_parser("refresh", aliases=["update", "u"],
                                       help="fetch one repository (or all)")
    refresh.add_argument("index", type=int, nargs="?", default=-1)
    refresh.set_defaults(run=_repo_refresh)
    default = repo_commands.add_parser("default", help="make the repository at an index the default")
    default.add_argument("index", type=int)
    default.set_defaults(run=_repo_default)
    revision = repo_commands.add_parser(
        "default-revision", help="<rev>: the global default revision; <index> <rev>: one repo's")
    revision.add_argument("words", nargs="+", metavar="[INDEX] REVISION")
    revision.set_defaults(run=_repo_default_revision)


EXIT_INTERRUPTED = 130


def run(options: argparse.Namespace) -> int:
    """Run the chosen command on an engine for the working directory; the exit code.

    Ctrl+C ends a command with one line, not a traceback; what the engine was doing
    goes on in the executors (`nutshell run` handles the signal itself and cleans up)."""
    try:
        return asyncio.run(_with_engine(options.run, options))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


async def _with_engine(command: Callable[[AnyEngine, argparse.Namespace], Awaitable[int]],
                       options: argparse.Namespace) -> int:
    """The engine of the working directory (attached or in-process) for one command; errors
    as run_command prints them."""
    try:
        engine = await open_engine()
    except (*USER_ERRORS, RemoteEngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return await run_command(engine, command, options)
    finally:
        await engine.close()


async def run_command(engine: AnyEngine,
                      command: Callable[[AnyEngine, argparse.Namespace], Awaitable[int]],
                      options: argparse.Namespace) -> int:
    """One command on an open engine (the headless commands' and the shell's): user errors
    become one line on stderr and exit code 1, a failed transition's table goes to stdout
    first (in text mode)."""
    try:
        return await command(engine, options)
    except TransitionFailed as error:
        if getattr(options, "output", "text") != "json":  # stdout stays parseable with -o json
            for line in result_lines(error.result.rows):
                print(line)
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    except (*USER_ERRORS, RemoteEngineError, UsageError, VariablesError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def _json(value: Any) -> None:
    print(json.dumps(value, indent=2))


async def _render(engine: AnyEngine, options: argparse.Namespace) -> int:
    variables = parse_variables(options.extra_vars)
    tree = await engine.render_workflow(options.workflow, variables, repo_path=options.repo)
    if options.output == "json":
        _json(tree)
    else:
        for line in tree_lines(tree):
            print(line)
    return 0


def _template_row(info: WorkflowTemplateInfo, with_description: bool) -> list[str]:
    lines = [f"{info.repo}@{info.revision}  {info.name}"]
    if with_description and info.description:
        lines.append(f"    {info.description}")
    for spec in sorted(info.var_specs, key=lambda s: (s.panel, s.index, s.name)):
        allowed = f" one of {', '.join(spec.allowed_values)}" if spec.allowed_values else ""
        label = f" {spec.label!r}" if spec.label else ""
        lines.append(f"    {spec.name} ({spec.type}, {spec.widget}{', ' + spec.panel if spec.panel else ''})"
                     f"{label} = {spec.default_value!r}{allowed}")
    return lines


async def _list_templates(engine: AnyEngine, options: argparse.Namespace) -> int:
    repo_pattern, _, revision_pattern = options.pattern.partition("@")
    templates = await engine.list_workflow_templates(
        options.repository or repo_pattern, options.revision or revision_pattern,
        all_branches=options.all_branches, all_tags=options.all_tags,
        all_workflows=options.all_workflows, repo_path=options.repo)
    if options.output == "json":
        _json([asdict(t) for t in templates])
        return 0
    if not templates:
        print("no workflow templates found")
    for info in templates:
        for line in _template_row(info, options.show_description):
            print(line)
    return 0


async def _repo_add(engine: AnyEngine, options: argparse.Namespace) -> int:
    result = await engine.add_repo(options.repo, options.default_revision)
    print(f"repository {result.repo} added. {result.info}")
    return 0


def _repo_row(info: RepoInfo) -> str:
    mark = "*" if info.default else " "
    return f"{mark} {info.index}  {info.name}  ({info.kind.value}, default revision {info.default_revision})"


async def _repo_list(engine: AnyEngine, options: argparse.Namespace) -> int:
    repos = await engine.list_repos()
    if options.output == "json":
        _json([{**asdict(r), "kind": r.kind.value} for r in repos])
        return 0
    if not repos:
        print("no repositories; add one with: nutshell repo add <repo>")
    for info in repos:
        print(_repo_row(info))
    return 0


async def _repo_remove(engine: AnyEngine, options: argparse.Namespace) -> int:
    new_default = await engine.remove_repo(options.index)
    print(f"repository {options.index} removed" + (f"; the default is now {new_default}" if new_default else ""))
    return 0


async def _repo_refresh(engine: AnyEngine, options: argparse.Namespace) -> int:
    await engine.refresh_repos(options.index)
    print("all repositories refreshed" if options.index == -1 else f"repository {options.index} refreshed")
    return 0


async def _repo_default(engine: AnyEngine, options: argparse.Namespace) -> int:
    await engine.set_default_repo(options.index)
    print(f"repository {options.index} is now the default")
    return 0


async def _repo_default_revision(engine: AnyEngine, options: argparse.Namespace) -> int:
    words = options.words
    if len(words) == 1:
        await engine.set_global_default_revision(words[0])
        print(f"global default revision is now {words[0]}")
        return 0
    if len(words) != 2 or not words[0].lstrip("-").isdigit():
        print("error: repo default-revision takes <revision> or <index> <revision>", file=sys.stderr)
        return 2
    await engine.set_repo_default_revision(int(words[0]), words[1])
    print(f"default revision of repository {words[0]} is now {words[1]}")
    return 0
