"""`--emulate`: any workflow run on local agents, each task's command replaced by an emulator.

The emulator is chosen by control mode: direct → the occlib dummy, fairmq →
the occlib FairMQ emulator (it takes the options the core adds: --id,
--control-port, -S, -P OCClite, --color), basic → `true`, which ends at once,
so a hook or a basic task finishes well inside any timeout its role gives.
Everything else of the class stays: channels, properties, vars, wants,
constraints, so wiring and CONFIGURE arguments are those of the real run.
The command's user is dropped (emulators run as whoever runs nutshell) and so
are its environment entries (they name the real software's settings).

Task classes are shared by every load of a pinned commit (engine.workflow.sources
caches them); they are frozen, and emulation makes copies, never touching them.
"""
from __future__ import annotations

import sys
from dataclasses import replace

from engine.task.taskclass import CommandTemplate, TaskClass
from engine.workflow.roles import Workflow
from executor.controlmode import ControlMode

DUMMY_MODULE = "occlib.examples.dummy"
FAIRMQ_MODULE = "occlib.examples.fairmq"
BASIC_COMMAND = "true"

# What the local executor runs in place of each mode (kubectl/kubernetes run elsewhere for real).
_LOCAL_MODE = {
    ControlMode.DIRECT: ControlMode.DIRECT,
    ControlMode.KUBECTL_DIRECT: ControlMode.DIRECT,
    ControlMode.KUBERNETES_DIRECT: ControlMode.DIRECT,
    ControlMode.FAIRMQ: ControlMode.FAIRMQ,
    ControlMode.KUBECTL_FAIRMQ: ControlMode.FAIRMQ,
    ControlMode.KUBERNETES_FAIRMQ: ControlMode.FAIRMQ,
    ControlMode.BASIC: ControlMode.BASIC,
}


def emulated_mode(mode: ControlMode) -> ControlMode:
    """The mode an emulated task runs in: kubectl and kubernetes modes become their local twin."""
    try:
        return _LOCAL_MODE[mode]
    except KeyError:
        raise ValueError(f"control mode {mode} is never a task class's (hooks are basic "
                         f"classes with a trigger)") from None


def emulated_command(task_class: TaskClass, mode: ControlMode, *,
                     python: str | None = None) -> CommandTemplate:
    """The command template that emulates `task_class` run in `mode`.

    Output modes are kept (they only say where the output goes); `python` is the
    interpreter of the occlib examples, by default this one.
    """
    local = emulated_mode(mode)
    python = python or sys.executable
    kept = {"stdout": task_class.command.stdout, "stderr": task_class.command.stderr}
    if local is ControlMode.DIRECT:
        return CommandTemplate(value=python, arguments=(
            "-m", DUMMY_MODULE, "--o2-role", "{{ task_parent_role }}"), **kept)
    if local is ControlMode.FAIRMQ:
        return CommandTemplate(value=python, arguments=("-m", FAIRMQ_MODULE), **kept)
    return CommandTemplate(value=BASIC_COMMAND, **kept)


def emulate_task_class(task_class: TaskClass, *, python: str | None = None) -> TaskClass:
    """A copy of `task_class` whose command is its mode's emulator (the original is untouched)."""
    return replace(task_class, control_mode=emulated_mode(task_class.control_mode),
                   command=emulated_command(task_class, task_class.control_mode, python=python))


def emulate_workflow(workflow: Workflow, *, python: str | None = None) -> Workflow:
    """Every task role of `workflow` given its class's emulated copy; returns the workflow.

    A loaded Workflow belongs to the one environment that loaded it, so its roles
    are updated in place; the classes they pointed at are shared and left as they
    were. One copy is made per class, however many roles load it.
    """
    copies: dict[int, tuple[TaskClass, TaskClass]] = {}  # id → (original kept alive, copy)
    for role in workflow.task_roles():
        original = role.task_class
        if original is None:
            continue
        if id(original) not in copies:
            copies[id(original)] = (original, emulate_task_class(original, python=python))
        role.task_class = copies[id(original)][1]
    return workflow

