"""`env watch ID`: one environment's state and its tasks' states, live.

Subscribes first, then reads the environment, so no change falls between the
two; task events update the counts directly, an environment event re-reads the
environment (its run number comes with it). The view ends when the environment
is destroyed, or on Ctrl+C (the shell then returns to its prompt). On a terminal
it is a rich live table redrawn in place; elsewhere one line per change.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from console.client import AnyEngine
from console.shell.colour import state_style, terminal_console
from engine import EnvironmentEvent, EnvironmentInfo, EventKind, UnknownEnvironmentError

GONE = "DONE"


def add_watch_command(env_actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    watch = env_actions.add_parser(
        "watch", aliases=["w"],
        help="live state of one environment and its tasks, until destroyed or Ctrl+C")
    watch.add_argument("id")
    watch.set_defaults(run=watch_environment)


@dataclass
class WatchedEnvironment:
    """What the view shows, kept up to date from the events."""

    id: str
    state: str = ""
    run_number: int = 0
    tasks: dict[str, str] = field(default_factory=dict)  # task id → state
    gone: bool = False

    def load(self, info: EnvironmentInfo) -> None:
        self.state = info.state
        self.run_number = info.current_run_number
        self.tasks = {task.task_id: task.state for task in info.tasks}

    def counts(self) -> list[tuple[str, int]]:
        return sorted(Counter(self.tasks.values()).items())

    def line(self) -> str:
        run = f"  run {self.run_number}" if self.run_number else ""
        tasks = ", ".join(f"{count} {state}" for state, count in self.counts()) or "none"
        return f"environment {self.id}: {self.state}{run}  tasks: {tasks}"

    def table(self) -> Table:
        table = Table(title=f"environment {self.id}", title_justify="left")
        table.add_column("STATE")
        table.add_column("RUN")
        table.add_column("TASKS", justify="right")
        table.add_column("BY STATE")
        by_state = Text(", ").join(Text(f"{count} {state}", style=state_style(state))
                                   for state, count in self.counts())
        table.add_row(Text(self.state, style=state_style(self.state)),
                      str(self.run_number or "-"), str(len(self.tasks)), by_state)
        return table


async def _apply(engine: AnyEngine, watched: WatchedEnvironment, event: EnvironmentEvent) -> bool:
    """Apply one event; whether the view changed."""
    if event.environment_id != watched.id:
        return False
    if event.kind is EventKind.TASK:
        if watched.tasks.get(event.task_id) == event.state:
            return False
        watched.tasks[event.task_id] = event.state
        return True
    if event.kind is not EventKind.ENVIRONMENT:
        return False
    if event.message == "destroyed" or event.state == GONE:
        watched.state, watched.gone = event.state or GONE, True
        return True
    try:
        watched.load(await engine.get_environment(watched.id))
    except UnknownEnvironmentError:
        watched.state, watched.gone = GONE, True
    return True


async def watch_environment(engine: AnyEngine, options: argparse.Namespace) -> int:
    """The handler of `env watch ID` (an unknown ID is the usual one-line error)."""
    subscription = await engine.subscribe()
    try:
        watched = WatchedEnvironment(options.id)
        watched.load(await engine.get_environment(options.id))
        console = terminal_console(sys.stdout)
        if console is None:
            await _follow_in_lines(engine, watched, subscription)
        else:
            await _follow_live(engine, watched, subscription, console)
    finally:
        subscription.close()
    print(f"environment {watched.id} is gone ({watched.state})" if watched.gone
          else f"environment {watched.id}: the engine's event stream ended")
    return 0


async def _follow_in_lines(engine: AnyEngine, watched: WatchedEnvironment,
                           subscription: object) -> None:
    print(watched.line(), flush=True)
    async for event in subscription:  # type: ignore[attr-defined]
        if await _apply(engine, watched, event):
            print(watched.line(), flush=True)
        if watched.gone:
            return


async def _follow_live(engine: AnyEngine, watched: WatchedEnvironment, subscription: object,
                       console: Console) -> None:
    with Live(watched.table(), console=console, auto_refresh=False) as live:
        async for event in subscription:  # type: ignore[attr-defined]
            if await _apply(engine, watched, event):
                live.update(watched.table(), refresh=True)
            if watched.gone:
                return
