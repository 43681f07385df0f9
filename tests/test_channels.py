"""Bind/connect channels: parsing, endpoints, the bind map, target resolution, chans.* keys."""
from __future__ import annotations

import logging

import pytest

from engine.task.channels import (Addressing, BindMap, ChannelType, Endpoint, InboundChannel,
                                  OutboundChannel, Transport, inbound_properties, local_bind_map,
                                  merge_channels, outbound_properties, parse_bind_list,
                                  parse_connect_list, parse_inbound, parse_outbound,
                                  render_channel, resolve_connect_target)
from engine.task.errors import ChannelError
from engine.templates.yamlsource import load_yaml
from tests.conftest import CORPUS

CORPUS_TASKS = CORPUS / "tasks"
ROLE = "readout-dataflow.host-flp001"


def corpus_bind(name: str) -> tuple[InboundChannel, ...]:
    document = load_yaml((CORPUS_TASKS / f"{name}.yaml").read_text(), f"tasks/{name}.yaml")
    return parse_bind_list(document["bind"], f"tasks/{name}.yaml")


# ---------------------------------------------------------------- parsing

def test_inbound_defaults() -> None:
    channel = parse_inbound({"name": "data", "type": "push"}, "ctx")
    assert channel == InboundChannel(name="data", type=ChannelType.PUSH, snd_buf_size=1000,
                                     rcv_buf_size=1000, rate_logging="0",
                                     transport=Transport.DEFAULT, target="",
                                     addressing=Addressing.TCP, global_alias="")


def test_corpus_binds_parse_with_their_overrides() -> None:
    (stfb,) = corpus_bind("stfbuilder")
    assert stfb.name == "dpl-chan"
    assert stfb.type is ChannelType.PUSH
    assert stfb.transport is Transport.SHMEM
    assert stfb.addressing is Addressing.IPC
    assert stfb.snd_buf_size == 4 and stfb.rcv_buf_size == 1000
    assert stfb.rate_logging == "{{ fmq_rate_logging }}"
    assert stfb.global_alias == "readout-proxy-{{ it }}"
    (readout,) = corpus_bind("readout")
    assert (readout.name, readout.addressing, readout.global_alias) == (
        "readout", Addressing.IPC, "")


def test_keywords_are_case_insensitive_and_unquoted() -> None:
    channel = parse_inbound({"name": "c", "type": '"PULL"', "transport": "ZeroMQ",
                             "addressing": "IPC"}, "ctx")
    assert (channel.type, channel.transport, channel.addressing) == (
        ChannelType.PULL, Transport.ZEROMQ, Addressing.IPC)


@pytest.mark.parametrize("entry, message", [
    ({"type": "push"}, "tasks/x.yaml: bind[0]: name is missing"),
    ({"name": "a.b", "type": "push"}, "name 'a.b' must not contain"),
    ({"name": "c"}, "tasks/x.yaml: bind[0] (c): type is nothing; allowed: push, pull, pub, sub"),
    ({"name": "c", "type": "pair"}, "type is 'pair'; allowed: push, pull, pub, sub"),
    ({"name": "c", "type": "push", "transport": "udp"},
     "(c): transport is 'udp'; allowed: default, zeromq, nanomsg, shmem"),
    ({"name": "c", "type": "push", "addressing": "http"},
     "addressing is 'http'; allowed: tcp, ipc"),
    ({"name": "c", "type": "push", "sndBufSize": "lots"}, "(c): sndBufSize must be an integer"),
    ({"name": "c", "type": "push", "target": "flp1:5555"}, "bind target 'flp1:5555' must be empty"),
    ("push", "a channel must be a mapping"),
])
def test_inbound_errors_name_file_position_and_field(entry: object, message: str) -> None:
    with pytest.raises(ChannelError) as error:
        parse_bind_list([entry], "tasks/x.yaml")
    assert message in str(error.value)


def test_duplicate_channel_names_are_an_error() -> None:
    with pytest.raises(ChannelError, match="role a.b: bind channel 'c' is declared twice"):
        parse_bind_list([{"name": "c", "type": "push"}, {"name": "c", "type": "pub"}], "role a.b")


def test_role_connect_needs_a_target() -> None:
    with pytest.raises(ChannelError, match=r"role a\.b: connect\[0\] \(in\): target is missing"):
        parse_connect_list([{"name": "in", "type": "pull"}], "role a.b")


def test_task_template_connect_target_is_ignored_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.task"):
        channel = parse_outbound({"name": "in", "type": "pull", "target": "x.y:out"},
                                 "tasks/t.yaml: connect[0]", in_task_template=True)
    assert channel.target == ""
    assert "task template's connect target is ignored ('x.y:out')" in caplog.text


