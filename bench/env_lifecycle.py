#!/usr/bin/env python3
"""An environment's life on the local agents, for 10, 50 and 200 emulated tasks.

For each size, in a fresh interpreter and a fresh working directory with four
local agents (flp001…flp004): the median time of create (DEPLOY + CONFIGURE),
START, STOP and destroy, the engine process's peak RSS (the executors and the
tasks are processes of their own), and the ratio of the engine's START to a bare
parallel OCC fan-out to the very same task processes: on the last environment,
after an engine STOP, the bench connects to every task's control port itself and
sends CONFIGURED→RUNNING→CONFIGURED to all of them at once (executor.occ_client,
no engine, no executor), the floor any engine pays; engine and bare transitions
then alternate, and the ratio is the median of each pair's (both meet the same
machine load). Goal: START ratio ≤ 1.5. For those STARTs it also reports the CPU
time spent by the engine process, by the executors, and by the bench's own
clients in the bare fan-out: on a busy machine wall times follow CPU shares, and
these say where the difference comes from.

On a small machine the emulated dummies weigh in: each counts an event every
10 ms while RUNNING, so 200 of them keep a core or so busy, in both paths.

The workflow is generated in a throw-away git repository: per agent a role with
an iterator over its share of the N occlib dummies, created with --emulate.
An untimed warm-up environment first starts the executors and fills the caches.

usage: .venv/bin/python bench/env_lifecycle.py [--tasks 10 50 200] [--cycles 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ("flp001", "flp002", "flp003", "flp004")
# Control ports of their own: below Linux's ephemeral range (32768-60999, where any outgoing
# connection may hold one) and above the first ports of the built-in agents (30000, 31000,
# 32000…), which other engines on this machine hand out first.
CONTROL_RANGES = ("30700-30899", "31700-31899", "32500-32699", "30900-31099")
DATA_BASE, PORTS_PER_AGENT = 24000, 250
# Environments per size (create and destroy are timed once each); START/STOP cycles per
# environment. Spawning 200 task processes on a small machine is what costs, hence fewer.
LIFECYCLES = {10: 3, 50: 2, 200: 1}

DUMMY = """\
name: dummy
control:
  mode: direct
wants:
  cpu: 0.01
  memory: 8
command:
  value: "{python}"
  arguments:
    - "-m"
    - "occlib.examples.dummy"
    - "--o2-role"
    - "{{{{ task_parent_role }}}}"
