"""A real Mesos 1.11 cluster for tests: the harness of ../shared/mesos (see its README.md).

`start_cluster` runs `start.sh --foreground` (one master, N agents named by `machine_id`)
in a run dir of its own, on ports no other cluster of this machine holds: each cluster takes
a port block under an exclusive file lock for its lifetime, so test modules (and helpers)
running at once never collide. `stop` terminates the supervisor, which stops and reaps the
master, the agents and every executor and task under them before it exits; pytest (the
supervisor's parent) then reaps the supervisor, so nothing is left.

When Mesos cannot be started the tests cannot say anything: under CI (env CI set) that is
a failure naming the reason, elsewhere a skip with the reason.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(os.environ.get("MESOS_HARNESS") or ROOT.parent / "shared" / "mesos")
MESOS_HOME = Path(os.environ.get("MESOS_HOME") or "/tmp/mesos-egg")
READY = "MESOS_HARNESS_READY"
LOCK_DIR = Path(tempfile.gettempdir()) / "nutshell-mesos-ports"
BLOCKS = 16  # clusters that can run at once on one machine
MAX_AGENTS = 8
STOP_TIMEOUT = 30.0
# Port block b: master MASTER_BASE+10b, agents the next ports; for each agent its share of
# 100 control ports at CONTROL_BASE+100b (>= 30000, below Linux's ephemeral ports at 32768,
# as the engine asks) and of 100 data ports at DATA_BASE+100b (>= 9000).
MASTER_BASE = 24000
CONTROL_BASE = 30200
DATA_BASE = 25000
DEFAULT_AGENTS = ("flp001", "flp002", "flp003")
# Variables the harness would turn into flags if the test process happened to carry them.
_FLAG_PREFIXES = ("MESOS_", "GLOG_", "LIBPROCESS_", "AGENT_")


class ClusterUnavailable(RuntimeError):
    """Mesos could not be started here; the message says why."""


@dataclass(frozen=True)
class AgentRecord:
    """One agent of a running cluster, from cluster.json."""

    name: str  # also its machine_id attribute
    port: int
    agent_id: str
    work_dir: Path  # the agent's --work_dir; sandboxes live below it
    pid: int
    control_ports: tuple[int, int]  # the offered range (inclusive) at >= 30000
    data_ports: tuple[int, int]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sandbox(self, framework_id: str, executor_id: str) -> Path:
        """The latest run's sandbox of that executor on this agent."""
        return (self.work_dir / "slaves" / self.agent_id / "frameworks" / framework_id
                / "executors" / executor_id / "runs" / "latest")


