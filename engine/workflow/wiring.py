"""Which channel each task's connect reaches, checked on a loaded workflow.

At CONFIGURE AliECS builds the environment's bind map (`<task role path>:<channel>`
and `::<global alias>` for every bound channel) and matches each connect target
against it; an unmatched target fails the task (reference §4.1, §7.3). The
same matching, done on the role tree with stand-in endpoints, tells a dry run
(and the engine, before it deploys anything) whether every target resolves.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace

from engine.task.channels import (BindMap, Endpoint, InboundChannel,
                                  OutboundChannel, local_bind_map, merge_channels,
                                  resolve_connect_target)
from engine.task.errors import ChannelError
from engine.templates.render import Renderer, TemplateError, Where
from engine.workflow.roles import TaskRole, Workflow, WorkflowError

_FIRST_STAND_IN_PORT = 9000  # AliECS's data ports start here


@dataclass(frozen=True)
class ChannelLink:
    """One connect channel of a task and the bind it reaches."""

    role_path: str  # the connecting task role
    channel: str
    target: str  # as written (rendered): path:channel, ::alias or an address
    endpoint: str  # the stand-in address it resolved to (tcp://<host>:<port> or ipc://…)


def task_channels(role: TaskRole) -> tuple[list[InboundChannel], list[OutboundChannel]]:
    """A task's channels: its role's (inherited down the tree) over its class's of the same
    name."""
    task_class = role.task_class
    class_bind = task_class.bind if task_class is not None else ()
    class_connect = task_class.connect if task_class is not None else ()
    return (merge_channels(role.collected_bind(), class_bind),
            merge_channels(role.collected_connect(), class_connect))


def _host(role: TaskRole) -> str:
    for constraint in role.constraints:
        if constraint.attribute == "machine_id" and constraint.value:
            return constraint.value
    return "localhost"


def _rendered_aliases(role: TaskRole, channels: list[InboundChannel],
                      renderer: Renderer) -> list[InboundChannel]:
    """Class bind aliases may be templates (`readout-proxy-{{ it }}`); render them with the
    role's stack."""
    out = []
    for channel in channels:
        if "{{" in channel.global_alias:
            where = Where(file=role.task_class.origin if role.task_class else role.origin,
                          role_path=role.path, field=f"bind {channel.name} global")
            try:
                channel = replace(channel, global_alias=renderer.render(
                    channel.global_alias, role.stack, where))
            except TemplateError as error:
                raise WorkflowError(str(error)) from None
        out.append(channel)
    return out


def task_binds(role: TaskRole, renderer: Renderer) -> list[InboundChannel]:
    """A task's inbound channels as it binds them: role over class, global aliases rendered."""
    return _rendered_aliases(role, task_channels(role)[0], renderer)


def link_channels(workflow: Workflow, renderer: Renderer) -> list[ChannelLink]:
    """Every task's connect channels matched against every task's binds.

    Raises WorkflowError naming the role, channel and target when a target
    matches no bind (listing the nearest binds), or when a global alias is
    bound twice.
    """
    ports: Iterator[int] = itertools.count(_FIRST_STAND_IN_PORT)
    binds = BindMap()
    outbound: list[tuple[TaskRole, list[OutboundChannel]]] = []
    for role in workflow.task_roles():
        inbound, connect = task_channels(role)
        inbound = _rendered_aliases(role, inbound, renderer)
        try:
            local = local_bind_map(inbound, lambda _channel: next(ports))
            binds.add_task(role.path, _host(role), local)
        except ChannelError as error:
            raise WorkflowError(f"{role.origin}: role {role.path}: {error}") from None
        outbound.append((role, connect))
    links = []
    for role, connect in outbound:
        for channel in connect:
            try:
                endpoint: Endpoint = resolve_connect_target(channel.target, role.path, binds,
                                                            channel.transport)
            except ChannelError as error:
                raise WorkflowError(f"{role.origin}: role {role.path}: connect channel "
                                    f"{channel.name}: {error}") from None
            links.append(ChannelLink(role.path, channel.name, channel.target, endpoint.address))
    return links
