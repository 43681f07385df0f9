"""Role aggregation (reference §1.5): products, folds, and incremental updates on role trees."""
from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from engine.workflow.aggregation import (STATUS_PRODUCT, Aggregator, ChildValue, RoleRecord,
                                         TaskState, TaskStatus, fold_states, fold_statuses,
                                         records_of, role_state, role_status, state_product,
                                         status_product)
from engine.workflow.roles import (AggregatorRole, CallRole, IncludeRole, RoleKind, TaskRole,
                                   Workflow)

St, Ss, K = TaskState, TaskStatus, RoleKind

# §1.5, row X column, as printed in the reference.
STATUS_TABLE = """
UNDEFINED | UNDEFINED | UNDEFINED | UNDEFINED | UNDEFINED | UNDEFINED | UNDEFINED
INACTIVE | UNDEFINED | INACTIVE | PARTIAL | PARTIAL | UNDEPLOYABLE | INACTIVE
PARTIAL | UNDEFINED | PARTIAL | PARTIAL | PARTIAL | UNDEPLOYABLE | PARTIAL
ACTIVE | UNDEFINED | PARTIAL | PARTIAL | ACTIVE | UNDEPLOYABLE | ACTIVE
UNDEPLOYABLE | UNDEFINED | UNDEPLOYABLE | UNDEPLOYABLE | UNDEPLOYABLE | UNDEPLOYABLE | UNDEPLOYABLE
INVARIANT | UNDEFINED | INACTIVE | PARTIAL | ACTIVE | UNDEPLOYABLE | INVARIANT
"""
COLUMNS = ["UNDEFINED", "INACTIVE", "PARTIAL", "ACTIVE", "UNDEPLOYABLE", "INVARIANT"]
STATUS_CELLS = [(Ss[row.split(" | ")[0]], Ss[col], Ss[cell])
                for row in STATUS_TABLE.strip().splitlines()
                for col, cell in zip(COLUMNS, row.split(" | ")[1:])]


def test_enums_in_aliecs_order() -> None:
    assert [(s.name, int(s)) for s in St] == [
        ("UNKNOWN", 0), ("STANDBY", 1), ("CONFIGURED", 2), ("RUNNING", 3), ("ERROR", 4),
        ("DONE", 5), ("MIXED", 6), ("INVARIANT", 7)]
    assert [(s.name, int(s)) for s in Ss] == [
        ("UNDEFINED", 0), ("INACTIVE", 1), ("PARTIAL", 2), ("ACTIVE", 3), ("UNDEPLOYABLE", 4),
        ("INVARIANT", 5)]


def test_invariant_state_is_serialised_as_unknown() -> None:
    assert str(St.INVARIANT) == St.INVARIANT.wire == "UNKNOWN"
    assert [str(s) for s in St if s is not St.INVARIANT] == [s.name for s in St][:-1]
    assert St.parse("running") is St.RUNNING and St.parse("bogus") is St.UNKNOWN
    assert str(Ss.UNDEPLOYABLE) == "UNDEPLOYABLE"


def _expected_state_product(a: St, b: St) -> St:
    if a == b:
        return a
    if St.ERROR in (a, b):
        return St.ERROR
    if St.INVARIANT in (a, b):
        return b if a is St.INVARIANT else a
    return St.MIXED


@pytest.mark.parametrize(("a", "b"), [(a, b) for a in St for b in St])
def test_state_product_rules(a: St, b: St) -> None:
    assert state_product(a, b) is _expected_state_product(a, b)


def test_state_product_examples_of_the_reference() -> None:
    assert state_product(St.DONE, St.RUNNING) is St.MIXED
    assert state_product(St.STANDBY, St.CONFIGURED) is St.MIXED
    assert state_product(St.MIXED, St.ERROR) is St.ERROR
    assert state_product(St.INVARIANT, St.RUNNING) is St.RUNNING
    assert state_product(St.UNKNOWN, St.INVARIANT) is St.UNKNOWN


def test_status_table_has_every_cell() -> None:
    assert len(STATUS_CELLS) == 36
    assert {(a, b): r for a, b, r in STATUS_CELLS} == {
        (a, b): STATUS_PRODUCT[a][b] for a in Ss for b in Ss}


@pytest.mark.parametrize(("a", "b", "result"), STATUS_CELLS)
def test_status_product_cell(a: Ss, b: Ss, result: Ss) -> None:
    assert status_product(a, b) is result


def test_folds_start_at_invariant() -> None:
    assert fold_states([]) is St.INVARIANT
    assert fold_states([St.RUNNING, St.RUNNING]) is St.RUNNING
    assert fold_states([St.RUNNING, St.INVARIANT, St.CONFIGURED]) is St.MIXED
    assert fold_states([St.MIXED, St.ERROR]) is St.ERROR
    assert fold_statuses([]) is Ss.INVARIANT
    assert fold_statuses([Ss.ACTIVE, Ss.INACTIVE]) is Ss.PARTIAL
    assert fold_statuses([Ss.ACTIVE, Ss.UNDEFINED, Ss.UNDEPLOYABLE]) is Ss.UNDEFINED


