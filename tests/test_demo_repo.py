"""engine.demo: the demo repository is made once, added at every start, and its workflow
renders with the real loader into tasks whose commands run."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import git
import psutil
import pytest

from engine.demo import (DEMO_WORKFLOW, default_hosts, demo_repository_path,
                         ensure_demo_configuration, ensure_demo_repository)
from engine.integration import plugins_from_configuration
from engine.repos import RepoManager
from engine.task.command import TaskSpecials, build_task_command
from engine.templates.render import Where
from engine.workdir import WorkingDirectory
from engine.workflow import CallRole, TaskRole
from engine.workflow.loader import WorkflowLoader
from engine.workflow.wiring import link_channels
from executor.controlled_task import ControlTimings
from executor.controlmode import ControlMode
from executor.dialer import Backoff
from executor.reports import PidAnnouncement, TaskIdentity
from executor.tasks import make_task
from occlib.examples import dummy
from occlib.states import OccState
from tests.conftest import free_port, make_template_repo

HOSTS = ["flp001", "flp002"]
PUBLIC_VARS = {"hosts", "dummy_event_interval", "eos_after", "fairmq_chain_enabled",
               "basic_enabled", "hook_enabled", "testplugin_enabled"}


def per_host(host: str, *, chain: bool = True, basic: bool = True, hook: bool = True) -> list[str]:
    base = f"demo.host-{host}"
    paths = [base, f"{base}.dummy"]
    if chain:
        paths += [f"{base}.fairmq-chain", f"{base}.fairmq-chain.sampler",
                  f"{base}.fairmq-chain.sink"]
    if basic:
        paths.append(f"{base}.basic")
    if hook:
        paths.append(f"{base}.start-hook")
    return paths


def expected_tree(hosts: list[str] = HOSTS, *, testplugin: bool = True, **switches: bool
                  ) -> list[str]:
    paths = ["demo"] + [p for host in hosts for p in per_host(host, **switches)]
    return paths + (["demo.testplugin"] if testplugin else [])


@pytest.fixture
def workdir(tmp_path: Path) -> WorkingDirectory:
    return WorkingDirectory(tmp_path / "home").ensure()


@pytest.fixture
def loader(workdir: WorkingDirectory):
    with WorkflowLoader(workdir) as loader:
        ensure_demo_repository(workdir, loader.repos)
        yield loader


def load(loader: WorkflowLoader, **user_vars: str):
    return loader.load(DEMO_WORKFLOW, {"hosts": json.dumps(HOSTS), **user_vars},
                       environment_id="demoenv")


# ---------------------------------------------------------------- the repository

def test_created_on_first_use_as_the_default(workdir: WorkingDirectory) -> None:
    path = demo_repository_path(workdir)
    assert path == workdir.root / "demo-templates" and not path.exists()
    with RepoManager(workdir) as repos:
        repo_id = ensure_demo_repository(workdir, repos)
        assert repo_id == str(path) and repos.default_repo == repo_id
    with git.Repo(path) as repo:
        assert len(list(repo.iter_commits())) == 1 and not repo.is_dirty(untracked_files=True)
        assert sorted(b.path for b in repo.head.commit.tree.traverse() if b.type == "blob") == [
            "tasks/demo-basic.yaml", "tasks/demo-hook.yaml", "tasks/dummy.yaml",
            "tasks/fairmq-sampler.yaml", "tasks/fairmq-sink.yaml", "workflows/demo.yaml"]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".demo")] == []


def test_idempotent_within_a_run_and_across_restarts(workdir: WorkingDirectory) -> None:
    with RepoManager(workdir) as repos:
        first = ensure_demo_repository(workdir, repos)
        with git.Repo(first) as repo:
            commit = repo.head.commit.hexsha
        assert ensure_demo_repository(workdir, repos) == first
        assert [info.name for info in repos.list()] == [first]
    with RepoManager(workdir) as restarted:  # local repositories are not persisted
        assert restarted.list() == []
        assert ensure_demo_repository(workdir, restarted) == first
        assert restarted.default_repo == first
    with git.Repo(first) as repo:
        assert repo.head.commit.hexsha == commit and len(list(repo.iter_commits())) == 1


def test_an_incomplete_repository_is_made_again(workdir: WorkingDirectory) -> None:
    path = demo_repository_path(workdir)
    (path / ".git").mkdir(parents=True)  # a crash before the commit
    with RepoManager(workdir) as repos:
        ensure_demo_repository(workdir, repos)
    with git.Repo(path) as repo:
        assert repo.head.is_valid()


def test_a_default_the_user_chose_is_kept(workdir: WorkingDirectory, tmp_path: Path) -> None:
    other = make_template_repo(tmp_path / "mine", {"workflows/w.yaml": "name: w\nroles: []\n"},
                               corpus=False)
    with RepoManager(workdir) as repos:
        repos.add(str(other))
        demo = ensure_demo_repository(workdir, repos)
        assert repos.default_repo == str(other)
        assert sorted(info.name for info in repos.list()) == sorted([str(other), demo])


def test_listed_as_public_with_the_form_variables(loader: WorkflowLoader) -> None:
    [info] = loader.repos.list_templates()
    assert info.name == DEMO_WORKFLOW and info.public and info.revision == "local"
    specs = {spec.name: spec for spec in info.var_specs}
    assert set(specs) == PUBLIC_VARS
    assert json.loads(specs["hosts"].default_value) == default_hosts()
    assert specs["fairmq_chain_enabled"].widget == "checkBox"
    assert specs["fairmq_chain_enabled"].type == "bool"


# ---------------------------------------------------------------- the workflow

def test_renders_with_hosts_only(loader: WorkflowLoader) -> None:
    workflow = load(loader)
    assert workflow.public and workflow.name == DEMO_WORKFLOW
    assert [role.path for role in workflow.roles()] == expected_tree()
    modes = {role.path.split(".", 2)[2]: role.task_class.control_mode
             for role in workflow.task_roles() if role.path.startswith("demo.host-flp001")}
    assert modes == {"dummy": ControlMode.DIRECT, "fairmq-chain.sampler": ControlMode.FAIRMQ,
                     "fairmq-chain.sink": ControlMode.FAIRMQ, "basic": ControlMode.BASIC,
                     "start-hook": ControlMode.BASIC}
    hook = workflow.find("demo.host-flp002.start-hook")
    assert str(hook.trigger) == "before_START_ACTIVITY" and not hook.critical
    [call] = workflow.call_roles()
    assert isinstance(call, CallRole) and call.func == "testplugin.Test()"
    assert str(call.trigger) == "after_CONFIGURE" and not call.critical
    assert all([(c.attribute, c.value) for c in role.constraints] ==
               [("machine_id", role.path.split(".")[1].removeprefix("host-"))]
               for role in workflow.task_roles())
    links = {(link.role_path, link.target) for link in link_channels(workflow, loader.renderer)}
    assert links == {(f"demo.host-{h}.fairmq-chain.sink", f"demo.host-{h}.fairmq-chain.sampler:data")
                     for h in HOSTS}


def test_renders_with_no_variables_at_all(loader: WorkflowLoader) -> None:
    workflow = loader.load(DEMO_WORKFLOW)
    assert [role.path for role in workflow.roles()] == expected_tree(default_hosts())


@pytest.mark.parametrize("switch,off", [
    ("fairmq_chain_enabled", {"chain": False}),
    ("basic_enabled", {"basic": False}),
    ("hook_enabled", {"hook": False}),
    ("testplugin_enabled", {"testplugin": False}),
])
def test_each_switch_removes_its_roles(loader: WorkflowLoader, switch: str,
                                       off: dict[str, bool]) -> None:
    assert [role.path for role in load(loader, **{switch: "false"}).roles()] == \
        expected_tree(**off)


def build(loader: WorkflowLoader, role: TaskRole, host: str = "flp001", port: int = 30000):
    specials = TaskSpecials(role.task_class.task_name("T1"), "T1", role.class_identifier, host,
                            "demoenv", role.path)
    return build_task_command(role.task_class, role.stack, specials, loader.renderer, port,
                              Where(role_path=role.path), hook=role.trigger is not None)


def dummy_options(argv: list[str]):
    """The dummy's parsed options from `sh -c "exec <python> -m occlib.examples.dummy …"`."""
    assert argv[:2] == ["/bin/sh", "-c"]
    words = shlex.split(argv[2])
    assert words[:4] == ["exec", sys.executable, "-m", "occlib.examples.dummy"]
    return dummy.parser().parse_args(words[4:])


