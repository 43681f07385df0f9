"""The shell's command line: the headless parser, made safe to use once per line.

argparse exits the process on a bad line or `--help`; in the shell that must only
end the line. ShellParser raises instead, and every subparser argparse creates
from it is a ShellParser too (add_subparsers uses the parent's class). The helpers
below read the parser tree, so completion and `help` follow the commands as they
are defined, never a list kept by hand.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

from console import headless
from console.shell import watch


class LineError(Exception):
    """A line argparse refused; the message is argparse's, with the command's usage."""


class HelpShown(Exception):
    """`-h` printed a command's help: the line is done, nothing ran."""


class ShellParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise LineError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise LineError(message.strip())
        raise HelpShown()


def build_parser() -> ShellParser:
    """The headless command set (env, task, role, run, agents, template, repo) plus
    `env watch`, under a parser without a program name."""
    top = ShellParser(prog="", add_help=False)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    headless.add_commands(commands)
    env_actions = subparsers_action(subcommands(top)["environment"])
    assert env_actions is not None, "the env command has actions"
    watch.add_watch_command(env_actions)
    return top


def subparsers_action(parser: argparse.ArgumentParser
                      ) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every name (aliases included) that selects a subcommand of `parser`."""
    action = subparsers_action(parser)
    return dict(action.choices) if action is not None else {}


@dataclass(frozen=True)
class CommandSummary:
    name: str
    aliases: tuple[str, ...]
    help: str


def summaries(parser: argparse.ArgumentParser) -> Iterator[CommandSummary]:
    """The subcommands of `parser` in definition order, each once, with its aliases."""
    action = subparsers_action(parser)
    if action is None:
        return
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    seen: set[int] = set()
    for name, sub in action.choices.items():
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        aliases = tuple(other for other, parser_ in action.choices.items()
                        if parser_ is sub and other != name)
        yield CommandSummary(name, aliases, helps.get(name, ""))


def options_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def positionals_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction)]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0
