"""Bad input to the command parsers: random argv for `nutshell`, random lines for the
shell and the console's `:` line, random text for the completer and for `-e` variables.
Each is either a parsed command or a clean refusal (argparse's usage error, LineError,
VariablesError); no other exception may come out."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from console import cli
from console.headless import run_command
from console.shell.completion import CommandCompleter
from console.shell.line import LineKind, command_name, read_line
from console.shell.parser import HelpShown, LineError, build_parser, subcommands
from console.variables import VariablesError, parse_variables
from engine import Engine, WorkingDirectory
from tests.conftest import make_template_repo
from tests.fuzzing import fuzz_settings

FUZZ = fuzz_settings(200)


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """Every subcommand name and option string of the parser tree."""
    found: list[str] = []
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            found.extend(action.option_strings)
            found.extend(getattr(action, "choices", None) or [])
        pending.extend(sub for sub in subcommands(current).values() if sub not in pending)
    return sorted(set(found))


SHELL_WORDS = _words(build_parser())
CLI_WORDS = _words(cli.parser())
VALUES = ["", "-", "--", "-1", "0", "99999999999999999999999", "1e9", "nan", "x", "a=b",
          '{"a": 1}', "{", "[]", "*", "readout-dataflow", "2oDvieFrVTi", "START_ACTIVITY",
          "exit", "help", "'", '"', "\\", "\x00", "é", "=", ",", "--help", "-h"]


def argv(words: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.one_of(st.sampled_from(words), st.sampled_from(VALUES),
                              st.text(max_size=8)), max_size=8)


@given(argv(CLI_WORDS))
@FUZZ
def test_nutshell_argv_parses_or_is_a_usage_error(words: list[str]) -> None:
    """`nutshell …` argv through the real parser: a Namespace, or argparse's exit with
    status 2 (usage error) or 0 (--help, --version) after printing — never a traceback."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            options = cli.parser().parse_args(words)
        except SystemExit as leaving:
            assert leaving.code in (0, 2), leaving.code
            if leaving.code == 2:
                assert "usage: nutshell" in stderr.getvalue()
                assert "error:" in stderr.getvalue()
            return
    assert isinstance(options, argparse.Namespace)


PARSER = build_parser()


@given(argv(SHELL_WORDS))
@FUZZ
def test_shell_words_parse_or_are_refused(words: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            options = PARSER.parse_args(words)
        except LineError as error:
            assert str(error).strip()
            return
        except HelpShown:
            return
    assert callable(getattr(options, "run", None)) or options.command, options


LINE = st.one_of(
    st.text(max_size=60),
    argv(SHELL_WORDS).map(" ".join),
    st.lists(st.sampled_from([*SHELL_WORDS[:60], *VALUES, " ", "'", '"', "\\", "#"]),
             max_size=10).map("".join))


@given(LINE)
@FUZZ
def test_shell_lines_are_commands_or_refusals(text: str) -> None:
    """A line of the REPL or of the console's `:` line: what it asks for, or why not."""
    with contextlib.redirect_stdout(io.StringIO()):
        line = read_line(PARSER, text)
    if line.kind is LineKind.REFUSED:
        assert line.error.strip()
    if line.kind is LineKind.COMMAND:
        assert line.options is not None


COMPLETER = CommandCompleter(PARSER, None)


@given(LINE, st.data())
@FUZZ
def test_completion_never_fails(text: str, data: st.DataObject) -> None:
    """The completer runs on every key press: any prefix of any line must complete."""
    cursor = data.draw(st.integers(0, len(text)))
    for completion in COMPLETER.get_completions(Document(text, cursor), CompleteEvent()):
        assert isinstance(completion.text, str)


JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10)
VARIABLE_ARGUMENT = st.one_of(
    st.text(max_size=40),
    st.dictionaries(st.text(max_size=6), JSON_VALUE, max_size=4).map(json.dumps),
    JSON_VALUE.map(json.dumps),
    st.lists(st.tuples(st.text(max_size=6), st.text(max_size=8)), max_size=4).map(
        lambda pairs: ",".join(f"{k}={v}" for k, v in pairs)),
    st.integers(1, 5000).map(lambda n: "{" + '"a":' + "[" * n + "]" * n + "}"))


@given(st.lists(VARIABLE_ARGUMENT, max_size=3))
@FUZZ
def test_variables_parse_or_are_refused(arguments: list[str]) -> None:
    try:
        variables = parse_variables(arguments)
    except VariablesError as error:
        assert "-e " in str(error)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items())


