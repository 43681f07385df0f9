"""Offer matching: constraints, machine_id pre-matching, resources, ports, outcomes, messages."""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import pytest

from engine.scheduler import (MatchResult, Offer, Placement, ResourceUse, TaskDescriptor,
                              constraint_holds, match, needs_control_port, satisfies,
                              unmet_constraint)
from engine.scheduler.agents import default_agents
from engine.scheduler.offers import format_ranges, normalize_ranges, ranges_without
from engine.task.channels import (Addressing, BindMap, ChannelType, InboundChannel, Transport,
                                  inbound_properties)
from engine.task.taskclass import Constraint, PortRange, Wants, parse_port_ranges
from executor.controlmode import ControlMode

ROLE = "readout-dataflow.host-flp001.readout"


def counter() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"id{next(numbers)}"


def tcp(name: str, alias: str = "", transport: Transport = Transport.DEFAULT) -> InboundChannel:
    return InboundChannel(name=name, type=ChannelType.PUSH, transport=transport,
                          global_alias=alias)


def ipc(name: str, alias: str = "") -> InboundChannel:
    return InboundChannel(name=name, type=ChannelType.PUSH, addressing=Addressing.IPC,
                          global_alias=alias)


def desc(path: str = ROLE, *, cpu: float = 0.1, mem: float = 10.0,
         constraints: Sequence[tuple[str, str]] = (), binds: Sequence[InboundChannel] = (),
         static: str = "", critical: bool = True, control: bool = True) -> TaskDescriptor:
    wants = Wants(cpu=cpu, memory=mem, ports=static,
                  port_ranges=parse_port_ranges(static, "test"))
    return TaskDescriptor(role_path=path, task_class="repo/tasks/readout@abc", wants=wants,
                          critical=critical,
                          constraints=tuple(Constraint(a, v) for a, v in constraints),
                          binds=tuple(binds), needs_control_port=control, detector="TST",
                          environment_id="2oDvieFrVTi")


def offer(name: str, *, cpus: float = 4.0, mem: float = 1000.0,
          ports: Sequence[tuple[int, int]] = ((9000, 9099), (30000, 30009)),
          executors: Sequence[str] = (), **attributes: str) -> Offer:
    return Offer(agent_id=name, hostname=f"{name}.cern.ch",
                 attributes={"machine_id": name, **attributes}, cpus=cpus, mem=mem,
                 ports=tuple(PortRange(b, e) for b, e in ports), executor_ids=tuple(executors))


def only(result: MatchResult) -> Placement:
    assert not result.undeployed and not result.undeployable, result
    (placement,) = result.deployed
    return placement


def reason(result: MatchResult) -> str:
    (unplaced,) = (*result.undeployed, *result.undeployable)
    return unplaced.reason


# ---------------------------------------------------------------- constraints

def test_constraint_is_equality_on_the_text_attribute() -> None:
    attributes = {"machine_id": "flp001", "machine_type": "flp"}
    assert constraint_holds(Constraint("machine_type", "flp"), attributes)
    assert not constraint_holds(Constraint("machine_type", "FLP"), attributes)
    assert not constraint_holds(Constraint("machine_type", "fl"), attributes)


def test_comma_separated_attribute_is_a_set() -> None:
    attributes = {"machine_id": "flp001", "detectors": "TPC,ITS, MFT"}
    assert constraint_holds(Constraint("detectors", "TPC"), attributes)
    assert constraint_holds(Constraint("detectors", "ITS"), attributes)
    assert constraint_holds(Constraint("detectors", "MFT"), attributes)
    assert not constraint_holds(Constraint("detectors", "TOF"), attributes)
    assert not constraint_holds(Constraint("detectors", "TPC,ITS"), attributes)


def test_missing_attribute_fails_and_hostname_is_not_special() -> None:
    attributes = {"machine_id": "flp001"}
    assert not constraint_holds(Constraint("machine_type", "flp"), attributes)
    assert not constraint_holds(Constraint("hostname", "flp001"), attributes)