def test_status_fold_stops_at_undefined() -> None:
    seen: list[Ss] = []

    def statuses() -> Iterator[Ss]:
        for status in (Ss.ACTIVE, Ss.UNDEFINED, Ss.ACTIVE, Ss.ACTIVE):
            seen.append(status)
            yield status

    assert fold_statuses(statuses()) is Ss.UNDEFINED
    assert seen == [Ss.ACTIVE, Ss.UNDEFINED, Ss.ACTIVE]  # the next one ends the fold


def test_role_state_skips_non_critical_tasks_and_call_roles() -> None:
    children = [ChildValue(K.TASK, True, St.RUNNING, Ss.ACTIVE),
                ChildValue(K.TASK, False, St.ERROR, Ss.INACTIVE),
                ChildValue(K.CALL, True, St.STANDBY, Ss.ACTIVE),
                ChildValue(K.AGGREGATOR, False, St.CONFIGURED, Ss.INACTIVE),
                ChildValue(K.INCLUDE, True, St.RUNNING, Ss.ACTIVE)]
    assert role_state(children) is St.RUNNING
    assert role_state([ChildValue(K.TASK, True, St.RUNNING, Ss.ACTIVE),
                       ChildValue(K.AGGREGATOR, True, St.ERROR, Ss.ACTIVE)]) is St.ERROR
    assert role_state([]) is St.INVARIANT


def test_role_status_counts_critical_children_including_calls() -> None:
    assert role_status([]) is Ss.UNDEFINED
    assert role_status([ChildValue(K.TASK, False, St.STANDBY, Ss.INACTIVE)]) is Ss.INVARIANT
    assert role_status([ChildValue(K.TASK, True, St.STANDBY, Ss.ACTIVE),
                        ChildValue(K.TASK, False, St.STANDBY, Ss.UNDEPLOYABLE),
                        ChildValue(K.CALL, True, St.INVARIANT, Ss.ACTIVE)]) is Ss.ACTIVE
    assert role_status([ChildValue(K.TASK, True, St.STANDBY, Ss.INACTIVE),
                        ChildValue(K.CALL, True, St.INVARIANT, Ss.ACTIVE)]) is Ss.PARTIAL


def _tree() -> list[RoleRecord]:
    return [RoleRecord("env", None, K.AGGREGATOR),
            RoleRecord("env.flp", "env", K.AGGREGATOR),
            RoleRecord("env.flp.readout", "env.flp", K.TASK),
            RoleRecord("env.flp.stfb", "env.flp", K.TASK),
            RoleRecord("env.flp.qc", "env.flp", K.TASK, critical=False),
            RoleRecord("env.optional", "env", K.AGGREGATOR),
            RoleRecord("env.optional.monitor", "env.optional", K.TASK, critical=False),
            RoleRecord("env.empty", "env", K.AGGREGATOR),
            RoleRecord("env.odc", "env", K.CALL),
            RoleRecord("env.bookkeeping", "env", K.CALL, critical=False)]


def test_initial_values_and_criticality() -> None:
    agg = Aggregator(_tree())
    assert agg.root == "env" and len(agg) == 10 and "env.flp.qc" in agg
    assert agg.is_critical("env") and agg.is_critical("env.flp")
    assert not agg.is_critical("env.optional") and not agg.is_critical("env.empty")
    readout = (agg.state("env.flp.readout"), agg.status("env.flp.readout"))
    assert readout == (St.STANDBY, Ss.INACTIVE)
    assert (agg.state("env.odc"), agg.status("env.odc")) == (St.INVARIANT, Ss.ACTIVE)
    assert (agg.state("env.empty"), agg.status("env.empty")) == (St.INVARIANT, Ss.UNDEFINED)
    assert (agg.state("env.optional"), agg.status("env.optional")) == (St.INVARIANT, Ss.INVARIANT)
    # The critical call (ACTIVE) and the INACTIVE tasks below env.flp make the root PARTIAL.
    assert (agg.state("env"), agg.status("env")) == (St.STANDBY, Ss.PARTIAL)
    assert agg.values() == agg.recompute()


def test_updates_propagate_and_report_what_changed() -> None:
    agg = Aggregator(_tree())
    assert agg.update("env.flp.readout", St.CONFIGURED) == ["env.flp.readout", "env.flp", "env"]
    assert agg.state("env") is St.MIXED
    assert agg.update("env.flp.qc", St.ERROR) == ["env.flp.qc"]  # non-critical: no effect
    assert agg.state("env.flp") is St.MIXED
    assert agg.update("env.flp.stfb", St.CONFIGURED) == ["env.flp.stfb", "env.flp", "env"]
    assert agg.state("env") is St.CONFIGURED
    assert agg.update("env.flp.stfb", St.CONFIGURED) == []
    assert agg.update("env.flp.stfb", St.ERROR) == ["env.flp.stfb", "env.flp", "env"]
    assert agg.state("env") is St.ERROR
    agg.update("env.flp.readout", status=Ss.ACTIVE)
    assert agg.update("env.flp.stfb", status=Ss.ACTIVE) == ["env.flp.stfb", "env.flp", "env"]
    assert agg.status("env") is Ss.ACTIVE
    assert agg.update("env.flp.stfb", status=Ss.UNDEFINED) == ["env.flp.stfb", "env.flp", "env"]
    assert agg.status("env") is Ss.UNDEFINED
    assert agg.values() == agg.recompute()


