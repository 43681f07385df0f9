"""Role kinds, iterators, includes (by name, repo path and dpl.*), constraints, channels,
triggers and every loading error, on small workflows in real git repositories."""
from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from engine.gosyntax import is_go_duration
from engine.task.taskclass import Constraint
from engine.workflow import (
    AggregatorRole,
    CallRole,
    IncludeRole,
    IteratorInfo,
    RoleKind,
    TaskRole,
    Trigger,
    WorkflowError,
)
from engine.workflow.roles import merge_constraints, parse_yaml_bool
from engine.workflow.wiring import link_channels
from tests.conftest import make_template_repo

TASK = """\
name: t
control: {mode: basic}
wants: {cpu: 0.1, memory: 10}
command: {value: "true"}
"""

FMQ_PUSH = """\
name: pusher
control: {mode: fairmq}
wants: {cpu: 0.1, memory: 10}
bind:
  - name: out
    type: push
    transport: shmem
    addressing: ipc
command: {value: "pusher"}
"""

FMQ_PULL = """\
name: puller
control: {mode: fairmq}
wants: {cpu: 0.1, memory: 10}
command: {value: "puller"}
"""


def repo_with(template_loader, files: dict[str, str], **kw):
    files = {"tasks/t.yaml": TASK, "tasks/pusher.yaml": FMQ_PUSH, "tasks/puller.yaml": FMQ_PULL,
             **files}
    return template_loader(files, **kw)


def load(template_loader, workflow: str, user_vars=None, files=None, **kw):
    name = workflow.split("\n", 1)[0].removeprefix("name:").strip()
    loader, repo = repo_with(template_loader, {f"workflows/{name}.yaml": workflow,
                                               **(files or {})}, **kw)
    return loader.load(f"{repo}/workflows/{name}", user_vars or {})


def error_of(template_loader, workflow: str, user_vars=None, files=None) -> str:
    with pytest.raises(WorkflowError) as caught:
        load(template_loader, workflow, user_vars, files)
    return str(caught.value)


# ---------------------------------------------------------------- kinds

KINDS = """\
name: kinds
roles:
  - name: agg
    roles:
      - name: task
        task: {load: t}
  - name: hook
    task: {load: t, trigger: after_CONFIGURE-5, critical: false}
  - name: call
    call:
      func: dcs.StartOfRun()
      trigger: before_START_ACTIVITY+100
      await: after_START_ACTIVITY
      timeout: 140s
      return: sor_result
  - name: inc
    include: sub
"""

SUB = """\
name: sub
defaults: {from_sub: "yes"}
roles:
  - name: inner
    task: {load: t}
"""


def test_each_role_kind(template_loader):
    wf = load(template_loader, KINDS, files={"workflows/sub.yaml": SUB})
    kinds = {r.path: r.kind for r in wf.roles()}
    assert kinds == {
        "kinds": RoleKind.AGGREGATOR, "kinds.agg": RoleKind.AGGREGATOR,
        "kinds.agg.task": RoleKind.TASK, "kinds.hook": RoleKind.TASK,
        "kinds.call": RoleKind.CALL, "kinds.inc": RoleKind.INCLUDE,
        "kinds.inc.inner": RoleKind.TASK,
    }
    task = wf.find("kinds.agg.task")
    assert isinstance(task, TaskRole)
    assert (task.trigger, task.await_, task.timeout, task.critical) == (None, None, "0s", True)
    assert task.task_class is not None and task.task_class.name == "t"
    assert task.class_identifier.endswith("/tasks/t@" + task.task_class.commit)
    assert task.class_display.endswith("/tasks/t@master")
    hook = wf.find("kinds.hook")
    assert (hook.trigger, hook.await_, hook.timeout, hook.critical) == \
        (Trigger("after_CONFIGURE", -5), Trigger("after_CONFIGURE", -5), "30s", False)
    call = wf.find("kinds.call")
    assert isinstance(call, CallRole)
    assert (call.func, call.trigger, call.await_, call.timeout, call.critical, call.return_var) == \
        ("dcs.StartOfRun()", Trigger("before_START_ACTIVITY", 100),
         Trigger("after_START_ACTIVITY", 0), "140s", True, "sor_result")
    include = wf.find("kinds.inc")
    assert isinstance(include, IncludeRole)
    assert include.include == "sub" and include.included_origin.endswith("workflows/sub.yaml@"
                                                                           + include_revision(wf))
    assert wf.find("kinds.inc.inner").stack["from_sub"] == "yes"


def include_revision(wf) -> str:
    return wf.find("kinds.inc").included_origin.rsplit("@", 1)[1]


def test_a_call_func_is_kept_unevaluated_and_only_templated(template_loader):
    workflow = """\
name: calls
defaults: {plugin: dcs}
roles:
  - name: c
    call: {func: "{{ plugin }}.EndOfRun(undefined_thing)", trigger: DESTROY}
"""
    call = load(template_loader, workflow).call_roles()[0]
    assert call.func == "dcs.EndOfRun(undefined_thing)"
    assert (call.trigger, call.timeout) == (Trigger("DESTROY", 0), "30s")


