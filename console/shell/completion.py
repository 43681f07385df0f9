"""Completion for the shell: what the parser accepts and what the engine holds.

Commands, subcommands and their aliases, and each subcommand's flags come from the
argparse tree itself; environment ids, task ids and workflow template names from
the engine, fetched when completing (async) and kept a few seconds so typing stays
fast; the events of `env control -e` from the headless command's own table.
"""
from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from console.client import AnyEngine
from console.commands_env import EVENTS
from console.shell.parser import (
    options_of,
    positionals_of,
    subcommands,
    subparsers_action,
    summaries,
    takes_value,
)
from engine import USER_ERRORS
from engine.api import RemoteEngineError

NAMES_TTL_SECONDS = 3.0
SHELL_WORDS = {"help": "list the commands, or one command's help", "exit": "leave the shell",
               "quit": "leave the shell"}


class Kind:
    """What a word of the line names, so the right engine list is offered."""

    ENVIRONMENT = "environment"
    TASK = "task"
    TEMPLATE = "template"
    EVENT = "event"


@dataclass
class CachedNames:
    """One list of names from the engine, refreshed when older than NAMES_TTL_SECONDS."""

    fetch: Callable[[], Awaitable[list[str]]]
    names: list[str] = field(default_factory=list)
    fetched: float = float("-inf")

    async def refresh(self) -> None:
        if time.monotonic() - self.fetched < NAMES_TTL_SECONDS:
            return
        try:
            self.names = await self.fetch()
        except (*USER_ERRORS, RemoteEngineError, OSError):
            pass  # nothing to offer now; the command itself will say what is wrong
        self.fetched = time.monotonic()


def engine_names(engine: AnyEngine) -> dict[str, CachedNames]:
    async def environments() -> list[str]:
        return [env.id for env in await engine.list_environments()]

    async def tasks() -> list[str]:
        return [task.task_id for task in await engine.list_tasks()]

    async def templates() -> list[str]:
        names: list[str] = []
        for info in await engine.list_workflow_templates():
            names += [info.name, f"{info.repo}/workflows/{info.name}"]
        return sorted(set(names))

    return {Kind.ENVIRONMENT: CachedNames(environments), Kind.TASK: CachedNames(tasks),
            Kind.TEMPLATE: CachedNames(templates)}


def value_kind(action: argparse.Action) -> str | None:
    """Which names an argument takes, from how the commands declare it."""
    if action.dest == "event":
        return Kind.EVENT
    if action.metavar == "TASK_ID" or action.dest == "ids":
        return Kind.TASK
    if action.metavar == "REF" or action.dest in ("workflow", "workflow_template"):
        return Kind.TEMPLATE
    if action.dest == "id" or action.metavar == "ENVIRONMENT_ID":
        return Kind.ENVIRONMENT
    return None


def _split(text: str) -> list[str]:
    """The words before the cursor; an open quote is closed for the purpose."""
    for closing in ("", '"', "'"):
        try:
            return shlex.split(text + closing)
        except ValueError:
            continue
    return text.split()


@dataclass
class Position:
    """Where the cursor is in the command tree: the parser of the innermost subcommand, the
    words after it, and whether the word being typed is a value of an option."""

    parser: argparse.ArgumentParser
    depth: int  # how many command words led to `parser`
    arguments: list[str]
    option: argparse.Action | None


def locate(top: argparse.ArgumentParser, words: list[str]) -> Position:
    """Follow the command words of a line down the parser tree (aliases included)."""
    parser, depth = top, 0
    arguments: list[str] = []
    for word in words:
        chosen = subcommands(parser).get(word) if not arguments else None
        if chosen is not None:
            parser, depth, arguments = chosen, depth + 1, []
        else:
            arguments.append(word)
    option = None
    if arguments:
        flags = {flag: action for action in options_of(parser) for flag in action.option_strings}
        last = flags.get(arguments[-1])
        if last is not None and takes_value(last):
            option = last
    return Position(parser, depth, arguments, option)


