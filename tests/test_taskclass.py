"""Task classes from task templates: the 12 corpus templates and every validation error."""
from __future__ import annotations

import logging
import threading

import pytest

from engine.task.channels import Addressing, ChannelType, Transport
from engine.task.errors import TaskClassError
from engine.task.taskclass import (Constraint, Limits, PortRange, TaskClass, TaskClassCache,
                                   parse_port_ranges)
from executor.controlmode import ControlMode
from tests.conftest import CORPUS
from engine.repos import TemplateFile
from tests.task_templates import COMMIT, REPO, corpus, inline, template_file

CORPUS_TASKS = CORPUS / "tasks"


def load(text: str, name: str = "t") -> TaskClass:
    return inline(name, text)


MINIMAL = """\
name: t
control: {mode: fairmq}
wants: {cpu: 0.5, memory: 64}
command: {value: /bin/true}
"""

CORPUS_MODES = {
    "fairmq-shmmonitor": ControlMode.BASIC, "o2-roc-cleanup": ControlMode.BASIC,
    "o2-roc-ctp-emulator": ControlMode.BASIC, "readout-ctp": ControlMode.DIRECT,
    "readout": ControlMode.DIRECT, "roc-config-args": ControlMode.BASIC,
    "roc-config-uri": ControlMode.BASIC, "shell-command": ControlMode.BASIC,
    "stfbuilder-nooutput": ControlMode.FAIRMQ, "stfbuilder-senderoutput": ControlMode.FAIRMQ,
    "stfbuilder": ControlMode.FAIRMQ, "stfsender": ControlMode.FAIRMQ,
}


def test_corpus_has_twelve_task_templates() -> None:
    assert sorted(p.stem for p in CORPUS_TASKS.glob("*.yaml")) == sorted(CORPUS_MODES)


@pytest.mark.parametrize("name", sorted(CORPUS_MODES))
def test_every_corpus_task_template_loads(name: str) -> None:
    task_class = corpus(name)
    assert task_class.name == name
    assert task_class.identifier == f"{REPO}/tasks/{name}@{COMMIT}"
    assert task_class.control_mode is CORPUS_MODES[name]
    assert task_class.command.shell is True
    assert task_class.command.stdout == "{{ log_task_stdout }}"
    assert task_class.command.stderr == "{{ log_task_stderr }}"
    assert task_class.wants.cpu > 0 and task_class.wants.memory > 0
    assert task_class.limits == Limits()


def test_readout_class_fields() -> None:
    readout = corpus("readout")
    assert readout.wants.cpu == 0.15 and readout.wants.memory == 128
    assert readout.command.value == "{{ len(modulepath)>0 ? _module_cmdline : _plain_cmdline }}"
    assert readout.command.user == "{{ user }}"
    assert readout.command.env == ("O2_DETECTOR={{ detector }}",
                                   "O2_PARTITION={{ environment_id }}")
    assert readout.command.arguments == ("{{ readout_cfg_uri }}",)
    assert readout.defaults["_module_cmdline"] == (
        "source /etc/profile.d/modules.sh && MODULEPATH={{ modulepath }} module load Readout "
        "Control-OCCPlugin && o2-readout-exe")
    assert readout.defaults["user"] == "flp"
    assert dict(readout.properties) == {}
    (bind,) = readout.bind
    assert (bind.name, bind.type, bind.transport, bind.addressing) == (
        "readout", ChannelType.PUSH, Transport.SHMEM, Addressing.IPC)
    assert readout.task_name("T1") == f"{REPO}/tasks/readout@{COMMIT}#T1"


def test_values_keep_their_source_text_and_comments_go() -> None:
    stfsender = corpus("stfsender")
    assert stfsender.defaults["stfs_dd_region_size"] == "4096"
    assert stfsender.defaults["max_buffered_stfs"] == "-1"
    assert stfsender.defaults["dd_discovery_net_if"] == "ib0"
    assert "UCX_NET_DEVICES=mlx5_0:1" in stfsender.command.env
    assert 'http_proxy=""' in stfsender.command.env
    assert corpus("o2-roc-cleanup").command.user == "root"
    assert corpus("roc-config-uri").vars["_plain_cmdline"].startswith("source /etc/profile.d/o2.sh")
    assert len(corpus("roc-config-args").defaults) == 29


def test_full_schema() -> None:
    task_class = load("""\
name: t
control: {mode: Direct}
wants: {cpu: "1", memory: 2.5e3, ports: "10000-10010, 10020"}
limits: {cpu: 2}
defaults: {a: 1}
vars: {b: "{{ a }}"}
bind: [{name: out, type: pub}]
connect: [{name: in, type: sub}]
constraints: [{attribute: machine_id, value: "{{ host }}"}]
properties: {severity: info, empty: }
command:
  value: prog
  shell: "false"
  log: STDOUT
  arguments: [-v]
""")
    assert task_class.control_mode is ControlMode.DIRECT
    assert task_class.wants.memory == 2500
    assert task_class.wants.ports == "10000-10010, 10020"
    assert task_class.wants.port_ranges == (PortRange(10000, 10010), PortRange(10020, 10020))
    assert task_class.limits == Limits(cpu=2.0, memory=None)
    assert dict(task_class.defaults) == {"a": "1"} and dict(task_class.vars) == {"b": "{{ a }}"}
    assert task_class.constraints == (Constraint("machine_id", "{{ host }}"),)
    assert dict(task_class.properties) == {"severity": "info", "empty": ""}
    assert task_class.command.shell is False
    assert task_class.command.stdout == "STDOUT"  # log is the deprecated alias of stdout
    assert task_class.command.stderr is None


