"""The detectors an environment holds exclusively (reference §1.1.3 steps 8–9, §11).

They are its root's `detectors` variable: a JSON list that the configuration derives
from `hosts` (GetDetectorsForHosts, as GlobalDefaults) unless the workflow or the
user sets it. The store takes them as locks with the environment's record, so a
second environment wanting one is refused at creation, before anything is deployed,
and destroying the environment releases them.
"""
from __future__ import annotations

import json
import logging

from engine.workflow.roles import Workflow, WorkflowError

log = logging.getLogger("engine.environment")

DETECTORS_VAR = "detectors"


def environment_detectors(workflow: Workflow) -> tuple[str, ...]:
    """The detectors of a loaded workflow, sorted, without duplicates (none if unset)."""
    text = workflow.stack_of(workflow.root).get(DETECTORS_VAR, "").strip()
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and "error" in value:
        # A template function's failure (inventory.DetectorsForHosts with hosts the
        # inventory does not know, as on local agents): no detector to hold.
        log.warning("%s: no detectors held: variable %s is %s", workflow.origin,
                    DETECTORS_VAR, value["error"])
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise WorkflowError(f"{workflow.origin}: variable {DETECTORS_VAR} {text!r} is not a "
                            'JSON list of detector names (e.g. ["TPC", "ITS"])')
    return tuple(sorted({item.strip() for item in value if item.strip()}))
