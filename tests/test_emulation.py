"""engine.emulation: readout-dataflow from the corpus with every command replaced by its
mode's emulator, built for real and launched for real."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.emulation import (BASIC_COMMAND, DUMMY_MODULE, HOOK_COMMAND, FAIRMQ_MODULE, emulate_task_class,
                              emulate_workflow, emulated_command, emulated_mode)
from engine.task.command import TaskSpecials, build_task_command
from engine.templates.render import Where
from engine.workflow import TaskRole
from engine.workflow.wiring import link_channels
from executor.controlled_task import ControlTimings
from executor.controlmode import ControlMode
from executor.dialer import Backoff
from executor.hook_task import HookTask
from executor.reports import MesosTaskState, StatusUpdate, TaskIdentity
from executor.tasks import make_task
from occlib.states import OccState
from tests.conftest import free_port
from tests.task_templates import corpus, inline

RDF = "readout-dataflow"
HOSTS = ["flp001", "flp002"]
# What every AliECS installation's configuration has under o2/runtime/aliecs/defaults and
# the corpus's task classes use (`modulepath` picks the module-load or plain command line).
CONFIGURATION = """\
o2:
  runtime:
    aliecs:
      defaults:
        modulepath: ""
"""
FAST = ControlTimings(dial_timeout=15.0, startup_timeout=15.0, poll_interval=0.05,
                      backoff=Backoff(base=0.05), kill_step_timeout=5.0, term_grace=0.5,
                      int_grace=0.5)
EMULATOR_ARGV = {
    ControlMode.DIRECT: [sys.executable, "-m", DUMMY_MODULE, "--o2-role"],
    ControlMode.FAIRMQ: [sys.executable, "-m", FAIRMQ_MODULE],
    ControlMode.BASIC: list(BASIC_COMMAND),
    ControlMode.HOOK: [HOOK_COMMAND],
}


@pytest.fixture
def rdf(template_loader):
    """readout-dataflow on two hosts with its default variables, loaded and emulated."""
    loader, _ = template_loader(corpus=True, configuration=CONFIGURATION)
    workflow = loader.load(RDF, {"hosts": json.dumps(HOSTS)}, environment_id="emuenv")
    originals = {role.path: role.task_class for role in workflow.task_roles()}
    return loader, emulate_workflow(workflow), originals


def build(loader, role: TaskRole, port: int = 30000, timeout_ns: int = 0):
    host = role.path.split(".")[1].removeprefix("host-")
    specials = TaskSpecials(role.task_class.task_name("T1"), "T1", role.class_identifier, host,
                            "emuenv", role.path)
    return build_task_command(role.task_class, role.stack, specials, loader.renderer, port,
                              Where(role_path=role.path), hook=role.trigger is not None,
                              timeout_ns=timeout_ns)


# ---------------------------------------------------------------- the replacement

def test_each_mode_gets_its_emulator() -> None:
    readout = corpus("readout")  # direct, shell, user flp, env, a bind channel
    emulated = emulate_task_class(readout, python="/py")
    assert emulated.command.value == "/py" and not emulated.command.shell
    assert emulated.command.arguments == ("-m", DUMMY_MODULE, "--o2-role", "{{ task_parent_role }}")
    assert emulated.command.user == "" and emulated.command.env == ()
    assert emulated.command.stdout == readout.command.stdout
    assert (emulated.bind, emulated.connect, emulated.properties, emulated.wants, emulated.defaults) \
        == (readout.bind, readout.connect, readout.properties, readout.wants, readout.defaults)
    assert readout.command.value.startswith("{{")  # the original is untouched
    stfb = corpus("stfbuilder")
    assert emulated_command(stfb, stfb.control_mode, python="/py").arguments == \
        ("-m", FAIRMQ_MODULE)
    shell = corpus("shell-command")
    assert emulate_task_class(shell, hook=True).command.value == HOOK_COMMAND
    running = emulate_task_class(shell).command  # not a hook: lasts until STOP kills it
    assert (running.value, *running.arguments) == BASIC_COMMAND


@pytest.mark.parametrize("mode,local", [
    ("kubectl_direct", ControlMode.DIRECT), ("kubernetes_direct", ControlMode.DIRECT),
    ("kubectl_fairmq", ControlMode.FAIRMQ), ("kubernetes_fairmq", ControlMode.FAIRMQ),
])
def test_cluster_modes_run_as_their_local_twin(mode: str, local: ControlMode) -> None:
    task_class = inline("pod", f"name: pod\ncontrol: {{mode: {mode}}}\n"
                               f"wants: {{cpu: 1, memory: 1}}\ncommand: {{value: pod-exe}}\n")
    emulated = emulate_task_class(task_class)
    assert emulated.control_mode is local and task_class.control_mode is ControlMode.parse(mode)
    assert emulated.command.arguments[:2] == ("-m", DUMMY_MODULE if local is ControlMode.DIRECT
                                              else FAIRMQ_MODULE)
    with pytest.raises(ValueError, match="hooks are basic classes"):
        emulated_mode(ControlMode.HOOK)


# ---------------------------------------------------------------- readout-dataflow

def test_every_readout_dataflow_command_builds_and_points_at_an_emulator(rdf) -> None:
    loader, workflow, originals = rdf
    roles = workflow.task_roles()
    modes = {role.task_class.control_mode for role in roles}
    assert {ControlMode.DIRECT, ControlMode.FAIRMQ, ControlMode.BASIC} <= modes
    for role in roles:
        command = build(loader, role)
        assert command.argv()[:len(EMULATOR_ARGV[command.control_mode])] == \
            EMULATOR_ARGV[command.control_mode], role.path
        assert command.user == ""
        if command.control_mode is ControlMode.DIRECT:
            assert command.arguments[-1] == role.path
        original = originals[role.path]
        assert role.task_class is not original and original.command.value != role.task_class.command.value
        assert (role.task_class.bind, role.task_class.properties) == \
            (original.bind, original.properties)
    hooks = [role for role in roles if role.trigger is not None]
    assert hooks and all(build(loader, role).control_mode is ControlMode.HOOK for role in hooks)
    link_channels(workflow, loader.renderer)  # every connect still reaches its bind


def test_one_copy_per_class_and_later_loads_see_the_real_commands(rdf) -> None:
    loader, workflow, originals = rdf
    by_class: dict[int, set[int]] = {}
    for role in workflow.task_roles():
        by_class.setdefault(id(originals[role.path]), set()).add(id(role.task_class))
    assert all(len(copies) == 1 for copies in by_class.values())
    again = loader.load(RDF, {"hosts": json.dumps(HOSTS)}, environment_id="emuenv2")
    readout = again.find(f"{RDF}.host-flp001.readout")
    assert readout.task_class is originals[readout.path]  # the shared class, as it was
    assert "_plain_cmdline" in readout.task_class.command.value


@pytest.mark.parametrize("path,state", [
    (f"{RDF}.host-flp001.readout", "STANDBY"),
    (f"{RDF}.host-flp001.data-distribution.stfb", "STANDBY"),
])
async def test_an_emulated_task_launches_and_is_killed(rdf, tmp_path: Path, path: str,
                                                       state: str) -> None:
    loader, workflow, _ = rdf
    role = workflow.find(path)
    command = build(loader, role, port=free_port())
    reports: list = []
    task = make_task(TaskIdentity("T1", environment_id="emuenv"), command, reports.append,
                     log_path=tmp_path / "task.log", timings=FAST, hostname="flp001",
                     plugin_search_path="/opt/occ/lib/")
    try:
        assert await task.launch(), tmp_path.joinpath("task.log").read_text()
        assert task.state is OccState(state)
    finally:
        await task.kill()
    assert task.finished
    final = [r.state for r in reports if isinstance(r, StatusUpdate) and r.state.terminal]
    assert final == [MesosTaskState.TASK_FINISHED]
    assert await task.process.members() == []


async def test_an_emulated_hook_ends_well_inside_its_timeout(rdf, tmp_path: Path) -> None:
    loader, workflow, _ = rdf
    hook = next(role for role in workflow.task_roles() if role.trigger is not None)
    command = build(loader, hook, timeout_ns=2_000_000_000)
    task = make_task(TaskIdentity("H1", environment_id="emuenv"), command, [].append,
                     log_path=tmp_path / "hook.log")
    assert isinstance(task, HookTask)
    try:
        assert await task.launch()
        result = await task.trigger()
    finally:
        await task.kill()
    assert (result.exit_code, result.error) == (0, "")
