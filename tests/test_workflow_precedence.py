"""Variable precedence and staging (reference §4.4, §4.5) on small purpose-built workflows.

Each workflow lives in a real git repository made in a tmp dir; the global
layers come from the embedded configuration (configuration.yaml in the tmp
working directory).
"""
from __future__ import annotations

import json

import pytest

from engine.task.command import TaskSpecials, task_stack
from engine.templates.render import Where
from engine.workflow import TaskRole, WorkflowError

TASK = """\
name: t
control: {mode: basic}
wants: {cpu: 0.1, memory: 10}
defaults:
  user: class-default
  only_class: class-default
  class_and_var: class-default
vars:
  class_var: class-var
command:
  value: "echo {{ user }}"
  shell: true
"""

CONSUL = """\
o2:
  runtime:
    aliecs:
      defaults:
        a: consul-default
        b: consul-default
        c: consul-default
        d: consul-default
      vars:
        b: consul-var
        d: consul-var
        e: consul-var
  hardware:
    detectors:
      ITS:
        flps:
          flp001: {}
      TPC:
        flps:
          flp002: {}
"""


def load(template_loader, workflow: str, user_vars=None, configuration: str = "", **kw):
    """Load workflows/<first name>.yaml of a one-workflow repository with task t."""
    name = workflow.split("\n", 1)[0].removeprefix("name:").strip()
    loader, repo = template_loader({f"workflows/{name}.yaml": workflow, "tasks/t.yaml": TASK},
                                   configuration=configuration)
    return loader, loader.load(f"{repo}/workflows/{name}", user_vars or {}, **kw)


def leaf_stack(workflow) -> dict[str, str]:
    return dict(workflow.task_roles()[0].stack)


LAYERS = """\
name: layers
defaults: {x: root-default, y: root-default, z: root-default, v: root-default}
vars: {y: root-var, v: root-var}
roles:
  - name: mid
    defaults: {x: mid-default, y: mid-default}
    vars: {z: mid-var, v: mid-var}
    roles:
      - name: leaf
        defaults: {y: leaf-default, z: leaf-default, w: leaf-default}
        task: {load: t}
"""


def test_a_child_default_beats_its_parents_default(template_loader):
    _, wf = load(template_loader, LAYERS)
    assert leaf_stack(wf)["x"] == "mid-default"
    assert leaf_stack(wf)["w"] == "leaf-default"


def test_any_var_beats_any_default_at_any_depth(template_loader):
    _, wf = load(template_loader, LAYERS)
    stack = leaf_stack(wf)
    assert stack["y"] == "root-var"   # a root var over the leaf's own default
    assert stack["z"] == "mid-var"    # a mid var over the leaf's own default


def test_a_child_var_beats_its_parents_var(template_loader):
    _, wf = load(template_loader, LAYERS)
    assert leaf_stack(wf)["v"] == "mid-var"
    assert wf.find("layers").stack["v"] == "root-var"


def test_user_vars_beat_everything(template_loader):
    _, wf = load(template_loader, LAYERS, {"x": "user", "y": "user", "z": "user", "v": "user"})
    stack = leaf_stack(wf)
    assert {k: stack[k] for k in "xyzv"} == {"x": "user", "y": "user", "z": "user", "v": "user"}
    assert stack["w"] == "leaf-default"


def test_configuration_defaults_and_vars_sit_under_the_template_in_each_layer(template_loader):
    workflow = """\
name: consul
defaults: {a: wft-default, b: wft-default}
vars: {d: wft-var}
roles:
  - name: leaf
    task: {load: t}
"""
    _, wf = load(template_loader, workflow, configuration=CONSUL)
    stack = leaf_stack(wf)
    assert stack["a"] == "wft-default"      # template defaults > configuration defaults
    assert stack["b"] == "consul-var"       # configuration vars > template defaults
    assert stack["c"] == "consul-default"   # nothing else sets it
    assert stack["d"] == "wft-var"          # template vars > configuration vars
    assert stack["e"] == "consul-var"
    _, wf = load(template_loader, workflow.replace("name: consul", "name: consul"),
                 {"d": "user", "c": "user"}, configuration=CONSUL)
    assert leaf_stack(wf)["d"] == "user" and leaf_stack(wf)["c"] == "user"


