#!/usr/bin/env python3
"""Transition round-trip latency over OCC, as the executor sees it.

Starts real `occlib.examples.dummy` processes and drives them with the
executor's DirectTransitioner (gRPC, protobuf OCC). Reports p50/p99 of one
transition's round trip for a single process, and for N processes driven in
parallel (every process takes the same transition at once, as an environment
does), plus the time for the whole fleet to complete each transition.

usage: .venv/bin/python bench/occ_roundtrip.py [--cycles 200] [--fleet 100] [--fleet-cycles 20]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from executor.occ_client import OccClient, connect  # noqa: E402
from executor.transitioner import DirectTransitioner  # noqa: E402
from occlib.states import OccEvent, OccState  # noqa: E402

CYCLE = [(OccState.STANDBY, OccEvent.CONFIGURE), (OccState.CONFIGURED, OccEvent.START),
         (OccState.RUNNING, OccEvent.STOP), (OccState.CONFIGURED, OccEvent.RESET)]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_dummies(n: int) -> tuple[list[subprocess.Popen], list[int]]:
    ports = free_ports(n)
    procs = [subprocess.Popen([sys.executable, "-m", "occlib.examples.dummy", "--control-port", str(p)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    return procs, ports


def stop_dummies(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def line(label: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"{label:<44} n={len(ms):>5}  p50={percentile(ms, 50):7.2f} ms  "
            f"p99={percentile(ms, 99):7.2f} ms  max={max(ms):7.2f} ms  mean={statistics.fmean(ms):7.2f} ms")


async def connected(ports: list[int]) -> list[OccClient]:
    clients = [connect(f"127.0.0.1:{p}") for p in ports]
    await asyncio.gather(*(c.wait_connected(60) for c in clients))
    return clients


async def timed(transitioner: DirectTransitioner, src: OccState, event: OccEvent) -> float:
    began = time.perf_counter()
    outcome = await transitioner.transition(src, event, {"runNumber": "1"})
    elapsed = time.perf_counter() - began
    if not outcome.ok:
        raise RuntimeError(f"{event} from {src} failed: {outcome.error}")
    return elapsed


async def single(port: int, cycles: int) -> dict[str, list[float]]:
    (client,) = await connected([port])
    transitioner = DirectTransitioner(client)
    per_event: dict[str, list[float]] = {event.value: [] for _, event in CYCLE}
    for _ in range(5):  # warm up the channel and the process
        for src, event in CYCLE:
            await timed(transitioner, src, event)
    for _ in range(cycles):
        for src, event in CYCLE:
            per_event[event.value].append(await timed(transitioner, src, event))
    await client.close()
    return per_event


async def fleet(ports: list[int], cycles: int) -> tuple[list[float], list[float]]:
    clients = await connected(ports)
    transitioners = [DirectTransitioner(c) for c in clients]
    each: list[float] = []
    whole: list[float] = []
    for round_ in range(cycles + 1):
        for src, event in CYCLE:
            began = time.perf_counter()
            results = await asyncio.gather(*(timed(t, src, event) for t in transitioners))
            if round_:  # the first round warms up
                whole.append(time.perf_counter() - began)
                each.extend(results)
    await asyncio.gather(*(c.close() for c in clients))
    return each, whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=200, help="CONFIGURE/START/STOP/RESET cycles, one process")
    parser.add_argument("--fleet", type=int, default=100, help="processes driven in parallel")
    parser.add_argument("--fleet-cycles", type=int, default=20, help="cycles of the fleet")
    options = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")

    procs, ports = start_dummies(1)
    try:
        per_event = asyncio.run(single(ports[0], options.cycles))
    finally:
        stop_dummies(procs)
    print(f"one process, {options.cycles} cycles:")
    for event, samples in per_event.items():
        print("  " + line(f"{event} round trip", samples))
    print("  " + line("any transition round trip", [s for v in per_event.values() for s in v]))

    began = time.perf_counter()
    procs, ports = start_dummies(options.fleet)
    try:
        each, whole = asyncio.run(fleet(ports, options.fleet_cycles))
        ready = time.perf_counter() - began
    finally:
        stop_dummies(procs)
    print(f"{options.fleet} processes in parallel, {options.fleet_cycles} cycles "
          f"(start-up and first cycle took {ready - sum(whole):.1f} s):")
    print("  " + line("one process's transition round trip", each))
    print("  " + line("whole fleet's transition (all replied)", whole))
    return 0


if __name__ == "__main__":
    sys.exit(main())