def test_enabled_is_decided_at_stage0_even_for_calls(template_loader):
    """AliECS templates a call's `enabled` again at STAGE5, over the STAGE0 result: a role's
    own vars never disable it."""
    workflow = """\
name: again
defaults: {wanted: "yes"}
roles:
  - name: c
    enabled: "{{ wanted == 'yes' }}"
    vars: {wanted: "no"}
    call: {func: x.Y(), trigger: DESTROY}
  - name: t
    enabled: "{{ wanted == 'yes' }}"
    vars: {wanted: "no"}
    task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert [r.name for r in wf.root.children] == ["c", "t"]


def test_to_dict_shape(template_loader):
    wf = load(template_loader, KINDS, files={"workflows/sub.yaml": SUB})
    out = json.loads(json.dumps(wf.to_dict()))
    assert set(out) >= {"name", "path", "kind", "roles", "constraints"}
    assert (out["name"], out["path"], out["kind"]) == ("kinds", "kinds", "aggregator")
    agg, hook, call, inc = out["roles"]
    assert agg["roles"][0]["kind"] == "task" and agg["roles"][0]["class"].endswith("tasks/t@master")
    assert hook["trigger"] == "after_CONFIGURE-5" and hook["constraints"] == []
    assert (call["kind"], call["func"], call["trigger"]) == \
        ("call", "dcs.StartOfRun()", "before_START_ACTIVITY+100")
    assert inc["kind"] == "include" and inc["roles"][0]["path"] == "kinds.inc.inner"


# ---------------------------------------------------------------- iterators

def test_iterator_range_expands_without_a_path_segment(template_loader):
    workflow = """\
name: it
defaults: {hosts: '["a","b"]'}
roles:
  - name: host-{{ h }}
    for: {range: "{{ hosts }}", var: h}
    task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert [r.path for r in wf.roles()] == ["it", "it.host-a", "it.host-b"]
    assert wf.find("it.host-b").iterated_from == IteratorInfo("h", "b", 1, "{{ hosts }}")
    assert wf.find("it.host-a").locals == {"h": "a"}


def test_iterator_begin_end_is_inclusive(template_loader):
    workflow = """\
name: counted
defaults: {last: "3"}
roles:
  - name: n{{ i }}
    for: {begin: "1", end: "{{ last }}", var: i}
    task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert [r.name for r in wf.root.children] == ["n1", "n2", "n3"]
    assert wf.find("counted.n3").iterated_from == IteratorInfo("i", "3", 2, "1..{{ last }}")


def test_nested_iterators_and_a_range_from_the_parents_vars(template_loader):
    workflow = """\
name: nested
roles:
  - name: host-{{ it }}
    for: {range: '["h1","h2"]', var: it}
    defaults: {cards: '["c-{{ it }}-1","c-{{ it }}-2"]'}
    roles:
      - name: card-{{ card }}
        for: {range: "{{ cards }}", var: card}
        task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert [r.path for r in wf.task_roles()] == [
        "nested.host-h1.card-c-h1-1", "nested.host-h1.card-c-h1-2",
        "nested.host-h2.card-c-h2-1", "nested.host-h2.card-c-h2-2"]
    assert wf.task_roles()[3].stack["card"] == "c-h2-2"


def test_an_iterator_over_an_empty_list_makes_nothing(template_loader):
    workflow = """\
name: empty
roles:
  - name: host-{{ it }}
    for: {range: "[]", var: it}
    task: {load: t}
  - name: other
    task: {load: t}
"""
    assert [r.name for r in load(template_loader, workflow).root.children] == ["other"]


@pytest.mark.parametrize("value", ['{"a": 1}', "flp001", '["a", 2]', ""])
def test_an_iterator_range_that_is_not_a_json_list_of_strings(template_loader, value):
    workflow = """\
name: badrange
roles:
  - name: host-{{ it }}
    for: {range: "{{ hosts }}", var: it}
    task: {load: t}
"""
    message = error_of(template_loader, workflow, {"hosts": value})
    assert "workflows/badrange.yaml" in message
    assert "role badrange.host-{{ it }}" in message
    assert "for.range '{{ hosts }}'" in message
    assert f"renders to {value!r}, which is not a JSON list of strings" in message


def test_an_iterator_bound_that_is_not_an_integer(template_loader):
    workflow = """\
name: badbound
roles:
  - name: n{{ i }}
    for: {begin: "1", end: "many", var: i}
    task: {load: t}
"""
    message = error_of(template_loader, workflow)
    assert "for.end 'many': renders to 'many', which is not an integer" in message


def test_an_iterated_role_name_must_use_the_iterator_variable(template_loader):
    workflow = """\
name: samename
roles:
  - name: host
    for: {range: '["a","b"]', var: it}
    task: {load: t}
"""
    message = error_of(template_loader, workflow)
    assert "role samename.host" in message
    assert "must use the iterator variable 'it'" in message


