"""Which kind of task a TaskCommandInfo makes, by its control mode."""
from __future__ import annotations

from pathlib import Path

from executor.basic_task import BasicTask
from executor.command import CommandError, TaskCommand
from executor.controlled_task import ControlledTask, ControlTimings
from executor.controlmode import ControlMode
from executor.hook_task import HookTask
from executor.plumbing import DEFAULT_FMQ_PLUGIN
from executor.reports import ReportFn, TaskIdentity
from executor.task import Task


def make_task(identity: TaskIdentity, command: TaskCommand, report: ReportFn, *,
              log_path: Path | None = None, timings: ControlTimings = ControlTimings(),
              hostname: str | None = None, plugin_search_path: str | None = None,
              fmq_plugin: str = DEFAULT_FMQ_PLUGIN) -> Task:
    """basic → BasicTask, hook → HookTask, direct and fairmq → ControlledTask.

    The kubectl and kubernetes modes run outside this executor (AliECS hands
    them to kubectl or its operator): refused with a CommandError.
    """
    mode = command.control_mode
    if mode is ControlMode.BASIC:
        return BasicTask(identity, command, report, log_path=log_path)
    if mode is ControlMode.HOOK:
        return HookTask(identity, command, report, log_path=log_path)
    if mode in (ControlMode.DIRECT, ControlMode.FAIRMQ):
        return ControlledTask(identity, command, report, log_path=log_path, timings=timings,
                              hostname=hostname, plugin_search_path=plugin_search_path,
                              fmq_plugin=fmq_plugin)
    raise CommandError(f"controlMode {mode} is not run by this executor "
                       f"(only direct, fairmq, basic and hook)")
