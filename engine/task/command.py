"""The command one task runs, built at deploy time from its class and its role's variables.

AliECS's Task.BuildTaskCommand (reference §4.5, task level): the role's
consolidated stack, the task's special variables over it, the class defaults
and then the class vars templated and put UNDER that stack (anything from the
workflow or the user wins), then the command fields templated with the result.
The control-port plumbing (OCC_CONTROL_PORT, --control-port, --id, -S, -P,
--color) is added by the executor at launch (executor/plumbing.py), not here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from engine.task.errors import TaskBuildError, describe
from engine.task.taskclass import TaskClass
from executor.command import CommandError, OutputMode, TaskCommand
from executor.controlmode import ControlMode

# How many times a value that renders to more templates is rendered again
# (`_module_cmdline` needs 2); past this the values are taken to refer to each other.
MAX_RENDER_DEPTH = 10
_OUTPUT_MODES = ("none", "stdout", "all")


class Renderer(Protocol):
    """engine.templates.render.Renderer, as far as task building uses it."""

    def render(self, text: str, stack: Mapping[str, Any], where: Any) -> str: ...


@dataclass(frozen=True)
class TaskSpecials:
    """The per-task variables AliECS lays over the role's stack (buildSpecialVarStack)."""

    task_name: str
    task_id: str
    task_class_name: str
    task_hostname: str
    environment_id: str
    task_parent_role: str

    def as_dict(self) -> dict[str, str]:
        return {
            "task_name": self.task_name,
            "task_id": self.task_id,
            "task_class_name": self.task_class_name,
            "task_hostname": self.task_hostname,
            "environment_id": self.environment_id,
            "task_parent_role": self.task_parent_role,
        }


def class_where(task_class: TaskClass, where: Any, field: str) -> Any:
    """`where` pointed at a field of the task template (its repo and file, the role's path)."""
    return replace(where, repo=task_class.repo or where.repo,
                   file=f"{task_class.path}@{task_class.commit}" if task_class.commit
                   else task_class.path, field=field)


def render_stable(renderer: Renderer, text: str, stack: Mapping[str, Any], where: Any) -> str:
    """`text` rendered, and rendered again while the result still holds `{{ }}` tags.

    A variable may hold a template (`_module_cmdline` holds `{{ modulepath }}`);
    AliECS renders one level, which works only because class defaults are
    rendered first. Rendering to a fixed point covers every order. Values that
    come back around are a cycle and fail, naming the chain.
    """
    value = renderer.render(text, stack, where)
    if "{{" not in value:
        return value
    chain = [text, value]
    while "{{" in value:
        if len(chain) > MAX_RENDER_DEPTH:
            raise TaskBuildError(f"{describe(where)}: still a template after {MAX_RENDER_DEPTH} "
                                 f"renderings; variables refer to each other: "
                                 f"{_show_chain(chain)}")
        value = renderer.render(value, stack, where)
        if value in chain:
            raise TaskBuildError(f"{describe(where)}: variables refer to each other in a cycle: "
                                 f"{_show_chain([*chain, value])}")
        chain.append(value)
    return value


def _show_chain(chain: list[str], width: int = 80) -> str:
    def short(text: str) -> str:
        text = " ".join(text.split())
        return repr(text if len(text) <= width else text[: width - 1] + "…")

    return " → ".join(short(item) for item in chain)


def render_layer(renderer: Renderer, layer: Mapping[str, str], stack: Mapping[str, str],
                 task_class: TaskClass, where: Any, section: str) -> dict[str, str]:
    """Each value of a class defaults/vars layer rendered against `stack`.

    The layer's own raw values sit under `stack` while rendering, so a class
    default may use another class default (roc-config-args' `_module_cmdline`
    uses `rocConfigLinks` and eighteen more) while the role's values still win.
    """
    if not layer:
        return {}
    lookup = {**layer, **stack}
    return {key: render_stable(renderer, value, lookup,
                               class_where(task_class, where, f"{section}.{key}"))
            for key, value in layer.items()}


def task_stack(task_class: TaskClass, role_stack: Mapping[str, str], specials: TaskSpecials,
               renderer: Renderer, where: Any) -> dict[str, str]:
    """The variables a task's command is rendered with (§4.5 task level, steps 1-4).

    Role stack, specials over it; class defaults rendered and put under it;
    class vars rendered with that and put under it again. So a class default
    beats a class var of the same name, as in AliECS.
    """
    stack = {**role_stack, **specials.as_dict()}
    defaults = render_layer(renderer, task_class.defaults, stack, task_class, where, "defaults")
    stack = {**defaults, **stack}
    class_vars = render_layer(renderer, task_class.vars, stack, task_class, where, "vars")
    return {**class_vars, **stack}


def _output_mode(renderer: Renderer, template: str | None, stack: Mapping[str, str],
                 task_class: TaskClass, where: Any, field: str) -> OutputMode:
    if template is None:
        return OutputMode.NONE
    field_where = class_where(task_class, where, field)
    text = render_stable(renderer, template, stack, field_where).strip().lower()
    if text not in _OUTPUT_MODES:
        raise TaskBuildError(f"{describe(field_where)}: {template!r} gives {text!r}; "
                             f"allowed: none, stdout, all")
    return OutputMode(text)


def build_task_command(task_class: TaskClass, role_stack: Mapping[str, str],
                       specials: TaskSpecials, renderer: Renderer, control_port: int | None,
                       where: Any, *, hook: bool = False, timeout_ns: int = 0) -> TaskCommand:
    """The TaskCommand of one task (§4.5 task level, steps 1-6).

    `role_stack` is the task role's consolidated variables; `where` names the
    role (its repo, file and path) for messages. `hook` makes a basic class a
    hook (its role has a trigger); `timeout_ns` is the role's timeout.
    AliECS templates only basic, hook, direct and fairmq commands; we template
    every mode's, since an unrendered `{{ }}` is never what a command means.
    """
    stack = task_stack(task_class, role_stack, specials, renderer, where)
    template = task_class.command

    def render(text: str, field: str) -> str:
        return render_stable(renderer, text, stack, class_where(task_class, where, field))

    mode = task_class.control_mode
    if hook:
        if mode is not ControlMode.BASIC:
            raise TaskBuildError(f"{describe(where)}: only a basic task class can be a hook "
                                 f"(a task role with a trigger); {task_class.identifier} is {mode}")
        mode = ControlMode.HOOK
    fields = {
        "value": render(template.value, "command.value"),
        "user": render(template.user, "command.user").strip(),
        "env": tuple(render(entry, f"command.env[{i}]") for i, entry in enumerate(template.env)),
        "arguments": tuple(render(argument, f"command.arguments[{i}]")
                           for i, argument in enumerate(template.arguments)),
    }
    try:
        return TaskCommand(
            **fields,
            shell=template.shell,
            stdout=_output_mode(renderer, template.stdout, stack, task_class, where,
                                "command.stdout"),
            stderr=_output_mode(renderer, template.stderr, stack, task_class, where,
                                "command.stderr"),
            control_port=control_port or 0,
            control_mode=mode,
            timeout_ns=timeout_ns,
        )
    except CommandError as error:
        raise TaskBuildError(f"{describe(class_where(task_class, where, 'command'))}: "
                             f"{error}") from None
