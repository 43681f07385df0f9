#!/usr/bin/env python3
"""Chaos: random faults at random phases of random transitions, invariants after each.

The long cases of the fault matrix (the fast ones are in tests/faults/). A
`nutshell core` child process hosts the engine; the bench drives it over gRPC
(RemoteEngine), like any front-end, so that the engine itself can be SIGKILLed and
started again. Two environments of four occlib dummies (one per local agent) live
side by side. Each cycle picks an environment, the transition its state allows, and a
fault:

- none;
- task: SIGKILL one of the environment's task processes;
- executor: SIGKILL one agent's executor (its tasks die with it);
- engine: SIGKILL the core, start a new one (it re-adopts what runs);
- channel: SIGSTOP an executor for 1 s, then SIGCONT (shorter than the heartbeat
  timeout and a command's deadline: the engine just waits);
- partition: SIGSTOP an executor past the heartbeat timeout (3 s here), then SIGCONT:
  the engine calls the agent unreachable (its tasks lost, their environment in ERROR)
  and, once it answers again, takes its tasks' real states back.

Half of the faults strike while the transition is held at its task phase (one task is
frozen with SIGSTOP until the fault is done), the others after a random delay (before,
during or after the transition). One cycle in LIFECYCLE_SHARE instead destroys an
environment and creates another, the core SIGKILLed at a random moment of the destroy
or of the create: a destroy cut short leaves the environment listed (and a second
destroy must work); a creation cut short is undone by the next core, or, if it ended
before the kill, the environment is there, CONFIGURED. After each cycle, once no
transition runs:

1. no environment is lost: every one the bench made and did not destroy is listed, and
   none is listed that the bench did not make (a creation cut short left nothing);
2. no run number is given twice: every START's number is above all before it;
3. consistency: an environment's tasks agree with its state (ERROR excepted);
4. no orphan: every dummy process of this bench belongs to a task the engine lists.

An environment left in ERROR is destroyed (which must work) and a new one created.
The outcome table counts, per fault and phase, the states the environment ended in,
with one message each.

usage: .venv/bin/python bench/chaos.py [--minutes 3] [--seed 1]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402

from env_lifecycle import AGENTS, settings  # noqa: E402

FAULTS = ("none", "task", "executor", "engine", "channel", "partition")
NEXT = {"CONFIGURED": ("START", "RESET"), "RUNNING": ("STOP",), "DEPLOYED": ("CONFIGURE",)}
OCC_EVENT = {"START": "START", "STOP": "STOP", "RESET": "RESET", "CONFIGURE": "CONFIGURE"}
# An environment's state and its tasks' (ERROR: any). A task dying in DEPLOYED does not
# move the environment (§1.2: only CONFIGURED and RUNNING go to ERROR), its next CONFIGURE
# fails instead.
CONSISTENT = {"CONFIGURED": {"CONFIGURED"}, "RUNNING": {"RUNNING"},
              "DEPLOYED": {"STANDBY", "ERROR"}}
HEARTBEAT = "heartbeat:\n  interval: 0.5\n  timeout: 3\n"  # added to the bench's nutshell.yaml
LIFECYCLE_SHARE = 6  # one cycle in six is a destroy + create with the core killed in it
# Seconds into the destroy or the create at most that the core is killed: about as long
# as each takes with four dummies.
KILL_WITHIN = {"CREATE": 2.0, "DESTROY": 0.1}
CHANNEL_CUT = 1.0  # seconds an executor is paused: within the heartbeat timeout
PARTITION = 5.0  # seconds an executor is paused: past the heartbeat timeout
HEAL = 2.0  # seconds for the engine to hear from a partitioned executor again
SETTLE = 60.0  # seconds for an environment to have no transition under way
CYCLE_LIMIT = 300.0  # seconds for a whole cycle: past it, the run stops and tells where it hung

DUMMY = """\
name: dummy
control:
  mode: direct
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: "exec env NUTSHELL_CHAOS={tag} {python} -m occlib.examples.dummy"
  arguments:
    - "--o2-role {{{{ task_parent_role }}}}"
