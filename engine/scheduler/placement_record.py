"""A Placement as plain data, for the store: what a restarted engine must know of a task's place.

The descriptor and the offer are rebuilt from the role and the agent's spec; what
the matching chose (control port, static and channel ports, endpoints by channel
and by global alias) cannot be, so it is kept.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.scheduler.offers import Offer, Placement, TaskDescriptor
from engine.task.channels import Addressing, Endpoint, Transport


class PlacementRecordError(ValueError):
    """A stored placement that cannot be read back; the message names the field."""


def endpoint_to_dict(endpoint: Endpoint) -> dict[str, Any]:
    return {"addressing": endpoint.addressing.value, "transport": endpoint.transport.value,
            "host": endpoint.host, "port": endpoint.port, "path": endpoint.path}


def endpoint_from_dict(data: Mapping[str, Any], where: str) -> Endpoint:
    try:
        return Endpoint(Addressing(str(data["addressing"])), Transport(str(data["transport"])),
                        host=str(data.get("host", "")), port=int(data.get("port", 0)),
                        path=str(data.get("path", "")))
    except (KeyError, TypeError, ValueError) as error:
        raise PlacementRecordError(f"{where}: not an endpoint ({error!r}): "
                                   f"{dict(data)!r}") from None


def placement_to_dict(placement: Placement) -> dict[str, Any]:
    return {
        "control_port": placement.control_port,
        "static_ports": list(placement.static_ports),
        "channel_ports": list(placement.channel_ports),
        "endpoints": {name: endpoint_to_dict(e) for name, e in placement.endpoints.items()},
        "global_aliases": {alias: endpoint_to_dict(e)
                           for alias, e in placement.global_aliases.items()},
    }


def placement_from_dict(data: Mapping[str, Any], descriptor: TaskDescriptor, offer: Offer,
                        where: str) -> Placement:
    """The placement `placement_to_dict` wrote, on the agent's `offer`; `where` names the task."""
    try:
        control = data.get("control_port")
        endpoints = {str(name): endpoint_from_dict(e, f"{where}, endpoint {name}")
                     for name, e in dict(data.get("endpoints") or {}).items()}
        aliases = {str(alias): endpoint_from_dict(e, f"{where}, endpoint {alias}")
                   for alias, e in dict(data.get("global_aliases") or {}).items()}
        return Placement(descriptor=descriptor, offer=offer,
                         control_port=None if control is None else int(control),
                         endpoints=endpoints, global_aliases=aliases,
                         static_ports=tuple(int(p) for p in data.get("static_ports") or ()),
                         channel_ports=tuple(int(p) for p in data.get("channel_ports") or ()))
    except (TypeError, ValueError) as error:
        if isinstance(error, PlacementRecordError):
            raise
        raise PlacementRecordError(f"{where}: damaged placement ({error})") from None