"""


def workflow(agents: tuple[str, ...] = AGENTS) -> str:
    """`bench`: per agent a role pinned to it, iterating over `tasks_<agent>` (JSON list)."""
    lines = ["name: bench", "defaults:"]
    lines += [f"  tasks_{agent}: '[\"0\"]'" for agent in agents]
    lines.append("roles:")
    for agent in agents:
        lines += [f"  - name: host-{agent}",
                  "    constraints:",
                  "      - attribute: machine_id",
                  f"        value: {agent}",
                  "    roles:",
                  '      - name: "dummy-{{ i }}"',
                  "        for:",
                  f'          range: "{{{{ tasks_{agent} }}}}"',
                  "          var: i",
                  "        task:",
                  "          load: dummy"]
    return "\n".join(lines) + "\n"


def settings() -> str:
    """nutshell.yaml: the four agents on their own port ranges."""
    lines = ["agents:"]
    for n, agent in enumerate(AGENTS):
        data = DATA_BASE + n * PORTS_PER_AGENT
        lines += [f"  {agent}:",
                  f"    ports: {data}-{data + PORTS_PER_AGENT - 1},{CONTROL_RANGES[n]}"]
    return "\n".join(lines) + "\n"


def make_repo(folder: Path, agents: tuple[str, ...] = AGENTS) -> Path:
    repo = folder / "bench-templates"
    for relative, text in {"workflows/bench.yaml": workflow(agents),
                           "tasks/dummy.yaml": DUMMY.format(python=sys.executable)}.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "master", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    return repo


def spread(count: int, agents: tuple[str, ...] = AGENTS) -> dict[str, str]:
    """The variables placing `count` dummies round-robin on the agents."""
    shares: dict[str, list[str]] = {agent: [] for agent in agents}
    for n in range(count):
        shares[agents[n % len(agents)]].append(str(n))
    return {f"tasks_{agent}": json.dumps(ids) for agent, ids in shares.items()}


def peak_rss() -> int:
    """This process's peak resident set, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class BareFanOut:
    """The bench's own OCC clients to every task: START and STOP sent to all at once."""

    def __init__(self, ports: list[int], tokens: list[str]) -> None:
        """`tokens`: each task's OCC_CONTROL_TOKEN (its executor gave it; we read its environment)."""
        from executor.occ_client import connect
        self.clients = [connect(f"127.0.0.1:{port}", token=token) for port, token in zip(ports, tokens)]

    async def connect(self) -> None:
        from executor.transitioner import DirectTransitioner
        await asyncio.gather(*(client.wait_connected(30) for client in self.clients))
        self.transitioners = [DirectTransitioner(client) for client in self.clients]
        for name in ("START", "STOP"):  # warms the new channels up
            await self.transition(name)

    async def transition(self, name: str) -> float:
        """One parallel START (CONFIGURED→RUNNING) or STOP; seconds until all replied."""
        from occlib.states import OccEvent, OccState
        src, event = ((OccState.CONFIGURED, OccEvent.START) if name == "START"
                      else (OccState.RUNNING, OccEvent.STOP))
        began = time.perf_counter()
        outcomes = await asyncio.gather(*(t.transition(src, event, {"runNumber": "999999"})
                                          for t in self.transitioners))
        elapsed = time.perf_counter() - began
        failed = [o.error for o in outcomes if not o.ok]
        if failed:
            raise RuntimeError(f"bare {name} failed on {len(failed)} tasks: {failed[0]}")
        return elapsed

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients))