def test_task_commands_build_into_runnable_argv(loader: WorkflowLoader) -> None:
    workflow = load(loader, dummy_event_interval="0.5")
    commands = {role.name: build(loader, role) for role in workflow.task_roles()
                if role.path.startswith("demo.host-flp001")}
    options = dummy_options(commands["dummy"].argv())
    assert options.o2_role == "demo.host-flp001.dummy"
    assert options.event_interval == 0.5 and options.eos_after is None
    for name in ("sampler", "sink"):
        assert commands[name].argv() == [sys.executable, "-m", "occlib.examples.fairmq"]
        assert commands[name].control_mode is ControlMode.FAIRMQ
    assert commands["basic"].control_mode is ControlMode.BASIC
    assert commands["start-hook"].control_mode is ControlMode.HOOK
    assert commands["basic"].argv() == [
        "/bin/sh", "-c",
        "echo demo basic task demo.host-flp001.basic of demoenv; exec sleep infinity"]


def test_eos_after_and_python_reach_the_dummy(loader: WorkflowLoader) -> None:
    workflow = load(loader, eos_after="25")
    options = dummy_options(build(loader, workflow.find("demo.host-flp002.dummy")).argv())
    assert options.eos_after == 25
    other = load(loader, python="/opt/python3")
    line = build(loader, other.find("demo.host-flp002.dummy")).argv()[2]
    assert line.startswith("exec /opt/python3 -m occlib.examples.dummy ")