@pytest.mark.parametrize("block,reason", [
    ("{range: '[]'}", "for.var is missing"),
    ("{var: it}", "for needs range, or begin and end"),
    ("{begin: '1', var: it}", "for needs range, or begin and end"),
    ("[1, 2]", "for must be {range, var} or {begin, end, var}"),
])
def test_invalid_range_specifiers(template_loader, block, reason):
    workflow = f"""\
name: badfor
roles:
  - name: x-{{{{ it }}}}
    for: {block}
    task: {{load: t}}
"""
    message = error_of(template_loader, workflow)
    assert "invalid range specifier in iterator" in message and reason in message


# ---------------------------------------------------------------- aggregators

def test_aggregators_without_an_enabled_child_disappear(template_loader):
    workflow = """\
name: prune
roles:
  - name: outer
    roles:
      - name: inner
        roles:
          - name: off
            enabled: "false"
            task: {load: t}
  - name: kept
    roles:
      - name: on
        task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert [r.path for r in wf.roles()] == ["prune", "prune.kept", "prune.kept.on"]
    assert all(isinstance(r, AggregatorRole) for r in (wf.root, wf.find("prune.kept")))


def test_a_workflow_with_nothing_enabled_has_a_disabled_empty_root(template_loader):
    workflow = """\
name: none
roles:
  - name: off
    enabled: "false"
    task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert wf.root.children == [] and wf.root.enabled is False
    assert wf.to_dict()["roles"] == []


def test_siblings_may_share_a_name_when_only_one_is_enabled(template_loader):
    workflow = """\
name: dpl
defaults: {which: b}
roles:
  - name: dpl
    enabled: "{{ which == 'a' }}"
    task: {load: t}
  - name: dpl
    enabled: "{{ which == 'b' }}"
    call: {func: x.Y(), trigger: DESTROY}
"""
    wf = load(template_loader, workflow)
    assert [(r.path, r.kind) for r in wf.root.children] == [("dpl.dpl", RoleKind.CALL)]
    message = error_of(template_loader, workflow.replace("which == 'a'", "true"))
    assert "role dpl.dpl: two enabled sibling roles have this path" in message


# ---------------------------------------------------------------- navigation

def test_parent_up_and_this(template_loader):
    workflow = """\
name: nav
roles:
  - name: host-{{ it }}
    for: {range: '["h1"]', var: it}
    roles:
      - name: group
        roles:
          - name: leaf
            vars:
              parent: "{{ Parent().Path }}"
              parent_name: "{{ Parent().Name }}"
              up2: "{{ Up(2).Path }}"
            constraints:
              - {attribute: this, value: "{{ This().Path }}"}
            task: {load: t}
"""
    wf = load(template_loader, workflow)
    leaf = wf.find("nav.host-h1.group.leaf")
    assert (leaf.vars["parent"], leaf.vars["parent_name"], leaf.vars["up2"]) == \
        ("nav.host-h1.group", "group", "nav.host-h1")
    assert leaf.constraints == (Constraint("this", "nav.host-h1.group.leaf"),)


@pytest.mark.parametrize("expression,reason", [
    ("Up(9).Path", "Up(9): the role has fewer than 9 ancestors"),
    ("Up(0).Path", "Up(0): the number of levels must be 1 or more"),
    ("This().Path", "unknown name This"),   # This() exists from STAGE4 on
])
def test_navigation_errors(template_loader, expression, reason):
    workflow = f"""\
name: navbad
roles:
  - name: leaf
    vars: {{v: "{{{{ {expression} }}}}"}}
    task: {{load: t}}
"""
    message = error_of(template_loader, workflow)
    assert reason in message and "role navbad.leaf" in message and "field vars.v" in message


def test_parent_at_the_root_is_an_error(template_loader):
    message = error_of(template_loader, """\
name: rootvar
vars: {p: "{{ Parent().Path }}"}
roles:
  - name: leaf
    task: {load: t}
""")
    assert "Parent(): the workflow root has no parent role" in message


# ---------------------------------------------------------------- constraints

def test_constraints_merge_down_a_child_replacing_the_same_attribute(template_loader):
    workflow = """\
name: cons
roles:
  - name: servers
    constraints:
      - {attribute: machine_type, value: qcserver}
      - {attribute: machine_id, value: any}
    roles:
      - name: pinned
        constraints: [{attribute: machine_id, value: "{{ where }}"}]
        vars: {where: qc01}
        task: {load: t}
      - name: free
        task: {load: t}
"""
    wf = load(template_loader, workflow)
    assert wf.find("cons.servers.pinned").constraints == (
        Constraint("machine_type", "qcserver"), Constraint("machine_id", "qc01"))
    assert wf.find("cons.servers.pinned").own_constraints == (Constraint("machine_id", "qc01"),)
    assert wf.find("cons.servers.free").constraints == (
        Constraint("machine_type", "qcserver"), Constraint("machine_id", "any"))
    assert wf.hosts() == ["qc01", "any"]


def test_merge_constraints_keeps_the_parents_order():
    parent = (Constraint("a", "1"), Constraint("b", "2"), Constraint("c", "3"))
    assert merge_constraints(parent, (Constraint("b", "x"),)) == \
        (Constraint("a", "1"), Constraint("c", "3"), Constraint("b", "x"))
    assert merge_constraints((), ()) == ()


