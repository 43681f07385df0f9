#!/usr/bin/env python3
"""Rendering readout-dataflow (the ALICE data-taking workflow) for many hosts.

For 1, 10, 50 and 200 hosts, each in a fresh interpreter: the first render
(cold: YAML, expression compilation, task classes), the best of the following
renders (warm), roles per second, and memory (peak traced Python allocations
during one render, and the process's peak RSS). Goal: 200 hosts under 1 s.

It needs the corpus beside the checkout (../shared/corpus/controlworkflows),
copied into a throw-away git repository.

usage: .venv/bin/python bench/template_render.py [--hosts 1 10 50 200] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "controlworkflows"
DETECTORS = ("ITS", "TPC", "MCH", "MID", "TOF", "EMC", "PHS", "HMP", "FT0", "ZDC")


def make_repo(folder: Path) -> Path:
    repo = folder / "controlworkflows"
    for part in ("workflows", "tasks"):
        shutil.copytree(CORPUS / part, repo / part)
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "master", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "corpus"], check=True)
    return repo


def inventory(hosts: list[str]) -> str:
    """configuration.yaml: hosts spread over detectors, one CRU card each."""
    detectors: dict[str, dict] = {}
    flps: dict[str, dict] = {}
    for n, host in enumerate(hosts):
        detectors.setdefault(DETECTORS[n % len(DETECTORS)], {"flps": {}})["flps"][host] = {}
        flps[host] = {"cards": json.dumps({"0": {"type": "CRU", "serial": 1000 + n, "endpoint": 0}})}
    return json.dumps({"o2": {"hardware": {"detectors": detectors, "flps": flps}}})


def measure(count: int, repeat: int, repo: Path, home: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from engine.workdir import WorkingDirectory
    from engine.workflow.loader import WorkflowLoader

    hosts = [f"flp{n:03d}" for n in range(1, count + 1)]
    workdir = WorkingDirectory(home).ensure()
    workdir.configuration_file.write_text(inventory(hosts))
    variables = {"hosts": json.dumps(hosts)}
    with WorkflowLoader(workdir) as loader:
        began = time.perf_counter()
        workflow = loader.load_local(repo, "readout-dataflow", variables)
        cold = time.perf_counter() - began
        roles = sum(1 for _ in workflow.roles())
        warm = []
        for _ in range(repeat):
            began = time.perf_counter()
            loader.load_local(repo, "readout-dataflow", variables)
            warm.append(time.perf_counter() - began)
        tracemalloc.start()
        loader.load_local(repo, "readout-dataflow", variables)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"hosts": count, "roles": roles, "tasks": len(workflow.task_roles()), "cold": cold,
            "warm": min(warm), "traced_peak": peak,
            "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 50, 200])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure in this process
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one is not None:
        import logging
        logging.disable(logging.WARNING)
        print(json.dumps(measure(options.one, options.repeat, options.repo, options.home)))
        return 0
    if not CORPUS.is_dir():
        print(f"the corpus is missing: {CORPUS}", file=sys.stderr)
        return 1
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; readout-dataflow, defaults")
    print(f"{'hosts':>6} {'roles':>6} {'tasks':>6} {'cold s':>8} {'warm s':>8} {'roles/s warm':>13} "
          f"{'traced peak':>12} {'RSS peak':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        for count in options.hosts:
            home = Path(tmp) / f"home-{count}"
            done = subprocess.run([sys.executable, __file__, "--one", str(count), "--repeat",
                                   str(options.repeat), "--repo", str(repo), "--home", str(home)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.splitlines()[-1])
            print(f"{r['hosts']:>6} {r['roles']:>6} {r['tasks']:>6} {r['cold']:>8.3f} {r['warm']:>8.3f} "
                  f"{r['roles'] / r['warm']:>13.0f} {r['traced_peak'] / 2**20:>9.1f} MB "
                  f"{r['rss_peak'] / 2**20:>7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