"""


def workflow() -> str:
    lines = ["name: chaos", "roles:"]
    for agent in AGENTS:
        lines += [f"  - name: on-{agent}", "    constraints:", "      - attribute: machine_id",
                  f"        value: {agent}", "    task:", "      load: dummy"]
    return "\n".join(lines) + "\n"


def make_repo(folder: Path, tag: str) -> Path:
    repo = folder / "chaos-templates"
    for relative, text in {"workflows/chaos.yaml": workflow(),
                           "tasks/dummy.yaml": DUMMY.format(tag=tag, python=sys.executable)
                           }.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "master", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "chaos"], check=True)
    return repo


class Core:
    """The `nutshell core` child process and a RemoteEngine on it; killed and started again."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.process: subprocess.Popen[str] | None = None
        self.remote: Any = None
        self.starts = 0

    async def start(self) -> None:
        from engine.api import RemoteEngine
        sock = f"127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "core", "--listen", sock], cwd=ROOT,
            env={**os.environ, "NUTSHELL_HOME": str(self.home)}, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = await asyncio.to_thread(self.process.stdout.readline)
        if "serving" not in line:
            raise RuntimeError(f"nutshell core did not start: {line!r}")
        self.remote = RemoteEngine(sock)
        self.starts += 1

    async def kill(self) -> None:
        """SIGKILL the core; its client is closed by `restart` (a call under way on it fails
        with the core's death first, as a front-end sees it)."""
        if self.process is not None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None

    async def restart(self) -> None:
        if self.remote is not None:
            await self.remote.close()
        await self.start()

    async def stop(self) -> None:
        if self.remote is not None:
            await self.remote.close()
            self.remote = None
        if self.process is not None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 30)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dummies(tag: str) -> set[int]:
    """The live dummy processes of this bench (marked by their environment)."""
    found = set()
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("NUTSHELL_CHAOS") == tag:
                found.add(process.pid)
        except (psutil.Error, OSError):
            continue
    return found