def test_all_constraints_must_hold_unlike_aliecs_last_one_wins() -> None:
    attributes = {"machine_id": "flp001", "machine_type": "flp"}
    first_fails_last_holds = [Constraint("machine_type", "qcserver"),
                              Constraint("machine_id", "flp001")]
    assert not satisfies(attributes, first_fails_last_holds)
    assert unmet_constraint(first_fails_last_holds, attributes) == Constraint("machine_type",
                                                                              "qcserver")
    result = match([desc(constraints=[("machine_type", "qcserver"), ("machine_type", "flp")])],
                   [offer("flp001", machine_type="flp")])
    assert not result.deployed
    assert reason(result) == (f"role {ROLE}: constraint machine_type=qcserver: "
                              "agent flp001 has machine_type=flp")


def test_constraints_choose_the_agent() -> None:
    offers = [offer("flp001", machine_type="flp"), offer("qc001", machine_type="qcserver")]
    placement = only(match([desc(constraints=[("machine_type", "qcserver")])], offers))
    assert placement.agent_id == "qc001"
    assert placement.hostname == "qc001.cern.ch"


def test_set_attribute_matches_through_match() -> None:
    offers = [offer("flp001", detectors="TPC"), offer("flp002", detectors="ITS,TOF")]
    assert only(match([desc(constraints=[("detectors", "TOF")])], offers)).agent_id == "flp002"


def test_constraint_failing_on_every_agent_is_undeployable_and_names_each() -> None:
    offers = [offer("flp001", machine_type="flp"), offer("flp002")]
    result = match([desc(constraints=[("machine_type", "qcserver")])], offers)
    assert not result.undeployed
    assert reason(result) == (f"role {ROLE}: constraint machine_type=qcserver: agent flp001 has "
                              "machine_type=flp; constraint machine_type=qcserver: agent flp002 "
                              "has no attribute machine_type")


def test_many_agents_are_summarised() -> None:
    offers = [offer(f"flp{n:03d}") for n in range(1, 8)]
    text = reason(match([desc(constraints=[("machine_type", "qcserver")])], offers))
    assert text.count("constraint machine_type=qcserver") == 4
    assert text.endswith("; and 3 more agents")


# ---------------------------------------------------------------- machine_id

def test_offer_requires_machine_id() -> None:
    with pytest.raises(ValueError, match="agent a1 .h1. has no machine_id attribute"):
        Offer(agent_id="a1", hostname="h1", attributes={"machine_type": "flp"}, cpus=1, mem=1)


def test_offer_ports_may_be_pairs_and_are_merged() -> None:
    made = Offer(agent_id="a1", hostname="h1", attributes={"machine_id": "m1"}, cpus=1, mem=1,
                 ports=((30000, 30009), (9000, 9004), (9005, 9009)))  # type: ignore[arg-type]
    assert made.ports == (PortRange(9000, 9009), PortRange(30000, 30009))
    assert made.machine_id == "m1"


def test_machine_id_prematches_to_its_offer() -> None:
    offers = [offer("flp001"), offer("flp002"), offer("flp003")]
    placement = only(match([desc(constraints=[("machine_id", "flp003")])], offers))
    assert placement.agent_id == "flp003"
    assert placement.offer.machine_id == "flp003"


def test_no_offer_for_required_host() -> None:
    path = "readout-dataflow.host-flp009.readout"
    result = match([desc(path, constraints=[("machine_id", "flp009")])],
                   [offer("flp001"), offer("flp002")])
    assert not result.deployed and not result.undeployed
    assert reason(result) == f"role {path}: no resource offer for required host flp009"
    assert [u.descriptor.role_path for u in result.failed_critical] == [path]


def test_required_host_with_another_unmet_constraint() -> None:
    result = match([desc(constraints=[("machine_id", "flp002"), ("machine_type", "qcserver")])],
                   [offer("flp001", machine_type="qcserver"), offer("flp002", machine_type="flp")])
    assert reason(result) == (f"role {ROLE}: constraint machine_type=qcserver: agent flp002 has "
                              "machine_type=flp")
    assert len(result.undeployable) == 1


def test_required_host_short_of_resources_is_undeployed_not_moved() -> None:
    result = match([desc(cpu=2.0, constraints=[("machine_id", "flp001")])],
                   [offer("flp001", cpus=1.5), offer("flp002", cpus=8)])
    assert not result.deployed and not result.undeployable
    assert reason(result) == f"role {ROLE}: needs 2.0 cpus, agent flp001 has 1.5 left"


