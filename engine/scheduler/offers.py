"""Records of scheduling: what an agent offers, what a task wants, where it went.

Both scheduler backends (local agents and Mesos) turn their agents into
`Offer`s and their task roles into `TaskDescriptor`s, and read `Placement`s
back; the matching itself (matching.py) never knows which backend it serves
(AliECS core/task, reference §7.2).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from engine.task.channels import GLOBAL_PREFIX, Addressing, Endpoint, InboundChannel
from engine.task.taskclass import Constraint, PortRange, Wants
from executor.controlmode import ControlMode

MACHINE_ID = "machine_id"
DATA_PORT_FLOOR = 9000
CONTROL_PORT_FLOOR = 30000


def needs_control_port(mode: ControlMode) -> bool:
    """Basic and hook tasks are plain commands with no OCC endpoint, so no control port."""
    return mode not in (ControlMode.BASIC, ControlMode.HOOK)


def normalize_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping or adjacent ranges merged, so ranges compare by content."""
    merged: list[PortRange] = []
    for current in sorted(ranges, key=lambda r: (r.begin, r.end)):
        if merged and current.begin <= merged[-1].end + 1:
            if current.end > merged[-1].end:
                merged[-1] = PortRange(merged[-1].begin, current.end)
        else:
            merged.append(current)
    return tuple(merged)


def ranges_from_ports(ports: Iterable[int]) -> tuple[PortRange, ...]:
    """The fewest inclusive ranges covering exactly `ports`."""
    return normalize_ranges(PortRange(port, port) for port in set(ports))


def ranges_without(ranges: Iterable[PortRange], ports: Iterable[int]) -> tuple[PortRange, ...]:
    """`ranges` minus the single `ports`, without expanding the ranges port by port."""
    result: list[PortRange] = []
    taken = sorted(set(ports))
    for current in normalize_ranges(ranges):
        begin = current.begin
        for port in taken:
            if port < begin or port > current.end:
                continue
            if port > begin:
                result.append(PortRange(begin, port - 1))
            begin = port + 1
        if begin <= current.end:
            result.append(PortRange(begin, current.end))
    return tuple(result)


def format_ranges(ranges: Iterable[PortRange]) -> str:
    """`9000-9999,30000-30999`: the template's `wants.ports` notation."""
    return ",".join(str(r.begin) if r.begin == r.end else f"{r.begin}-{r.end}" for r in ranges)


def format_amount(value: float) -> str:
    """A resource amount as people read it: 2.0, 1.5, 0.15 (no float noise)."""
    return str(round(float(value), 6))


@dataclass(frozen=True)
class Offer:
    """What one agent can give right now.

    `attributes` are the agent's text attributes; `machine_id` is required,
    as AliECS requires it of every Mesos offer. `ports` are inclusive ranges
    (PortRange or (begin, end) pairs), kept sorted and merged. `executor_ids`
    are executors already running there: the first is reused (one executor
    per agent).
    """

    agent_id: str
    hostname: str
    attributes: Mapping[str, str]
    cpus: float
    mem: float
    ports: tuple[PortRange, ...] = ()
    executor_ids: tuple[str, ...] = ()
    offer_id: str = ""

    def __post_init__(self) -> None:
        if not str(self.attributes.get(MACHINE_ID, "")).strip():
            raise ValueError(f"offer from agent {self.agent_id} ({self.hostname}) has no "
                             f"{MACHINE_ID} attribute; every agent must declare one")
        object.__setattr__(self, "attributes", MappingProxyType(
            {str(k): str(v) for k, v in self.attributes.items()}))
        object.__setattr__(self, "ports", normalize_ranges(
            r if isinstance(r, PortRange) else PortRange(*r) for r in self.ports))
        object.__setattr__(self, "executor_ids", tuple(self.executor_ids))

    @property
    def machine_id(self) -> str:
        return self.attributes[MACHINE_ID]