# ---------------------------------------------------------------- channels

CHANNELS = """\
name: chans
roles:
  - name: host-{{ it }}
    for: {range: '["h1","h2"]', var: it}
    constraints: [{attribute: machine_id, value: "{{ it }}"}]
    roles:
      - name: producer
        bind:
          - {name: out, type: push, transport: shmem, addressing: ipc, global: "out-{{ it }}"}
        task: {load: pusher}
      - name: by-path
        connect:
          - {name: in, type: pull, target: "{{ Parent().Path }}.producer:out"}
        task: {load: puller}
      - name: by-global
        connect:
          - {name: in, type: pull, target: "::out-{{ it }}"}
        task: {load: puller}
      - name: explicit
        connect:
          - {name: in, type: pull, target: "tcp://{{ it }}:5555"}
        task: {load: puller}
"""


def test_channel_targets_are_rendered_and_resolve(template_loader):
    loader, repo = repo_with(template_loader, {"workflows/chans.yaml": CHANNELS})
    wf = loader.load(f"{repo}/workflows/chans")
    by_path = wf.find("chans.host-h2.by-path")
    assert [c.target for c in by_path.connect] == ["chans.host-h2.producer:out"]
    assert [c.global_alias for c in wf.find("chans.host-h2.producer").bind] == ["out-h2"]
    links = {(l.role_path, l.channel): l for l in link_channels(wf, loader.renderer)}
    assert len(links) == 6
    producer_h2 = links[("chans.host-h2.by-path", "in")].endpoint
    assert producer_h2.startswith("ipc://")
    assert links[("chans.host-h2.by-global", "in")].endpoint == producer_h2
    assert links[("chans.host-h1.by-global", "in")].endpoint != producer_h2
    assert links[("chans.host-h1.explicit", "in")].endpoint == "tcp://h1:5555"


def test_channels_declared_on_an_aggregator_are_inherited(template_loader):
    workflow = """\
name: inherit
roles:
  - name: group
    connect: [{name: in, type: pull, target: "inherit.group.src:out"}]
    roles:
      - name: src
        task: {load: pusher}
      - name: a
        task: {load: puller}
      - name: b
        connect: [{name: in, type: sub, target: "::elsewhere"}]
        task: {load: puller}
"""
    wf = load(template_loader, workflow)
    assert [c.target for c in wf.find("inherit.group.a").collected_connect()] == \
        ["inherit.group.src:out"]
    assert [(c.type.value, c.target) for c in wf.find("inherit.group.b").collected_connect()] == \
        [("sub", "::elsewhere")]


def test_an_unmatched_connect_target_is_a_clear_error(template_loader):
    loader, repo = repo_with(template_loader, {
        "workflows/chans.yaml": CHANNELS.replace(".producer:out", ".prodcer:out")})
    wf = loader.load(f"{repo}/workflows/chans")
    with pytest.raises(WorkflowError) as caught:
        link_channels(wf, loader.renderer)
    message = str(caught.value)
    assert "role chans.host-h1.by-path: connect channel in" in message
    assert "'chans.host-h1.prodcer:out' matches no bind channel" in message
    assert "nearest binds: chans.host-h1.producer:out" in message


def test_a_malformed_channel_names_the_role(template_loader):
    message = error_of(template_loader, """\
name: badchan
roles:
  - name: r
    connect: [{name: in, type: shove, target: "x:y"}]
    task: {load: puller}
""")
    assert "role badchan.r: connect[0] (in): type is 'shove'; allowed: push, pull, pub, sub" \
        in message


# ---------------------------------------------------------------- triggers and fields

@pytest.mark.parametrize("text,trigger", [
    ("before_CONFIGURE", Trigger("before_CONFIGURE", 0)),
    ("after_RESET+100", Trigger("after_RESET", 100)),
    ("enter_RUNNING", Trigger("enter_RUNNING", 0)),
    ("leave_ERROR-1", Trigger("leave_ERROR", -1)),
    ("DESTROY", Trigger("DESTROY", 0)),
    ("DESTROY-100", Trigger("DESTROY", -100)),
    (" before_START_ACTIVITY-200 ", Trigger("before_START_ACTIVITY", -200)),
])
def test_trigger_parsing(text, trigger):
    assert Trigger.parse(text) == trigger
    assert Trigger.parse(str(trigger)) == trigger


@pytest.mark.parametrize("text", ["after_RESET+", "before CONFIGURE", "+5", "after_X+1.5", ""])
def test_bad_triggers(text):
    with pytest.raises(ValueError, match="is not a trigger"):
        Trigger.parse(text)


def test_durations_and_booleans():
    assert all(is_go_duration(t) for t in ("1s", "310s", "1m", "1m30s", "0", "1.5h", "100ms"))
    assert not any(is_go_duration(t) for t in ("10", "s", "1 s", "ten seconds", ""))
    assert parse_yaml_bool("False") is False and parse_yaml_bool("true") is True
    with pytest.raises(ValueError):
        parse_yaml_bool("maybe")