def test_no_offers_at_all() -> None:
    result = match([desc()], [])
    assert reason(result) == f"role {ROLE}: no resource offers: no agent is available"
    assert result.undeployable


# ---------------------------------------------------------------- resources

def test_cpu_shortage_message() -> None:
    result = match([desc(cpu=2)], [offer("flp001", cpus=1.5)])
    assert result.undeployed and not result.undeployable
    assert reason(result) == f"role {ROLE}: needs 2.0 cpus, agent flp001 has 1.5 left"


def test_memory_shortage_message() -> None:
    result = match([desc(mem=256)], [offer("flp001", mem=128)])
    assert reason(result) == f"role {ROLE}: needs 256.0 MB memory, agent flp001 has 128.0 MB left"


def test_resources_are_consumed_across_tasks_on_one_offer() -> None:
    descriptors = [desc(f"r.t{n}", cpu=0.3, mem=100) for n in range(4)]
    result = match(descriptors, [offer("flp001", cpus=1.0, mem=1000)])
    assert [p.descriptor.role_path for p in result.deployed] == ["r.t0", "r.t1", "r.t2"]
    assert reason(result) == "role r.t3: needs 0.3 cpus, agent flp001 has 0.1 left"


def test_exhausted_offer_spills_to_the_next_in_order() -> None:
    descriptors = [desc(f"r.t{n}", cpu=1.0, mem=300) for n in range(5)]
    result = match(descriptors, [offer("flp001", cpus=2, mem=1000), offer("flp002", cpus=2),
                                 offer("flp003", cpus=2)])
    assert [p.agent_id for p in result.deployed] == ["flp001", "flp001", "flp002", "flp002",
                                                     "flp003"]


def test_memory_is_consumed_too() -> None:
    descriptors = [desc(f"r.t{n}", mem=400) for n in range(3)]
    result = match(descriptors, [offer("flp001", mem=1000)])
    assert len(result.deployed) == 2
    assert reason(result) == "role r.t2: needs 400.0 MB memory, agent flp001 has 200.0 MB left"


def test_fractional_cpus_add_up_exactly() -> None:
    descriptors = [desc(f"r.t{n}", cpu=0.15) for n in range(10)]
    result = match(descriptors, [offer("flp001", cpus=1.5)])
    assert len(result.deployed) == 10


def test_static_ports_must_be_offered() -> None:
    placement = only(match([desc(static="9050-9052", binds=[tcp("data")])], [offer("flp001")]))
    assert placement.static_ports == (9050, 9051, 9052)
    assert placement.endpoints["data"].port == 9000
    result = match([desc(static="9098-9100")], [offer("flp001")])
    assert reason(result) == (f"role {ROLE}: needs static ports 9098-9100, agent flp001 does not "
                              "offer port 9100 (it offers 9000-9099,30000-30009)")


def test_static_ports_are_not_handed_out_twice() -> None:
    descriptors = [desc("r.a", static="9000-9001"), desc("r.b", static="9001")]
    result = match(descriptors, [offer("flp001")])
    assert [p.static_ports for p in result.deployed] == [(9000, 9001)]
    assert reason(result) == "role r.b: needs static ports 9001, port 9001 of agent flp001 is " \
                             "already taken"


def test_dynamic_ports_skip_static_ports() -> None:
    placement = only(match([desc(static="9000-9001", binds=[tcp("a"), tcp("b")])],
                           [offer("flp001")]))
    assert [placement.endpoints[n].port for n in ("a", "b")] == [9002, 9003]
    assert placement.ports == (9000, 9001, 9002, 9003, 30000)


# ---------------------------------------------------------------- ports

