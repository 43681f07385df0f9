#!/usr/bin/env python3
"""100 emulated tasks over 3 agents: an environment's life on Mesos next to the local backend.

The same workflow, the same emulated occlib dummies (--emulate), the same three
machine_ids (flp001…flp003) and the same port ranges on both backends:
- mesos: a real Mesos 1.11 master and three agents (tests/mesos_cluster.py, the
  harness of ../shared/mesos), the engine a framework of it (`backend: mesos`),
  the tasks run by `nutshell-executor mesos` under each agent;
- local: three local agents (`agents:` in nutshell.yaml), as bench/env_lifecycle.py.

For each backend, in a fresh interpreter (so the peak RSS is that backend's engine
alone; the executors, tasks and Mesos are processes of their own): an untimed
warm-up environment (it starts the executors), then `--lifecycles` environments of
`--tasks` tasks, each created (DEPLOY + CONFIGURE), cycled START/STOP `--cycles`
times, and destroyed. Printed: the median and the range of each step, the samples
taken, the engine's peak RSS and its CPU time per step (median; on a loaded
machine wall times follow CPU shares, this says what the engine itself spent).

The workflow, the task class and the spreading variables are bench/env_lifecycle.py's.
Nothing outlives the bench: each measurement tears its framework down or stops its
local agents, the cluster is stopped, all in `finally`.

usage: .venv/bin/python bench/mesos_lifecycle.py [--tasks 100] [--lifecycles 3] [--cycles 3]
                                                 [--backends mesos local]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Awaitable
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from env_lifecycle import engine_transition, make_repo, peak_rss, spread  # noqa: E402

AGENTS = ("flp001", "flp002", "flp003")
# Ports of their own on both backends, 50 control (>= 30000, below the kernel's ephemeral
# ports at 32768) and 50 data ports per agent: above the port blocks of the test clusters
# (tests/mesos_cluster.py: control 30200-31799, data 25000-26599) and apart from the tests'
# local agents (control 32000 on).
CONTROL_BASE, DATA_BASE, PORTS_PER_AGENT = 31800, 26600, 50
MEASURE_TIMEOUT = 1800.0  # seconds for one backend's measurement process
STEPS = ("create", "START", "STOP", "destroy")
T = TypeVar("T")


def port_ranges(position: int) -> tuple[str, str]:
    """The data and control ranges ("a-b") of the agent at `position`."""
    data = DATA_BASE + position * PORTS_PER_AGENT
    control = CONTROL_BASE + position * PORTS_PER_AGENT
    return (f"{data}-{data + PORTS_PER_AGENT - 1}",
            f"{control}-{control + PORTS_PER_AGENT - 1}")


def local_settings() -> str:
    """nutshell.yaml of the local backend: the three agents on the bench's ports."""
    lines = ["agents:"]
    for position, agent in enumerate(AGENTS):
        data, control = port_ranges(position)
        lines += [f"  {agent}:", f"    ports: {data},{control}"]
    return "\n".join(lines) + "\n"


def mesos_settings(master_url: str) -> str:
    """nutshell.yaml of the Mesos backend; a short failover timeout, so that a framework
    whose engine died without its teardown goes with its tasks soon."""
    return (f"backend: mesos\nmesos:\n  master: {master_url}\n  framework_name: nutshell-bench\n"
            "  failover_timeout: 30s\n")


def agent_resources() -> dict[str, str]:
    """The harness variables giving each Mesos agent the bench's ports (the test cluster's
    default shares, 33 per agent, are too few for 34 tasks on one agent)."""
    resources = {}
    for position in range(len(AGENTS)):
        data, control = port_ranges(position)
        resources[f"AGENT_RESOURCES_{position + 1}"] = \
            f"cpus:2;mem:2048;disk:4096;ports:[{data},{control}]"
    return resources


