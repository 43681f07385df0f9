"""Per-task commands built from the real corpus task templates with the real renderer."""
from __future__ import annotations


import pytest

from engine.task.command import TaskSpecials, build_task_command, render_stable, task_stack
from engine.task.errors import TaskBuildError
from engine.task.taskclass import TaskClass
from engine.templates.render import Renderer, TemplateError, Where
from executor.command import OutputMode, TaskCommand
from executor.controlmode import ControlMode
from executor.plumbing import control_plumbing
from tests.conftest import CORPUS
from tests.task_templates import COMMIT, REPO, corpus, inline

CORPUS_TASKS = CORPUS / "tasks"
ENV_ID = "2oEqCZXrnFG"
HOST_ROLE = "readout-dataflow.host-flp001"


def role_stack(**overrides: str) -> dict[str, str]:
    """What readout-dataflow's per-host role hands its task roles (a realistic subset)."""
    stack = {
        "hosts": '["flp001","flp002"]', "it": "flp001", "detector": "TPC", "modulepath": "",
        "o2_install_path": "/opt/o2", "consul_endpoint": "ali-consul:8500",
        "infologger_mode": "infoLoggerD", "infologger_severity": "important",
        "fmq_rate_logging": "0", "monitoring_dd_url": "influxdb-unix:///tmp/telegraf.sock",
        "ddsched_enabled": "false", "stfs_input_channel_name": "buildertosender",
        "dd_discovery_stfs_id": "stfs-flp001", "log_task_stdout": "none",
        "log_task_stderr": "none", "environment_id": ENV_ID,
    }
    stack.update(overrides)
    return stack


def specials(task_class: TaskClass, role: str, task_id: str = "T1",
             host: str = "flp001") -> TaskSpecials:
    return TaskSpecials(task_name=task_class.task_name(task_id), task_id=task_id,
                        task_class_name=task_class.identifier, task_hostname=host,
                        environment_id=ENV_ID, task_parent_role=role)


def build(renderer: Renderer, task_class: TaskClass, stack: dict[str, str], *,
          role: str | None = None, port: int | None = 31000, **kwargs: object) -> TaskCommand:
    role = role or f"{HOST_ROLE}.{task_class.name}"
    where = Where(repo=REPO, file="workflows/readout-dataflow.yaml", role_path=role)
    return build_task_command(task_class, stack, specials(task_class, role), renderer, port,
                              where, **kwargs)  # type: ignore[arg-type]