def test_bad_trees_and_updates_are_refused_with_the_role_named() -> None:
    with pytest.raises(ValueError, match="exactly one root"):
        Aggregator([RoleRecord("a", None, K.AGGREGATOR), RoleRecord("b", None, K.AGGREGATOR)])
    with pytest.raises(ValueError, match="'a.x' names parent 'a.nope'"):
        Aggregator([RoleRecord("a", None, K.AGGREGATOR), RoleRecord("a.x", "a.nope", K.TASK)])
    with pytest.raises(ValueError, match="'a.t' appears twice"):
        Aggregator([RoleRecord("a", None, K.AGGREGATOR), RoleRecord("a.t", "a", K.TASK),
                    RoleRecord("a.t", "a", K.TASK)])
    with pytest.raises(ValueError, match="parent 'a.t', a task role"):
        Aggregator([RoleRecord("a", None, K.AGGREGATOR), RoleRecord("a.t", "a", K.TASK),
                    RoleRecord("a.t.x", "a.t", K.TASK)])
    agg = Aggregator(_tree())
    with pytest.raises(ValueError, match=r"role 'env.flp' \(aggregator\) takes its state"):
        agg.update("env.flp", St.RUNNING)
    with pytest.raises(KeyError, match="no role 'env.nope'"):
        agg.state("env.nope")


def _random_tree(rng: random.Random, size: int) -> list[RoleRecord]:
    records = [RoleRecord("r", None, K.AGGREGATOR)]
    inner = ["r"]
    for index in range(size):
        parent = rng.choice(inner)
        roll = rng.random()
        path = f"{parent}.n{index}"
        if roll < 0.25:
            records.append(RoleRecord(path, parent, rng.choice([K.AGGREGATOR, K.INCLUDE])))
            inner.append(path)
        elif roll < 0.35:
            records.append(RoleRecord(path, parent, K.CALL, critical=rng.random() < 0.7))
        else:
            records.append(RoleRecord(path, parent, K.TASK, critical=rng.random() < 0.7))
    return records


# Both products are weighted toward the common states so trees settle on single values too.
STATES = [St.STANDBY, St.CONFIGURED, St.RUNNING, St.RUNNING, St.RUNNING, St.ERROR, St.DONE,
          St.UNKNOWN, St.INVARIANT, St.MIXED]
STATUSES = [Ss.ACTIVE, Ss.ACTIVE, Ss.ACTIVE, Ss.INACTIVE, Ss.PARTIAL, Ss.UNDEPLOYABLE,
            Ss.UNDEFINED, Ss.INVARIANT]


@pytest.mark.parametrize("seed", range(12))
def test_incremental_updates_equal_full_recomputation(seed: int) -> None:
    rng = random.Random(seed)
    records = _random_tree(rng, rng.randint(1, 120))
    agg = Aggregator(records)
    assert agg.values() == agg.recompute()
    leaves = [r.path for r in records if r.kind in (K.TASK, K.CALL)]
    if not leaves:
        return
    for _ in range(400):
        before = agg.values()
        path = rng.choice(leaves)
        roll = rng.random()
        state = rng.choice(STATES) if roll < 0.7 else None
        status = rng.choice(STATUSES) if roll > 0.4 else None
        changed = agg.update(path, state, status)
        after = agg.values()
        assert after == agg.recompute()
        assert set(changed) == {p for p in after if after[p] != before[p]}


def test_aggregator_from_a_workflow() -> None:
    root = AggregatorRole(name="env", path="env", origin="o")
    include = IncludeRole(name="qc", path="env.qc", origin="o", include="qc-daq")
    task = TaskRole(name="readout", path="env.readout", origin="o")
    optional = TaskRole(name="mon", path="env.qc.mon", origin="o", critical=False)
    call = CallRole(name="odc", path="env.odc", origin="o", func="odc.Configure()")
    root.children = [include, task, call]
    include.children = [optional]
    for child in (include, task, call):
        child.parent = root
    optional.parent = include
    workflow = Workflow(root=root, name="env", origin="o")
    assert records_of(workflow) == [
        RoleRecord("env", None, K.AGGREGATOR), RoleRecord("env.qc", "env", K.INCLUDE),
        RoleRecord("env.qc.mon", "env.qc", K.TASK, critical=False),
        RoleRecord("env.readout", "env", K.TASK), RoleRecord("env.odc", "env", K.CALL)]
    agg = Aggregator.from_workflow(workflow)
    assert not agg.is_critical("env.qc")
    agg.update("env.readout", St.RUNNING, Ss.ACTIVE)
    agg.update("env.qc.mon", St.ERROR, Ss.UNDEFINED)
    assert (agg.state("env"), agg.status("env")) == (St.RUNNING, Ss.ACTIVE)