@dataclass
class MesosCluster:
    """A running harness: master URL, agents, and the supervisor this test process owns."""

    master_url: str
    master_address: str
    agents: tuple[AgentRecord, ...]
    run_dir: Path
    cluster_file: Path
    process: subprocess.Popen[str]
    _stderr: IO[str]
    _lock: IO[str]

    def agent(self, name: str) -> AgentRecord:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(f"no agent {name!r} in the cluster at {self.master_url} "
                       f"(agents: {', '.join(a.name for a in self.agents)})")

    def kill_agent(self, name: str, *options: str) -> dict[str, Any]:
        """Crash one node: kill_agent.sh NAME (agent, executors and tasks SIGKILLed); what it printed."""
        self.agent(name)
        done = subprocess.run([str(HARNESS / "kill_agent.sh"), name, *options], env=self._env(),
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"kill_agent.sh {name} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def read_sandbox_file(self, agent_name: str, framework_id: str, executor_id: str,
                          name: str) -> str:
        """A file of an executor's sandbox, whole, through the agent's /files/download: the
        reference the engine's own reader (/files/read, from the end) is checked against."""
        agent = self.agent(agent_name)
        path = agent.sandbox(framework_id, executor_id) / name
        query = urllib.parse.urlencode({"path": str(path)})
        with urllib.request.urlopen(f"{agent.url}/files/download?{query}", timeout=10) as reply:
            return reply.read().decode(errors="replace")

    def state(self) -> dict[str, Any]:
        """The master's /state."""
        with urllib.request.urlopen(f"{self.master_url}/state", timeout=10) as reply:
            return json.loads(reply.read())

    def workload(self) -> list[str]:
        """The live processes under the harness other than its master and agents: the
        executors and tasks (and their helpers), each as "pid cmdline"."""
        import psutil

        own = {self.process.pid, *(agent.pid for agent in self.agents)}
        with contextlib.suppress(OSError, ValueError, KeyError):
            own.add(int(json.loads(self.cluster_file.read_text())["master"]["pid"]))
        found = []
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if proc.pid not in own and proc.status() != psutil.STATUS_ZOMBIE:
                        found.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        return found

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait until no executor or task runs under the harness; raises naming what is left."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.workload()
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"still running under the Mesos harness after "
                                     f"{timeout:g} s: " + "; ".join(left))
            time.sleep(0.05)

    def harness_log(self, lines: int = 40) -> str:
        return _tail(self.run_dir / "harness.log", lines)

    def _env(self) -> dict[str, str]:
        return {**_clean_env(), "MESOS_HOME": str(MESOS_HOME), "MESOS_RUN_DIR": str(self.run_dir),
                "PYTHON": sys.executable}

    def stop(self) -> None:
        """SIGTERM the supervisor and wait: it stops and reaps everything it started.

        Raises if anything of this cluster outlived it (then killed), so a teardown that
        leaves a process is as loud as a test that does (conftest's no_leaked_processes
        cannot see it: the cluster outlives the module's tests).
        """
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_tree(self.process.pid)
                self.process.wait(timeout=10)
                raise RuntimeError(f"the Mesos harness (pid {self.process.pid}) did not stop "
                                   f"within {STOP_TIMEOUT:g} s of SIGTERM; killed it:\n"
                                   f"{self.harness_log()}") from None
            left = _outliving(self.run_dir)
            if left:
                raise RuntimeError(f"processes of the Mesos cluster in {self.run_dir} outlived "
                                   f"its harness (now killed): " + "; ".join(left))
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._stderr.close()
            self._lock.close()


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if not key.startswith(_FLAG_PREFIXES) and key not in ("PYTHON", "MASTER_PORT")}


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _outliving(run_dir: Path) -> list[str]:
    """Kill and name this process's descendants that belong to the cluster of `run_dir`:
    started by the harness (MESOS_HARNESS_RUN) or in one of its sandboxes (MESOS_SANDBOX).
    Orphans come to this process: conftest makes pytest a child subreaper."""
    import psutil

    found = []
    prefix = f"{run_dir}/"
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if (env.get("MESOS_HARNESS_RUN") == str(run_dir)
                    or env.get("MESOS_SANDBOX", "").startswith(prefix)):
                found.append(f"{proc.pid} {' '.join(proc.cmdline())}")
                proc.kill()
    return found


