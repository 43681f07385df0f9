#!/usr/bin/env python3
"""Soak: N CONFIGURE/START/STOP/RESET cycles of one 50-task environment, watching for growth.

One environment of emulated occlib dummies on the four local agents of
bench/env_lifecycle.py (its workflow, settings and repository are reused) is created
once, then cycled START → STOP → RESET → CONFIGURE N times. Every `--every` cycles
(and before the first) the bench samples:

- the engine process (this one): resident memory, open file descriptors, threads;
- the executors: their summed resident memory, open fds and threads;
- the processes: engine + executors + their task processes.

It prints the table, then the growth from the first sample after warm-up (the second
row: the first cycles fill caches and grow pools) to the last, and per 1000 cycles.
A run of 1000 cycles is the issue's figure; `--cycles` gives a shorter one.

usage: .venv/bin/python bench/soak.py [--cycles 1000] [--tasks 50] [--every 50]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402

from env_lifecycle import make_repo, settings, spread  # noqa: E402

CYCLE = ("START", "STOP", "RESET", "CONFIGURE")


@dataclass(frozen=True)
class Sample:
    """What the engine, its executors and their tasks hold after `cycle` cycles."""

    cycle: int
    seconds: float
    rss: int
    fds: int
    threads: int
    executor_rss: int
    executor_fds: int
    executor_threads: int
    processes: int


def sample(cycle: int, began: float, executors: list[psutil.Process]) -> Sample:
    gc.collect()
    me = psutil.Process()
    tasks = [child for executor in executors for child in executor.children(recursive=True)]
    return Sample(cycle=cycle, seconds=time.perf_counter() - began,
                  rss=me.memory_info().rss, fds=me.num_fds(), threads=me.num_threads(),
                  executor_rss=sum(e.memory_info().rss for e in executors),
                  executor_fds=sum(e.num_fds() for e in executors),
                  executor_threads=sum(e.num_threads() for e in executors),
                  processes=1 + len(executors) + len(tasks))


HEADER = (f"{'cycle':>6} {'time s':>8} {'engine RSS MB':>14} {'fds':>5} {'threads':>8} "
          f"{'executors RSS MB':>17} {'fds':>5} {'threads':>8} {'processes':>10}")


def row(s: Sample) -> str:
    return (f"{s.cycle:>6} {s.seconds:>8.1f} {s.rss / 2**20:>14.1f} {s.fds:>5} {s.threads:>8} "
            f"{s.executor_rss / 2**20:>17.1f} {s.executor_fds:>5} {s.executor_threads:>8} "
            f"{s.processes:>10}")


def growth(first: Sample, last: Sample) -> str:
    cycles = max(1, last.cycle - first.cycle)
    per = 1000 / cycles
    return (f"growth over cycles {first.cycle}-{last.cycle}: engine RSS "
            f"{(last.rss - first.rss) / 2**20:+.1f} MB ({(last.rss - first.rss) * per / 2**20:+.1f}"
            f" MB per 1000 cycles), fds {last.fds - first.fds:+d}, threads "
            f"{last.threads - first.threads:+d}; executors RSS "
            f"{(last.executor_rss - first.executor_rss) / 2**20:+.1f} MB, fds "
            f"{last.executor_fds - first.executor_fds:+d}, threads "
            f"{last.executor_threads - first.executor_threads:+d}; processes "
            f"{last.processes - first.processes:+d}")


async def soak(cycles: int, tasks: int, every: int, home: Path, repo: Path) -> list[Sample]:
    from engine import Engine, WorkingDirectory
    from engine.scheduler.local_agent import find_running

    workdir = WorkingDirectory(home).ensure()
    workdir.settings_file.write_text(settings())
    engine = Engine(workdir)
    samples: list[Sample] = []
    try:
        added = await engine.add_repo(str(repo), "master")
        info = await engine.create_environment(f"{added.repo}/workflows/bench@master",
                                               spread(tasks), emulate=True)
        if len(info.tasks) != tasks:
            raise RuntimeError(f"{len(info.tasks)} tasks deployed, not {tasks}")
        executors = [psutil.Process(agent.pid) for agent in find_running(workdir.root).values()]
        began = time.perf_counter()
        samples.append(sample(0, began, executors))
        print(HEADER, flush=True)
        print(row(samples[-1]), flush=True)
        runs: list[int] = []
        for cycle in range(1, cycles + 1):
            for event in CYCLE:
                result = await engine.control_environment(info.id, event)
                failed = [r for r in result.rows if r.failed]
                if failed or not result.ok:
                    raise RuntimeError(f"cycle {cycle} {event}: {len(failed)} rows failed: "
                                       f"{failed[:1]}")
                if event == "START":
                    runs.append(result.run_number)
            if cycle % every == 0 or cycle == cycles:
                samples.append(sample(cycle, began, executors))
                print(row(samples[-1]), flush=True)
        if runs != sorted(set(runs)):
            raise RuntimeError(f"run numbers not strictly increasing: {runs}")
        await engine.destroy_environment(info.id)
    finally:
        await engine.shutdown_agents()
        await engine.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--every", type=int, default=50, help="cycles between samples")
    options = parser.parse_args()
    logging.disable(logging.WARNING)
    print(f"soak: {options.cycles} cycles of {' → '.join(CYCLE)} on {options.tasks} emulated "
          f"dummies, {psutil.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="nutshell-soak-") as tmp:
        repo = make_repo(Path(tmp))
        samples = asyncio.run(soak(options.cycles, options.tasks, options.every,
                                   Path(tmp) / "home", repo))
    last = samples[-1]
    print(f"{last.cycle} cycles in {last.seconds:.0f} s "
          f"({last.seconds / max(1, last.cycle):.2f} s per cycle)")
    print(growth(samples[1] if len(samples) > 2 else samples[0], last))
    return 0


if __name__ == "__main__":
    sys.exit(main())