@pytest.mark.parametrize("path,module", [
    ("demo.host-flp001.dummy", "occlib.examples.dummy"),
    ("demo.host-flp001.fairmq-chain.sampler", "occlib.examples.fairmq"),
])
async def test_a_demo_task_comes_up_and_is_killed(loader: WorkflowLoader, tmp_path: Path,
                                                  path: str, module: str) -> None:
    command = build(loader, load(loader).find(path), port=free_port())
    reports: list = []
    timings = ControlTimings(dial_timeout=15.0, startup_timeout=15.0, poll_interval=0.05,
                             backoff=Backoff(base=0.05), term_grace=0.5, int_grace=0.5)
    task = make_task(TaskIdentity("T1", environment_id="demoenv"), command, reports.append,
                     log_path=tmp_path / "task.log", timings=timings, hostname="flp001")
    try:
        assert await task.launch(), (tmp_path / "task.log").read_text()
        assert task.state is OccState.STANDBY
        [pid] = [r.pid for r in reports if isinstance(r, PidAnnouncement)]
        # the task's process is python itself: the dummy's shell line execs it
        assert psutil.Process(pid).cmdline()[:3] == [sys.executable, "-m", module]
    finally:
        await task.kill()
    assert task.finished


def test_the_demo_configuration_enables_the_testplugin_once_and_is_never_overwritten(
        tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    assert ensure_demo_configuration(workdir) is True
    with WorkflowLoader(workdir) as loader:
        plugins = plugins_from_configuration(loader.config)
        assert [plugin.name for plugin in plugins.plugins] == ["testplugin"]
    workdir.configuration_file.write_text("# mine\n")
    assert ensure_demo_configuration(workdir) is False
    assert workdir.configuration_file.read_text() == "# mine\n"