def test_the_globals_apricot_adds_and_the_environment_id(template_loader):
    workflow = """\
name: globals
roles:
  - name: leaf
    vars:
      seen: "{{ consul_endpoint }} {{ environment_id }} {{ core_hostname != '' }}"
    task: {load: t}
"""
    _, wf = load(template_loader, workflow, environment_id="2oDvieFrVTi")
    stack = leaf_stack(wf)
    assert stack["seen"] == "127.0.0.1:8500 2oDvieFrVTi true"
    assert stack["environment_id"] == "2oDvieFrVTi"


def test_detectors_is_a_global_default_from_the_hosts(template_loader):
    workflow = """\
name: dets
defaults: {}
roles:
  - name: leaf
    vars: {seen: "{{ detectors }}"}
    task: {load: t}
"""
    _, wf = load(template_loader, workflow, {"hosts": ["flp002", "flp001"]}, configuration=CONSUL)
    stack = leaf_stack(wf)
    assert stack["seen"] == '["ITS","TPC"]'
    assert stack["hosts"] == '["flp002","flp001"]'   # a list is passed as JSON, as AliECS's vars


def test_role_targeted_user_vars_are_ignored(template_loader):
    _, wf = load(template_loader, LAYERS, {"layers.mid.leaf:x": "targeted"})
    assert leaf_stack(wf)["x"] == "mid-default"
    assert "layers.mid.leaf:x" not in leaf_stack(wf)


def test_task_template_defaults_and_vars_are_the_lowest(template_loader):
    workflow = """\
name: lowest
defaults: {user: wft-default}
roles:
  - name: leaf
    vars: {class_and_var: role-var}
    task: {load: t}
"""
    loader, wf = load(template_loader, workflow)
    role = wf.task_roles()[0]
    specials = TaskSpecials("t#1", "1", role.class_identifier, "flp001", "env", role.path)
    stack = task_stack(role.task_class, role.stack, specials, loader.renderer, Where())
    assert stack["user"] == "wft-default"          # a workflow default over a class default
    assert stack["class_and_var"] == "role-var"    # a role var over a class default
    assert stack["only_class"] == "class-default"
    assert stack["class_var"] == "class-var"


def test_locals_are_on_top_during_the_roles_own_stages(template_loader):
    workflow = """\
name: locals
vars: {it: root-var}
roles:
  - name: host-{{ it }}
    for: {range: '["h1"]', var: it}
    vars: {seen_by_role: "{{ it }}"}
    roles:
      - name: leaf
        vars: {seen_by_child: "{{ it }}"}
        task: {load: t}
"""
    _, wf = load(template_loader, workflow)
    assert [r.path for r in wf.roles()] == ["locals", "locals.host-h1", "locals.host-h1.leaf"]
    host = wf.find("locals.host-h1")
    assert host.vars["seen_by_role"] == "h1"
    assert host.vars["it"] == "h1"   # locals are copied into the role's vars afterwards
    assert host.locals == {"it": "h1"}
    assert leaf_stack(wf)["seen_by_child"] == "h1"


def test_a_user_var_of_the_iterator_name_wins_below_the_iterated_role(template_loader):
    """AliECS copies locals into vars after the role's stages, so the user layer beats
    them for children: the iterated role itself still sees its local."""
    workflow = """\
name: shadow
roles:
  - name: host-{{ it }}
    for: {range: '["h1"]', var: it}
    roles:
      - name: leaf
        vars: {seen: "{{ it }}"}
        task: {load: t}
"""
    _, wf = load(template_loader, workflow, {"it": "from-user"})
    assert wf.root.children[0].name == "host-h1"
    assert leaf_stack(wf)["seen"] == "from-user"


def test_stage0_enabled_sees_the_parent_stack_only(template_loader):
    workflow = """\
name: stage0
defaults: {flag: "off"}
roles:
  - name: pruned
    enabled: "{{ flag == 'on' }}"
    defaults: {flag: "on"}
    task: {load: t}
  - name: kept
    enabled: "{{ flag == 'off' }}"
    defaults: {flag: "on"}
    task: {load: t}
"""
    _, wf = load(template_loader, workflow)
    assert [r.name for r in wf.root.children] == ["kept"]
    assert wf.find("stage0.kept").stack["flag"] == "on"


