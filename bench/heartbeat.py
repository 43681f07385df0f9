#!/usr/bin/env python3
"""The heartbeat: how long the engine takes to call a silent executor unreachable, and to
take its tasks back once it answers again.

One RUNNING environment of four occlib dummies, one on each local agent of
bench/env_lifecycle.py. Each trial freezes one agent's executor (SIGSTOP: for the engine,
a channel that passes nothing, as across a partition) and measures the time until the
environment is in ERROR (detection); then resumes it (SIGCONT) and measures the time until
its task is reported back, ACTIVE again (heal). RECOVER, CONFIGURE and START then bring
the environment back to RUNNING for the next trial. The timeout counts from the last
answer, which came up to one interval before the freeze, and GO_ERROR waits its grace
(§1.2, ERROR_GRACE) after the task is reported lost: detection should fall between
timeout - interval + grace and timeout + grace after the freeze.

usage: .venv/bin/python bench/heartbeat.py [--trials 4] [--interval 2] [--timeout 15]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from env_lifecycle import AGENTS, make_repo, settings  # noqa: E402

POLL = 0.01  # seconds between looks at the environment
WAIT = 120.0  # seconds any change may take before the bench gives up


async def until(check, what: str) -> float:  # noqa: ANN001 (an async predicate)
    """Seconds until `await check()` is true."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > WAIT:
            raise RuntimeError(f"never {what}")
        await asyncio.sleep(POLL)
    return time.monotonic() - began


async def run(trials: int, interval: float, timeout: float, home: Path, repo: Path
              ) -> list[tuple[str, float, float]]:
    from engine import Engine, WorkingDirectory
    from engine.scheduler.local_agent import find_running
    workdir = WorkingDirectory(home).ensure()
    workdir.settings_file.write_text(
        settings() + f"heartbeat:\n  interval: {interval}\n  timeout: {timeout}\n")
    results = []
    async with Engine(workdir) as engine:
        try:
            added = await engine.add_repo(str(repo), "master")
            info = await engine.create_environment(f"{added.repo}/workflows/bench@master")
            await engine.control_environment(info.id, "START")
            for trial in range(trials):
                agent = AGENTS[trial % len(AGENTS)]
                [task_id] = [t.task_id for t in info.tasks if t.agent == agent]
                executor = find_running(workdir.root)[agent].pid

                async def state() -> str:
                    return (await engine.get_environment(info.id)).state

                async def task_status() -> str:
                    now = await engine.get_environment(info.id)
                    return next(t.status for t in now.tasks if t.task_id == task_id)

                async def idle() -> bool:
                    return not (await engine.get_environment(info.id)).current_transition

                os.kill(executor, signal.SIGSTOP)
                try:
                    detected = await until(lambda: _is(state, "ERROR"), "in ERROR")
                    await until(idle, "idle after GO_ERROR")
                finally:
                    os.kill(executor, signal.SIGCONT)
                healed = await until(lambda: _is(task_status, "ACTIVE"), "back")
                await until(idle, "idle")
                for event in ("RECOVER", "CONFIGURE", "START"):
                    await engine.control_environment(info.id, event)
                results.append((agent, detected, healed))
                print(f"  trial {trial + 1}: {agent} frozen: ERROR after {detected:.2f} s; "
                      f"resumed: its task back after {healed:.2f} s", flush=True)
            await engine.destroy_environment(info.id)
        finally:
            await engine.shutdown_agents()
    return results


async def _is(read, expected: str) -> bool:  # noqa: ANN001 (an async reader)
    return await read() == expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=15.0)
    options = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the engine's own lines about the agent: the bench says it
    print(f"heartbeat: interval {options.interval:g} s, timeout {options.timeout:g} s, "
          f"{options.trials} trials, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="nutshell-heartbeat-") as tmp:
        repo = make_repo(Path(tmp))
        results = asyncio.run(run(options.trials, options.interval, options.timeout,
                                  Path(tmp) / "home", repo))
    from engine.environment.automatic import ERROR_GRACE
    detected = [d for _, d, _ in results]
    healed = [h for _, _, h in results]
    print(f"detection: median {statistics.median(detected):.2f} s, min {min(detected):.2f} s, "
          f"max {max(detected):.2f} s (expected within "
          f"{options.timeout - options.interval + ERROR_GRACE:g}–{options.timeout + ERROR_GRACE:g}"
          f" s)")
    print(f"heal: median {statistics.median(healed):.2f} s, max {max(healed):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
