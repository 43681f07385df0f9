#!/usr/bin/env python3
"""The console's environment view with 2000 tasks changing state 500 times a second:
how long from a keypress to the frame that shows its effect, and how many frames a
second Textual renders meanwhile; then the same for the tasks view. Goal: p99 ≤ 100 ms.

The screens (console.tui.environment_screen.EnvironmentScreen, then
console.tui.components.tasks_view.TasksView) run under App.run_test() (headless) against
a synthetic engine: a real 2000-task environment is too heavy for a small machine, and
the screens only see the engine through subscribe(), get_environment(),
get_workflow_tree() and list_tasks(). The fake keeps 2000 TaskInfo records (20 host
roles of 100 task roles, as tests/test_tui_environment.py) and changes `--rate` of them
a second, publishing one TASK event per change on the subscription, as the engine does;
each get_environment() builds an EnvironmentInfo of all 2000 records, as the engine's
does. The screens batch the events (EventFeed, 100 ms) exactly as against a real engine:
the environment view puts the events' task states on the tree at once and re-reads the
environment (role states) at most every READ_INTERVAL; the tasks view changes the
events' rows in place.

What is measured, per key (all while the events flow):
- cursor: `down` in the role tree; from just before the key is posted to the end of
  the first compositor refresh (Screen._compositor_refresh: the frame is composed and
  rendered to segments; the headless driver then writes nothing) after which the tree's
  cursor is on the next line and the detail pane shows the new selection.
- filter: in the `/` filter field, one character typed (the tree hides what does not
  match); clear: escape (the filter cleared and closed, everything shown again, the focus
  back on the tree); from the key to the end of the first refresh after which the tree
  shows the new filter.
- tasks view: cursor, `down` in the table (the cursor on the next row); filter,
  "flp017" typed a character at a time (2000 rows → 1000 → 100); clear, escape (all
  2000 rows again).
- frames: compositor refreshes per second over the whole measured time; Textual renders
  only when something changed, at most 60 a second.
The Python event loop is shared by the fake engine, the screen and the bench, as it
would be by a console with an in-process engine on its own thread sharing the GIL.

usage: .venv/bin/python bench/tui_latency.py [--presses 200] [--rate 500]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen

from console.tui.components.tasks_view import TasksView
from console.tui.detail_pane import DetailPane
from console.tui.environment_screen import EnvironmentScreen
from console.tui.role_tree import RoleTree
from engine import (
    EnvironmentEvent,
    EnvironmentInfo,
    EventKind,
    EventQueue,
    RoleInfo,
    TaskInfo,
)

ENV_ID = "bench"
HOSTS = 20
PER_HOST = 100
STATES = ("CONFIGURED", "RUNNING")
SIZE = (160, 50)
TICK = 0.01  # seconds between two bursts of task changes


class FakeEngine:
    """What EnvironmentScreen calls of an engine, over 2000 synthetic tasks."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskInfo] = {}
        self.roles: dict[str, tuple[str, str]] = {}
        self.root = self._build()
        self.subscriptions: list[EventQueue] = []
        self.changes = 0
        self.reads = 0

    def _build(self) -> RoleInfo:
        def role(name: str, path: str, kind: str, children: tuple[RoleInfo, ...] = (),
                 tasks: tuple[str, ...] = ()) -> RoleInfo:
            self.roles[path] = ("CONFIGURED", "ACTIVE")
            return RoleInfo(name=name, full_path=path, kind=kind, state="CONFIGURED",
                            status="ACTIVE", task_ids=tasks, roles=children, defaults={},
                            vars={}, user_vars={}, consolidated_stack={})
        hosts = []
        for h in range(HOSTS):
            leaves = []
            for t in range(PER_HOST):
                path = f"{ENV_ID}.h{h}.t{t}"
                task = TaskInfo(task_id=f"task-{h}-{t}", role_path=path, class_name="dummy",
                                host=f"flp{h:03d}", agent=f"flp{h:03d}", state="CONFIGURED",
                                status="ACTIVE", pid=1000 + h * PER_HOST + t,
                                control_port=47000 + h * PER_HOST + t, critical=True,
                                log_path=f"/tmp/bench/task-{h}-{t}.log")
                self.tasks[task.task_id] = task
                leaves.append(role(f"t{t}", path, "task", tasks=(task.task_id,)))
            hosts.append(role(f"h{h}", f"{ENV_ID}.h{h}", "aggregator", tuple(leaves)))
        return role(ENV_ID, ENV_ID, "aggregator", tuple(hosts))

    async def subscribe(self) -> EventQueue:
        queue = EventQueue()
        self.subscriptions.append(queue)
        return queue

    async def get_environment(self, environment_id: str) -> EnvironmentInfo:
        self.reads += 1
        return EnvironmentInfo(
            id=environment_id, state="RUNNING", workflow=f"bench/workflows/{ENV_ID}@master",
            created_by="bench", created=datetime.now(UTC), current_run_number=1,
            last_run_number=1, tasks=tuple(self.tasks.values()),
            last_transition="START_ACTIVITY", last_result=(), roles=dict(self.roles))

    async def get_workflow_tree(self, environment_id: str) -> RoleInfo:
        return self.root

    async def list_tasks(self) -> list[TaskInfo]:
        self.reads += 1
        return list(self.tasks.values())

    async def control_environment(self, environment_id: str, event: object,
                                  user: str = "") -> object:
        raise RuntimeError("the benchmark sends no transitions")

    def change(self, count: int) -> None:
        """`count` random tasks change state; one TASK event each, their host role follows."""
        for _ in range(count):
            h, t = random.randrange(HOSTS), random.randrange(PER_HOST)
            task = self.tasks[f"task-{h}-{t}"]
            state = STATES[task.state == STATES[0]]
            self.tasks[task.task_id] = replace(task, state=state)
            self.roles[task.role_path] = (state, "ACTIVE")
            self.roles[f"{ENV_ID}.h{h}"] = ("MIXED", "ACTIVE")
            event = EnvironmentEvent(EventKind.TASK, ENV_ID, state, task_id=task.task_id,
                                     role_path=task.role_path, status="ACTIVE")
            for queue in self.subscriptions:
                queue.put(event)
        self.changes += count

    async def run(self, rate: float) -> None:
        """`rate` changes a second, in bursts every TICK, catching up when the loop lags."""
        started, done = time.perf_counter(), 0
        while True:
            await asyncio.sleep(TICK)
            due = int((time.perf_counter() - started) * rate) - done
            if due > 0:
                self.change(due)
                done += due


