"""The property map a task receives with CONFIGURE.

AliECS's Task.BuildPropertyMap (reference §4.5, properties): `environment_id`,
the class properties, `orbit-reset-time` when `pdp_override_run_start_time` is
set, and for controlled tasks the FairMQ `chans.*` keys of every bind and
connect channel (§7.3); then every value is templated, and `ToPtree(payload,
syntax)` results become `__ptree__:<syntax>:<key>` keys. Basic and hook tasks
get no properties. (AliECS adds channel keys for direct and fairmq classes
only; here every controlled mode gets them, the kubectl/kubernetes ones too.)
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from engine.task.channels import (Endpoint, InboundChannel, OutboundChannel, inbound_properties,
                                  merge_channels, outbound_properties)
from engine.task.command import Renderer, TaskSpecials, class_where, render_stable
from engine.task.errors import ChannelError, TaskBuildError, describe
from engine.task.taskclass import TaskClass
from executor.controlmode import ControlMode
from occlib.arguments import PTREE_PREFIX

log = logging.getLogger("engine.task")

PTREE_SYNTAXES = ("ini", "json", "xml")
_NO_PROPERTIES = (ControlMode.BASIC, ControlMode.HOOK)


class _PtreeCollector:
    """`ToPtree(payload, syntax)` for one property map: keeps the payload aside and
    returns a placeholder; the key whose value is the placeholder is renamed after
    rendering. A bad syntax stores a JSON error payload, as AliECS does."""

    def __init__(self) -> None:
        self.payloads: dict[str, tuple[str, str]] = {}

    def __call__(self, payload: Any, syntax: Any) -> str:
        text = "" if payload is None else str(payload)
        kind = str(syntax).strip().lower()
        if kind not in PTREE_SYNTAXES:
            log.warning("ToPtree syntax %r is not one of ini, json, xml", syntax)
            text = json.dumps({"error": "bad ToPtree syntax argument, allowed values: "
                                        "ini, json, xml"})
            kind = "json"
        placeholder = f"{PTREE_PREFIX}{kind}:{uuid.uuid4().hex}"
        self.payloads[placeholder] = (kind, text)
        return placeholder

    def apply(self, properties: dict[str, str]) -> dict[str, str]:
        """Keys whose value is a placeholder become `__ptree__:<syntax>:<key>` = payload."""
        if not self.payloads:
            return properties
        result: dict[str, str] = {}
        for key, value in properties.items():
            stored = self.payloads.get(value)
            if stored is None:
                result[key] = value
            else:
                kind, payload = stored
                result[f"{PTREE_PREFIX}{kind}:{key}"] = payload
        return result


def property_stack(task_class: TaskClass, role_stack: Mapping[str, str],
                   specials: TaskSpecials) -> dict[str, str]:
    """Role stack over (class vars over class defaults), specials over everything (§4.5).

    Unlike the command's stack, the class layers are used unrendered here, as
    AliECS does; values holding templates are rendered when a property uses them.
    """
    return {**task_class.defaults, **task_class.vars, **role_stack, **specials.as_dict()}


def channel_properties(task_class: TaskClass, role_path: str, inbound: Mapping[str, Endpoint],
                       outbound: Mapping[str, Endpoint], where: Any, *,
                       role_bind: Sequence[InboundChannel] = (),
                       role_connect: Sequence[OutboundChannel] = ()) -> dict[str, str]:
    """The `chans.*` keys of a task: its role's channels, then its class's others.

    `inbound` is the task's own endpoints by channel name; `outbound` the
    environment's bind map that connect targets are matched against.
    """
    keys: dict[str, str] = {}
    for bind in merge_channels(role_bind, task_class.bind):
        try:
            keys.update(inbound_properties(bind, inbound))
        except ChannelError as error:
            raise TaskBuildError(f"{describe(where)}: {error}") from None
    for connect in merge_channels(role_connect, task_class.connect):
        try:
            keys.update(outbound_properties(connect, role_path, outbound))
        except ChannelError as error:   # its message names the role already
            raise TaskBuildError(f"{describe(replace(where, role_path='', field=''))}: "
                                 f"{error}") from None
    return keys


def build_property_map(task_class: TaskClass, role_stack: Mapping[str, str],
                       specials: TaskSpecials, renderer: Renderer,
                       inbound: Mapping[str, Endpoint], outbound: Mapping[str, Endpoint],
                       where: Any, *, role_bind: Sequence[InboundChannel] = (),
                       role_connect: Sequence[OutboundChannel] = ()) -> dict[str, str]:
    """The CONFIGURE arguments of one task (§4.5 BuildPropertyMap, §7.3).

    `role_stack` is the task role's consolidated variables; `inbound` the task's
    endpoints by bind channel name (its local bind map); `outbound` the
    environment's bind map; `role_bind`/`role_connect` the role's channels
    (a role channel replaces the class channel of the same name). The role's
    connect targets and the aliases must already be rendered (STAGE5). A basic
    class gets nothing, whether its role makes it a hook or not.
    """
    if task_class.control_mode in _NO_PROPERTIES:
        return {}
    stack: dict[str, Any] = property_stack(task_class, role_stack, specials)
    properties: dict[str, str] = {"environment_id": specials.environment_id}
    properties.update(task_class.properties)
    if "pdp_override_run_start_time" in stack:
        properties["orbit-reset-time"] = stack["pdp_override_run_start_time"]
    properties.update(channel_properties(task_class, specials.task_parent_role, inbound, outbound,
                                         where, role_bind=role_bind, role_connect=role_connect))

    ptree = _PtreeCollector()
    stack["ToPtree"] = ptree
    rendered = {}
    for key, value in properties.items():
        # Class properties come from the task template; the channel keys' templates
        # (rateLogging) from the template that declared the channel, named by its key.
        field_where = (class_where(task_class, where, f"properties.{key}")
                       if key in task_class.properties else replace(where, field=key))
        rendered[key] = render_stable(renderer, value, stack, field_where)
    return ptree.apply(rendered)