def test_channels_get_lowest_ports_from_9000_and_control_from_30000() -> None:
    offers = [offer("flp001", ports=[(8000, 8010), (9000, 9099), (29990, 30009)])]
    descriptors = [desc("r.a", binds=[tcp("out"), tcp("in"), tcp("qc")]),
                   desc("r.b", binds=[tcp("x")])]
    first, second = match(descriptors, offers).deployed
    assert {n: e.address for n, e in first.endpoints.items()} == {
        "out": "tcp://*:9000", "in": "tcp://*:9001", "qc": "tcp://*:9002"}
    assert first.channel_ports == (9000, 9001, 9002)
    assert first.control_port == 30000
    assert second.endpoints["x"].port == 9003
    assert second.control_port == 30001


def test_no_data_port_below_9000_or_control_port_below_30000() -> None:
    result = match([desc(binds=[tcp("a")])],
                   [offer("flp001", ports=[(8000, 8999), (29000, 29999)])])
    assert result.undeployed[0].reason == (f"role {ROLE}: needs a control port ≥ 30000, agent "
                                           "flp001 has none left")
    result = match([desc(binds=[tcp("a")])], [offer("flp001", ports=[(30000, 30000)])])
    assert reason(result) == (f"role {ROLE}: needs a control port ≥ 30000, agent flp001 has none "
                              "left")
    result = match([desc(binds=[tcp("a")])], [offer("flp001", ports=[(1000, 8999)])])
    assert reason(result) == (f"role {ROLE}: needs 1 ports ≥ 9000 for its TCP channels, agent "
                              "flp001 has 0 left")


def test_data_ports_continue_above_the_data_range_as_in_aliecs() -> None:
    offers = [offer("flp001", ports=[(9000, 9002), (30000, 30003)])]
    result = match([desc("r.a", binds=[tcp("a"), tcp("b")]),
                    desc("r.b", binds=[tcp("a"), tcp("b"), tcp("c")]),
                    desc("r.c", binds=[tcp("a")])], offers)
    first, second = result.deployed
    assert (first.channel_ports, first.control_port) == ((9000, 9001), 30000)
    assert (second.channel_ports, second.control_port) == ((9002, 30001, 30002), 30003)
    assert reason(result) == ("role r.c: needs 1 ports ≥ 9000 for its TCP channels, agent "
                              "flp001 has 0 left")


def test_ports_are_unique_on_an_offer() -> None:
    descriptors = [desc(f"r.t{n}", binds=[tcp("a"), tcp("b")]) for n in range(20)]
    result = match(descriptors, [offer("flp001", ports=[(9000, 9099), (30000, 30099)])])
    ports = [port for p in result.deployed for port in p.ports]
    assert len(result.deployed) == 20
    assert len(ports) == len(set(ports)) == 60
    assert all(p.control_port is not None and p.control_port >= 30000 for p in result.deployed)
    assert all(9000 <= port < 9100 for p in result.deployed for port in p.channel_ports)


def test_control_ports_run_out() -> None:
    result = match([desc(f"r.t{n}") for n in range(3)],
                   [offer("flp001", ports=[(9000, 9099), (30000, 30001)])])
    assert len(result.deployed) == 2
    assert reason(result) == "role r.t2: needs a control port ≥ 30000, agent flp001 has none left"


def test_basic_and_hook_tasks_need_no_control_port() -> None:
    assert not needs_control_port(ControlMode.BASIC)
    assert not needs_control_port(ControlMode.HOOK)
    assert needs_control_port(ControlMode.DIRECT)
    assert needs_control_port(ControlMode.FAIRMQ)
    placement = only(match([desc(control=False)], [offer("flp001", ports=[(9000, 9010)])]))
    assert placement.control_port is None
    assert placement.ports == ()


def test_ipc_channels_get_abstract_names_and_no_port() -> None:
    placement = only(match([desc(binds=[ipc("shm"), tcp("data"), ipc("qc")])], [offer("flp001")],
                           new_id=counter()))
    assert placement.endpoints["shm"].address == "ipc://@o2ipc-id1"
    assert placement.endpoints["qc"].address == "ipc://@o2ipc-id2"
    assert placement.endpoints["data"].port == 9000
    assert placement.channel_ports == (9000,)


def test_ipc_names_are_unique_by_default() -> None:
    result = match([desc(f"r.t{n}", cpu=0.01, binds=[ipc("shm")], control=False)
                    for n in range(50)],
                   [offer("flp001")])
    assert len(result.deployed) == 50
    names = {p.endpoints["shm"].address for p in result.deployed}
    assert len(names) == 50
    assert all(name.startswith("ipc://@o2ipc-") for name in names)