@dataclass
class Chaos:
    core: Core
    home: Path
    tag: str
    reference: str
    rng: random.Random
    live: list[str] = field(default_factory=list)
    last_run: int = 0
    runs: dict[int, str] = field(default_factory=dict)  # run number → its environment
    outcomes: dict[tuple[str, str], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter))
    messages: dict[tuple[str, str], str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    cycles: int = 0

    async def create(self) -> None:
        info = await self.core.remote.create_environment(self.reference, user="chaos")
        self.live.append(info.id)

    async def replace(self, environment_id: str) -> str:
        """Destroy an environment in ERROR (which must work) and create another; its id."""
        try:
            destroyed = await self.core.remote.destroy_environment(environment_id, user="chaos")
            if destroyed.state != "DONE":
                self.violated(f"destroy of {environment_id}: {destroyed.state}")
        except Exception as error:  # a destroy must work: a violation
            self.violated(f"destroy of {environment_id} in ERROR: {error}")
        self.live.remove(environment_id)
        await self.create()
        return self.live[-1]

    async def settled(self, environment_id: str) -> Any:
        deadline = time.monotonic() + SETTLE
        while True:
            info = await self.core.remote.get_environment(environment_id)
            if not info.current_transition:
                return info
            if time.monotonic() > deadline:
                raise RuntimeError(f"{environment_id} still runs {info.current_transition}")
            await asyncio.sleep(0.1)

    async def lifecycle(self) -> None:
        """Destroy an environment and create another, the core SIGKILLed at a random moment
        of one of the two; the next core must have finished or undone what was cut."""
        environment_id = self.rng.choice(self.live)
        await self.settled(environment_id)
        phase = self.rng.choice(("DESTROY", "CREATE"))
        remote = self.core.remote
        if phase == "DESTROY":
            action = remote.destroy_environment(environment_id, user="chaos")
        else:
            await remote.destroy_environment(environment_id, user="chaos")
            self.live.remove(environment_id)
            action = remote.create_environment(self.reference, user="chaos")
        call = asyncio.create_task(action)
        await asyncio.sleep(self.rng.random() * KILL_WITHIN[phase])
        await self.core.kill()
        try:
            answer = await call
            outcome = answer.state
        except Exception as error:  # the core died under the call
            answer, outcome = None, type(error).__name__
        await self.core.restart()
        listed = {info.id: info for info in await self.core.remote.list_environments()}
        if phase == "DESTROY":
            self.live.remove(environment_id)
            if environment_id in listed:  # cut short: a second destroy must work
                info = await self.settled(environment_id)
                outcome += f"→listed {info.state}"
                try:
                    await self.core.remote.destroy_environment(environment_id, user="chaos")
                except Exception as error:
                    self.violated(f"second destroy of {environment_id}: {error}")
            await self.create()
        else:
            made = [info for info_id, info in listed.items() if info_id not in self.live]
            for info in made:  # a creation that ended before the kill
                info = await self.settled(info.id)
                if info.state != "CONFIGURED":
                    self.violated(f"a creation cut short left {info.id} in {info.state}")
                outcome += f"→kept {info.state}"
                self.live.append(info.id)
            if not made:
                outcome += "→undone"
                await self.create()
        self.outcomes[("engine", phase)][outcome] += 1
        await self.check()
        self.cycles += 1

    async def cycle(self) -> None:
        from engine.scheduler.local_agent import find_running
        if self.rng.randrange(LIFECYCLE_SHARE) == 0:
            await self.lifecycle()
            return
        environment_id = self.rng.choice(self.live)
        info = await self.settled(environment_id)
        if info.state == "ERROR":  # the last fault reached it too (a shared agent)
            environment_id = await self.replace(environment_id)
            info = await self.settled(environment_id)
        event = self.rng.choice(NEXT[info.state])
        fault = self.rng.choice(FAULTS)
        held = fault != "none" and self.rng.random() < 0.5
        phase = event if held else f"{event}~"  # ~: a random moment around it
        frozen = 0
        if held:  # one task frozen: the transition waits on it at its task phase
            frozen = self.rng.choice([t for t in info.tasks if t.pid]).pid
            try:
                os.kill(frozen, signal.SIGSTOP)
            except ProcessLookupError:  # died meanwhile: its report is on its way
                frozen = 0
        transition = asyncio.create_task(self.core.remote.control_environment(
            environment_id, event, user="chaos"))
        try:
            await asyncio.sleep(0.3 if held else self.rng.random() * 0.3)
            await self.strike(fault, info, find_running(self.home))
        finally:
            if frozen:
                try:
                    os.kill(frozen, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        try:
            result = await transition
            outcome, message = result.state, ""
            if event == "START":
                self.check_run(result.run_number, environment_id, new=True)
        except Exception as error:  # the failure's own message is the outcome to report
            lines = str(error).splitlines()  # the summary, and the first task's row
            outcome, message = type(error).__name__, " / ".join(lines[:2])[:240]
        if fault == "engine":
            await self.core.restart()  # a new core re-adopts what runs
        await asyncio.sleep(1.0)  # past GO_ERROR's grace (0.5 s) and a killed task's reaping
        info = await self.settled(environment_id)
        key = (fault, phase)
        self.outcomes[key][f"{outcome}→{info.state}"] += 1
        if message:
            self.messages.setdefault(key, message)
        if info.state == "ERROR":
            await self.replace(environment_id)
        await self.check()
        self.cycles += 1

    async def strike(self, fault: str, info: Any, executors: dict[str, Any]) -> None:
        tasks = [t.pid for t in info.tasks if t.pid]
        pids = [agent.pid for agent in executors.values()]
        with contextlib.suppress(ProcessLookupError):  # a target may have died meanwhile
            if fault == "task" and tasks:
                os.kill(self.rng.choice(tasks), signal.SIGKILL)
            elif fault == "executor" and pids:
                os.kill(self.rng.choice(pids), signal.SIGKILL)
            elif fault == "engine":
                await self.core.kill()
            elif fault in ("channel", "partition") and pids:
                pid = self.rng.choice(pids)
                os.kill(pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(CHANNEL_CUT if fault == "channel" else PARTITION)
                finally:
                    os.kill(pid, signal.SIGCONT)
                if fault == "partition":
                    await asyncio.sleep(HEAL)

    def violated(self, what: str) -> None:
        self.violations.append(what)
        print(f"  VIOLATION {what}", flush=True)

    def check_run(self, run: int, environment_id: str, new: bool = False) -> None:
        """A START's number (`new`) is above every one before; a number is one
        environment's only."""
        if new and run <= self.last_run:
            self.violated(f"run number {run} given after {self.last_run}")
        if self.runs.setdefault(run, environment_id) != environment_id:
            self.violated(f"run number {run} given to {self.runs[run]} and "
                                   f"{environment_id}")
        self.last_run = max(self.last_run, run)

    async def check(self) -> None:
        listed = {info.id: info for info in await self.core.remote.list_environments()}
        lost = set(self.live) - set(listed)
        if lost:
            self.violated(f"cycle {self.cycles}: environments lost: {sorted(lost)}")
        strays = set(listed) - set(self.live)
        if strays:
            self.violated(f"cycle {self.cycles}: environments nobody made: {sorted(strays)}")
        owned: set[int] = set()
        for environment_id in self.live:
            info = await self.settled(environment_id)
            owned |= {t.pid for t in info.tasks if t.pid}
            if info.state in CONSISTENT and not {t.state for t in info.tasks} <= \
                    CONSISTENT[info.state]:
                self.violated(f"cycle {self.cycles}: {environment_id} is {info.state}"
                                       f" but its tasks are {[t.state for t in info.tasks]}")
            if info.current_run_number:  # a START whose answer the engine's death took
                self.check_run(info.current_run_number, environment_id)
        orphans = dummies(self.tag) - owned
        if orphans:
            self.violated(f"cycle {self.cycles}: dummy processes no task owns: "
                                   f"{sorted(orphans)}")


async def run(minutes: float, seed: int, home: Path, repo: Path, tag: str) -> Chaos:
    from engine import Engine, WorkingDirectory
    workdir = WorkingDirectory(home).ensure()
    workdir.settings_file.write_text(settings() + HEARTBEAT)
    core = Core(home)
    await core.start()
    added = await core.remote.add_repo(str(repo), "master")
    chaos = Chaos(core, home, tag, f"{added.repo}/workflows/chaos@master", random.Random(seed))
    try:
        for _ in range(2):
            await chaos.create()
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(chaos.cycle(), CYCLE_LIMIT)
            except TimeoutError:  # a stall is a finding: say where everything waited
                chaos.violated(f"cycle {chaos.cycles} stalled for {CYCLE_LIMIT:g} s")
                faulthandler.dump_traceback(all_threads=True)
                break
            if chaos.cycles % 10 == 0:
                print(f"  {chaos.cycles} cycles, {core.starts} engine starts, "
                      f"{len(chaos.violations)} violations", flush=True)
        for environment_id in list(chaos.live):
            await core.remote.destroy_environment(environment_id, user="chaos")
        left = dummies(tag)
        if left:
            chaos.violations.append(f"after destroying everything: dummies left {sorted(left)}")
    finally:
        await core.stop()
        await Engine(workdir).shutdown_agents()
    return chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    logging.disable(logging.WARNING)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where a stuck run waits
    tag = f"chaos-{os.getpid()}"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nutshell-chaos-") as tmp:
        repo = make_repo(Path(tmp), tag)
        chaos = asyncio.run(run(options.minutes, options.seed, Path(tmp) / "home", repo, tag))
    print(f"\n{chaos.cycles} cycles in {time.monotonic() - began:.0f} s, "
          f"{chaos.core.starts} engine starts, seed {options.seed}")
    print(f"{'fault':<9} {'phase':<11} {'n':>3}  outcome (answer→state after)  message")
    for (fault, phase), counts in sorted(chaos.outcomes.items()):
        shown = ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items()))
        print(f"{fault:<9} {phase:<11} {sum(counts.values()):>3}  {shown}  "
              f"{chaos.messages.get((fault, phase), '')}")
    print(f"violations: {len(chaos.violations)}")
    for violation in chaos.violations:
        print(f"  {violation}")
    return 1 if chaos.violations else 0


if __name__ == "__main__":
    sys.exit(main())