def test_a_disabled_role_evaluates_nothing_else(template_loader):
    workflow = """\
name: nothing
roles:
  - name: off
    enabled: "false"
    vars: {broken: "{{ no_such_variable }}"}
    constraints: [{attribute: machine_id, value: "{{ neither }}"}]
    task: {load: "{{ nor_this }}"}
  - name: on
    task: {load: t}
"""
    _, wf = load(template_loader, workflow)
    assert [r.name for r in wf.root.children] == ["on"]


@pytest.mark.parametrize("value,enabled", [("true", True), (" TRUE ", True), ("1", True),
                                           ("yes", False), ("0", False), ("", False)])
def test_enabled_is_true_or_1_trimmed_and_lowercased(template_loader, value, enabled):
    workflow = f"""\
name: truth
roles:
  - name: maybe
    enabled: "{{{{ v }}}}"
    task: {{load: t}}
  - name: always
    task: {{load: t}}
"""
    _, wf = load(template_loader, workflow, {"v": value})
    assert (wf.find("truth.maybe") is not None) is enabled


def test_defaults_see_the_parent_stack_not_each_other(template_loader):
    workflow = """\
name: s1
roles:
  - name: r
    defaults: {a: "1", b: "{{ a }}"}
    task: {load: t}
"""
    with pytest.raises(WorkflowError) as caught:
        load(template_loader, workflow)
    message = str(caught.value)
    assert "unknown name a" in message
    assert "role s1.r" in message and "field defaults.b" in message and "{{ a }}" in message


def test_vars_see_own_defaults_but_not_each_other(template_loader):
    workflow = """\
name: s2
roles:
  - name: r
    defaults: {a: "1"}
    vars: {c: "{{ a }}"}
    task: {load: t}
"""
    _, wf = load(template_loader, workflow)
    assert wf.task_roles()[0].vars["c"] == "1"
    with pytest.raises(WorkflowError, match=r"field vars\.e.*unknown name d"):
        load(template_loader, workflow.replace('vars: {c: "{{ a }}"}',
                                               'vars: {d: "x", e: "{{ d }}"}'))


def test_name_and_task_fields_see_the_full_stack(template_loader):
    workflow = """\
name: s4
roles:
  - name: "r-{{ suffix }}"
    vars: {suffix: own-var, which: t, when: before_CONFIGURE, wait: 5s}
    task: {load: "{{ which }}", trigger: "{{ when }}+1", timeout: "{{ wait }}"}
"""
    _, wf = load(template_loader, workflow)
    role = wf.task_roles()[0]
    assert isinstance(role, TaskRole)
    assert (role.path, role.load, str(role.trigger), role.timeout) == \
        ("s4.r-own-var", "t", "before_CONFIGURE+1", "5s")


def test_rendered_values_are_not_rendered_again_by_children(template_loader):
    workflow = """\
name: once
defaults: {text: "{{ '{{' }} literal }}"}
roles:
  - name: leaf
    vars: {copy: "{{ text }}"}
    task: {load: t}
"""
    _, wf = load(template_loader, workflow)
    assert leaf_stack(wf)["copy"] == "{{ literal }}"


def test_consolidated_stack_is_json_serialisable_and_string_valued(template_loader):
    _, wf = load(template_loader, LAYERS, {"n": 3, "flag": True})
    stack = leaf_stack(wf)
    assert stack["n"] == "3" and stack["flag"] == "true"
    assert all(isinstance(v, str) for v in stack.values())
    json.dumps(stack)


def test_stacks_recomputed_from_the_layers_match_and_follow_runtime_changes(template_loader):
    _, wf = load(template_loader, LAYERS, {"u": "user"}, configuration=CONSUL)
    for role in wf.roles():
        assert wf.stack_of(role) == dict(role.stack)
    leaf = wf.task_roles()[0]
    wf.root.vars["run_number"] = "42"       # what the engine does at START
    leaf.parent.user_vars["y"] = "runtime"  # a runtime var set on a role
    stack = wf.stack_of(leaf)
    assert (stack["run_number"], stack["y"], stack["x"]) == ("42", "runtime", "mid-default")
