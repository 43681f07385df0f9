"""`nutshell run`: the CI one-shot.

Create, START, hold for `--duration` (a Go duration) or until the run ends by
itself, STOP, destroy, print the summary; exit 0 only when every step
succeeded. What was created is always destroyed, on SIGINT and SIGTERM too
(exit 130 / 143 then).
"""
from __future__ import annotations

import argparse
import sys

from console.client import AnyEngine, current_user
from console.commands_env import UsageError
from console.oneshot import OneShot, outcome_lines, outcome_reason, step_line
from console.variables import parse_variables
from engine import parse_go_duration


def add_run_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = commands.add_parser(
        "run", help="CI one-shot: create, start, hold, stop, destroy; exit 0 only if all went well")
    run.add_argument("workflow", metavar="REF", help="[<repo>/workflows/]<name>[@<revision>]")
    run.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                     help="variables: a JSON object or k=v[,k2=v2] (repeatable)")
    run.add_argument("-d", "--duration", default="", metavar="D",
                     help="how long to hold the run (Go duration: 30s, 1m30s); default: until "
                          "the run ends by itself")
    run.add_argument("--emulate", action="store_true",
                     help="replace every task's command with the emulator of its control mode")
    run.set_defaults(run=_run)


def parse_duration(text: str) -> float | None:
    if not text:
        return None
    try:
        seconds = parse_go_duration(text)
    except ValueError as error:
        raise UsageError(f"--duration: {error}") from None
    if seconds < 0:
        raise UsageError(f"--duration {text!r}: a duration cannot be negative")
    return seconds


async def _run(engine: AnyEngine, options: argparse.Namespace) -> int:
    duration = parse_duration(options.duration)
    variables = parse_variables(options.extra_vars)
    oneshot = OneShot(engine, options.workflow, variables, emulate=options.emulate,
                      user=current_user(), duration=duration,
                      report=lambda outcome, step: print(step_line(outcome, step), flush=True))
    outcome = await oneshot.run()
    for line in outcome_lines(outcome):
        print(line)
    if not outcome.ok:
        print(f"error: {outcome_reason(outcome)}", file=sys.stderr)
    return outcome.exit_code
