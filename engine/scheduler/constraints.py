"""Constraint check: does an agent's attributes satisfy a task's constraints?

Follows AliECS core/task/constraint/attributes.go (reference §7.2): equality
on the text attribute, a comma-separated attribute value is a set (the
constraint holds when its value is one of the members), a missing attribute
fails, and `hostname` is not special.

Where we do better: AliECS's loop only `break`s out of its `switch`, so the
last constraint evaluated decides the result and an earlier failing one is
forgotten. Here every constraint must hold.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.task.taskclass import Constraint


def attribute_values(text: str) -> frozenset[str]:
    """An attribute's value as a set: `"a,b"` holds `a` and `b`; blanks around items go."""
    return frozenset(item.strip() for item in text.split(","))


def constraint_holds(constraint: Constraint, attributes: Mapping[str, str]) -> bool:
    value = attributes.get(constraint.attribute)
    if value is None:
        return False
    if "," in value:
        return constraint.value.strip() in attribute_values(value)
    return value == constraint.value


def unmet_constraint(constraints: Iterable[Constraint], attributes: Mapping[str, str]
                     ) -> Constraint | None:
    """The first constraint that does not hold, or None when all hold."""
    for constraint in constraints:
        if not constraint_holds(constraint, attributes):
            return constraint
    return None


def satisfies(attributes: Mapping[str, str], constraints: Iterable[Constraint]) -> bool:
    """True when every constraint holds (not only the last, unlike AliECS)."""
    return unmet_constraint(constraints, attributes) is None


def explain_unmet(constraint: Constraint, attributes: Mapping[str, str], agent: str) -> str:
    """`constraint machine_type=qcserver: agent flp001 has machine_type=flp`."""
    value = attributes.get(constraint.attribute)
    has = (f"has no attribute {constraint.attribute}" if value is None
           else f"has {constraint.attribute}={value}")
    return f"constraint {constraint.attribute}={constraint.value}: agent {agent} {has}"