def _kill_tree(pid: int) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _take_block(agents: int) -> tuple[int, IO[str]]:
    """A port block no other cluster of this machine holds, and the lock that keeps it."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for block in range(BLOCKS):
        lock = (LOCK_DIR / f"block-{block}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        master = MASTER_BASE + 10 * block
        if all(_port_free(port) for port in range(master, master + agents + 1)):
            return block, lock
        lock.close()
    raise ClusterUnavailable(f"no free port block for a Mesos cluster: all {BLOCKS} blocks "
                             f"(master ports {MASTER_BASE}+10b) are locked in {LOCK_DIR} or busy")


def _check_installed() -> None:
    if not (HARNESS / "start.sh").is_file():
        raise ClusterUnavailable(f"no Mesos harness at {HARNESS} (set MESOS_HARNESS)")
    if not (MESOS_HOME / "bin" / "mesos-local").is_file():
        raise ClusterUnavailable(f"Mesos is not built in {MESOS_HOME}: run "
                                 f"{HARNESS}/setup.sh (bash .ci/setup does)")
    try:
        import pymesos  # noqa: F401
    except ImportError as error:
        raise ClusterUnavailable(f"pymesos is not installed in {sys.executable}: {error} "
                                 f"(bash .ci/setup installs it)") from None


def start_cluster(base_dir: Path, names: Sequence[str] = DEFAULT_AGENTS, *,
                  attributes: dict[str, str] | None = None,
                  extra_env: dict[str, str] | None = None) -> MesosCluster:
    """Start a cluster with one agent per name (machine_id = name); raises ClusterUnavailable.

    `attributes` maps an agent name to extra attributes ("rack:r1;zone:a").
    """
    _check_installed()
    if not 1 <= len(names) <= MAX_AGENTS:
        raise ValueError(f"a test cluster has 1 to {MAX_AGENTS} agents, not {len(names)}")
    block, lock = _take_block(len(names))
    run_dir = base_dir / "mesos-run"
    share = 100 // len(names)
    env = {**_clean_env(), "MESOS_HOME": str(MESOS_HOME), "MESOS_RUN_DIR": str(run_dir),
           "PYTHON": sys.executable, "MASTER_PORT": str(MASTER_BASE + 10 * block),
           "AGENT_PORT": str(MASTER_BASE + 10 * block + 1), "AGENT_NAMES": " ".join(names)}
    ranges: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
    for index, name in enumerate(names, start=1):
        control = CONTROL_BASE + 100 * block + share * (index - 1)
        data = DATA_BASE + 100 * block + share * (index - 1)
        ranges[name] = ((control, control + share - 1), (data, data + share - 1))
        env[f"AGENT_RESOURCES_{index}"] = (f"cpus:2;mem:2048;disk:4096;ports:[{data}-"
                                           f"{data + share - 1},{control}-{control + share - 1}]")
        if attributes and name in attributes:
            env[f"AGENT_ATTRIBUTES_{index}"] = attributes[name]
    env.update(extra_env or {})
    stderr_path = base_dir / "harness-stderr.log"
    stderr = stderr_path.open("w")
    try:
        process = subprocess.Popen([str(HARNESS / "start.sh"), "--foreground"], env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True,
                                   cwd=base_dir)
    except OSError as error:
        stderr.close()
        lock.close()
        raise ClusterUnavailable(f"cannot run {HARNESS}/start.sh: {error}") from None
    assert process.stdout is not None
    ready = process.stdout.readline().strip()
    if not ready.startswith(READY):
        process.wait(timeout=STOP_TIMEOUT)
        process.stdout.close()
        stderr.close()
        lock.close()
        raise ClusterUnavailable(
            f"the Mesos harness did not start (exit {process.returncode}, run dir {run_dir}):\n"
            f"{_tail(stderr_path, 30)}")
    cluster_file = Path(ready.split(maxsplit=1)[1])
    described = json.loads(cluster_file.read_text())
    agents = tuple(
        AgentRecord(name=a["name"], port=a["port"], agent_id=a["agent_id"],
                    work_dir=Path(a["work_dir"]), pid=a["pid"],
                    control_ports=ranges[a["name"]][0], data_ports=ranges[a["name"]][1])
        for a in described["agents"])
    return MesosCluster(master_url=described["master"]["url"],
                        master_address=described["master"]["address"], agents=agents,
                        run_dir=run_dir, cluster_file=cluster_file, process=process,
                        _stderr=stderr, _lock=lock)


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere; never returns."""
    if os.environ.get("CI"):
        pytest.fail(f"Mesos cluster unavailable (CI): {reason}", pytrace=False)
    pytest.skip(f"Mesos cluster unavailable: {reason}")


@contextlib.contextmanager
def running_cluster(names: Sequence[str] = DEFAULT_AGENTS, **options: Any) -> Iterator[MesosCluster]:
    """A cluster for the duration of the block, in a temporary directory of its own."""
    base_dir = Path(tempfile.mkdtemp(prefix="nutshell-mesos-"))
    try:
        try:
            cluster = start_cluster(base_dir, names, **options)
        except ClusterUnavailable as error:
            unavailable(str(error))
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def mesos_cluster() -> Iterator[MesosCluster]:
    """One real cluster per test module: master + agents flp001..flp003."""
    with running_cluster() as cluster:
        yield cluster