@pytest.mark.parametrize("field,value,reason", [
    ("trigger", "after_RESET+x", "'after_RESET+x' is not a trigger"),
    ("await", "later on", "'later on' is not a trigger"),
    ("timeout", "ten", "'ten' is not a duration"),
])
def test_bad_hook_fields_name_role_field_and_expression(template_loader, field, value, reason):
    workflow = f"""\
name: badhook
defaults: {{v: "{value}"}}
roles:
  - name: h
    task: {{load: t, trigger: before_CONFIGURE, {field}: "{{{{ v }}}}"}}
"""
    message = error_of(template_loader, workflow)
    assert f"role badhook.h: task.{field} '{{{{ v }}}}'" in message and reason in message


# ---------------------------------------------------------------- includes

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=T", "-c",
                           "user.email=t@example.org", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_an_include_resolves_at_the_including_files_commit(template_loader, tmp_path):
    loader, repo = repo_with(template_loader, {"workflows/kinds.yaml": KINDS,
                                               "workflows/sub.yaml": SUB}, name="pinned")
    first = git(tmp_path / "pinned", "rev-parse", "HEAD")
    (tmp_path / "pinned" / "workflows" / "sub.yaml").write_text(
        SUB.replace("name: inner", "name: changed"))
    git(tmp_path / "pinned", "commit", "-qam", "change sub")
    assert [r.path for r in loader.load(f"{repo}/workflows/kinds@{first}").roles()][-1] == \
        "kinds.inc.inner"
    assert [r.path for r in loader.load(f"{repo}/workflows/kinds@master").roles()][-1] == \
        "kinds.inc.changed"


def test_loads_at_two_revisions_in_threads_do_not_trample(template_loader, tmp_path):
    loader, repo = repo_with(template_loader, {"workflows/kinds.yaml": KINDS,
                                               "workflows/sub.yaml": SUB}, name="two")
    first = git(tmp_path / "two", "rev-parse", "HEAD")
    (tmp_path / "two" / "workflows" / "sub.yaml").write_text(SUB.replace("inner", "second"))
    git(tmp_path / "two", "commit", "-qam", "second")
    results: dict[str, set[str]] = {first: set(), "master": set()}
    errors: list[BaseException] = []

    def run(revision: str) -> None:
        try:
            for _ in range(10):
                wf = loader.load(f"{repo}/workflows/kinds@{revision}")
                results[revision].add(wf.task_roles()[-1].name)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(r,)) for r in (first, "master") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == {first: {"inner"}, "master": {"second"}}


def test_an_include_by_repo_path_reads_another_repository(template_loader):
    loader, other = repo_with(template_loader, {"workflows/remote.yaml": SUB.replace(
        "name: sub", "name: remote")}, name="other")
    workflow = f"""\
name: byrepo
roles:
  - name: there
    include: "{other}/workflows/remote@master"
"""
    _, repo = repo_with(template_loader, {"workflows/byrepo.yaml": workflow}, name="main")
    wf = loader.load(f"{repo}/workflows/byrepo")
    assert [r.path for r in wf.roles()] == ["byrepo", "byrepo.there", "byrepo.there.inner"]
    inner = wf.find("byrepo.there.inner")
    assert inner.origin == f"{other}/workflows/remote.yaml@master"
    assert inner.task_class.repo == other


def test_an_include_keeps_its_name_and_layers_the_included_root_over_it(template_loader):
    workflow = """\
name: graft
roles:
  - name: host-{{ it }}
    for: {range: '["h1"]', var: it}
    roles:
      - name: piece
        defaults: {merger_port: "1", both: include-role}
        constraints: [{attribute: machine_id, value: "{{ it }}"}]
        include: part
"""
    part = """\
name: part
defaults: {both: included-root, mine: "{{ merger_port }}-{{ it }}"}
constraints: [{attribute: rack, value: r1}]
roles:
  - name: leaf
    task: {load: t}
"""
    wf = load(template_loader, workflow, files={"workflows/part.yaml": part})
    piece = wf.find("graft.host-h1.piece")
    assert piece.name == "piece" and piece.kind is RoleKind.INCLUDE
    leaf = wf.find("graft.host-h1.piece.leaf")
    assert leaf.stack["both"] == "included-root"
    assert leaf.stack["mine"] == "1-h1"
    assert leaf.constraints == (Constraint("machine_id", "h1"), Constraint("rack", "r1"))
    assert leaf.origin.endswith("workflows/part.yaml@" + leaf.origin.rsplit("@", 1)[1])


def test_an_included_workflow_with_nothing_enabled_removes_the_include(template_loader):
    part = """\
name: part
roles:
  - name: off
    enabled: "{{ it == 'never' }}"
    task: {load: t}
"""
    workflow = """\
name: gone
defaults: {it: x}
roles:
  - name: piece
    include: part
  - name: kept
    task: {load: t}
"""
    wf = load(template_loader, workflow, files={"workflows/part.yaml": part})
    assert [r.name for r in wf.root.children] == ["kept"]