class Steps:
    """The wall time and the engine process's CPU time of every step taken."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {step: [] for step in STEPS}
        self.cpu: dict[str, list[float]] = {step: [] for step in STEPS}

    async def take(self, step: str, action: Awaitable[T]) -> T:
        began, own = time.perf_counter(), time.process_time()
        result = await action
        self.times[step].append(time.perf_counter() - began)
        self.cpu[step].append(time.process_time() - own)
        return result


async def measure(backend: str, master_url: str, count: int, lifecycles: int, cycles: int,
                  repo: Path, home: Path) -> dict[str, Any]:
    """One backend's lifecycles: the time of every step, and the engine's peak RSS."""
    from engine import Engine, WorkingDirectory

    workdir = WorkingDirectory(home).ensure()
    workdir.settings_file.write_text(mesos_settings(master_url) if backend == "mesos"
                                     else local_settings())
    engine = Engine(workdir)
    steps = Steps()
    try:
        added = await engine.add_repo(str(repo), "master")
        reference = f"{added.repo}/workflows/bench@master"
        warm = await engine.create_environment(reference, spread(len(AGENTS), AGENTS),
                                               emulate=True)
        await engine.destroy_environment(warm.id)
        for _ in range(lifecycles):
            info = await steps.take("create", engine.create_environment(
                reference, spread(count, AGENTS), emulate=True))
            hosts = {task.host for task in info.tasks}
            if len(info.tasks) != count or hosts != set(AGENTS):
                raise RuntimeError(f"{backend}: {len(info.tasks)} tasks deployed on "
                                   f"{sorted(hosts)}, not {count} on {list(AGENTS)}")
            for _ in range(cycles):
                for event in ("START", "STOP"):
                    await steps.take(event, engine_transition(engine, info.id, event))
            await steps.take("destroy", engine.destroy_environment(info.id))
    finally:
        await engine.shutdown_agents()
        await engine.close()
    return {"backend": backend, "tasks": count, "times": steps.times, "cpu": steps.cpu,
            "rss_peak": peak_rss()}


def run_measurement(backend: str, master_url: str, options: argparse.Namespace, repo: Path,
                    home: Path) -> dict[str, Any]:
    """`measure` in a fresh interpreter; its JSON result."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--one", backend, "--master", master_url,
             "--tasks", str(options.tasks), "--lifecycles", str(options.lifecycles),
             "--cycles", str(options.cycles), "--repo", str(repo), "--home", str(home)],
            capture_output=True, text=True, cwd=ROOT, check=False, timeout=MEASURE_TIMEOUT)
    except subprocess.TimeoutExpired as expired:
        raise RuntimeError(f"{backend}: the measurement did not end within "
                           f"{MEASURE_TIMEOUT:g} s:\n{expired.stderr or ''}") from None
    if done.returncode != 0:
        raise RuntimeError(f"{backend}: the measurement failed (exit {done.returncode}):\n"
                           f"{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def stop_local_agents(home: Path) -> None:
    """Whatever local agents a failed local measurement left behind in `home`."""
    from engine import Engine, WorkingDirectory

    if (home / "nutshell.yaml").exists():
        asyncio.run(Engine(WorkingDirectory(home)).shutdown_agents())


def row(result: dict[str, Any]) -> str:
    """Wall times (median, range), the engine's peak RSS, the samples, the engine's CPU."""
    times, cpu = result["times"], result["cpu"]
    cells = [f"{statistics.median(times[s]):>7.3f} ({min(times[s]):.2f}-{max(times[s]):.2f})"
             for s in STEPS]
    samples = "/".join(str(len(times[s])) for s in STEPS)
    engine_cpu = "/".join(f"{statistics.median(cpu[s]):.2f}" for s in STEPS)
    return (f"{result['backend']:>7} " + " ".join(f"{c:>21}" for c in cells)
            + f" {result['rss_peak'] / 2**20:>8.1f} MB {samples:>8} {engine_cpu:>24}")


def compare(options: argparse.Namespace) -> int:
    from tests.mesos_cluster import ClusterUnavailable, start_cluster

    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; {options.tasks} "
          f"emulated occlib dummies over {len(AGENTS)} agents; seconds: median (min-max)")
    print(f"{'backend':>7} " + " ".join(f"{s:>21}" for s in STEPS)
          + f" {'RSS peak':>11} {'samples':>8} {'engine CPU s, same order':>24}")
    base = Path(tempfile.mkdtemp(prefix="nutshell-mesos-bench-"))
    failed = 0
    try:
        repo = make_repo(base, AGENTS)
        for backend in options.backends:
            home = base / f"home-{backend}"
            if backend == "local":
                try:
                    print(row(run_measurement(backend, "", options, repo, home)), flush=True)
                except RuntimeError as error:
                    print(error, file=sys.stderr)
                    failed = 1
                finally:
                    stop_local_agents(home)
                continue
            (base / "cluster").mkdir()
            try:
                cluster = start_cluster(base / "cluster", AGENTS, extra_env=agent_resources())
            except ClusterUnavailable as error:
                print(f"mesos: no cluster: {error}", file=sys.stderr)
                failed = 1
                continue
            try:
                print(row(run_measurement(backend, cluster.master_url, options, repo, home)),
                      flush=True)
            except RuntimeError as error:
                print(error, file=sys.stderr)
                failed = 1
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--lifecycles", type=int, default=3,
                        help="environments created and destroyed per backend")
    parser.add_argument("--cycles", type=int, default=3, help="START/STOP cycles per environment")
    parser.add_argument("--backends", nargs="+", choices=("mesos", "local"),
                        default=["mesos", "local"])
    parser.add_argument("--one", choices=("mesos", "local"), help=argparse.SUPPRESS)
    parser.add_argument("--master", default="", help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one is None:
        return compare(options)
    import logging
    logging.disable(logging.WARNING)
    print(json.dumps(asyncio.run(measure(options.one, options.master, options.tasks,
                                         options.lifecycles, options.cycles, options.repo,
                                         options.home))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
