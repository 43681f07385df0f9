"""Offer matching: which agent runs each task, on which ports.

The one matching core of both scheduler backends (reference §7.2, AliECS
`resourceOffers`). Pure and synchronous: given descriptors and offers it
returns a `MatchResult`, in a stable order (descriptors in order, each on the
first offer, in order, that fits), so a deploy can be retried and tested.

Per descriptor:
1. A `machine_id` constraint pre-matches it to the offers with that
   machine_id; with none it is undeployable ("no resource offer for required
   host …").
2. Every constraint must hold (constraints.py).
3. Resources left on the offer: cpus, mem (MB), static ports, one port
   ≥ 9000 per TCP inbound channel and a control port ≥ 30000 when the task
   has an OCC endpoint. Several tasks share an offer; each one placed
   consumes its share, so the next sees what is left.
Each TCP channel gets the lowest free offered port ≥ 9000, then the control
port the lowest free one ≥ 30000; IPC channels get `ipc://@o2ipc-<id>`.

Where we do better: AliECS counts only channel ports against the offer and
may then find no control port; here the control port is part of the check,
and every refusal says which resource or constraint was short, on which agent.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from engine.scheduler.constraints import explain_unmet, unmet_constraint
from engine.scheduler.offers import (CONTROL_PORT_FLOOR, DATA_PORT_FLOOR, MACHINE_ID, MatchResult,
                                     Offer, Placement, TaskDescriptor, Unplaced, format_amount,
                                     format_ranges)
from engine.task.channels import GLOBAL_PREFIX, Addressing, Endpoint, new_ipc_id
from engine.task.errors import ChannelError

EPSILON = 1e-9
REASONS_SHOWN = 4


@dataclass
class _Slot:
    """One offer during a match: what is left of it."""

    offer: Offer
    cpus: float
    mem: float
    taken: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, offer: Offer) -> _Slot:
        return cls(offer, float(offer.cpus), float(offer.mem))

    @property
    def agent(self) -> str:
        return self.offer.machine_id

    def offers_port(self, port: int) -> bool:
        return any(r.begin <= port <= r.end for r in self.offer.ports)

    def lowest_free(self, floor: int, count: int, also_taken: set[int]) -> list[int]:
        """Up to `count` lowest offered ports ≥ `floor` not yet taken."""
        found: list[int] = []
        for current in self.offer.ports:
            port = max(current.begin, floor)
            while port <= current.end and len(found) < count:
                if port not in self.taken and port not in also_taken:
                    found.append(port)
                port += 1
            if len(found) == count:
                break
        return found

    def free_count(self, floor: int, also_taken: set[int]) -> int:
        total = sum(r.end - max(r.begin, floor) + 1 for r in self.offer.ports if r.end >= floor)
        return total - sum(1 for p in self.taken | also_taken if p >= floor and self.offers_port(p))


@dataclass(frozen=True)
class _Fit:
    static_ports: tuple[int, ...]
    channel_ports: tuple[int, ...]
    control_port: int | None


def _fit(descriptor: TaskDescriptor, slot: _Slot) -> _Fit | str:
    """The ports the descriptor would get on the slot, or why it does not fit."""
    wants = descriptor.wants
    if slot.cpus + EPSILON < wants.cpu:
        return (f"needs {format_amount(wants.cpu)} cpus, agent {slot.agent} has "
                f"{format_amount(max(slot.cpus, 0.0))} left")
    if slot.mem + EPSILON < wants.memory:
        return (f"needs {format_amount(wants.memory)} MB memory, agent {slot.agent} has "
                f"{format_amount(max(slot.mem, 0.0))} MB left")
    static: list[int] = []
    for wanted in descriptor.static_ports:
        for port in range(wanted.begin, wanted.end + 1):
            if not slot.offers_port(port):
                return (f"needs static ports {format_ranges(descriptor.static_ports)}, agent "
                        f"{slot.agent} does not offer port {port} "
                        f"(it offers {format_ranges(slot.offer.ports) or 'no ports'})")
            if port in slot.taken:
                return (f"needs static ports {format_ranges(descriptor.static_ports)}, port "
                        f"{port} of agent {slot.agent} is already taken")
            static.append(port)
    reserved = set(static)
    wanted_channels = len(descriptor.tcp_channels)
    channel_ports = slot.lowest_free(DATA_PORT_FLOOR, wanted_channels, reserved)
    if len(channel_ports) < wanted_channels:
        return (f"needs {wanted_channels} ports ≥ {DATA_PORT_FLOOR} for its TCP channels, agent "
                f"{slot.agent} has {slot.free_count(DATA_PORT_FLOOR, reserved)} left")
    reserved.update(channel_ports)
    control_port: int | None = None
    if descriptor.needs_control_port:
        control = slot.lowest_free(CONTROL_PORT_FLOOR, 1, reserved)
        if not control:
            return (f"needs a control port ≥ {CONTROL_PORT_FLOOR}, agent {slot.agent} has "
                    "none left")
        control_port = control[0]
    return _Fit(tuple(static), tuple(channel_ports), control_port)


def _place(descriptor: TaskDescriptor, slot: _Slot, fit: _Fit,
           new_id: Callable[[], str]) -> Placement:
    """Consume the fit's resources on the slot and build the placement's endpoints."""
    slot.cpus -= descriptor.wants.cpu
    slot.mem -= descriptor.wants.memory
    slot.taken.update(fit.static_ports, fit.channel_ports)
    if fit.control_port is not None:
        slot.taken.add(fit.control_port)
    endpoints: dict[str, Endpoint] = {}
    tcp_ports = iter(fit.channel_ports)
    for channel in descriptor.binds:
        if channel.target:
            endpoints[channel.name] = Endpoint.parse(
                channel.target, channel.transport,
                f"role {descriptor.role_path}: bind channel {channel.name} target")
        elif channel.addressing is Addressing.IPC:
            endpoints[channel.name] = Endpoint.new_ipc(channel.transport, new_id())
        else:
            endpoints[channel.name] = Endpoint.tcp(next(tcp_ports), channel.transport)
    aliases = {GLOBAL_PREFIX + c.global_alias: endpoints[c.name]
               for c in descriptor.binds if c.global_alias}
    return Placement(descriptor, slot.offer, fit.control_port, endpoints, aliases,
                     fit.static_ports, fit.channel_ports)


def _explicit_target_error(descriptor: TaskDescriptor) -> str | None:
    """An explicit bind target that is no address makes the task unplaceable anywhere."""
    for channel in descriptor.binds:
        if channel.target:
            try:
                Endpoint.parse(channel.target, channel.transport,
                               f"bind channel {channel.name} target")
            except ChannelError as error:
                return str(error)
    return None


def _summary(descriptor: TaskDescriptor, reasons: Sequence[str]) -> str:
    shown = list(reasons[:REASONS_SHOWN])
    if len(reasons) > REASONS_SHOWN:
        shown.append(f"and {len(reasons) - REASONS_SHOWN} more agents")
    return f"role {descriptor.role_path}: " + "; ".join(shown)


def match(descriptors: Iterable[TaskDescriptor], offers: Iterable[Offer], *,
          new_id: Callable[[], str] = new_ipc_id) -> MatchResult:
    """Place each descriptor on the first offer, in order, that satisfies it.

    `new_id` names IPC endpoints (tests pass a counter for stable names).
    """
    slots = [_Slot.of(offer) for offer in offers]
    deployed: list[Placement] = []
    undeployed: list[Unplaced] = []
    undeployable: list[Unplaced] = []
    for descriptor in descriptors:
        target_error = _explicit_target_error(descriptor)
        if target_error is not None:
            undeployable.append(Unplaced(descriptor, _summary(descriptor, [target_error])))
            continue
        hosts = [c for c in descriptor.constraints if c.attribute == MACHINE_ID]
        candidates = [s for s in slots if unmet_constraint(hosts, s.offer.attributes) is None]
        if hosts and not candidates:
            wanted = ", ".join(dict.fromkeys(c.value for c in hosts))
            undeployable.append(Unplaced(descriptor, _summary(
                descriptor, [f"no resource offer for required host {wanted}"])))
            continue
        if not candidates:
            undeployable.append(Unplaced(descriptor, _summary(
                descriptor, ["no resource offers: no agent is available"])))
            continue
        refused: list[str] = []
        short: list[str] = []
        for slot in candidates:
            unmet = unmet_constraint(descriptor.constraints, slot.offer.attributes)
            if unmet is not None:
                refused.append(explain_unmet(unmet, slot.offer.attributes, slot.agent))
                continue
            fit = _fit(descriptor, slot)
            if isinstance(fit, str):
                short.append(fit)
                continue
            deployed.append(_place(descriptor, slot, fit, new_id))
            break
        else:
            if short:
                undeployed.append(Unplaced(descriptor, _summary(descriptor, short)))
            else:
                undeployable.append(Unplaced(descriptor, _summary(descriptor, refused)))
    return MatchResult(tuple(deployed), tuple(undeployed), tuple(undeployable))
