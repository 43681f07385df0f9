"""An environment's runtime variables, as the store keeps them (RoleTreeRecord.runtime_vars).

The role tree is saved once, as deployed; what changes afterwards is kept here after
every transition, so an engine that restarts finds the run variables, call results
and task results where they were (reference §1.3). The map is role path → variables
(the role's user vars: call returns, `taskResult.*`, `call_history`), plus two keys no
role path can take: ENVIRONMENT (the environment's layer: request variables,
`environment_id`, the run timestamps) and ROOT_VARS (the run number variables the core
sets on the root's vars). `apply` puts them back on a freshly loaded workflow.
"""
from __future__ import annotations

from collections.abc import Mapping

from engine.workflow.roles import Workflow

ENVIRONMENT = "#environment"
ROOT_VARS = "#root-vars"
RUN_VARS = ("run_number", "runNumber", "last_run_number")


def collect(workflow: Workflow) -> dict[str, dict[str, str]]:
    saved: dict[str, dict[str, str]] = {ENVIRONMENT: dict(workflow.env_user_vars)}
    run_vars = {key: workflow.root.vars[key] for key in RUN_VARS if key in workflow.root.vars}
    if run_vars:
        saved[ROOT_VARS] = run_vars
    for role in workflow.roles():
        if role.user_vars:
            saved[role.path] = dict(role.user_vars)
    return saved


def apply(workflow: Workflow, saved: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Put saved runtime variables back; returns the role paths the workflow no longer has."""
    missing: list[str] = []
    for key, values in saved.items():
        if key == ENVIRONMENT:
            workflow.env_user_vars.update(values)
        elif key == ROOT_VARS:
            for name in RUN_VARS:
                workflow.root.vars.pop(name, None)
            workflow.root.vars.update(values)
        elif (role := workflow.find(key)) is not None:
            role.user_vars.update(values)
        else:
            missing.append(key)
    return missing
