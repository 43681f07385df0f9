"""The real ControlWorkflows templates (copied into a git repository at test time).

Inventory for the tests (configuration.yaml in the tmp NUTSHELL_HOME):
flp001 is an ITS FLP with one CRU (serial 1041, endpoints 0 and 1), flp002 a
TPC FLP (card 2041, endpoint 0), flp003 an MCH FLP, flp163 the CTP (TRG)
readout host, alio2-cr1-flp001/-flp100/-flp145 TPC FLPs named as at P2.

The TPC split workflows include JIT DPL sub-workflows (`jit/<name>` in the
repository). The corpus has no jit/ files, so the repository here gets small
commands of our own, and an O2 environment of our own (a profile putting a
fake `o2-dpl-fake` first on PATH) generates the sub-workflows for real.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.task.command import TaskSpecials, build_task_command
from engine.task.taskclass import Constraint, TaskClass
from engine.templates.render import Where
from engine.workdir import WorkingDirectory
from engine.workflow import CallRole, TaskRole, WorkflowError
from engine.workflow.loader import WorkflowLoader
from engine.workflow.wiring import link_channels
from tests.conftest import CORPUS, make_template_repo

RDF = "readout-dataflow"
HOSTS = ["flp001", "flp002"]
ENV_ID = "2oDvieFrVTi"

INVENTORY = """\
o2:
  runtime:
    aliecs:
      defaults:
        modulepath: ""
        infologger_mode: infoLogger
  hardware:
    detectors:
      ITS:
        flps:
          flp001: {}
      TPC:
        flps:
          flp002: {}
          alio2-cr1-flp001: {}
          alio2-cr1-flp100: {}
          alio2-cr1-flp145: {}
      MCH:
        flps:
          flp003: {}
      TRG:
        flps:
          flp163: {}
    flps:
      flp001:
        cards: '{"0": {"type": "CRU", "serial": 1041, "endpoint": 0},
                 "1": {"type": "CRU", "serial": 1041, "endpoint": 1}}'
      flp002:
        cards: '{"0": {"type": "CRU", "serial": 2041, "endpoint": 0}}'
  components:
    readout:
      ANY:
        any:
          readout-stfb-flp001: "[readout]"
          readout-stfb-flp002: "[readout]"
      PHYSICS:
        standalone:
          readout-standalone-flp001: "[readout]"
