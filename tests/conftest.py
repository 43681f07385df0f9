"""Suite-wide fixtures: no test may leave a process behind.

pytest makes itself a child subreaper, so a process whose parent dies (an
orphaned task of a killed executor, a daemonised child) is re-parented to
pytest instead of init and is still seen as ours.
"""
from __future__ import annotations

import ctypes
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36
LEAK_GRACE_SECONDS = 3.0


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


_become_subreaper()


def _live_descendants() -> list[psutil.Process]:
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def _reap_zombies() -> None:
    """Collect exited children that were re-parented to us (we are their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    before = {p.pid for p in _live_descendants()}
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    leaked: list[psutil.Process] = []
    while True:
        _reap_zombies()
        leaked = [p for p in _live_descendants() if p.pid not in before]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leaked:
        described = []
        for p in leaked:
            try:
                described.append(f"{p.pid} {' '.join(p.cmdline())}")
            except psutil.Error:
                described.append(str(p.pid))
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(leaked, timeout=5)
        _reap_zombies()
        pytest.fail(f"{request.node.nodeid} left processes behind: " + "; ".join(described),
                    pytrace=False)


# Control ports for the agents of tests that declare their own: above the built-in agents'
# (30000-31999) and below Linux's ephemeral range (32768 on), where any outgoing connection
# may hold a port, which a task then cannot listen on.
CONTROL_PORTS = range(32000, 32768)


def control_ports(span: int) -> int:
    """The first of `span` control ports in CONTROL_PORTS, at random (runs side by side rarely
    share them)."""
    return CONTROL_PORTS.start + span * random.randrange(len(CONTROL_PORTS) // span)


def free_port() -> int:
    """A TCP port nothing listens on right now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Spawned:
    """A real child process under test, stopped and reaped by its fixture."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log_file.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """spawn(module, *args): start `python -m module --control-port P args…`, wait for its port."""
    started: list[Spawned] = []

    def start(module: str, *args: str, wait: bool = True) -> Spawned:
        port = free_port()
        argv = [sys.executable, "-m", module, "--control-port", str(port), *args]
        proc = Spawned(argv, port, tmp_path / f"{module.rsplit('.', 1)[-1]}-{len(started)}.log")
        started.append(proc)
        if wait:
            wait_for_port(port)
        return proc

    yield start
    for proc in started:
        proc.stop()


# ---------------------------------------------------------------- template repositories

CORPUS = ROOT.parent / "shared" / "corpus" / "controlworkflows"


def make_template_repo(path: Path, files: dict[str, str] | None = None, *,
                       corpus: bool = True, branch: str = "master") -> Path:
    """A git repository at `path` with one commit on `branch`: the ControlWorkflows corpus
    (workflows/ and tasks/, copied now, never kept in the project) plus `files`
    (relative path → text). Returns the path."""
    import shutil

    path.mkdir(parents=True, exist_ok=True)
    if corpus:
        for folder in ("workflows", "tasks"):
            shutil.copytree(CORPUS / folder, path / folder, dirs_exist_ok=True)
            for copied in (path / folder).iterdir():
                copied.chmod(0o644)
    for relative, text in (files or {}).items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git = ["git", "-C", str(path), "-c", "user.name=Test", "-c", "user.email=test@example.org"]
    subprocess.run(["git", "init", "-q", "-b", branch, str(path)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "templates", "--allow-empty"], check=True)
    return path


@pytest.fixture
def corpus_repo(tmp_path: Path) -> Path:
    """A git repository (tmp dir) holding the corpus workflows and task templates."""
    return make_template_repo(tmp_path / "controlworkflows")


@pytest.fixture
def template_loader(tmp_path: Path):
    """make(files, corpus=False, configuration="", o2_profile=None, name="") -> (loader, repo):
    a template repository (tmp dir, one commit on master, added as the default repository)
    and a WorkflowLoader on a fresh working directory whose configuration.yaml is
    `configuration`. Call it again for another repository in the same working directory."""
    from engine.workdir import WorkingDirectory
    from engine.workflow.loader import WorkflowLoader

    made: list = []
    count = [0]

    def make(files: dict[str, str] | None = None, *, corpus: bool = False,
             configuration: str = "", o2_profile: Path | None = None, name: str = ""):
        workdir = WorkingDirectory.from_environment(
            {"NUTSHELL_HOME": str(tmp_path / "home")}).ensure()
        if configuration:
            workdir.configuration_file.write_text(configuration)
        count[0] += 1
        repo = make_template_repo(tmp_path / (name or f"templates-{count[0]}"), files,
                                  corpus=corpus)
        if made:
            loader = made[0]
        else:
            loader = WorkflowLoader(workdir, o2_profile=o2_profile)
            made.append(loader)
        repo_id = loader.repos.add(str(repo), "master").repo
        return loader, repo_id

    yield make
    for loader in made:
        loader.close()


@pytest.fixture
def renderer(tmp_path: Path):
    """A Renderer on the full function library over an empty embedded configuration."""
    from engine.config.embedded import EmbeddedConfiguration
    from engine.templates.functions import FunctionLibrary
    from engine.templates.render import Renderer
    from engine.workdir import WorkingDirectory

    config = EmbeddedConfiguration(WorkingDirectory(tmp_path), hostname="localhost")
    yield Renderer(FunctionLibrary(config).namespaces)
    config.close()