def test_explicit_bind_target_is_kept_and_takes_no_port() -> None:
    channel = InboundChannel(name="fixed", type=ChannelType.PULL, target="tcp://*:5555")
    placement = only(match([desc(binds=[channel, tcp("data")])], [offer("flp001")]))
    assert placement.endpoints["fixed"].address == "tcp://*:5555"
    assert placement.endpoints["data"].port == 9000


def test_unusable_explicit_bind_target_is_undeployable() -> None:
    channel = InboundChannel(name="fixed", type=ChannelType.PULL, target="tcp://nowhere")
    result = match([desc(binds=[channel])], [offer("flp001")])
    assert result.undeployable
    assert reason(result).startswith(f"role {ROLE}: bind channel fixed target: 'tcp://nowhere'")


def test_global_aliases_and_the_bind_map() -> None:
    binds = [tcp("out", alias="readout-proxy", transport=Transport.SHMEM), ipc("qc", alias="qc")]
    placement = only(match([desc(binds=binds)], [offer("flp001")], new_id=counter()))
    assert placement.global_aliases == {"::readout-proxy": placement.endpoints["out"],
                                        "::qc": placement.endpoints["qc"]}
    assert placement.descriptor.global_aliases == {"::readout-proxy": "out", "::qc": "qc"}
    binds_map = BindMap()
    binds_map.add_task(ROLE, placement.hostname, placement.local_bind_map())
    assert binds_map["::readout-proxy"].address == "tcp://flp001.cern.ch:9000"
    assert binds_map[f"{ROLE}:qc"].address == "ipc://@o2ipc-id1"
    keys = inbound_properties(binds[0], placement.local_bind_map())
    assert keys["chans.out.0.address"] == "tcp://*:9000"
    assert keys["chans.out.0.transport"] == "shmem"


def test_descriptor_channel_views() -> None:
    fixed = InboundChannel(name="fixed", type=ChannelType.PULL, target="ipc://x")
    descriptor = desc(binds=[tcp("a"), ipc("b"), fixed, tcp("c")])
    assert descriptor.tcp_channels == ("a", "c")
    assert descriptor.ipc_channels == ("b",)


# ---------------------------------------------------------------- outcomes

def test_only_critical_descriptors_fail_deploy() -> None:
    offers = [offer("flp001")]
    optional = desc("r.qc", critical=False, constraints=[("machine_id", "flp009")])
    result = match([desc("r.readout"), optional], offers)
    assert result.ok and not result.failed_critical
    assert [u.descriptor.role_path for u in result.undeployable] == ["r.qc"]
    critical = desc("r.stfb", cpu=100)
    result = match([desc("r.readout"), optional, critical], offers)
    assert not result.ok
    assert [u.descriptor.role_path for u in result.failed_critical] == ["r.stfb"]
    assert [u.descriptor.role_path for u in result.undeployed] == ["r.stfb"]


def test_undeployed_when_resources_short_undeployable_when_constraints_never_hold() -> None:
    offers = [offer("flp001", cpus=1, machine_type="flp")]
    result = match([desc("r.big", cpu=2), desc("r.qc", constraints=[("machine_type", "qc")])],
                   offers)
    assert [u.descriptor.role_path for u in result.undeployed] == ["r.big"]
    assert [u.descriptor.role_path for u in result.undeployable] == ["r.qc"]


def test_resource_reasons_come_from_agents_that_satisfy_the_constraints() -> None:
    offers = [offer("qc001", cpus=8, machine_type="qc"),
              offer("flp001", cpus=1, machine_type="flp"),
              offer("flp002", cpus=1.5, machine_type="flp")]
    result = match([desc(cpu=2, constraints=[("machine_type", "flp")])], offers)
    assert reason(result) == (f"role {ROLE}: needs 2.0 cpus, agent flp001 has 1.0 left; needs "
                              "2.0 cpus, agent flp002 has 1.5 left")