def test_merge_role_channel_replaces_class_channel_of_same_name() -> None:
    cls = (InboundChannel("a", ChannelType.PUSH), InboundChannel("b", ChannelType.PUSH))
    role = (InboundChannel("b", ChannelType.PUB, snd_buf_size=4),
            InboundChannel("c", ChannelType.PUSH))
    merged = merge_channels(role, cls)
    assert [(c.name, c.type) for c in merged] == [("b", ChannelType.PUB), ("c", ChannelType.PUSH),
                                                  ("a", ChannelType.PUSH)]


def test_render_channel_renders_target_alias_and_rate_logging() -> None:
    (stfb,) = corpus_bind("stfbuilder")
    seen: list[str] = []

    def render(text: str, field: str) -> str:
        seen.append(field)
        return text.replace("{{ it }}", "flp001").replace("{{ fmq_rate_logging }}", "60")

    rendered = render_channel(stfb, render)
    assert rendered.global_alias == "readout-proxy-flp001"
    assert rendered.rate_logging == "60"
    assert seen == ["bind dpl-chan.rateLogging", "bind dpl-chan.global"]
    with pytest.raises(ChannelError, match="bind target 'somewhere' must be empty or an explicit"):
        render_channel(InboundChannel("x", ChannelType.PUSH, target="{{ t }}"),
                       lambda text, field: "somewhere")


# ---------------------------------------------------------------- endpoints and the bind map

def test_endpoint_addresses() -> None:
    tcp = Endpoint.tcp(5555, Transport.ZEROMQ)
    assert tcp.address == "tcp://*:5555"
    assert tcp.on_host("flp001").address == "tcp://flp001:5555"
    assert tcp.on_host("flp001").bound().address == "tcp://*:5555"
    ipc = Endpoint.ipc("ipc:///tmp/sock")
    assert ipc.address == "ipc:///tmp/sock" and ipc.on_host("flp001") == ipc
    assert Endpoint.parse("tcp://10.0.0.1:7000") == Endpoint.tcp(7000, host="10.0.0.1")
    with pytest.raises(ChannelError, match="'tcp://nohost' is not a tcp://host:port"):
        Endpoint.parse("tcp://nohost")


def test_local_bind_map_allocates_and_publishes_global_aliases() -> None:
    channels = [
        InboundChannel("data", ChannelType.PUSH),
        InboundChannel("shm", ChannelType.PUSH, transport=Transport.SHMEM,
                       addressing=Addressing.IPC, global_alias="readout-proxy-flp001"),
        InboundChannel("fixed", ChannelType.PUB, target="tcp://*:6000"),
    ]
    local = local_bind_map(channels, lambda channel: 31000)
    assert local["data"] == Endpoint.tcp(31000)
    assert local["shm"].addressing is Addressing.IPC
    assert local["shm"].path.startswith("@o2ipc-")
    assert local["shm"].transport is Transport.SHMEM
    assert local["::readout-proxy-flp001"] is local["shm"]
    assert local["fixed"].address == "tcp://*:6000"
    again = local_bind_map(channels, lambda channel: 31000)
    assert again["shm"].path != local["shm"].path


def test_bind_map_keys_and_global_alias_rules() -> None:
    binds = BindMap()
    shared = Endpoint.ipc("/tmp/o2ipc-1", Transport.SHMEM)
    binds.add_task(f"{ROLE}.readout", "flp001", {"readout": Endpoint.tcp(31000),
                                                "::proxy": shared})
    assert binds[f"{ROLE}.readout:readout"].address == "tcp://flp001:31000"
    assert binds["::proxy"] == shared
    binds.add_task(f"{ROLE}.other", "flp001", {"::proxy": shared})  # same endpoint: fine
    with pytest.raises(ChannelError) as error:
        binds.add_task(f"{ROLE}.third", "flp002", {"::proxy": Endpoint.tcp(32000)})
    assert str(error.value) == (
        f"global channel alias ::proxy is redefined: role {ROLE}.third binds it on "
        f"tcp://flp002:32000, role {ROLE}.readout already on ipc:///tmp/o2ipc-1")
    assert len(binds) == 2


# ---------------------------------------------------------------- resolution

def make_binds() -> BindMap:
    binds = BindMap()
    binds.add_task(f"{ROLE}.readout", "flp001", {"readout": Endpoint.tcp(31000)})
    binds.add_task(f"{ROLE}.stfb", "flp001", {"buildertosender": Endpoint.tcp(31001)})
    binds.add_task("readout-dataflow.host-flp002.readout", "flp002",
                   {"readout": Endpoint.tcp(31000), "::downstream-flp002": Endpoint.tcp(31005)})
    return binds