class CommandCompleter(Completer):
    """Completes a shell line; `engine` supplies ids and names (None: commands only)."""

    def __init__(self, parser: argparse.ArgumentParser, engine: AnyEngine | None) -> None:
        self.parser = parser
        self.names = engine_names(engine) if engine is not None else {}

    async def get_completions_async(self, document: Document, complete_event: CompleteEvent
                                    ) -> AsyncGenerator[Completion, None]:
        kind = self._wanted(document)
        if kind in self.names:
            await self.names[kind].refresh()
        for completion in self.get_completions(document, complete_event):
            yield completion

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterator[Completion]:
        words, current = self._words(document)
        if words[:1] == ["help"]:
            yield from self._matching(current, self._command_words(words[1:]))
            return
        position = locate(self.parser, words)
        # Events are taken in any case (as `env control -e` takes them) and offered upper case.
        fold = str.upper if position.option is not None and value_kind(
            position.option) == Kind.EVENT else str
        for text, meta in self._candidates(position, current):
            if text.startswith(fold(current)):
                yield Completion(text, -len(current), display_meta=meta)

    def _words(self, document: Document) -> tuple[list[str], str]:
        before = document.text_before_cursor
        words = _split(before)
        if not words or before[-1:].isspace():
            return words, ""
        return words[:-1], words[-1]

    def _wanted(self, document: Document) -> str | None:
        words, current = self._words(document)
        position = locate(self.parser, words)
        action = self._argument_at(position, current)
        return value_kind(action) if action is not None else None

    def _argument_at(self, position: Position, current: str) -> argparse.Action | None:
        if position.option is not None:
            return position.option
        if current.startswith("-") or subparsers_action(position.parser) is not None:
            return None
        index, skip = 0, False
        for word in position.arguments:
            if skip:
                skip = False
            elif word.startswith("-"):
                action = next((a for a in options_of(position.parser) if word in a.option_strings),
                              None)
                skip = action is not None and takes_value(action)
            else:
                index += 1
        positionals = positionals_of(position.parser)
        if not positionals:
            return None
        last = positionals[-1]
        if index < len(positionals):
            return positionals[index]
        return last if last.nargs in ("*", "+") else None

    def _candidates(self, position: Position, current: str) -> Iterable[tuple[str, str]]:
        if position.option is None and current.startswith("-"):
            used = set(position.arguments)
            for action in options_of(position.parser):
                if used.intersection(action.option_strings) and not isinstance(
                        action, argparse._AppendAction):
                    continue
                for flag in action.option_strings:
                    yield flag, action.help or ""
            return
        if position.option is None and subparsers_action(position.parser) is not None:
            if position.depth == 0:
                yield from self._command_words([])
            else:
                yield from self._subcommand_words(position.parser)
            return
        action = self._argument_at(position, current)
        if action is None:
            return
        if action.choices and not isinstance(action.choices, dict):
            yield from ((str(choice), "") for choice in action.choices)
            return
        kind = value_kind(action)
        if kind == Kind.EVENT:
            for name, event in EVENTS.items():
                yield name, "" if name == event else event
        elif kind in self.names:
            yield from ((name, kind) for name in self.names[kind].names)

    def _subcommand_words(self, parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
        for summary in summaries(parser):
            yield summary.name, summary.help
            for alias in summary.aliases:
                yield alias, f"= {summary.name}"

    def _command_words(self, path: list[str]) -> list[tuple[str, str]]:
        """Command words at `path` (top level: plus help/exit/quit)."""
        parser = self.parser
        for word in path:
            parser = subcommands(parser).get(word, parser)
        words = list(self._subcommand_words(parser))
        return words + list(SHELL_WORDS.items()) if not path else words

    def _matching(self, current: str, candidates: Iterable[tuple[str, str]]
                  ) -> Iterator[Completion]:
        for text, meta in candidates:
            if text.startswith(current):
                yield Completion(text, -len(current), display_meta=meta)
