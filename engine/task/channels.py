"""FairMQ channels: the bind (inbound) and connect (outbound) entries of templates.

A task binds its inbound channels on an endpoint of its own (a TCP port or an
IPC path); the environment's bind map names every such endpoint by
`<task role path>:<channel>` and, for channels with a `global` alias, by
`::<alias>`. A connect target names one of those keys (or is an explicit
address); at CONFIGURE both ends get the `chans.<name>.*` keys of FairMQ
(AliECS core/task/channel, reference §4.1 and §7.3).
"""
from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from engine.task.errors import ChannelError

log = logging.getLogger("engine.task")

TARGET_SEPARATOR = ":"
GLOBAL_PREFIX = "::"
# AliECS names IPC endpoints in the abstract socket namespace: ipc://@o2ipc-<id> (§7.2).
IPC_NAME_FORMAT = "@o2ipc-{}"
DEFAULT_BUF_SIZE = 1000
DEFAULT_RATE_LOGGING = "0"
_EXPLICIT_SCHEMES = ("tcp://", "ipc://")
_INT = re.compile(r"[+-]?\d+")


def new_ipc_id() -> str:
    """A unique id for an IPC name, like AliECS's xid: short, no separators."""
    return uuid.uuid4().hex[:20]


class _LowerEnum(str, Enum):
    """A template keyword; parsed case-insensitively with surrounding quotes dropped, as Go does."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str | None, field: str, context: str, default: "_LowerEnum | None" = None
              ) -> Any:
        word = (text or "").strip().strip('"').strip().lower()
        if not word and default is not None:
            return default
        try:
            return cls(word)
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            shown = repr(text) if text else "nothing"
            raise ChannelError(f"{context}: {field} is {shown}; allowed: {allowed}") from None


class ChannelType(_LowerEnum):
    PUSH = "push"
    PULL = "pull"
    PUB = "pub"
    SUB = "sub"


class Transport(_LowerEnum):
    DEFAULT = "default"
    ZEROMQ = "zeromq"
    NANOMSG = "nanomsg"
    SHMEM = "shmem"


class Addressing(_LowerEnum):
    TCP = "tcp"
    IPC = "ipc"


@dataclass(frozen=True)
class Channel:
    """What both ends of a channel have. `rate_logging` stays text: it may be a template."""

    name: str
    type: ChannelType
    snd_buf_size: int = DEFAULT_BUF_SIZE
    rcv_buf_size: int = DEFAULT_BUF_SIZE
    rate_logging: str = DEFAULT_RATE_LOGGING
    transport: Transport = Transport.DEFAULT
    target: str = ""


@dataclass(frozen=True)
class InboundChannel(Channel):
    """A bind entry. `target` is empty (the engine picks the endpoint) or an explicit
    tcp:// / ipc:// address; `global_alias` also publishes the endpoint as `::<alias>`."""

    addressing: Addressing = Addressing.TCP
    global_alias: str = ""


@dataclass(frozen=True)
class OutboundChannel(Channel):
    """A connect entry; `target` is `path:channel`, `::<global>` or an explicit address."""


# ---------------------------------------------------------------- parsing

def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _buf_size(entry: Mapping[str, Any], key: str, context: str) -> int:
    text = _text(entry.get(key)).strip()
    if not text:
        return DEFAULT_BUF_SIZE
    if not _INT.fullmatch(text):
        raise ChannelError(f"{context}: {key} must be an integer, not {text!r}")
    return int(text)