@dataclass(frozen=True)
class TaskDescriptor:
    """A task to place: what its role and class ask of an agent.

    `constraints` are the role's merged constraints (child over parent);
    `binds` are its inbound channels with templates rendered. Channels with an
    explicit target need nothing from the agent; the others need a TCP port or
    an IPC name. `needs_control_port` is false for basic and hook tasks, which
    have no OCC endpoint.
    """

    role_path: str
    task_class: str
    wants: Wants
    critical: bool = True
    constraints: tuple[Constraint, ...] = ()
    binds: tuple[InboundChannel, ...] = ()
    needs_control_port: bool = True
    detector: str = ""
    environment_id: str = ""

    @property
    def tcp_channels(self) -> tuple[str, ...]:
        """Names of the inbound channels that need a port from the agent."""
        return tuple(c.name for c in self.binds
                     if not c.target and c.addressing is Addressing.TCP)

    @property
    def ipc_channels(self) -> tuple[str, ...]:
        """Names of the inbound channels that get an `ipc://@o2ipc-<id>` endpoint."""
        return tuple(c.name for c in self.binds
                     if not c.target and c.addressing is Addressing.IPC)

    @property
    def global_aliases(self) -> dict[str, str]:
        """`::<alias>` → channel name, for the binds published under a global alias."""
        return {GLOBAL_PREFIX + c.global_alias: c.name for c in self.binds if c.global_alias}

    @property
    def static_ports(self) -> tuple[PortRange, ...]:
        return normalize_ranges(self.wants.port_ranges)


@dataclass(frozen=True)
class ResourceUse:
    """What a placed task holds on its agent; a backend subtracts it from the next offer."""

    cpus: float = 0.0
    mem: float = 0.0
    ports: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Placement:
    """A descriptor accepted on an offer, with the ports and endpoints it was given.

    `endpoints` are by channel name (TCP on every interface, `tcp://*:<port>`);
    `global_aliases` are the same endpoints by `::<alias>`. `executor_id` is the
    agent's running executor to reuse, or None when the backend must start one.
    """

    descriptor: TaskDescriptor
    offer: Offer
    control_port: int | None
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    global_aliases: Mapping[str, Endpoint] = field(default_factory=dict)
    static_ports: tuple[int, ...] = ()
    channel_ports: tuple[int, ...] = ()

    @property
    def agent_id(self) -> str:
        return self.offer.agent_id

    @property
    def hostname(self) -> str:
        return self.offer.hostname

    @property
    def executor_id(self) -> str | None:
        return self.offer.executor_ids[0] if self.offer.executor_ids else None

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the task holds: static, channel and control ports, ascending."""
        held = {*self.static_ports, *self.channel_ports}
        if self.control_port is not None:
            held.add(self.control_port)
        return tuple(sorted(held))

    def local_bind_map(self) -> dict[str, Endpoint]:
        """Channel name and `::<alias>` → endpoint, the form `BindMap.add_task` takes."""
        return {**self.endpoints, **self.global_aliases}

    def use(self) -> ResourceUse:
        return ResourceUse(self.descriptor.wants.cpu, self.descriptor.wants.memory,
                           frozenset(self.ports))


@dataclass(frozen=True)
class Unplaced:
    """A descriptor not placed, and why, in words that name its role."""

    descriptor: TaskDescriptor
    reason: str


@dataclass(frozen=True)
class MatchResult:
    """AliECS's {deployed, undeployed, undeployable}.

    Undeployable: no offer satisfies the descriptor's constraints (no agent
    with its machine_id, or every agent fails a constraint); retrying with the
    same agents cannot help. Undeployed: some agent satisfies the constraints
    but has not enough resources left; a later attempt may succeed.
    """

    deployed: tuple[Placement, ...] = ()
    undeployed: tuple[Unplaced, ...] = ()
    undeployable: tuple[Unplaced, ...] = ()

    @property
    def failed_critical(self) -> tuple[Unplaced, ...]:
        """The descriptors that fail DEPLOY: only critical ones count (reference §4.1)."""
        return tuple(u for u in (*self.undeployable, *self.undeployed) if u.descriptor.critical)

    @property
    def ok(self) -> bool:
        return not self.failed_critical

    def placements_on(self, agent_id: str) -> tuple[Placement, ...]:
        """The placements of one agent, in match order (one launch per agent)."""
        return tuple(p for p in self.deployed if p.agent_id == agent_id)