class Probe(Screen[None]):
    """A screen telling the bench when each frame has been composed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[float] = []
        self.waiting: tuple[Callable[[], bool], asyncio.Future[float]] | None = None

    def _compositor_refresh(self) -> None:
        super()._compositor_refresh()
        now = time.perf_counter()
        self.frames.append(now)
        if self.waiting is not None:
            shown, future = self.waiting
            if shown() and not future.done():
                future.set_result(now)
                self.waiting = None


class ProbedScreen(Probe, EnvironmentScreen):
    # a relative CSS_PATH is read beside the subclass's module: name the console's own
    CSS_PATH = str(Path(sys.modules[EnvironmentScreen.__module__].__file__ or "").with_name(
        "environment_screen.tcss"))


class ProbedTasks(Probe, TasksView):
    pass


class BenchApp(App[None]):
    def __init__(self, screen: Probe) -> None:
        super().__init__()
        self.probed = screen

    def on_mount(self) -> None:
        self.push_screen(self.probed)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<8} no samples"
    ms = [v * 1000 for v in values]
    return (f"{name:<8} n={len(ms):<4} p50 {statistics.median(ms):6.1f} ms   "
            f"p99 {percentile(ms, 0.99):6.1f} ms   max {max(ms):6.1f} ms")


class Run:
    """One screen under measure: its key timings and frames while the events flow."""

    def __init__(self, screen: Probe, pilot: Pilot[None]) -> None:
        self.screen, self.pilot = screen, pilot
        self.times: dict[str, list[float]] = {}

    async def timed(self, kind: str, key: str, shown: Callable[[], bool]) -> None:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.screen.waiting = (shown, future)
        pressed = time.perf_counter()
        await self.pilot.press(key)
        self.times.setdefault(kind, []).append(await asyncio.wait_for(future, 5) - pressed)


async def measure(engine: FakeEngine, run: Run, rate: float,
                  presses: Callable[[], Awaitable[None]], title: str) -> list[float]:
    """Events at `rate` while `presses` runs; prints the figures, returns every timing."""
    screen = run.screen
    feeding = asyncio.create_task(engine.run(rate))
    await asyncio.sleep(0.5)  # the events flowing, batches applied
    first_frame, changes0, reads0 = len(screen.frames), engine.changes, engine.reads
    updates0 = getattr(screen, "updates", 0)
    measured_from = time.perf_counter()
    await presses()
    elapsed = time.perf_counter() - measured_from
    frames = len(screen.frames) - first_frame
    changes, reads = engine.changes - changes0, engine.reads - reads0
    updates = getattr(screen, "updates", 0) - updates0
    feeding.cancel()
    print(title)
    print(f"  task changes: {changes / elapsed:.0f}/s asked {rate:.0f}/s; engine reads: "
          f"{reads / elapsed:.1f}/s" + (f"; event batches applied: {updates / elapsed:.1f}/s"
                                        if updates else ""))
    print("  keypress → end of the first frame showing its effect:")
    everything = [value for values in run.times.values() for value in values]
    for kind, values in run.times.items():
        print("    " + line(kind, values))
    print("    " + line("all", everything))
    print(f"  frames composed: {frames / elapsed:.1f}/s over {elapsed:.1f} s")
    return everything


async def bench_environment(presses: int, rate: float) -> list[float]:
    engine = FakeEngine()
    screen = ProbedScreen(engine, ENV_ID)
    started = time.perf_counter()
    async with BenchApp(screen).run_test(size=SIZE) as pilot:
        tree = screen.query_one(RoleTree)
        while engine.reads == 0 or tree.cursor_node is None or not tree.tasks:
            await pilot.pause(0.01)
        await pilot.pause()
        loaded = time.perf_counter() - started
        pane = screen.query_one(DetailPane)
        tree.move_cursor(tree.root.children[0].children[0])  # the first task of flp000
        await pilot.pause()
        run = Run(screen, pilot)

        async def keys() -> None:
            for n in range(presses):
                if n % 20 == 19:  # now and then: a filter typed, then cleared
                    await pilot.press("slash")
                    for text in ("h", "h7"):
                        await run.timed("filter", text[-1],
                                        lambda t=text: tree.filter_text == t)
                    await run.timed("clear", "escape", lambda: tree.filter_text == "")
                    await pilot.pause()
                    tree.move_cursor(tree.root.children[0].children[0])
                    await pilot.pause()
                    continue
                line_before = tree.cursor_line

                def moved(before: int = line_before) -> bool:
                    node = tree.cursor_node
                    return (tree.cursor_line == before + 1 and node is not None
                            and node.data is not None and pane.shown == node.data.key)
                if tree.cursor_line > 2 * PER_HOST:  # back up to the top now and then
                    tree.move_cursor(tree.root.children[0].children[0])
                    await pilot.pause()
                    continue
                await run.timed("cursor", "down", moved)
                await asyncio.sleep(random.uniform(0.02, 0.08))  # an operator's pace, roughly

        title = (f"environment view, {len(engine.tasks)} tasks ({HOSTS} hosts × {PER_HOST}), "
                 f"synthetic engine, headless run_test {SIZE[0]}x{SIZE[1]}; loaded and shown "
                 f"in {loaded * 1000:.0f} ms")
        everything = await measure(engine, run, rate, keys, title)
        await pilot.press("escape")
    return everything


async def bench_tasks(presses: int, rate: float) -> list[float]:
    engine = FakeEngine()
    screen = ProbedTasks(engine)
    started = time.perf_counter()
    async with BenchApp(screen).run_test(size=SIZE) as pilot:
        table = screen.table
        while table.row_count < len(engine.tasks):
            await pilot.pause(0.01)
        await pilot.pause()
        loaded = time.perf_counter() - started
        table.focus()
        run = Run(screen, pilot)

        async def keys() -> None:
            for n in range(presses):
                if n % 20 == 19:
                    await pilot.press("slash")
                    typed = ""
                    for char in "flp017":
                        typed += char
                        await run.timed("filter", char,
                                        lambda t=typed: table.filter_text == t)
                    await run.timed("clear", "escape", lambda: table.filter_text == ""
                                    and table.row_count == len(engine.tasks))
                    await pilot.pause()
                    table.move_cursor(row=0)
                    await pilot.pause()
                    continue
                if table.cursor_row > 100:
                    table.move_cursor(row=0)
                    await pilot.pause()
                    continue
                before = table.cursor_row
                await run.timed("cursor", "down", lambda b=before: table.cursor_row == b + 1)
                await asyncio.sleep(random.uniform(0.02, 0.08))

        title = (f"tasks view, {len(engine.tasks)} rows; loaded and shown in "
                 f"{loaded * 1000:.0f} ms")
        everything = await measure(engine, run, rate, keys, title)
    return everything


async def bench(presses: int, rate: float) -> None:
    everything = await bench_environment(presses, rate)
    everything += await bench_tasks(presses // 2, rate)
    goal = percentile(everything, 0.99) * 1000 if everything else float("nan")
    print(f"goal p99 ≤ 100 ms (every key of both views): "
          f"{'met' if goal <= 100 else 'NOT met'} ({goal:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0, help="task changes a second")
    args = parser.parse_args()
    asyncio.run(bench(args.presses, args.rate))


if __name__ == "__main__":
    main()