def test_include_errors(template_loader):
    base = """\
name: incerr
roles:
  - name: piece
    include: "{{ what }}"
"""
    message = error_of(template_loader, base, {"what": "missing"})
    assert "role incerr.piece: include 'missing': cannot read the included workflow" in message
    assert "workflows/missing.yaml" in message
    message = error_of(template_loader, base, {"what": "  "})
    assert "role incerr.piece: include: renders to an empty workflow name" in message
    message = error_of(template_loader, base, {"what": "misnamed"},
                       {"workflows/misnamed.yaml": SUB})
    assert "role incerr.piece: include 'misnamed'" in message
    assert "the name of the workflow template file and the name of the workflow don't match " \
           "(file 'misnamed', name 'sub')" in message


# ---------------------------------------------------------------- dpl.* includes

DPL_WORKFLOW = """\
name: dplinc
defaults: {detector: TST, merger_port: "29950"}
roles:
  - name: dpl
    include: "{{ dpl.GenerateFromUri('qc-flp') }}"
"""
JIT_COMMAND = "o2-qc --detector {{ detector }} --port {{ merger_port }}\n"


def generated(name: str) -> str:
    return f"""\
name: {name}
roles:
  - name: qc-task
    task: {{load: {name}-qc-task}}
"""


def generated_task(name: str) -> str:
    return f"""\
name: {name}-qc-task
control: {{mode: fairmq}}
wants: {{cpu: 0.1, memory: 10}}
command: {{value: "o2-qc-task"}}
"""


def test_a_jit_command_that_cannot_run_here_is_a_clear_error(template_loader):
    loader, repo = repo_with(template_loader, {"workflows/dplinc.yaml": DPL_WORKFLOW,
                                               "jit/qc-flp": JIT_COMMAND},
                             o2_profile=Path("/nonexistent/profile.d/o2.sh"))
    with pytest.raises(WorkflowError) as caught:
        loader.load(f"{repo}/workflows/dplinc")
    message = str(caught.value)
    assert "role dplinc.dpl" in message and "field include" in message
    assert "dpl.GenerateFromUri('qc-flp')" in message
    assert "cannot generate DPL workflow from jit/qc-flp" in message
    assert "/nonexistent/profile.d/o2.sh not found on this machine" in message
    assert "--detector TST --port 29950" in message   # the templated command


def test_a_pre_generated_jit_workflow_is_reused(template_loader):
    loader, repo = repo_with(template_loader, {"workflows/dplinc.yaml": DPL_WORKFLOW,
                                               "jit/qc-flp": JIT_COMMAND},
                             o2_profile=Path("/nonexistent/profile.d/o2.sh"))
    name = loader.dpl.jit_name("o2-qc --detector TST --port 29950\n")
    assert name.startswith("jit-") and len(name) == 44
    (loader.workdir.jit / "workflows").mkdir(parents=True, exist_ok=True)
    (loader.workdir.jit / "tasks").mkdir(parents=True, exist_ok=True)
    (loader.workdir.jit / "workflows" / f"{name}.yaml").write_text(generated(name))
    (loader.workdir.jit / "tasks" / f"{name}-qc-task.yaml").write_text(generated_task(name))
    wf = loader.load(f"{repo}/workflows/dplinc")
    dpl = wf.find("dplinc.dpl")
    assert dpl.include == name
    assert dpl.included_origin == str(loader.workdir.jit / "workflows" / f"{name}.yaml")
    task = wf.find("dplinc.dpl.qc-task")
    assert task.task_class.name == f"{name}-qc-task"
    assert task.to_dict()["class"] == f"{name}-qc-task"
    assert task.class_identifier == f"{loader.workdir.jit}/tasks/{name}-qc-task@{name}"


def test_jit_generation_runs_the_command_where_o2_exists(template_loader, tmp_path):
    tools = tmp_path / "o2"
    (tools / "bin").mkdir(parents=True)
    profile = tools / "o2.sh"
    profile.write_text(f'export PATH="{tools / "bin"}:$PATH"\n')
    script = tools / "bin" / "o2-qc"
    script.write_text("""#!/bin/bash
while [ $# -gt 0 ]; do [ "$1" = --o2-control ] && name=$2; shift; done
printf 'name: %s\\nroles:\\n  - name: qc-task\\n    task: {load: %s-qc-task}\\n' \\
  "$name" "$name" > "workflows/$name.yaml"
printf 'name: %s-qc-task\\ncontrol: {mode: fairmq}\\nwants: {cpu: 0.1, memory: 10}\\n' \\
  "$name" > "tasks/$name-qc-task.yaml"
printf 'command: {value: o2-qc-task}\\n' >> "tasks/$name-qc-task.yaml"
""")
    script.chmod(0o755)
    loader, repo = repo_with(template_loader, {"workflows/dplinc.yaml": DPL_WORKFLOW,
                                               "jit/qc-flp": JIT_COMMAND}, o2_profile=profile)
    wf = loader.load(f"{repo}/workflows/dplinc")
    name = wf.find("dplinc.dpl").include
    assert (loader.workdir.jit / "workflows" / f"{name}.yaml").is_file()
    assert [r.path for r in wf.roles()] == ["dplinc", "dplinc.dpl", "dplinc.dpl.qc-task"]
    script.write_text("#!/bin/bash\nexit 3\n")   # a second load reuses, never runs it
    assert loader.load(f"{repo}/workflows/dplinc").find("dplinc.dpl").include == name


