"""`--emulate`: any workflow run on local agents, each task's command replaced by an emulator.

The emulator is chosen by control mode: direct → the occlib dummy, fairmq →
the occlib FairMQ emulator (it takes the options the core adds: --id,
--control-port, -S, -P OCClite, --color), a hook → `true`, which ends at once,
well inside any timeout its role gives, and any other basic task → `sleep
infinity`: a basic task whose command ends ends the run (§1.2), so its emulator
lasts until STOP kills it, as the long-lived commands it stands for do.
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
HOOK_COMMAND = "true"
BASIC_COMMAND = ("sleep", "infinity")

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


def emulated_command(task_class: TaskClass, mode: ControlMode, *, hook: bool = False,
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
    if hook:
        return CommandTemplate(value=HOOK_COMMAND, **kept)
    return CommandTemplate(value=BASIC_COMMAND[0], arguments=BASIC_COMMAND[1:], **kept)


def emulate_task_class(task_class: TaskClass, *, hook: bool = False,
                       python: str | None = None) -> TaskClass:
    """A copy of `task_class` whose command is its mode's emulator (the original is untouched);
    `hook` when the role running it has a trigger."""
    return replace(task_class, control_mode=emulated_mode(task_class.control_mode),
                   command=emulated_command(task_class, task_class.control_mode, hook=hook,
                                            python=python))


def emulate_workflow(workflow: Workflow, *, python: str | None = None) -> Workflow:
    """Every task role of `workflow` given its class's emulated copy; returns the workflow.

    A loaded Workflow belongs to the one environment that loaded it, so its roles
    are updated in place; the classes they pointed at are shared and left as they
    were. One copy is made per class and use (as a hook or not), however many roles load it.
    """
    # (id, hook) → (original kept alive, copy)
    copies: dict[tuple[int, bool], tuple[TaskClass, TaskClass]] = {}
    for role in workflow.task_roles():
        original = role.task_class
        if original is None:
            continue
        key = (id(original), role.trigger is not None)
        if key not in copies:
            copies[key] = (original, emulate_task_class(original, hook=key[1], python=python))
        role.task_class = copies[key][1]
    return workflow