def test_deeply_nested_json_variables_are_refused() -> None:
    """Found by the fuzzer: json's RecursionError escaped `-e '{"a": [[[[…]]]]}'`."""
    with pytest.raises(VariablesError) as caught:
        parse_variables(['{"a": ' + "[" * 100000 + "]" * 100000 + "}"])
    assert "nested too deeply" in str(caught.value)


# ---------------------------------------------------------------- lines run on an engine

# Commands that read, or that can only fail on this engine (it has no environment, no task
# and no agent): a random line runs them for real. Left out: what changes the engine
# (repository add/remove/default…, agents stop), creates that could succeed, watch, and
# `run` (create, start and hold until Ctrl-C).
RUNNABLE = {"environment list", "environment show", "environment control",
            "environment destroy", "environment create", "task list", "task log",
            "task clean", "role query", "template render", "template list", "repository list",
            "agents list"}
BROKEN = "name: broken\nroles:\n  - name: r\n    task: {load: missing}\n"


@pytest.fixture(scope="module")
def engine_runner(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[[Any], Any]]:
    """run(options): the command on an Engine whose loop runs in the main thread (as the
    shell's and the console's do: `env create -a` handles Ctrl-C there) for each call."""
    root: Path = tmp_path_factory.mktemp("fuzz-commands")
    repo = make_template_repo(root / "templates", {"workflows/broken.yaml": BROKEN},
                              corpus=False)
    loop = asyncio.new_event_loop()
    engine = Engine(WorkingDirectory(root / "home").ensure())

    async def start() -> None:
        await engine.add_repo(str(repo), "master")
        # GitPython's cat-file processes start with the first reads: before the tests
        await engine.list_workflow_templates(all_branches=True, all_tags=True,
                                             all_workflows=True)
        await engine.list_agents()
    loop.run_until_complete(start())
    try:
        yield lambda options: loop.run_until_complete(
            asyncio.wait_for(run_command(engine, options.run, options), timeout=120))
    finally:
        loop.run_until_complete(engine.close())
        loop.close()


def _runnable_parsers() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for name in sorted(RUNNABLE):
        parser = PARSER
        for word in name.split():
            parser = subcommands(parser)[word]
        found[name] = parser
    return found


RUNNABLE_PARSERS = _runnable_parsers()
ARGUMENT = st.one_of(st.sampled_from(VALUES), st.text(max_size=10), st.sampled_from(
    ["broken", "templates/workflows/broken", "*", "**", "broken.r", "r*", "[", "-1", "5",
     '{"x": [1]}', "x=1,y=2", "x=", "START", "STOP", "RESET", "json", "text"]))


@st.composite
def command_line(draw: st.DrawFn) -> str:
    """A runnable command: random values for its positionals, then some of its own
    options, each with a value (a choice of it where it has choices) or none."""
    name = draw(st.sampled_from(sorted(RUNNABLE)))
    parser = RUNNABLE_PARSERS[name]
    words = [draw(ARGUMENT) for action in parser._actions
             if not action.option_strings and action.nargs in (None, 1, "+")]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    for action in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        words.append(draw(st.sampled_from(action.option_strings)))
        if action.dest == "repo":  # a one-off local repository joins the list for the
            # session, and a relative path is this process's directory: no other repository
            words.append(draw(st.one_of(st.sampled_from(["/nonexistent", "/tmp"]),
                                        st.text(max_size=8).map(lambda t: f"/nonexistent/{t}"))))
        elif action.nargs != 0:
            words.append(draw(st.sampled_from(list(action.choices)) if action.choices
                              else ARGUMENT))
    return " ".join([*name.split(), *(shlex.quote(word) for word in words)])


@given(st.one_of(command_line(), LINE.filter(lambda t: "watch" not in t)))
@FUZZ
def test_lines_run_on_an_engine_end_in_an_exit_code(engine_runner: Callable[[Any], Any],
                                                    text: str) -> None:
    """A command line the parser accepts, run for real: exit code 0, or 1 with one
    `error: …` line (run_command's user errors) — never an exception out of the handler."""
    with contextlib.redirect_stdout(io.StringIO()):
        line = read_line(PARSER, text)
    if line.kind is not LineKind.COMMAND or command_name(PARSER, line.words) not in RUNNABLE:
        return
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = engine_runner(line.options)
    assert code in (0, 1), (text, code, stderr.getvalue())
    if code == 1:
        assert stderr.getvalue().startswith("error: "), (text, stderr.getvalue())
