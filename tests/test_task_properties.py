"""CONFIGURE property maps: class properties, orbit-reset-time, chans.* keys, ToPtree."""
from __future__ import annotations

import json

import pytest

from engine.task.channels import (BindMap, ChannelType, Endpoint, InboundChannel, OutboundChannel,
                                  Transport, local_bind_map, parse_bind_list, parse_connect_list,
                                  render_channel)
from engine.task.command import TaskSpecials
from engine.task.errors import TaskBuildError
from engine.task.properties import build_property_map, property_stack
from engine.task.taskclass import TaskClass
from engine.templates.render import Renderer, TemplateError, Where
from engine.templates.yamlsource import load_yaml
from occlib.arguments import parse_arguments
from tests.conftest import CORPUS
from tests.task_templates import REPO, corpus, inline

ENV_ID = "2oEqCZXrnFG"
HOST = "readout-dataflow.host-flp001"


def specials(task_class: TaskClass, role: str, task_id: str = "T1") -> TaskSpecials:
    return TaskSpecials(task_class.task_name(task_id), task_id, task_class.identifier, "flp001",
                        ENV_ID, role)


STACK = {"fmq_rate_logging": "60", "detector": "TPC", "it": "flp001"}


def props(renderer: Renderer, task_class: TaskClass, role: str, inbound: dict[str, Endpoint],
          outbound: BindMap | dict[str, Endpoint], stack: dict[str, str] | None = None,
          **kwargs: object) -> dict[str, str]:
    where = Where(repo=REPO, file="workflows/readout-dataflow.yaml", role_path=role)
    return build_property_map(task_class, STACK if stack is None else stack,
                              specials(task_class, role), renderer, inbound, outbound, where,
                              **kwargs)  # type: ignore[arg-type]


def workflow_channels(role_name: str) -> tuple[tuple[InboundChannel, ...],
                                               tuple[OutboundChannel, ...]]:
    """The bind/connect lists of a task role of the real readout-dataflow (first match)."""
    document = load_yaml((CORPUS / "workflows" / "readout-dataflow.yaml").read_text(),
                         "workflows/readout-dataflow.yaml")

    def walk(roles: list) -> dict | None:
        for role in roles:
            if role.get("name") == role_name and ("connect" in role or "bind" in role):
                return role
            found = walk(role.get("roles") or [])
            if found:
                return found
        return None

    role = walk(document["roles"])
    assert role is not None
    context = f"role {role_name}"
    return (parse_bind_list(role.get("bind"), context),
            parse_connect_list(role.get("connect"), context))


def test_basic_classes_get_no_properties(renderer: Renderer) -> None:
    for name in ("shell-command", "o2-roc-cleanup", "roc-config-args"):
        assert props(renderer, corpus(name), f"{HOST}.{name}", {}, {}) == {}


def test_readout_binds_its_ipc_channel(renderer: Renderer) -> None:
    readout = corpus("readout")
    local = local_bind_map(readout.bind, lambda channel: 0)
    properties = props(renderer, readout, f"{HOST}.readout", local, {})
    path = local["readout"].path
    assert properties == {
        "environment_id": ENV_ID,
        "chans.readout.numSockets": "1",
        "chans.readout.0.address": f"ipc://{path}",
        "chans.readout.0.method": "bind",
        "chans.readout.0.autoBind": "0",
        "chans.readout.0.rateLogging": "60",
        "chans.readout.0.rcvBufSize": "1000",
        "chans.readout.0.rcvKernelSize": "0",
        "chans.readout.0.sndBufSize": "1000",
        "chans.readout.0.sndKernelSize": "0",
        "chans.readout.0.transport": "shmem",
        "chans.readout.0.type": "push",
    }
    assert list(properties)[0] == "environment_id"


def test_readout_dataflow_data_distribution_chain(renderer: Renderer) -> None:
    """readout → stfb → stfs on one host, with the role channels of the real workflow."""
    readout, stfb, stfs = corpus("readout"), corpus("stfbuilder-senderoutput"), corpus("stfsender")
    locals_ = {"readout": local_bind_map(readout.bind, lambda c: 0),
               "stfb": local_bind_map(stfb.bind, lambda c: 0)}
    binds = BindMap()
    binds.add_task(f"{HOST}.readout", "flp001", locals_["readout"])
    binds.add_task(f"{HOST}.stfb", "flp001", locals_["stfb"])

    # The workflow's targets are templates ({{ Up(2).Path }}…), rendered at STAGE5.
    _, stfb_connect = workflow_channels("stfb")
    rendered = [render_channel(c, lambda text, field: text
                               .replace("{{ Up(2).Path }}", HOST)
                               .replace("{{ Parent().Path }}", HOST)) for c in stfb_connect]
    stfb_props = props(renderer, stfb, f"{HOST}.stfb", locals_["stfb"], binds,
                       role_connect=rendered)
    assert stfb_props["chans.readout.0.address"] == binds[f"{HOST}.readout:readout"].address
    assert stfb_props["chans.readout.0.method"] == "connect"
    assert stfb_props["chans.readout.0.transport"] == "shmem"
    assert stfb_props["chans.readout.0.rateLogging"] == "60"
    assert "chans.readout.0.autoBind" not in stfb_props
    assert stfb_props["chans.buildertosender.0.method"] == "bind"
    assert stfb_props["chans.buildertosender.0.sndBufSize"] == "4"

    _, stfs_connect = workflow_channels("stfs")
    rendered = [render_channel(c, lambda text, field: text.replace("{{ Parent().Path }}", HOST))
                for c in stfs_connect]
    stfs_props = props(renderer, stfs, f"{HOST}.stfs", {}, binds, role_connect=rendered)
    assert stfs_props["chans.buildertosender.0.address"] == \
        f"ipc://{locals_['stfb']['buildertosender'].path}"
    assert stfs_props["chans.buildertosender.0.type"] == "pull"