def test_a_failing_dpl_command_reports_its_output(template_loader, tmp_path):
    profile = tmp_path / "o2.sh"
    profile.write_text("true\n")
    loader, repo = repo_with(template_loader, {
        "workflows/dplinc.yaml": DPL_WORKFLOW,
        "jit/qc-flp": "fail() { echo cannot configure $1 >&2; exit 7; }; fail {{ detector }}"},
        o2_profile=profile)
    with pytest.raises(WorkflowError) as caught:
        loader.load(f"{repo}/workflows/dplinc")
    message = str(caught.value)
    assert "failed to run the DPL command of jit/qc-flp (exit code 7" in message
    assert "cannot configure TST" in message
    assert "declare -x" not in message   # no bare `export` listing the environment


def test_dpl_generate_with_a_literal_command_and_none(template_loader):
    workflow = """\
name: literal
defaults: {cmd: "o2-dpl-thing --x {{ '1' }}"}
roles:
  - name: dpl
    include: "{{ dpl.Generate(cmd) }}"
"""
    loader, repo = repo_with(template_loader, {"workflows/literal.yaml": workflow},
                             o2_profile=Path("/nonexistent/o2.sh"))
    name = loader.dpl.jit_name("o2-dpl-thing --x 1", from_uri=False)
    (loader.workdir.jit / "workflows").mkdir(parents=True, exist_ok=True)
    (loader.workdir.jit / "workflows" / f"{name}.yaml").write_text(
        generated(name).replace(f"{{load: {name}-qc-task}}", "{load: t}"))
    wf = loader.load(f"{repo}/workflows/literal")
    task = wf.find("literal.dpl.qc-task")
    assert task.task_class.name == "t"   # not generated: found next to the generating repo
    with pytest.raises(WorkflowError, match="dpl.Generate: the DPL command is 'none'"):
        loader.load(f"{repo}/workflows/literal", {"cmd": "none"})


def test_generate_from_uri_without_a_jit_file(template_loader):
    message = error_of(template_loader, DPL_WORKFLOW)
    assert "dpl.GenerateFromUri('qc-flp'): no file jit/qc-flp in" in message


def test_generate_from_uri_or_fallback_loads_the_plain_workflow(template_loader):
    workflow = """\
name: fallback
roles:
  - name: dpl
    include: "{{ dpl.GenerateFromUriOrFallbackToTemplate('sub') }}"
"""
    wf = load(template_loader, workflow, files={"workflows/sub.yaml": SUB})
    assert wf.find("fallback.dpl").include == "sub"
    assert [r.path for r in wf.task_roles()] == ["fallback.dpl.inner"]


def test_dpl_outside_loading_is_an_error(template_loader):
    loader, _ = repo_with(template_loader, {})
    from engine.templates.render import TemplateError, Where
    with pytest.raises(TemplateError, match="only be generated while a workflow loads"):
        loader.renderer.render("{{ dpl.GenerateFromUri('x') }}", {}, Where())


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("workflow,expected", [
    ("name: wrong\nroles:\n  - {name: a, task: {load: t}}\n",
     "the name of the workflow template file and the name of the workflow don't match "
     "(file 'errs', name 'wrong')"),
    ("name: errs\nroles:\n  - {task: {load: t}}\n",
     "role errs[0] has no name (name is mandatory)"),
    ("name: errs\nroles:\n  - {name: a, task: {load: t}, roles: []}\n",
     "role errs.a: task and roles cannot be combined"),
    ("name: errs\nroles:\n  - {name: a, call: {func: x.Y()}, include: sub}\n",
     "role errs.a: call and include cannot be combined"),
    ("name: errs\nroles:\n  - {name: a, vars: {x: y}}\n",
     "role errs.a: a role needs one of task, call, roles or include"),
    ("name: errs\nroles:\n  - {name: a, task: {trigger: DESTROY}}\n",
     "role errs.a: task.load is missing"),
    ("name: errs\nroles:\n  - {name: a, call: {trigger: DESTROY}}\n",
     "role errs.a: call.func is missing"),
    ("name: errs\nroles:\n  - {name: a, task: {load: t, critical: perhaps}}\n",
     "role errs.a: task.critical: 'perhaps' is not a boolean"),
    ("name: errs\nroles:\n  - {name: a, task: {load: nosuch}}\n",
     "role errs.a: task.load 'nosuch': cannot read the task template"),
    ("name: errs\nroles:\n  - {name: a, task: {load: broken}}\n",
     "role errs.a: task.load 'broken'"),
    ("name: errs\nroles:\n  - {name: 'a:b', task: {load: t}}\n",
     "role errs.a:b: name 'a:b': renders to 'a:b'; a role name must not contain ':'"),
    ("name: errs\nroles:\n  - {name: '{{ empty }}', task: {load: t}}\n",
     "name '{{ empty }}': renders to an empty name"),
    ("name: errs\nroles: {a: b}\n", "role errs: roles must be a list of roles"),
    ("name: errs\n", "role errs: the workflow root needs roles"),
    ("name: errs\nroles:\n  - {name: a, task: {load: t}, constraints: [{value: x}]}\n",
     "role errs.a: constraints[0] must be a mapping with an attribute and a value"),
    ("name: errs\nroles:\n  - {name: a, task: {load: t}}\n  bad: [\n",
     "workflows/errs.yaml@master:"),
])
def test_loading_errors_name_file_role_and_field(template_loader, workflow, expected):
    broken = "name: broken\ncontrol: {mode: basic}\ncommand: {value: x}\n"   # no wants
    loader, repo = repo_with(template_loader, {"workflows/errs.yaml": workflow,
                                               "workflows/sub.yaml": SUB,
                                               "tasks/broken.yaml": broken})
    with pytest.raises(WorkflowError) as caught:
        loader.load(f"{repo}/workflows/errs", {"empty": ""})
    message = str(caught.value)
    assert "workflows/errs.yaml@master" in message
    assert expected in message