def test_resolve_path_global_and_explicit_targets() -> None:
    binds = make_binds()
    assert resolve_connect_target(f"{ROLE}.readout:readout", f"{ROLE}.stfb", binds).address == \
        "tcp://flp001:31000"
    assert resolve_connect_target("::downstream-flp002", ROLE, binds).address == \
        "tcp://flp002:31005"
    explicit = resolve_connect_target(" ipc:///tmp/x ", ROLE, binds, Transport.SHMEM)
    assert (explicit.address, explicit.transport) == ("ipc:///tmp/x", Transport.SHMEM)


def test_unmatched_target_lists_the_nearest_binds() -> None:
    with pytest.raises(ChannelError) as error:
        resolve_connect_target(f"{ROLE}.stfb:wrongname", f"{ROLE}.stfs", make_binds())
    assert str(error.value) == (
        f"role {ROLE}.stfs: connect target '{ROLE}.stfb:wrongname' matches no bind channel; "
        f"nearest binds: {ROLE}.stfb:buildertosender")
    with pytest.raises(ChannelError, match="nearest binds: ::downstream-flp002"):
        resolve_connect_target("::downstream-flp001", ROLE, make_binds())
    with pytest.raises(ChannelError, match="nearest binds: none: no task binds a channel"):
        resolve_connect_target("a.b:c", "a.x", {})
    with pytest.raises(ChannelError, match="'readout' is not of the form <role path>:<channel>"):
        resolve_connect_target("readout", ROLE, make_binds())


# ---------------------------------------------------------------- chans.* keys

def test_inbound_keys_are_those_of_aliecs() -> None:
    channel = InboundChannel("data1", ChannelType.PUSH)
    assert inbound_properties(channel, {"data1": Endpoint.tcp(5555)}) == {
        "chans.data1.numSockets": "1",
        "chans.data1.0.address": "tcp://*:5555",
        "chans.data1.0.method": "bind",
        "chans.data1.0.autoBind": "0",
        "chans.data1.0.rateLogging": "0",
        "chans.data1.0.rcvBufSize": "1000",
        "chans.data1.0.rcvKernelSize": "0",
        "chans.data1.0.sndBufSize": "1000",
        "chans.data1.0.sndKernelSize": "0",
        "chans.data1.0.transport": "default",
        "chans.data1.0.type": "push",
    }


def test_inbound_keys_for_ipc_explicit_and_missing_endpoints() -> None:
    (readout,) = corpus_bind("readout")
    keys = inbound_properties(readout, {"readout": Endpoint.ipc("/tmp/o2ipc-abc", Transport.SHMEM)})
    assert keys["chans.readout.0.address"] == "ipc:///tmp/o2ipc-abc"
    assert keys["chans.readout.0.transport"] == "shmem"
    assert keys["chans.readout.0.rateLogging"] == "{{ fmq_rate_logging }}"
    explicit = InboundChannel("out", ChannelType.PUB, transport=Transport.ZEROMQ,
                              target="tcp://*:7000")
    assert inbound_properties(explicit, {})["chans.out.0.address"] == "tcp://*:7000"
    with pytest.raises(ChannelError, match=r"bind channel readout has no endpoint .*: other\)"):
        inbound_properties(readout, {"other": Endpoint.tcp(1)})


def test_outbound_keys_use_the_bound_end(caplog: pytest.LogCaptureFixture) -> None:
    channel = OutboundChannel("readout", ChannelType.PULL, rate_logging="60",
                              target=f"{ROLE}.readout:readout")
    keys = outbound_properties(channel, f"{ROLE}.stfb", make_binds())
    assert keys == {
        "chans.readout.numSockets": "1",
        "chans.readout.0.address": "tcp://flp001:31000",
        "chans.readout.0.method": "connect",
        "chans.readout.0.rateLogging": "60",
        "chans.readout.0.rcvBufSize": "1000",
        "chans.readout.0.rcvKernelSize": "0",
        "chans.readout.0.sndBufSize": "1000",
        "chans.readout.0.sndKernelSize": "0",
        "chans.readout.0.transport": "default",
        "chans.readout.0.type": "pull",
    }
    shm = OutboundChannel("readout", ChannelType.PULL, transport=Transport.SHMEM,
                          target=f"{ROLE}.readout:readout")
    with caplog.at_level(logging.WARNING, logger="engine.task"):
        keys = outbound_properties(shm, f"{ROLE}.stfb", make_binds())
    assert keys["chans.readout.0.transport"] == "default"
    assert "asks for transport shmem" in caplog.text
