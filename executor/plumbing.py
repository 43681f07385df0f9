"""The control-port plumbing AliECS's core adds to a controlled task's command.

AliECS does this in the core (scheduler.go makeTaskForMesosResources) before
the command reaches the executor; nutshell's controlled tasks apply it at
launch, so a TaskCommandInfo written by hand or by AliECS both work.
"""
from __future__ import annotations

import os
import socket
from dataclasses import replace

from executor.command import CommandError, TaskCommand
from executor.controlmode import ControlMode

DEFAULT_FMQ_PLUGIN = "OCClite"
# FAIRMQ and KUBECTL_FAIRMQ devices get the port as an option; KUBERNETES_FAIRMQ does not.
_PORT_OPTION_MODES = (ControlMode.FAIRMQ, ControlMode.KUBECTL_FAIRMQ)


def default_plugin_search_path() -> str:
    """AliECS's default `$CONTROL_OCCPLUGIN_ROOT/lib/`, resolved here (no shell may run)."""
    return f"{os.environ.get('CONTROL_OCCPLUGIN_ROOT', '')}/lib/"


def _has_option(command: TaskCommand, option: str) -> bool:
    """Whether `option` is already given, as its own word or as `option=value`."""
    words = [*command.value.split(), *command.arguments]
    if command.shell:
        words = [w for item in words for w in item.split()]
    return any(w == option or w.startswith(f"{option}=") for w in words)


def control_plumbing(command: TaskCommand, task_id: str, *, hostname: str | None = None,
                     plugin_search_path: str | None = None,
                     fmq_plugin: str = DEFAULT_FMQ_PLUGIN) -> TaskCommand:
    """`command` with what a controlled task needs to be reached (§2.6).

    Env OCC_CONTROL_PORT for every controlled mode, O2_ROLE (the host name) and
    O2_SYSTEM=FLP unless the command sets them. FairMQ modes also get
    `--control-port`, `--id <task id>`, `-S <plugin path>`, `-P <plugin>` and
    `--color false`. AliECS skips only an existing `--id`; we skip each option
    the command already gives, since FairMQ refuses an option given twice.
    Basic and hook commands come back unchanged.
    """
    mode = command.control_mode
    if mode in (ControlMode.BASIC, ControlMode.HOOK):
        return command
    if not command.control_port:
        raise CommandError(f"controlPort is 0: a {mode} task needs a control port")
    port = str(command.control_port)
    env = list(command.env)
    user_env = command.environment
    env.append(f"OCC_CONTROL_PORT={port}")
    if "O2_ROLE" not in user_env:
        env.append(f"O2_ROLE={hostname or socket.gethostname()}")
    if "O2_SYSTEM" not in user_env:
        env.append("O2_SYSTEM=FLP")

    extra: list[str] = []

    def add(option: str, value: str) -> None:
        if not _has_option(command, option):
            extra.extend((option, value))

    if mode in _PORT_OPTION_MODES:
        add("--control-port", port)
    if mode.uses_fairmq:
        add("--id", task_id)
        add("-S", plugin_search_path if plugin_search_path is not None
            else default_plugin_search_path())
        add("-P", fmq_plugin)
        add("--color", "false")
    return replace(command, env=tuple(env), arguments=(*command.arguments, *extra))