def _common(entry: Any, context: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise ChannelError(f"{context}: a channel must be a mapping with name and type, "
                           f"not {type(entry).__name__}")
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        log.warning("%s: unknown channel key(s) %s ignored", context, ", ".join(unknown))
    name = _text(entry.get("name")).strip()
    if not name:
        raise ChannelError(f"{context}: name is missing")
    if any(c in name for c in ".: \t") or "{{" in name:
        raise ChannelError(f"{context}: name {name!r} must not contain '.', ':', blanks or "
                           "templates (it becomes part of chans.<name>.* keys and bind paths)")
    context = f"{context} ({name})"
    return {
        "name": name,
        "type": ChannelType.parse(_text(entry.get("type")), "type", context),
        "snd_buf_size": _buf_size(entry, "sndBufSize", context),
        "rcv_buf_size": _buf_size(entry, "rcvBufSize", context),
        "rate_logging": _text(entry.get("rateLogging")).strip() or DEFAULT_RATE_LOGGING,
        "transport": Transport.parse(_text(entry.get("transport")), "transport", context,
                                     Transport.DEFAULT),
        "target": _text(entry.get("target")).strip(),
    }


_INBOUND_KEYS = frozenset({"name", "type", "sndBufSize", "rcvBufSize", "rateLogging", "transport",
                           "target", "addressing", "global"})
_OUTBOUND_KEYS = frozenset({"name", "type", "sndBufSize", "rcvBufSize", "rateLogging", "transport",
                            "target"})


def check_bind_target(target: str, context: str) -> None:
    """A bind target is empty or an explicit tcp:// / ipc:// address (templates are checked
    once rendered)."""
    if target and "{{" not in target and not target.startswith(_EXPLICIT_SCHEMES):
        raise ChannelError(f"{context}: bind target {target!r} must be empty or an explicit "
                           "tcp://host:port or ipc://path address")


def parse_inbound(entry: Any, context: str) -> InboundChannel:
    """One `bind:` entry. `context` names the file or role and the list position,
    e.g. "tasks/readout.yaml: bind[0]"."""
    fields = _common(entry, context, _INBOUND_KEYS)
    where = f"{context} ({fields['name']})"
    check_bind_target(fields["target"], where)
    return InboundChannel(
        **fields,
        addressing=Addressing.parse(_text(entry.get("addressing")), "addressing", where,
                                    Addressing.TCP),
        global_alias=_text(entry.get("global")).strip(),
    )


def parse_outbound(entry: Any, context: str, *, in_task_template: bool = False) -> OutboundChannel:
    """One `connect:` entry. In a task template the target is dropped with a warning, as
    AliECS does (the workflow says what connects to what); in a role it is mandatory."""
    fields = _common(entry, context, _OUTBOUND_KEYS)
    if in_task_template:
        if fields["target"]:
            log.warning("%s (%s): a task template's connect target is ignored (%r); "
                        "set it in the workflow's role", context, fields["name"], fields["target"])
            fields["target"] = ""
    elif not fields["target"]:
        raise ChannelError(f"{context} ({fields['name']}): target is missing; give "
                           "<role path>:<channel>, ::<global alias> or an explicit address")
    return OutboundChannel(**fields)


def _unique(channels: Sequence[Channel], context: str, kind: str) -> None:
    seen: set[str] = set()
    for channel in channels:
        if channel.name in seen:
            raise ChannelError(f"{context}: {kind} channel {channel.name!r} is declared twice")
        seen.add(channel.name)


def parse_bind_list(entries: Any, context: str) -> tuple[InboundChannel, ...]:
    """A whole `bind:` list; `context` names the file or role path."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ChannelError(f"{context}: bind must be a list of channels")
    channels = tuple(parse_inbound(e, f"{context}: bind[{i}]") for i, e in enumerate(entries))
    _unique(channels, context, "bind")
    return channels


def parse_connect_list(entries: Any, context: str, *, in_task_template: bool = False
                       ) -> tuple[OutboundChannel, ...]:
    """A whole `connect:` list; `context` names the file or role path."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ChannelError(f"{context}: connect must be a list of channels")
    channels = tuple(parse_outbound(e, f"{context}: connect[{i}]",
                                    in_task_template=in_task_template)
                     for i, e in enumerate(entries))
    _unique(channels, context, "connect")
    return channels


def render_channel(channel: Channel, render: Callable[[str, str], str]) -> Any:
    """`channel` with its templated fields rendered: target, global alias, rateLogging.

    `render(text, field)` renders one field (the caller binds stack and where;
    the field is e.g. "bind dpl-chan.global"). A rendered bind target must be
    an explicit address.
    """
    kind = "bind" if isinstance(channel, InboundChannel) else "connect"

    def field(text: str, name: str) -> str:
        return render(text, f"{kind} {channel.name}.{name}").strip() if "{{" in text else text

    changes: dict[str, str] = {"target": field(channel.target, "target"),
                               "rate_logging": field(channel.rate_logging, "rateLogging")}
    if isinstance(channel, InboundChannel):
        changes["global_alias"] = field(channel.global_alias, "global")
        check_bind_target(changes["target"], f"bind channel {channel.name}")
    return replace(channel, **changes)


def merge_channels(role: Sequence[Channel], task_class: Sequence[Channel]) -> list[Any]:
    """The role's channels, then the class's channels the role does not name.

    A role channel replaces the class channel of the same name whole (AliECS's
    MergeInbound/MergeOutbound merge into a copy, so in effect the role wins).
    """
    names = {channel.name for channel in role}
    return [*role, *(channel for channel in task_class if channel.name not in names)]


# ---------------------------------------------------------------- endpoints

@dataclass(frozen=True)
class Endpoint:
    """Where a channel is bound: a TCP host and port (host "*" when binding) or an IPC path."""

    addressing: Addressing
    transport: Transport = Transport.DEFAULT
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def tcp(cls, port: int, transport: Transport = Transport.DEFAULT,
            host: str = "*") -> "Endpoint":
        return cls(Addressing.TCP, transport, host=host, port=port)

    @classmethod
    def ipc(cls, path: str, transport: Transport = Transport.DEFAULT) -> "Endpoint":
        return cls(Addressing.IPC, transport, path=path.removeprefix("ipc://"))

    @classmethod
    def new_ipc(cls, transport: Transport = Transport.DEFAULT, ipc_id: str = "") -> "Endpoint":
        """A fresh IPC endpoint, named like AliECS's `ipc://@o2ipc-<id>`."""
        return cls.ipc(IPC_NAME_FORMAT.format(ipc_id or new_ipc_id()), transport)

    @classmethod
    def parse(cls, address: str, transport: Transport = Transport.DEFAULT,
              context: str = "address") -> "Endpoint":
        """An explicit `tcp://host:port` or `ipc://path` address."""
        if address.startswith("ipc://") and len(address) > len("ipc://"):
            return cls.ipc(address, transport)
        if address.startswith("tcp://"):
            host, sep, port = address[len("tcp://"):].rpartition(":")
            if sep and host and port.isdigit() and 0 < int(port) < 65536:
                return cls.tcp(int(port), transport, host=host)
        raise ChannelError(f"{context}: {address!r} is not a tcp://host:port or ipc://path address")

    @property
    def address(self) -> str:
        if self.addressing is Addressing.IPC:
            return f"ipc://{self.path}"
        return f"tcp://{self.host or '*'}:{self.port}"

    def bound(self) -> "Endpoint":
        """The endpoint as its owner binds it: every interface for TCP."""
        return replace(self, host="*") if self.addressing is Addressing.TCP else self

    def on_host(self, hostname: str) -> "Endpoint":
        """The endpoint as a peer connects to it, on the binding task's host."""
        return replace(self, host=hostname) if self.addressing is Addressing.TCP else self

    def __str__(self) -> str:
        return self.address


def local_bind_map(channels: Iterable[InboundChannel], tcp_port: Callable[[InboundChannel], int]
                   ) -> dict[str, Endpoint]:
    """One task's endpoints by channel name, plus `::<alias>` for global channels.

    An explicit bind target is used as is; an IPC channel gets a fresh path; a TCP
    channel gets the port `tcp_port(channel)` (the scheduler's choice among the
    ports the host offers). Global aliases must already be rendered.
    """
    endpoints: dict[str, Endpoint] = {}
    for channel in channels:
        if channel.target:
            endpoint = Endpoint.parse(channel.target, channel.transport,
                                      f"bind channel {channel.name} target")
        elif channel.addressing is Addressing.IPC:
            endpoint = Endpoint.new_ipc(channel.transport)
        else:
            endpoint = Endpoint.tcp(tcp_port(channel), channel.transport)
        endpoints[channel.name] = endpoint
        if channel.global_alias:
            endpoints[GLOBAL_PREFIX + channel.global_alias] = endpoint
    return endpoints


class BindMap(Mapping[str, Endpoint]):
    """The environment's bind map: `<role path>:<channel>` and `::<alias>` → endpoint.

    Connect targets are matched against it. A global alias may be published
    twice only with the same endpoint (AliECS: "illegal redefinition").
    """

    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._owners: dict[str, str] = {}

    def add_task(self, role_path: str, hostname: str, local: Mapping[str, Endpoint]) -> None:
        """Publish one task's local bind map; `role_path` is its task role's path."""
        for name, endpoint in local.items():
            target = endpoint.on_host(hostname)
            if name.startswith(GLOBAL_PREFIX):
                key = name
                existing = self._endpoints.get(key)
                if existing is not None:
                    if existing == target:
                        continue
                    raise ChannelError(
                        f"global channel alias {key} is redefined: role {role_path} binds it on "
                        f"{target.address}, role {self._owners[key]} already on {existing.address}")
            else:
                key = f"{role_path}{TARGET_SEPARATOR}{name}"
            self._endpoints[key] = target
            self._owners[key] = role_path

    def __getitem__(self, key: str) -> Endpoint:
        return self._endpoints[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._endpoints)

    def __len__(self) -> int:
        return len(self._endpoints)


def _nearby(target: str, from_role_path: str, binds: Mapping[str, Endpoint], limit: int = 8
            ) -> list[str]:
    """The bind keys most like `target`: globals for a global target, else those whose
    role path shares the longest dotted prefix with the target's (or the role's) path."""
    if target.startswith(GLOBAL_PREFIX):
        return sorted(k for k in binds if k.startswith(GLOBAL_PREFIX))[:limit]
    wanted = (target.rpartition(TARGET_SEPARATOR)[0] or from_role_path).split(".")

    def shared(key: str) -> int:
        path = key.rpartition(TARGET_SEPARATOR)[0].split(".")
        count = 0
        for a, b in zip(wanted, path):
            if a != b:
                break
            count += 1
        return count

    local = [k for k in binds if not k.startswith(GLOBAL_PREFIX)]
    best = max((shared(k) for k in local), default=0)
    return sorted(k for k in local if shared(k) == best)[:limit] if best else sorted(local)[:limit]


def resolve_connect_target(target: str, from_role_path: str, binds: Mapping[str, Endpoint],
                           transport: Transport = Transport.DEFAULT) -> Endpoint:
    """The endpoint a connect target names.

    An explicit tcp:// or ipc:// address is used as is, with `transport` (the
    connecting channel's); `path:channel` and `::alias` must match a key of
    `binds` exactly, as in AliECS. The error lists the nearest keys that exist.
    """
    target = target.strip()
    context = f"role {from_role_path}" if from_role_path else "connect"
    if target.startswith(_EXPLICIT_SCHEMES):
        return Endpoint.parse(target, transport, f"{context}: connect target")
    endpoint = binds.get(target)
    if endpoint is not None:
        return endpoint
    if TARGET_SEPARATOR not in target:
        raise ChannelError(f"{context}: connect target {target!r} is not of the form "
                           "<role path>:<channel>, ::<global alias>, tcp://host:port or ipc://path")
    near = _nearby(target, from_role_path, binds)
    listing = ", ".join(near) if near else "none: no task binds a channel"
    raise ChannelError(f"{context}: connect target {target!r} matches no bind channel; "
                       f"nearest binds: {listing}")


# ---------------------------------------------------------------- FairMQ keys

def _fmq_keys(channel: Channel, address: str, transport: Transport, method: str
              ) -> dict[str, str]:
    prefix = f"chans.{channel.name}.0."
    keys = {f"chans.{channel.name}.numSockets": "1", prefix + "address": address,
            prefix + "method": method}
    if method == "bind":
        keys[prefix + "autoBind"] = "0"
    keys.update({
        prefix + "rateLogging": channel.rate_logging,
        prefix + "rcvBufSize": str(channel.rcv_buf_size),
        prefix + "rcvKernelSize": "0",
        prefix + "sndBufSize": str(channel.snd_buf_size),
        prefix + "sndKernelSize": "0",
        prefix + "transport": transport.value,
        prefix + "type": channel.type.value,
    })
    return keys


def inbound_properties(channel: InboundChannel, local: Mapping[str, Endpoint]) -> dict[str, str]:
    """The `chans.<name>.*` keys of a bind channel (reference §7.3).

    With an explicit target that address is bound; otherwise the task's own
    endpoint for the channel, TCP on every interface (`tcp://*:<port>`).
    """
    if channel.target:
        check_bind_target(channel.target, f"bind channel {channel.name}")
        return _fmq_keys(channel, channel.target, channel.transport, "bind")
    endpoint = local.get(channel.name)
    if endpoint is None:
        known = ", ".join(sorted(k for k in local if not k.startswith(GLOBAL_PREFIX))) or "none"
        raise ChannelError(f"bind channel {channel.name} has no endpoint in the task's bind map "
                           f"(channels with endpoints: {known})")
    endpoint = endpoint.bound()
    return _fmq_keys(channel, endpoint.address, endpoint.transport, "bind")


def outbound_properties(channel: OutboundChannel, from_role_path: str,
                        binds: Mapping[str, Endpoint]) -> dict[str, str]:
    """The `chans.<name>.*` keys of a connect channel: method connect, the resolved address.

    The transport is the bound end's; a different explicit transport on the
    connecting side is only warned about, as AliECS does.
    """
    endpoint = resolve_connect_target(channel.target, from_role_path, binds, channel.transport)
    if channel.transport is not Transport.DEFAULT and endpoint.transport is not channel.transport:
        log.warning("role %s: connect channel %s asks for transport %s but %s is bound with %s; "
                    "fix the workflow template", from_role_path, channel.name, channel.transport,
                    channel.target, endpoint.transport)
    return _fmq_keys(channel, endpoint.address, endpoint.transport, "connect")