def cpu_seconds(processes: list[Any]) -> float:
    """User + system CPU time of these psutil processes so far."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


async def engine_transition(engine: Any, environment_id: str, event: str) -> float:
    began = time.perf_counter()
    result = await engine.control_environment(environment_id, event)
    elapsed = time.perf_counter() - began
    failed = [row for row in result.rows if row.failed]
    if failed:
        raise RuntimeError(f"{event}: {len(failed)} rows failed: {failed[0]}")
    return elapsed


async def measure(count: int, cycles: int, repo: Path, home: Path) -> dict[str, Any]:
    """One size: engine-only lifecycles (times, peak RSS), then, on the last environment,
    engine and bare START/STOP in alternation, so both meet the same machine load."""
    sys.path.insert(0, str(ROOT))
    import psutil

    from engine import Engine, WorkingDirectory
    from engine.scheduler.local_agent import find_running

    workdir = WorkingDirectory(home).ensure()
    workdir.settings_file.write_text(settings())
    engine = Engine(workdir)
    times: dict[str, list[float]] = {"create": [], "START": [], "STOP": [], "destroy": []}
    bare: dict[str, list[float]] = {"START": [], "STOP": []}
    ratios: dict[str, list[float]] = {"START": [], "STOP": []}
    cpu: dict[str, list[float]] = {"engine": [], "executors": [], "bare": []}  # per START
    rss = 0
    try:
        added = await engine.add_repo(str(repo), "master")
        reference = f"{added.repo}/workflows/bench@master"
        warm = await engine.create_environment(reference, spread(len(AGENTS)), emulate=True)
        await engine.destroy_environment(warm.id)
        lifecycles = LIFECYCLES.get(count, 1)
        for lifecycle in range(lifecycles):
            began = time.perf_counter()
            info = await engine.create_environment(reference, spread(count), emulate=True)
            times["create"].append(time.perf_counter() - began)
            if len(info.tasks) != count:
                raise RuntimeError(f"{len(info.tasks)} tasks deployed, not {count}")
            for _ in range(cycles):
                for event in ("START", "STOP"):
                    times[event].append(await engine_transition(engine, info.id, event))
            if lifecycle == lifecycles - 1:
                rss = peak_rss()  # before the bench's own OCC clients exist
                executors = [psutil.Process(agent.pid)
                             for agent in find_running(workdir.root).values()]
                driven = [t for t in info.tasks if t.control_port and t.pid]
                fan_out = BareFanOut([t.control_port for t in driven],
                                     [psutil.Process(t.pid).environ().get("OCC_CONTROL_TOKEN", "")
                                      for t in driven])
                try:
                    await fan_out.connect()
                    for _ in range(cycles):
                        own, others = time.process_time(), cpu_seconds(executors)
                        engine_times = [await engine_transition(engine, info.id, "START")]
                        cpu["engine"].append(time.process_time() - own)
                        cpu["executors"].append(cpu_seconds(executors) - others)
                        engine_times.append(await engine_transition(engine, info.id, "STOP"))
                        own = time.process_time()
                        bare_times = [await fan_out.transition("START")]
                        cpu["bare"].append(time.process_time() - own)
                        bare_times.append(await fan_out.transition("STOP"))
                        for event, engine_time, bare_time in zip(
                                ("START", "STOP"), engine_times, bare_times, strict=True):
                            times[event].append(engine_time)
                            bare[event].append(bare_time)
                            ratios[event].append(engine_time / bare_time)
                finally:
                    await fan_out.close()
            began = time.perf_counter()
            await engine.destroy_environment(info.id)
            times["destroy"].append(time.perf_counter() - began)
    finally:
        await engine.shutdown_agents()
        await engine.close()
    return {"tasks": count, "times": times, "bare": bare, "ratios": ratios, "cpu": cpu,
            "rss_peak": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--cycles", type=int, default=3,
                        help="START/STOP cycles per environment (and of the bare fan-out)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: this process
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one is not None:
        import logging
        logging.disable(logging.WARNING)
        print(json.dumps(asyncio.run(measure(options.one, options.cycles, options.repo,
                                             options.home))))
        return 0
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; emulated occlib "
          f"dummies on {len(AGENTS)} local agents; medians in seconds")
    print(f"{'tasks':>6} {'create':>8} {'START':>8} {'STOP':>8} {'destroy':>8} {'RSS peak':>10} "
          f"{'bare START':>11} {'bare STOP':>10} {'START ratio':>12} {'STOP ratio':>11} "
          f"{'CPU/START: engine':>18} {'executors':>10} {'bare':>8}")
    with tempfile.TemporaryDirectory(prefix="nutshell-bench-") as tmp:
        repo = make_repo(Path(tmp))
        for count in options.tasks:
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(count), "--cycles", str(options.cycles),
                 "--repo", str(repo), "--home", str(Path(tmp) / f"home-{count}")],
                capture_output=True, text=True, cwd=ROOT, check=False)
            if done.returncode != 0:
                print(f"{count} tasks: the measurement failed:\n{done.stderr}", file=sys.stderr)
                return 1
            r = json.loads(done.stdout.splitlines()[-1])
            med = {name: statistics.median(values) for name, values in r["times"].items()}
            bare = {name: statistics.median(values) for name, values in r["bare"].items()}
            ratio = {name: statistics.median(values) for name, values in r["ratios"].items()}
            print(f"{r['tasks']:>6} {med['create']:>8.3f} {med['START']:>8.3f} {med['STOP']:>8.3f} "
                  f"{med['destroy']:>8.3f} {r['rss_peak'] / 2**20:>7.1f} MB "
                  f"{bare['START']:>11.3f} {bare['STOP']:>10.3f} "
                  f"{ratio['START']:>12.2f} {ratio['STOP']:>11.2f} "
                  + " ".join(f"{statistics.median(r['cpu'][part]) * 1000:>{width}.0f} ms"
                             for part, width in (("engine", 15), ("executors", 7), ("bare", 5))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