def test_executor_is_reused_per_agent() -> None:
    result = match([desc("r.a", constraints=[("machine_id", "flp001")]),
                    desc("r.b", constraints=[("machine_id", "flp002")])],
                   [offer("flp001", executors=["exec-1", "exec-2"]), offer("flp002")])
    assert [p.executor_id for p in result.deployed] == ["exec-1", None]
    assert [p.descriptor.role_path for p in result.placements_on("flp002")] == ["r.b"]


def test_match_is_deterministic_and_in_descriptor_order() -> None:
    offers = [offer("flp001", cpus=1), offer("flp002", cpus=1)]
    descriptors = [desc(f"r.t{n}", cpu=0.4, binds=[tcp("a"), ipc("b")]) for n in range(5)]
    first = match(descriptors, offers, new_id=counter())
    second = match(descriptors, offers, new_id=counter())
    assert first == second
    assert [p.descriptor.role_path for p in first.deployed] == [f"r.t{n}" for n in range(4)]
    assert [p.agent_id for p in first.deployed] == ["flp001", "flp001", "flp002", "flp002"]


def test_placement_use_is_what_the_next_offer_lacks() -> None:
    agent = default_agents()[0]
    placement = only(match([desc(cpu=1.5, mem=512, binds=[tcp("a")], static="9500")],
                           [agent.offer()]))
    use = placement.use()
    assert use == ResourceUse(1.5, 512.0, frozenset({9000, 9500, 30000}))
    after = agent.offer([use])
    assert after.cpus == agent.cpus - 1.5
    assert after.mem == agent.mem - 512
    assert format_ranges(after.ports) == "9001-9499,9501-9999,30001-30499"
    again = only(match([desc(binds=[tcp("a")])], [after]))
    assert again.endpoints["a"].port == 9001 and again.control_port == 30001


def test_port_range_helpers() -> None:
    ranges = normalize_ranges([PortRange(9010, 9020), PortRange(9000, 9009), PortRange(9015, 9030),
                               PortRange(30000, 30000)])
    assert ranges == (PortRange(9000, 9030), PortRange(30000, 30000))
    assert ranges_without(ranges, [9000, 9030, 9015, 30000, 12345]) == (
        PortRange(9001, 9014), PortRange(9016, 9029))


# ---------------------------------------------------------------- scale

def test_200_descriptors_on_4_offers() -> None:
    offers = [spec.offer() for spec in default_agents()]
    descriptors = [desc(f"demo.host-flp00{n % 4 + 1}.task{n}", cpu=0.15, mem=128,
                        constraints=[("machine_id", f"flp00{n % 4 + 1}")],
                        binds=[tcp("data"), tcp("qc"), ipc("shm", alias=f"shm{n}")])
                   for n in range(200)]
    started = time.perf_counter()
    result = match(descriptors, offers)
    elapsed = time.perf_counter() - started
    assert result.ok and len(result.deployed) == 200
    assert elapsed < 1.0, elapsed
    for n, placement in enumerate(result.deployed):
        assert placement.agent_id == f"flp00{n % 4 + 1}"
    ports = [port for p in result.deployed for port in p.ports]
    assert len(ports) == len(set(ports)) == 600  # one machine: no port twice across agents
    flp002 = result.placements_on("flp002")
    assert len(flp002) == 50
    assert [p.control_port for p in flp002] == list(range(30500, 30550))
    assert flp002[-1].channel_ports == (10098, 10099)


def test_200_unconstrained_descriptors_fill_agents_in_order() -> None:
    offers = [offer(f"flp00{n}", cpus=10, mem=10000, ports=[(9000 + 1000 * n, 9999 + 1000 * n),
                                                           (30000 + 1000 * n, 30999 + 1000 * n)])
              for n in range(1, 5)]
    descriptors = [desc(f"r.t{n}", cpu=0.2, mem=100, binds=[tcp("a")]) for n in range(210)]
    result = match(descriptors, offers)
    assert len(result.deployed) == 200
    assert [sum(1 for p in result.deployed if p.agent_id == o.agent_id) for o in offers] == [50] * 4
    assert [u.descriptor.role_path for u in result.undeployed] == [f"r.t{n}"
                                                                   for n in range(200, 210)]
    assert len(result.failed_critical) == 10