def test_global_alias_of_a_class_bind(renderer: Renderer) -> None:
    stfb = corpus("stfbuilder")
    where = Where(role_path=f"{HOST}.stfb")
    channels = [render_channel(c, lambda text, field: renderer.render(
        text, STACK, Where(role_path=where.role_path, field=field))) for c in stfb.bind]
    assert channels[0].global_alias == "readout-proxy-flp001"
    local = local_bind_map(channels, lambda c: 0)
    binds = BindMap()
    binds.add_task(f"{HOST}.stfb", "flp001", local)
    consumer = inline("proxy", "name: proxy\ncontrol: {mode: fairmq}\nwants: {cpu: 1, memory: 1}\n"
                      "command: {value: proxy}\n")
    connect = OutboundChannel("from-stfb", ChannelType.PULL, target="::readout-proxy-flp001")
    properties = props(renderer, consumer, f"{HOST}.dpl.proxy", {}, binds, role_connect=[connect])
    assert properties["chans.from-stfb.0.address"] == local["dpl-chan"].address


def test_a_bind_without_an_endpoint_fails_naming_the_role(renderer: Renderer) -> None:
    with pytest.raises(TaskBuildError) as error:
        props(renderer, corpus("readout"), f"{HOST}.readout", {}, {})
    assert str(error.value) == (
        f"repo {REPO}, file workflows/readout-dataflow.yaml, role {HOST}.readout: bind channel "
        "readout has no endpoint in the task's bind map (channels with endpoints: none)")


def test_role_bind_replaces_the_class_bind(renderer: Renderer) -> None:
    readout = corpus("readout")
    role_bind = (InboundChannel("readout", ChannelType.PUB, snd_buf_size=8,
                                transport=Transport.ZEROMQ),)
    properties = props(renderer, readout, f"{HOST}.readout", {"readout": Endpoint.tcp(40000)}, {},
                       role_bind=role_bind)
    assert properties["chans.readout.0.address"] == "tcp://*:40000"
    assert properties["chans.readout.0.type"] == "pub"
    assert properties["chans.readout.0.sndBufSize"] == "8"
    assert properties["chans.readout.0.rateLogging"] == "0"


def test_unmatched_connect_target_fails_naming_role_and_nearby(renderer: Renderer) -> None:
    binds = BindMap()
    binds.add_task(f"{HOST}.readout", "flp001", {"readout": Endpoint.tcp(1)})
    connect = OutboundChannel("readout", ChannelType.PULL, target=f"{HOST}.readuot:readout")
    with pytest.raises(TaskBuildError) as error:
        props(renderer, corpus("stfsender"), f"{HOST}.stfs", {}, binds, role_connect=[connect])
    assert str(error.value) == (
        f"repo {REPO}, file workflows/readout-dataflow.yaml: role {HOST}.stfs: "
        f"connect target '{HOST}.readuot:readout' matches no bind channel; "
        f"nearest binds: {HOST}.readout:readout")


PROPERTIES = """\
name: configured
control: {mode: direct}
wants: {cpu: 1, memory: 1}
defaults:
  severity: info
  cfg: "file:///etc/{{ detector }}.ini"
vars:
  severity: debug
properties:
  environment_id: overridden-by-class
  log-level: "{{ severity }}"
  config-uri: "{{ cfg }}"
  qc: "{{ ToPtree(qc_json, 'JSON') }}"
  bad: "{{ ToPtree('x', 'yaml') }}"
command: {value: prog}
"""


def test_class_properties_orbit_reset_and_ptree(renderer: Renderer) -> None:
    task_class = inline("configured", PROPERTIES)
    stack = {"detector": "TPC", "qc_json": '{"tasks": {"a": 1}}',
             "pdp_override_run_start_time": "1700000000000"}
    properties = props(renderer, task_class, "env.configured", {}, {}, stack=stack)
    assert properties == {
        "environment_id": "overridden-by-class",
        "log-level": "debug",                      # class vars over class defaults here
        "config-uri": "file:///etc/TPC.ini",       # a class default holding a template
        "__ptree__:json:qc": '{"tasks": {"a": 1}}',
        "__ptree__:json:bad": json.dumps({"error": "bad ToPtree syntax argument, allowed "
                                                   "values: ini, json, xml"}),
        "orbit-reset-time": "1700000000000",
    }
    parsed = parse_arguments(properties.items())
    assert parsed["qc"] == {"tasks": {"a": 1}}
    role_wins = props(renderer, task_class, "env.configured", {}, {},
                      stack={**stack, "severity": "warning"})
    assert role_wins["log-level"] == "warning"


def test_property_stack_order() -> None:
    task_class = inline("configured", PROPERTIES)
    spec = specials(task_class, "env.configured")
    stack = property_stack(task_class, {"severity": "role", "task_id": "role"}, spec)
    assert stack["severity"] == "role" and stack["task_id"] == "T1"
    assert property_stack(task_class, {}, spec)["severity"] == "debug"


def test_property_template_errors_name_the_task_template(renderer: Renderer) -> None:
    task_class = inline("configured", PROPERTIES)
    with pytest.raises(TemplateError) as error:
        props(renderer, task_class, "env.configured", {}, {}, stack={"qc_json": "{}"})
    assert str(error.value).startswith(
        "repo repo, file tasks/configured.yaml@c0ffee, role env.configured, field "
        "properties.config-uri: {{ detector }}: unknown name detector")