"""

FAKE_DPL = """\
#!/bin/bash
# A stand-in for a DPL workflow executable: writes workflows/<name>.yaml and its tasks.
while [ $# -gt 0 ]; do [ "$1" = --o2-control ] && name=$2; shift; done
cat > "workflows/$name.yaml" <<EOF
name: $name
roles:
  - name: readout-proxy
    connect:
      - {name: readout-proxy, type: pull, transport: shmem, target: "::readout-proxy-{{ it }}"}
    task: {load: $name-readout-proxy}
  - name: dpl-output-proxy
    bind:
      - {name: downstream, type: push, transport: shmem, addressing: ipc,
         global: "downstream-{{ it }}"}
    task: {load: $name-dpl-output-proxy}
EOF
for device in readout-proxy dpl-output-proxy; do
cat > "tasks/$name-$device.yaml" <<EOF
name: $name-$device
control: {mode: fairmq}
wants: {cpu: 0.1, memory: 100}
command: {value: "o2-$device --id $device"}
EOF
done
"""

TPC_WORKFLOWS = sorted(p.stem for p in (CORPUS / "workflows").glob("tpc-*.yaml"))
JIT_NAMES = sorted({name for wf in TPC_WORKFLOWS for name in re.findall(
    r"dpl\.GenerateFromUri\('([^']+)'\)", (CORPUS / "workflows" / f"{wf}.yaml").read_text())})


def jit_command(name: str) -> str:
    port = "{{ merger_port_idc }}" if "split-proxy" in name else "{{ merger_port }}"
    return f"o2-dpl-fake {name} --host {{{{ it }}}} --merger-port {port}\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The repository, working directory and O2 stand-in, shared by the module (files only:
    each test gets its own loader, so no git process outlives a test)."""
    base = tmp_path_factory.mktemp("corpus")
    tools = base / "o2"
    (tools / "bin").mkdir(parents=True)
    (tools / "bin" / "o2-dpl-fake").write_text(FAKE_DPL)
    (tools / "bin" / "o2-dpl-fake").chmod(0o755)
    (tools / "o2.sh").write_text(f'export PATH="{tools / "bin"}:$PATH"\n')
    repo = make_template_repo(base / "ControlWorkflows",
                              {f"jit/{name}": jit_command(name) for name in JIT_NAMES})
    workdir = WorkingDirectory.from_environment({"NUTSHELL_HOME": str(base / "home")}).ensure()
    workdir.configuration_file.write_text(INVENTORY)
    return repo, workdir, tools / "o2.sh"


@pytest.fixture
def loader(setup):
    repo, workdir, profile = setup
    loader = WorkflowLoader(workdir, o2_profile=profile)
    loader.repos.add(str(repo), "master")
    yield loader
    loader.close()


def rdf(loader: WorkflowLoader, **user_vars):
    return loader.load(RDF, {"hosts": json.dumps(HOSTS), **user_vars}, environment_id=ENV_ID)


def class_name(role) -> str | None:
    return role.task_class.name if isinstance(role, TaskRole) else None


def summary(workflow) -> list[tuple]:
    """(path, kind, task class, trigger, timeout, critical) of every role, in order."""
    out = []
    for role in workflow.roles():
        if isinstance(role, TaskRole):
            out.append((role.path, "task", role.task_class.name,
                        str(role.trigger) if role.trigger else None, role.timeout, role.critical))
        elif isinstance(role, CallRole):
            out.append((role.path, "call", role.func, str(role.trigger), role.timeout,
                        role.critical))
        else:
            out.append((role.path, role.kind.value))
    return out


# ---------------------------------------------------------------- the corpus loads

def test_all_twelve_task_templates_parse(loader):
    names = sorted(p.stem for p in (CORPUS / "tasks").glob("*.yaml"))
    assert len(names) == 12
    workflow = loader.repos.resolve_workflow(RDF)
    for name in names:
        task_class = TaskClass.from_template(
            loader.repos.read_task(workflow.repo, workflow.commit, name))
        assert task_class.name == name


@pytest.mark.parametrize("workflow", TPC_WORKFLOWS)
def test_the_tpc_split_workflows_load_for_each_side(loader, workflow):
    text = (CORPUS / "workflows" / f"{workflow}.yaml").read_text()
    roles = re.findall(r"^  - name: (\S+)", text, re.M)
    assert len(roles) == 3
    for it, expected in zip(("alio2-cr1-flp001", "alio2-cr1-flp100", "alio2-cr1-flp145"), roles):
        wf = loader.load(workflow, {"it": it})
        include = wf.root.children
        assert [r.name for r in include] == [expected]
        name = include[0].include
        assert re.fullmatch(r"jit-[0-9a-f]{40}", name)
        assert [r.path for r in wf.task_roles()] == [
            f"{workflow}.{expected}.readout-proxy", f"{workflow}.{expected}.dpl-output-proxy"]
        assert wf.task_roles()[0].class_identifier.endswith(f"@{name}")
    assert loader.load(workflow, {"it": "flp001"}).root.children == []   # no TPC FLP: empty


def test_the_tpc_jit_command_is_templated_with_the_include_roles_defaults(loader):
    wf = loader.load("tpc-idc-sac-full-split", {"it": "alio2-cr1-flp001"})
    name = wf.root.children[0].include
    assert name == loader.dpl.jit_name(
        "o2-dpl-fake tpc-idc-a --host alio2-cr1-flp001 --merger-port 29950\n")


def test_o2_roc_config_loads_with_cards_from_the_inventory(loader):
    wf = loader.load("o2-roc-config", {"hosts": json.dumps(HOSTS)})
    assert summary(wf) == [
        ("o2-roc-config", "aggregator"),
        ("o2-roc-config.host-flp001", "aggregator"),
        ("o2-roc-config.host-flp001.card-1041", "aggregator"),
        ("o2-roc-config.host-flp001.card-1041.roc-config-uri", "task", "roc-config-uri", None,
         "40s", True),
        ("o2-roc-config.host-flp002", "aggregator"),
        ("o2-roc-config.host-flp002.card-2041", "aggregator"),
        ("o2-roc-config.host-flp002.card-2041.roc-config-uri", "task", "roc-config-uri", None,
         "40s", True),
    ]
    role = wf.find("o2-roc-config.host-flp001.card-1041.roc-config-uri")
    assert (role.stack["card_endpoints"], role.stack["detector"], role.stack["host"]) == \
        ("0 1", "ITS", "flp001")
    assert role.constraints == (Constraint("machine_id", "flp001"),)
    other = loader.load("o2-roc-config", {"hosts": '["flp001"]', "roc_config_uri_enabled": "no"})
    assert [r.task_class.name for r in other.task_roles()] == ["roc-config-args"]


def test_resources_cleanup_loads(loader):
    wf = loader.load("resources-cleanup", {"hosts": json.dumps(HOSTS)})
    assert [(r.path, r.task_class.name, r.timeout) for r in wf.task_roles()] == [
        ("resources-cleanup.host-flp001.fairmq-shmmonitor", "fairmq-shmmonitor", "10s"),
        ("resources-cleanup.host-flp001.o2-roc-cleanup", "o2-roc-cleanup", "10s"),
        ("resources-cleanup.host-flp002.fairmq-shmmonitor", "fairmq-shmmonitor", "10s"),
        ("resources-cleanup.host-flp002.o2-roc-cleanup", "o2-roc-cleanup", "10s"),
    ]


def test_readout_dataflow_needs_hosts(loader):
    with pytest.raises(WorkflowError) as caught:
        loader.load(RDF, {}, environment_id=ENV_ID)
    message = str(caught.value)
    assert "role readout-dataflow" in message and "unknown name hosts" in message


# ---------------------------------------------------------------- readout-dataflow, defaults

def host_roles(host: str, *, its: bool, dd: bool = True) -> list[tuple]:
    """What readout-dataflow gives per FLP with the defaults: readout; data distribution
    (StfBuilder with sender output, StfSender) since dd_enabled and no DPL workflow; the
    shared-memory cleaner before DEPLOY and monitor at DESTROY; the ITS CRU enable hook
    only on ITS hosts. Everything else (CTP emulator, drop-caches, roc-cleanup,
    data-distribution-dpl) is disabled by default."""
    base = f"{RDF}.host-{host}"
    roles: list[tuple] = [(base, "aggregator"),
                          (f"{base}.readout", "task", "readout", None, "0s", True)]
    if dd:
        roles += [(f"{base}.data-distribution", "aggregator"),
                  (f"{base}.data-distribution.stfb", "task", "stfbuilder-senderoutput", None,
                   "0s", True),
                  (f"{base}.data-distribution.stfs", "task", "stfsender", None, "0s", True)]
    roles += [(f"{base}.fairmq-shmcleanup", "task", "shell-command", "before_DEPLOY", "30s", False),
              (f"{base}.fairmq-shmmonitor", "task", "fairmq-shmmonitor", "DESTROY", "10s", False)]
    if its:
        roles.append((f"{base}.its-cru-enable", "task", "shell-command", "DESTROY", "10s", True))
    return roles


EXPECTED_DEFAULT_TREE = [(RDF, "aggregator"), *host_roles("flp001", its=True),
                         *host_roles("flp002", its=False)]


def test_readout_dataflow_with_the_defaults(loader):
    wf = rdf(loader)
    assert summary(wf) == EXPECTED_DEFAULT_TREE
    assert wf.call_roles() == []   # every call group (dcs, odc, trg, …) is off by default
    assert wf.hosts() == HOSTS
    for role in wf.task_roles():
        host = role.path.split(".")[1].removeprefix("host-")
        assert role.constraints == (Constraint("machine_id", host),)


def test_readout_dataflow_variables(loader):
    wf = rdf(loader)
    root = wf.root.stack
    assert (root["detectors"], root["ddsched_enabled"], root["odc_enabled"],
            root["auto_stop_enabled"], root["odc_topology_fullname"]) == \
        ('["ITS","TPC"]', "false", "false", "false", "")
    assert root["environment_id"] == ENV_ID and root["consul_port"] == "8500"
    readout = wf.find(f"{RDF}.host-flp001.readout").stack
    assert (readout["detector"], readout["dd_discovery_ib_hostname"], readout["dpl_workflow"],
            readout["it"]) == ("ITS", "flp001-ib", "", "flp001")   # PrefixedOverride: none → ""
    assert readout["readout_cfg_uri"] == \
        "consul-ini://127.0.0.1:8500/o2/components/readout/ANY/any/readout-stfb-flp001"
    assert wf.find(f"{RDF}.host-flp002.readout").stack["detector"] == "TPC"
    stfb = wf.find(f"{RDF}.host-flp002.data-distribution.stfb")
    assert re.fullmatch(r"stfb-flp002-\w+", stfb.vars["dd_discovery_stfb_id"])
    assert [(c.name, c.target, c.rate_logging) for c in stfb.connect] == \
        [("readout", f"{RDF}.host-flp002.readout:readout", "{{ fmq_rate_logging }}")]
    stfs = wf.find(f"{RDF}.host-flp002.data-distribution.stfs")
    assert [c.target for c in stfs.connect] == \
        [f"{RDF}.host-flp002.data-distribution.stfb:buildertosender"]
    assert stfs.stack["stfs_input_channel_name"] == "buildertosender"
    assert all(wf.stack_of(role) == dict(role.stack) for role in wf.roles())


def test_readout_dataflow_channels_resolve(loader):
    wf = rdf(loader)
    links = {(l.role_path, l.channel): l.target for l in link_channels(wf, loader.renderer)}
    assert links == {
        (f"{RDF}.host-{h}.data-distribution.stfb", "readout"): f"{RDF}.host-{h}.readout:readout"
        for h in HOSTS} | {
        (f"{RDF}.host-{h}.data-distribution.stfs", "buildertosender"):
            f"{RDF}.host-{h}.data-distribution.stfb:buildertosender" for h in HOSTS}


def test_a_readout_dataflow_task_command_builds(loader):
    wf = rdf(loader)
    role = wf.find(f"{RDF}.host-flp001.readout")
    specials = TaskSpecials(role.task_class.task_name("1"), "1", role.class_identifier, "flp001",
                            ENV_ID, role.path)
    command = build_task_command(role.task_class, role.stack, specials, loader.renderer, 30000,
                                 Where(role_path=role.path))
    assert command.value == "/opt/o2/bin/o2-readout-exe"
    assert command.arguments == (
        "consul-ini://127.0.0.1:8500/o2/components/readout/ANY/any/readout-stfb-flp001",)
    assert "O2_DETECTOR=ITS" in command.env and f"O2_PARTITION={ENV_ID}" in command.env


# ---------------------------------------------------------------- switches

def calls(workflow) -> list[tuple]:
    """(path, func, trigger, await, timeout, critical) of the call roles."""
    return [(c.path, c.func, str(c.trigger), str(c.await_), c.timeout, c.critical)
            for c in workflow.call_roles()]


DCS = [
    (f"{RDF}.dcs.pfr", "dcs.PrepareForRun()", "before_CONFIGURE", "after_CONFIGURE-1", "310s",
     False),
    (f"{RDF}.dcs.sor", "dcs.StartOfRun()", "before_START_ACTIVITY+100",
     "before_START_ACTIVITY+100", "140s", True),
    (f"{RDF}.dcs.eor", "dcs.EndOfRun()", "after_STOP_ACTIVITY-50", "after_STOP_ACTIVITY-50",
     "30s", True),
    (f"{RDF}.dcs.error-cleanup", "dcs.Cleanup()", "after_GO_ERROR-1", "after_GO_ERROR-1", "30s",
     False),
    (f"{RDF}.dcs.destroy-cleanup", "dcs.Cleanup()", "DESTROY", "DESTROY", "30s", False),
]
DD_SCHEDULER = [
    (f"{RDF}.dd-scheduler.initialize", "ddsched.PartitionInitialize()", "before_CONFIGURE",
     "after_CONFIGURE-1", "300s", True),
    (f"{RDF}.dd-scheduler.terminate", "ddsched.PartitionTerminate()", "after_RESET-1",
     "after_RESET-1", "300s", True),
    (f"{RDF}.dd-scheduler.cleanup", "ddsched.EnsureTermination()", "DESTROY", "DESTROY", "60s",
     False),
]
ODC = [
    (f"{RDF}.odc.deploy", "odc.PreDeploymentCleanup()", "before_DEPLOY-100", "before_DEPLOY-100",
     "60s", False),
    (f"{RDF}.odc.part-init", "odc.PartitionInitialize()", "before_DEPLOY", "after_DEPLOY-1",
     "60s", True),
    (f"{RDF}.odc.configure", "odc.Configure()", "after_CONFIGURE-1", "after_CONFIGURE-1", "60s",
     True),
    (f"{RDF}.odc.start", "odc.Start()", "before_START_ACTIVITY+100", "after_START_ACTIVITY-10",
     "60s", True),
    (f"{RDF}.odc.stop", "odc.Stop()", "before_STOP_ACTIVITY", "after_STOP_ACTIVITY-50", "60s",
     True),
    (f"{RDF}.odc.go-error", "odc.EnsureStop()", "before_GO_ERROR", "after_GO_ERROR-1", "60s",
     False),
    (f"{RDF}.odc.reset", "odc.Reset()", "before_RESET", "after_RESET-1", "60s", True),
    (f"{RDF}.odc.part-term", "odc.PartitionTerminate()", "after_RESET+100", "after_RESET+100",
     "60s", True),
    (f"{RDF}.odc.cleanup", "odc.EnsureCleanup()", "DESTROY", "DESTROY", "60s", False),
]
TRG = [
    (f"{RDF}.trg.pfr", "trg.PrepareForRun()", "before_START_ACTIVITY-200", "5s", True),
    (f"{RDF}.trg.load", "trg.RunLoad()", "before_START_ACTIVITY+10", "15s", True),
    (f"{RDF}.trg.start", "trg.RunStart()", "after_START_ACTIVITY-10", "20s", True),
    (f"{RDF}.trg.stop", "trg.RunStop()", "before_STOP_ACTIVITY-10", "5s", False),
    (f"{RDF}.trg.unload", "trg.RunUnload()", "after_STOP_ACTIVITY-100", "5s", False),
    (f"{RDF}.trg.errorensurerunstop", "trg.EnsureRunStop()", "before_GO_ERROR-10", "5s", False),
    (f"{RDF}.trg.errorensurerununload", "trg.EnsureRunUnload()", "before_GO_ERROR-9", "5s",
     False),
    (f"{RDF}.trg.destroyensurerunstop", "trg.EnsureRunStop()", "DESTROY-100", "5s", False),
    (f"{RDF}.trg.destroyensurerununload", "trg.EnsureRunUnload()", "DESTROY-99", "5s", False),
]
CCDB = [
    (f"{RDF}.ccdb.start", "ccdb.RunStart()", "before_START_ACTIVITY+100", "10s", False),
    (f"{RDF}.ccdb.stop", "ccdb.RunStop()", "after_STOP_ACTIVITY", "10s", False),
    (f"{RDF}.ccdb.destroy", "ccdb.RunStop()", "DESTROY", "10s", False),
    (f"{RDF}.ccdb.error", "ccdb.RunStop()", "after_GO_ERROR", "10s", False),
]
LHC = [
    (f"{RDF}.lhc.deploy", "lhc.UpdateFillInfo()", "before_DEPLOY-50", "5s", True),
    (f"{RDF}.lhc.sor", "lhc.UpdateFillInfo()", "before_START_ACTIVITY-50", "5s", True),
    (f"{RDF}.lhc.eor", "lhc.UpdateFillInfo()", "before_STOP_ACTIVITY-50", "5s", True),
    (f"{RDF}.lhc.error", "lhc.UpdateFillInfo()", "before_GO_ERROR-50", "5s", False),
]


def short(entries: list[tuple]) -> list[tuple]:
    """(path, func, trigger, timeout, critical): await equals trigger for these groups."""
    return [(p, f, t, to, c) for p, f, t, _a, to, c in entries]


def test_dcs_enabled_adds_the_dcs_calls(loader):
    wf = rdf(loader, dcs_enabled="true")
    assert calls(wf) == DCS
    assert summary(wf)[:len(EXPECTED_DEFAULT_TREE)] == EXPECTED_DEFAULT_TREE
    dcs = wf.find(f"{RDF}.dcs")
    assert (dcs.defaults["dcs_detectors"], dcs.defaults["dcs_sor_parameters"]) == \
        ('["ITS","TPC"]', "{}")


def test_epn_enabled_adds_dd_scheduler_and_odc(loader):
    wf = rdf(loader, epn_enabled="true")
    assert calls(wf) == DD_SCHEDULER + ODC
    assert wf.root.stack["ddsched_enabled"] == "true"
    odc = wf.find(f"{RDF}.odc")
    assert odc.vars["odc_resources"] == '[ {"zone":"online", "n":"10"}, {"zone":"calib"} ]'
    legacy = rdf(loader, epn_enabled="true", odc_partitions_cleanup="false")
    assert [c[0] for c in calls(legacy)][-1] == f"{RDF}.odc.legacy-cleanup"
    assert f"{RDF}.odc.deploy" not in [c[0] for c in calls(legacy)]
    assert not any(c[0].startswith(f"{RDF}.dd-scheduler")
                   for c in calls(rdf(loader, epn_enabled="true", dd_enabled="false")))


@pytest.mark.parametrize("switch,expected", [
    ({"trg_enabled": "true"}, TRG),
    ({"ccdb_enabled": "true"}, CCDB),
    ({"lhc_enabled": "true"}, LHC),
    ({"bookkeeping_enabled": "true"},
     [(f"{RDF}.bookkeeping.retrievefillinfoatsor", "bookkeeping.RetrieveFillInfo()",
       "before_START_ACTIVITY+11", "10s", False)]),
])
def test_call_groups(loader, switch, expected):
    wf = rdf(loader, **switch)
    assert short(calls(wf)) == expected
    assert all(c[2] == c[3] for c in calls(wf))   # await defaults to the trigger
    assert summary(wf)[:len(EXPECTED_DEFAULT_TREE)] == EXPECTED_DEFAULT_TREE


def test_trg_pfr_only_with_tpc(loader):
    wf = loader.load(RDF, {"hosts": '["flp001"]', "trg_enabled": "true"}, environment_id=ENV_ID)
    assert [c[0] for c in calls(wf)] == [c[0] for c in TRG[1:]]


def test_bookkeeping_without_kafka_and_kafka(loader):
    wf = rdf(loader, bookkeeping_enabled="true", bookkeeping_consuming_kafka="false")
    assert len(calls(wf)) == 16
    wf = rdf(loader, kafka_enabled="true")
    assert [(c[0].rsplit(".", 1)[1], c[2]) for c in calls(wf)] == [
        ("standby", "enter_STANDBY"), ("deployed", "enter_DEPLOYED"),
        ("configured", "enter_CONFIGURED"), ("running", "enter_RUNNING"),
        ("error", "enter_ERROR"), ("destroy", "DESTROY"), ("leave_standby", "leave_STANDBY"),
        ("leave_deployed", "leave_DEPLOYED"), ("leave_configured", "leave_CONFIGURED"),
        ("leave_running", "leave_RUNNING"), ("leave_error", "leave_ERROR"),
        ("before_start_activity", "before_START_ACTIVITY+50")]


def test_dd_disabled_drops_data_distribution_and_reads_the_standalone_config(loader):
    wf = rdf(loader, dd_enabled="false")
    assert summary(wf) == [(RDF, "aggregator"), *host_roles("flp001", its=True, dd=False),
                           *host_roles("flp002", its=False, dd=False)]
    assert wf.find(f"{RDF}.host-flp001.readout").stack["readout_cfg_uri"] == (
        "consul-ini://127.0.0.1:8500/o2/components/readout/PHYSICS/standalone/"
        "readout-standalone-flp001")


def test_stfb_standalone(loader):
    wf = loader.load(RDF, {"hosts": '["flp002"]', "stfb_standalone": "true"}, environment_id=ENV_ID)
    role = wf.find(f"{RDF}.host-flp002.data-distribution.stfb-standalone")
    assert role.task_class.name == "stfbuilder-nooutput"
    assert [r.name for r in wf.find(f"{RDF}.host-flp002.data-distribution").children] == \
        ["stfb-standalone"]


def test_qc_remote_enabled(loader):
    wf = rdf(loader, qc_remote_enabled="true")
    qc = [row for row in summary(wf) if row[0].startswith(f"{RDF}.qc-servers")]
    noop = ("testplugin.Noop()", "CONFIGURE", "1s", False)
    assert qc == [
        (f"{RDF}.qc-servers", "aggregator"),
        (f"{RDF}.qc-servers.qc-remote-workflow-ITS", "aggregator"),
        (f"{RDF}.qc-servers.qc-remote-workflow-ITS.dpl-noop-subwf", "call", *noop),
        (f"{RDF}.qc-servers.qc-remote-workflow-TPC", "aggregator"),
        (f"{RDF}.qc-servers.qc-remote-workflow-TPC.dpl-noop-subwf", "call", *noop),
        (f"{RDF}.qc-servers.qc-remote-workflow-glo", "aggregator"),   # ITS is in detectors
        (f"{RDF}.qc-servers.qc-remote-workflow-glo.dpl-noop-subwf", "call", *noop),
    ]
    its = wf.find(f"{RDF}.qc-servers.qc-remote-workflow-ITS.dpl-noop-subwf")
    # qc_remote_machine = PrefixedOverride('qc_remote_machine', 'its'): both none → ""
    assert its.constraints == (Constraint("machine_type", "qcserver"),
                               Constraint("machine_id", ""))
    assert its.iterated_from is None and wf.find(
        f"{RDF}.qc-servers.qc-remote-workflow-ITS").iterated_from.value == "ITS"
    assert (its.stack["shm_segment_size"], its.stack["session_id"], its.stack["user"]) == \
        ("10000000000", ENV_ID, "qc")


def test_qc_remote_workflow_by_name_without_jit(loader):
    """`include: "{{ qc_remote_workflow }}"` loads a plain workflow of the same repository
    and commit (resources-cleanup stands in for a QC workflow here)."""
    wf = loader.load(RDF, {"hosts": '["flp001"]', "qc_remote_enabled": "true",
                           "qc_remote_jit_enabled": "false",
                           "its_qc_remote_workflow": "resources-cleanup"}, environment_id=ENV_ID)
    base = f"{RDF}.qc-servers.qc-remote-workflow-ITS"
    assert [row[0] for row in summary(wf) if row[0].startswith(base)] == [
        base, f"{base}.dpl", f"{base}.dpl.host-flp001",
        f"{base}.dpl.host-flp001.fairmq-shmmonitor", f"{base}.dpl.host-flp001.o2-roc-cleanup",
        f"{base}.fairmq-shmmonitor"]
    cleanup = wf.find(f"{base}.dpl.host-flp001.o2-roc-cleanup")
    assert cleanup.constraints == (Constraint("machine_type", "qcserver"),
                                   Constraint("machine_id", "flp001"))


def test_ctp_readout(loader):
    wf = rdf(loader, ctp_readout_enabled="true", ctp_readout_host="flp163")
    ctp = [row for row in summary(wf) if row[0].startswith(f"{RDF}.readout-ctp")]
    assert ctp == [
        (f"{RDF}.readout-ctp", "aggregator"),
        (f"{RDF}.readout-ctp.readout", "task", "readout-ctp", None, "0s", True),
        (f"{RDF}.readout-ctp.data-distribution", "aggregator"),
        (f"{RDF}.readout-ctp.data-distribution.stfb", "task", "stfbuilder-senderoutput", None,
         "0s", True),
        (f"{RDF}.readout-ctp.data-distribution.stfs", "task", "stfsender", None, "0s", True),
        (f"{RDF}.readout-ctp.fairmq-shmcleanup", "task", "shell-command", "before_DEPLOY", "30s",
         False),
        (f"{RDF}.readout-ctp.fairmq-shmmonitor", "task", "fairmq-shmmonitor", "DESTROY", "10s",
         False),
    ]
    assert wf.find(f"{RDF}.readout-ctp.readout").stack["detector"] == "TRG"
    assert wf.find(f"{RDF}.readout-ctp.readout").constraints == \
        (Constraint("machine_id", "flp163"),)


def test_ctp_readout_without_its_host_names_the_missing_variable(loader):
    """ctp_readout_host's default is an untagged mapping (its !public is commented out),
    so AliECS drops it: enabling CTP readout needs the variable from the user."""
    with pytest.raises(WorkflowError) as caught:
        rdf(loader, ctp_readout_enabled="true")
    message = str(caught.value)
    assert "role readout-dataflow.readout-ctp" in message and "field vars.detector" in message
    assert "unknown name ctp_readout_host" in message


def test_optional_host_tasks(loader):
    wf = loader.load(RDF, {"hosts": '["flp002"]', "roc_ctp_emulator_enabled": "true",
                           "drop_caches_enabled": "true", "roc_cleanup_enabled": "true"},
                     environment_id=ENV_ID)
    base = f"{RDF}.host-flp002"
    rows = {row[0]: row[1:] for row in summary(wf)}
    assert rows[f"{base}.o2-roc-ctp-emulators.endpoint-#0.o2-roc-ctp-emulator"] == \
        ("task", "o2-roc-ctp-emulator", "enter_RUNNING", "10s", False)
    assert rows[f"{base}.drop-caches"] == ("task", "shell-command", "before_CONFIGURE", "30s",
                                           False)
    assert rows[f"{base}.o2-roc-cleanup"] == ("task", "o2-roc-cleanup", "DESTROY", "10s", False)
    endpoint = wf.find(f"{base}.o2-roc-ctp-emulators.endpoint-#0")
    assert endpoint.iterated_from.var == "endpoint_id"
    drop = wf.find(f"{base}.drop-caches")
    assert drop.stack["user"] == "root" and "O2_ROLE=flp002" in drop.stack["shell_command"]


def test_auto_stop(loader):
    assert rdf(loader, auto_stop_timeout="30s").root.stack["auto_stop_enabled"] == "true"


# ---------------------------------------------------------------- TPC through readout-dataflow

def test_tpc_dpl_workflow_includes_the_split_workflow_and_its_jit_parts(loader):
    hosts = ["alio2-cr1-flp001", "alio2-cr1-flp145"]
    wf = loader.load(RDF, {"hosts": json.dumps(hosts),
                           "tpc_dpl_workflow": "tpc-idc-sac-full-split"}, environment_id=ENV_ID)
    paths = [row[0] for row in summary(wf)]
    for host, part in zip(hosts, ("tpc-idc-a", "tpc-sac")):
        base = f"{RDF}.host-{host}"
        dpl = f"{base}.data-distribution-dpl"
        assert [p for p in paths if p.startswith(base)] == [
            base, f"{base}.readout", dpl, f"{dpl}.stfb", f"{dpl}.stfs", f"{dpl}.dpl",
            f"{dpl}.dpl.{part}", f"{dpl}.dpl.{part}.readout-proxy",
            f"{dpl}.dpl.{part}.dpl-output-proxy", f"{base}.fairmq-shmcleanup",
            f"{base}.fairmq-shmmonitor"]
        assert wf.find(f"{dpl}.dpl").include == "tpc-idc-sac-full-split"
        assert wf.find(f"{dpl}.stfb").task_class.name == "stfbuilder"
        assert [c.global_alias for c in wf.find(f"{dpl}.stfb").bind] == \
            [f"readout-proxy-{host}"]
    links = {(l.role_path, l.channel): l for l in link_channels(wf, loader.renderer)}
    stfs = links[(f"{RDF}.host-alio2-cr1-flp001.data-distribution-dpl.stfs", "downstream")]
    assert stfs.target == "::downstream-alio2-cr1-flp001"
    proxy = links[(f"{RDF}.host-alio2-cr1-flp145.data-distribution-dpl.dpl.tpc-sac."
                   "readout-proxy", "readout-proxy")]
    assert proxy.target == "::readout-proxy-alio2-cr1-flp145"


def test_a_detector_dpl_workflow_through_jit_needs_o2(loader, tmp_path):
    """its_dpl_workflow names a jit/ command: GenerateFromUriOrFallbackToTemplate runs it,
    and a loader without an O2 environment reports why it cannot."""
    bare = WorkflowLoader(WorkingDirectory(tmp_path / "bare"), repos=loader.repos,
                          config=loader.config, o2_profile=Path("/nonexistent/o2.sh"))
    assert not (tmp_path / "bare" / "jit" / "workflows").exists()
    with pytest.raises(WorkflowError) as caught:
        bare.load(RDF, {"hosts": '["flp001"]', "its_dpl_workflow": "tpc-sac",
                        "merger_port": "29951"}, environment_id=ENV_ID)
    message = str(caught.value)
    assert "role readout-dataflow.host-flp001.data-distribution-dpl.dpl" in message
    assert "dpl.GenerateFromUriOrFallbackToTemplate(dpl_workflow)" in message
    assert "cannot generate DPL workflow from jit/tpc-sac" in message
    assert "/nonexistent/o2.sh not found on this machine" in message
    wf = loader.load(RDF, {"hosts": '["flp001"]', "its_dpl_workflow": "tpc-sac",
                           "merger_port": "29951"}, environment_id=ENV_ID)
    dpl = wf.find(f"{RDF}.host-flp001.data-distribution-dpl.dpl")
    assert dpl.include.startswith("jit-") and len(dpl.children) == 2


def test_a_dry_run_gets_a_fresh_environment_id(loader):
    wf = loader.load(RDF, {"hosts": '["flp001"]'})
    assert re.fullmatch(r"\w{11}", wf.environment_id)
    assert wf.root.stack["environment_id"] == wf.environment_id
    with pytest.raises(WorkflowError, match="unknown name environment_id"):
        loader.load(RDF, {"hosts": '["flp001"]'}, environment_id="")
