"""Workflows (AliECS core/workflow): templates processed into role trees.

`WorkflowLoader` wires loading for a working directory; `load_workflow` and
`load_workflow_file` process one template with given collaborators; the
result is a `Workflow` of `Role`s (aggregator, task, call and include roles).
"""
from engine.workflow.processor import current_load, load_workflow, load_workflow_file
from engine.workflow.roles import (AggregatorRole, CallRole, IncludeRole, IteratorInfo, Role,
                                   RoleKind, RoleNode, TaskRole, Trigger, Workflow,
                                   WorkflowError, merge_constraints)

__all__ = [
    "AggregatorRole", "CallRole", "IncludeRole", "IteratorInfo", "Role", "RoleKind", "RoleNode",
    "TaskRole", "Trigger", "Workflow", "WorkflowError", "current_load", "load_workflow",
    "load_workflow_file", "merge_constraints",
]