def test_unknown_control_mode_is_direct_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.task"):
        task_class = load(MINIMAL.replace("fairmq", "occ"))
    assert task_class.control_mode is ControlMode.DIRECT
    assert "repo/tasks/t.yaml@c0ffee: control.mode 'occ' is not a control mode; using direct" \
        in caplog.text
    assert load(MINIMAL.replace("control: {mode: fairmq}\n", "")).control_mode is ControlMode.DIRECT


def test_connect_targets_in_task_templates_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.task"):
        task_class = load(MINIMAL + "connect: [{name: in, type: pull, target: 'a.b:c'}]\n")
    assert task_class.connect[0].target == ""
    assert "connect target is ignored" in caplog.text


ORIGIN = "repo/tasks/t.yaml@c0ffee"


@pytest.mark.parametrize("text, message", [
    (MINIMAL.replace("name: t", "name: other"),
     f"{ORIGIN}: name 'other' does not match the file name 't'"),
    (MINIMAL.replace("name: t\n", ""), f"{ORIGIN}: name is missing (it must be 't'"),
    (MINIMAL.replace("wants: {cpu: 0.5, memory: 64}\n", ""), f"{ORIGIN}: wants is missing"),
    (MINIMAL.replace("cpu: 0.5", "cpu: lots"), f"{ORIGIN}: wants.cpu must be a number, not 'lots'"),
    (MINIMAL.replace(", memory: 64", ""), f"{ORIGIN}: wants.memory is missing (a number)"),
    (MINIMAL.replace("cpu: 0.5", "cpu: -1"), f"{ORIGIN}: wants.cpu must not be negative"),
    (MINIMAL.replace("memory: 64", "memory: 64, ports: '10-x'"),
     f"{ORIGIN}: wants.ports: '10-x' is not a port or a port range"),
    (MINIMAL.replace("memory: 64", "memory: 64, ports: '20-10'"), "out of order"),
    (MINIMAL + "limits: {memory: much}\n", f"{ORIGIN}: limits.memory must be a number"),
    (MINIMAL.replace("command: {value: /bin/true}\n", ""), f"{ORIGIN}: command is missing"),
    (MINIMAL.replace("value: /bin/true", "user: flp"), f"{ORIGIN}: command.value is missing"),
    (MINIMAL.replace("value: /bin/true", "value: x, shell: maybe"),
     f"{ORIGIN}: command.shell must be true or false, not 'maybe'"),
    (MINIMAL.replace("value: /bin/true", "value: x, stdout: loud"),
     f"{ORIGIN}: command.stdout must be none, stdout or all, not 'loud'"),
    (MINIMAL.replace("value: /bin/true", "value: x, stderr: [all]"),
     f"{ORIGIN}: command.stderr must be a single value, not a list"),
    (MINIMAL.replace("value: /bin/true", "value: x, env: [NOEQUALS]"),
     f"{ORIGIN}: command.env[0] 'NOEQUALS' is not NAME=VALUE"),
    (MINIMAL.replace("value: /bin/true", "value: x, arguments: -v"),
     f"{ORIGIN}: command.arguments must be a list of strings"),
    (MINIMAL.replace("fairmq", "hook"), f"{ORIGIN}: control.mode hook is never written"),
    (MINIMAL + "control2: x\nbind: [{name: c, type: sideways}]\n",
     f"{ORIGIN}: bind[0] (c): type is 'sideways'; allowed: push, pull, pub, sub"),
    (MINIMAL + "constraints: [{value: x}]\n", f"{ORIGIN}: constraints[0].attribute is missing"),
    (MINIMAL + "constraints: {attribute: x}\n", f"{ORIGIN}: constraints must be a list"),
    (MINIMAL + "properties: {p: {nested: 1}}\n",
     f"{ORIGIN}: properties.p must be a single value, not a mapping"),
    (MINIMAL + "defaults: [a, b]\n", f"{ORIGIN}: defaults must be a mapping of variables"),
    (MINIMAL + "wants2: [\n", f"{ORIGIN}:"),
    ("- just\n- a list\n", f"{ORIGIN}: a task template must be a mapping, not list"),
])
def test_validation_errors_name_file_and_field(text: str, message: str) -> None:
    with pytest.raises(TaskClassError) as error:
        load(text)
    assert message in str(error.value)


def test_yaml_errors_give_the_line() -> None:
    with pytest.raises(TaskClassError,
                       match=r"repo/tasks/t\.yaml@c0ffee:5:15: expected the node content"):
        load(MINIMAL + "defaults: {a: ]\n")


def test_port_ranges() -> None:
    assert parse_port_ranges("", "ctx") == ()
    assert parse_port_ranges("5000", "ctx") == (PortRange(5000, 5000),)
    with pytest.raises(TaskClassError, match="ctx: port range '0-3' is out of order or outside"):
        parse_port_ranges("0-3", "ctx")


def test_cache_reads_each_template_once_and_is_shared_by_threads() -> None:
    reads: list[str] = []
    lock = threading.Lock()

    def read() -> TemplateFile:
        with lock:
            reads.append("readout")
        return template_file(REPO, COMMIT, "tasks/readout.yaml", (CORPUS_TASKS / "readout.yaml").read_text())

    cache = TaskClassCache()
    first = cache.get(REPO, COMMIT, "tasks/readout.yaml", read)
    results: list[TaskClass] = []

    def worker() -> None:
        for _ in range(50):
            results.append(cache.get(REPO, COMMIT, "tasks/readout.yaml", read))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reads == ["readout"]
    assert all(result is first for result in results) and len(results) == 200
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0