def test_an_undefined_variable_names_everything(template_loader):
    workflow = """\
name: undefined
roles:
  - name: r
    enabled: "{{ no_such_flag == 'true' }}"
    task: {load: t}
"""
    message = error_of(template_loader, workflow)
    assert message.startswith("repo ")
    assert "file workflows/undefined.yaml@master" in message
    assert "role undefined.r" in message and "field enabled" in message
    assert "{{ no_such_flag == 'true' }}" in message and "unknown name no_such_flag" in message


def test_an_unknown_workflow_or_repository(template_loader):
    loader, repo = repo_with(template_loader, {})
    with pytest.raises(WorkflowError, match="cannot load workflow 'nope'"):
        loader.load("nope")
    with pytest.raises(WorkflowError, match=r"cannot load workflow 'github.com/x/y/workflows/z'"):
        loader.load("github.com/x/y/workflows/z")


def test_configuration_payloads_a_jit_command_reads_are_part_of_its_name(template_loader):
    uri = "consul-json://127.0.0.1:8500/o2/components/qc/ANY/any/flp-config"
    configuration = "o2:\n  components:\n    qc:\n      ANY:\n        any:\n" \
                    "          flp-config: '{\"qc\": 1}'\n"
    loader, repo = repo_with(template_loader, {"workflows/dplinc.yaml": DPL_WORKFLOW,
                                               "jit/qc-flp": f"o2-qc --config {uri}"},
                             configuration=configuration, o2_profile=Path("/nonexistent/o2.sh"))
    name = loader.dpl.jit_name(f"o2-qc --config {uri}", payloads=('{"qc": 1}',))
    (loader.workdir.jit / "workflows").mkdir(parents=True, exist_ok=True)
    (loader.workdir.jit / "workflows" / f"{name}.yaml").write_text(
        generated(name).replace(f"{{load: {name}-qc-task}}", "{load: t}"))
    assert loader.load(f"{repo}/workflows/dplinc").find("dplinc.dpl").include == name
    loader.workdir.configuration_file.write_text(configuration.replace('1}', '2}'))
    with pytest.raises(WorkflowError, match="cannot generate DPL workflow from jit/qc-flp"):
        loader.load(f"{repo}/workflows/dplinc")   # another payload, another name: not cached
    loader.workdir.configuration_file.write_text("")
    with pytest.raises(WorkflowError, match="JIT failed trying to query configuration payload"):
        loader.load(f"{repo}/workflows/dplinc")


def test_load_local_reads_the_working_tree_without_adding_the_repository(template_loader,
                                                                          tmp_path):
    loader, _ = repo_with(template_loader, {})
    other = tmp_path / "checkout"
    make_template_repo(other, {"workflows/kinds.yaml": KINDS, "workflows/sub.yaml": SUB,
                               "tasks/t.yaml": TASK})
    (other / "workflows" / "sub.yaml").write_text(SUB.replace("inner", "edited"))  # uncommitted
    wf = loader.load_local(other, "kinds")
    assert wf.origin == f"{other}/workflows/kinds.yaml@local"
    assert wf.task_roles()[-1].path == "kinds.inc.edited"
    (other / "workflows" / "sub.yaml").write_text(SUB.replace("inner", "again"))
    assert loader.load_local(other, "kinds.yaml").task_roles()[-1].path == "kinds.inc.again"


@pytest.mark.parametrize("argument,reason", [
    ("'none'", "dpl.GenerateFromUri('none'): the DPL command is 'none'"),
    ("''", "dpl.GenerateFromUri(''): no jit command name given"),
    ("'../x'", "dpl.GenerateFromUri('../x'): bad file path 'jit/../x'"),
])
def test_generate_from_uri_argument_errors(template_loader, argument, reason):
    workflow = DPL_WORKFLOW.replace("'qc-flp'", argument)
    assert reason in error_of(template_loader, workflow)