def squashed(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- corpus task templates

def test_readout_plain_install(renderer: Renderer) -> None:
    command = build(renderer, corpus("readout"), role_stack())
    assert command == TaskCommand(
        value="/opt/o2/bin/o2-readout-exe",
        arguments=("consul-ini://ali-consul:8500/o2/components/readout/ANY/any/"
                   "readout-standalone-flp001",),
        env=("O2_DETECTOR=TPC", f"O2_PARTITION={ENV_ID}"),
        shell=True, user="flp", stdout=OutputMode.NONE, stderr=OutputMode.NONE,
        control_port=31000, control_mode=ControlMode.DIRECT)


def test_readout_with_modules_re_renders_module_cmdline(renderer: Renderer) -> None:
    command = build(renderer, corpus("readout"),
                    role_stack(modulepath="/opt/alisw/el9/modulefiles", log_task_stderr="ALL"))
    assert command.value == ("source /etc/profile.d/modules.sh && "
                             "MODULEPATH=/opt/alisw/el9/modulefiles module load Readout "
                             "Control-OCCPlugin && o2-readout-exe")
    assert command.stderr is OutputMode.ALL   # lower-cased before the check, as AliECS does


def test_stfbuilder_arguments(renderer: Renderer) -> None:
    command = build(renderer, corpus("stfbuilder"), role_stack())
    assert command.control_mode is ControlMode.FAIRMQ
    assert command.value == "/opt/o2/bin/StfBuilder"
    assert command.env == ("O2_INFOLOGGER_MODE=infoLoggerD", "O2_DETECTOR=TPC",
                           "DATADIST_FEE_MASK=0xffff", f"O2_PARTITION={ENV_ID}")
    assert command.arguments == (
        "--session=default", "--shm-segment-id=2", "--shm-segment-size=33554432",
        "--transport=shmem", "--monitoring-backend='influxdb-unix:///tmp/telegraf.sock'",
        "--monitoring-process-interval='5'", f"--discovery-partition={ENV_ID}",
        "--discovery-endpoint=no-op://", "--detector-rdh=6", "--detector-subspec=feeid",
        "--severity=info", "--severity-infologger=important", "--dpl-channel-name=dpl-chan",
        "--shm-monitor=false", "--detector=TPC", "--run-type=physics", " ", " ", " ", " ")


def test_stfbuilder_data_sink_switch_from_the_role(renderer: Renderer) -> None:
    command = build(renderer, corpus("stfbuilder"),
                    role_stack(stfb_enable_datasink="true", stfb_datasink_dir="/data/stf"))
    assert command.arguments[-4:] == ("--data-sink-enable", "--data-sink-dir=/data/stf",
                                      "--data-sink-max-stfs-per-file=0",
                                      "--data-sink-max-file-size=2048")


def test_class_default_detector_when_the_role_has_none(renderer: Renderer) -> None:
    stack = role_stack()
    del stack["detector"]
    command = build(renderer, corpus("stfbuilder-nooutput"), stack)
    assert "--detector=TST" in command.arguments and "O2_DETECTOR=TST" in command.env


@pytest.mark.parametrize("ddsched, expected", [("false", "--stand-alone"), ("true", "")])
def test_stfsender_scheduler_switch(renderer: Renderer, ddsched: str, expected: str) -> None:
    command = build(renderer, corpus("stfsender"), role_stack(ddsched_enabled=ddsched))
    assert command.value == "numactl --cpunodebind=0 --preferred=0 -- /opt/o2/bin/StfSender"
    assert command.arguments[15] == expected
    assert command.arguments[:5] == ("--session=default", "--shm-segment-id=2",
                                     "--shm-segment-size=33554432", "--dd-region-size=4096",
                                     "--dd-region-id=3536")
    assert "--input-channel-name=buildertosender" in command.arguments
    assert "--discovery-id=stfs-flp001" in command.arguments
    assert 'http_proxy=""' in command.env and "UCX_IB_SL=1" in command.env


def test_o2_roc_cleanup_as_a_hook(renderer: Renderer) -> None:
    stack = {"detector": "TPC", "modulepath": "", "o2_install_path": "/opt/o2",
             "log_task_stdout": "stdout", "log_task_stderr": "none"}
    command = build(renderer, corpus("o2-roc-cleanup"), stack,
                    role="resources-cleanup.host-flp001.o2-roc-cleanup", port=None, hook=True,
                    timeout_ns=10_000_000_000)
    assert command == TaskCommand(
        value="yes | /opt/o2/bin/o2-roc-cleanup", arguments=("--light",),
        env=("O2_DETECTOR=TPC", f"O2_PARTITION={ENV_ID}"), shell=True, user="root",
        stdout=OutputMode.STDOUT, stderr=OutputMode.NONE, control_port=0,
        control_mode=ControlMode.HOOK, timeout_ns=10_000_000_000)
    assert command.timeout == 10.0
    modules = build(renderer, corpus("o2-roc-cleanup"), {**stack, "modulepath": "/m"})
    assert modules.value == ("source /etc/profile.d/modules.sh && MODULEPATH=/m module load "
                             "ReadoutCard && yes | o2-roc-cleanup")
    assert modules.control_mode is ControlMode.BASIC


def card_stack(**overrides: str) -> dict[str, str]:
    return {"card": "0228", "card_endpoints": "0 1", "host": "flp001", "modulepath": "",
            "infologger_mode": "infoLoggerD", "consul_endpoint": "ali-consul:8500",
            "consul_prefix": "o2/components/readoutcard", "log_task_stdout": "none",
            "log_task_stderr": "none", **overrides}


def test_roc_config_args_defaults_use_each_other(renderer: Renderer) -> None:
    command = build(renderer, corpus("roc-config-args"), card_stack(),
                    role="o2-roc-config.host-flp001.card-0228.roc-config-args")
    assert squashed(command.value) == (
        "source /etc/profile.d/o2.sh && for endpoint in 0 1;do args=(--links 0 --clock LOCAL "
        "--cru-id 0x0 --crorc-id 0x0 --datapathmode PACKET --downstreamdata CTP --gbtmode GBT "
        "--gbtmux TTC --onu-address 0 --trigger-window-size 1000 --tf-length 256 --system-id 0x0 "
        "--fee-id 0x0) o2-roc-config --id=0228:$endpoint ${args[@]} || exit 1;done")
    assert command.env == ("O2_INFOLOGGER_MODE=infoLoggerD", "O2_DETECTOR=TST",
                           f"O2_PARTITION={ENV_ID}")
    assert command.user == "" and command.arguments == ()


def test_roc_config_args_role_overrides_and_every_switch(renderer: Renderer) -> None:
    switches = ["rocConfigAllowRejection", "rocConfigLoopback", "rocConfigPonUpstream",
                "rocConfigDynOffset", "rocConfigForceConfig", "rocConfigBypassFwCheck",
                "rocConfigNoGBT", "rocConfigUserLogic", "rocConfigRunStats",
                "rocConfigUserAndCommonLogic", "rocConfigNoTfDetection"]
    stack = card_stack(modulepath="/opt/modules", rocConfigLinks="0,1,2", detector="TPC",
                       **{name: "true" for name in switches})
    command = build(renderer, corpus("roc-config-args"), stack,
                    role="o2-roc-config.host-flp001.card-0228.roc-config-args")
    assert squashed(command.value) == (
        "source /etc/profile.d/modules.sh && MODULEPATH=/opt/modules module load ReadoutCard && "
        "for endpoint in 0 1;do args=(--links 0,1,2 --allow-rejection --clock LOCAL --cru-id 0x0 "
        "--crorc-id 0x0 --datapathmode PACKET --downstreamdata CTP --gbtmode GBT --gbtmux TTC "
        "--loopback --pon-upstream --dyn-offset --onu-address 0 --force-config --bypass-fw-check "
        "--trigger-window-size 1000 --no-gbt --user-logic --run-stats --user-and-common-logic "
        "--no-tf-detection --tf-length 256 --system-id 0x0 --fee-id 0x0) "
        "o2-roc-config --id=0228:$endpoint ${args[@]} || exit 1;done")
    assert "O2_DETECTOR=TPC" in command.env


def test_roc_config_uri_module_cmdline_in_class_vars(renderer: Renderer) -> None:
    command = build(renderer, corpus("roc-config-uri"), card_stack(modulepath="/m"),
                    role="o2-roc-config.host-flp001.card-0228.roc-config-uri")
    assert command.value == (
        "source /etc/profile.d/modules.sh && MODULEPATH=/m module load ReadoutCard && "
        "for endpoint in 0 1; do o2-roc-config --id=0228:$endpoint --config-uri "
        "consul-json://ali-consul:8500/o2/components/readoutcard/flp001/cru/0228/$endpoint "
        "--status-report /tmp/roc_config_%i_%T --bypass   || exit 1; done")


def test_shell_command_renders_the_command_it_is_given(renderer: Renderer) -> None:
    stack = {"detector": "TPC", "log_task_stdout": "all", "log_task_stderr": "stdout",
             "shell_command": "echo {{ detector }} > /tmp/{{ task_id }}.txt"}
    command = build(renderer, corpus("shell-command"), stack, port=None)
    assert command.value == "echo TPC > /tmp/T1.txt"
    assert (command.stdout, command.stderr) == (OutputMode.ALL, OutputMode.STDOUT)
    assert command.user == "flp"


def test_fairmq_shmmonitor(renderer: Renderer) -> None:
    command = build(renderer, corpus("fairmq-shmmonitor"), {"modulepath": ""}, port=None)
    assert command.value == "source /etc/profile.d/o2.sh && fairmq-shmmonitor"
    assert command.arguments == ("-c", "-s", "default")
    assert command.env == ()


def test_o2_roc_ctp_emulator_keeps_the_stray_backtick(renderer: Renderer) -> None:
    command = build(renderer, corpus("o2-roc-ctp-emulator"),
                    {"modulepath": "/m", "detector": "CTP", "o2_install_path": "/o2"}, port=None)
    assert command.value.endswith("module load ReadoutCard` && o2-roc-ctp-emulator")
    assert command.arguments == ("--id=#0", "--trigger-mode", "continuous")


def test_plumbing_is_left_to_the_executor(renderer: Renderer) -> None:
    command = build(renderer, corpus("stfbuilder"), role_stack())
    assert "--control-port" not in command.arguments and "--id" not in command.arguments
    assert not any(entry.startswith("OCC_CONTROL_PORT=") for entry in command.env)
    launched = control_plumbing(command, "T1", hostname="flp001", plugin_search_path="/opt/lib/")
    assert launched.arguments[-10:] == ("--control-port", "31000", "--id", "T1", "-S", "/opt/lib/",
                                        "-P", "OCClite", "--color", "false")
    assert TaskCommand.from_json(command.to_json()) == command


# ---------------------------------------------------------------- precedence

PRECEDENCE = """\
name: prec
control: {mode: basic}
wants: {cpu: 1, memory: 1}
defaults:
  a: from-class-default
  b: "{{ a }}-b"
  both: default-wins
  host: "{{ task_hostname }}"
vars:
  both: var-loses
  v: "{{ b }}+v"
command:
  value: echo
  arguments: ["{{ a }}", "{{ b }}", "{{ both }}", "{{ v }}", "{{ host }}", "{{ task_id }}"]
"""


def test_class_layers_are_under_the_role_stack(renderer: Renderer) -> None:
    task_class = inline("prec", PRECEDENCE)
    assert build(renderer, task_class, {}).arguments == (
        "from-class-default", "from-class-default-b", "default-wins", "from-class-default-b+v",
        "flp001", "T1")
    overridden = build(renderer, task_class, {"a": "from-role", "task_id": "role-loses",
                                              "both": "role-wins"})
    assert overridden.arguments == ("from-role", "from-role-b", "role-wins", "from-role-b+v",
                                    "flp001", "T1")


def test_task_stack_layers(renderer: Renderer) -> None:
    task_class = inline("prec", PRECEDENCE)
    where = Where(repo="repo", role_path="env.r")
    stack = task_stack(task_class, {"a": "A"}, specials(task_class, "env.r"), renderer, where)
    assert stack["b"] == "A-b" and stack["v"] == "A-b+v" and stack["both"] == "default-wins"
    assert stack["task_parent_role"] == "env.r" and stack["environment_id"] == ENV_ID


# ---------------------------------------------------------------- errors

def broken(command: str, defaults: str = "") -> TaskClass:
    return inline("broken", "name: broken\ncontrol: {mode: basic}\nwants: {cpu: 1, memory: 1}\n"
                  + (f"defaults: {defaults}\n" if defaults else "") + f"command: {command}\n")


WHERE = (f"repo repo, file tasks/broken.yaml@c0ffee, role {HOST_ROLE}.broken")


def test_unknown_variable_names_file_role_field_and_expression(renderer: Renderer) -> None:
    with pytest.raises(TemplateError) as error:
        build(renderer, broken("{value: echo, arguments: [ok, '{{ nosuch }}']}"), {})
    assert str(error.value) == (f"{WHERE}, field command.arguments[1]: {{{{ nosuch }}}}: "
                                "unknown name nosuch")


def test_missing_variable_in_a_class_default(renderer: Renderer) -> None:
    with pytest.raises(TemplateError) as error:
        build(renderer, corpus("readout"), {"modulepath": ""})
    message = str(error.value)
    assert f"file tasks/readout.yaml@{COMMIT}, role {HOST_ROLE}.readout" in message
    assert "field defaults.readout_cfg_uri" in message and "unknown name consul_endpoint" in message


def test_bad_output_mode(renderer: Renderer) -> None:
    with pytest.raises(TaskBuildError) as error:
        build(renderer, broken("{value: echo, stdout: '{{ how }}'}"), {"how": "Loud "})
    assert str(error.value) == (f"{WHERE}, field command.stdout: '{{{{ how }}}}' gives 'loud'; "
                                "allowed: none, stdout, all")


def test_cycles_and_runaway_templates_fail(renderer: Renderer) -> None:
    with pytest.raises(TaskBuildError) as error:
        build(renderer, broken("{value: '{{ x }}'}", "{x: '{{ y }}', y: '{{ x }}'}"), {})
    assert str(error.value) == (f"{WHERE}, field defaults.x: variables refer to each other in a "
                                "cycle: '{{ y }}' → '{{ x }}' → '{{ y }}'")
    with pytest.raises(TaskBuildError, match="still a template after 10 renderings"):
        build(renderer, broken("{value: '{{ x }}'}", "{x: 'a{{ x }}'}"), {})


def test_empty_value_and_bad_env_after_rendering(renderer: Renderer) -> None:
    with pytest.raises(TaskBuildError) as error:
        build(renderer, broken("{value: '{{ nothing }}'}"), {"nothing": ""})
    assert str(error.value).startswith(f"{WHERE}, field command: value (the executable")
    with pytest.raises(TaskBuildError, match=r"field command: env\[0\] 'NOEQ' is not of the form"):
        build(renderer, broken("{value: x, env: ['{{ e }}']}"), {"e": "NOEQ"})


def test_only_basic_classes_become_hooks(renderer: Renderer) -> None:
    with pytest.raises(TaskBuildError, match="only a basic task class can be a hook"):
        build(renderer, corpus("stfbuilder"), role_stack(), hook=True)


def test_render_stable_stops_at_plain_text(renderer: Renderer) -> None:
    where = Where(field="f")
    assert render_stable(renderer, "no tags", {}, where) == "no tags"
    assert render_stable(renderer, "{{ a }}", {"a": "{{ b }}", "b": "{{ c }}", "c": "end"},
                         where) == "end"
