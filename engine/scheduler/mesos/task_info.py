"""The ExecutorInfo and TaskInfo the framework launches with (reference §7.2).

One executor per agent (`nutshell-executor-<machine_id>`): the agent starts it
with the engine's own interpreter, `-m executor.cli mesos`, and the environment
it needs passed in CommandInfo (Mesos executors get a clean environment). A task's
`data` is the JSON command record, exactly what the local backend sends; its
labels are `environmentId` and `detector` (§7.3), and nutshell's `logPath`.
The ExecutorInfo is the same on every launch to an agent, as Mesos requires of a
running executor.
"""
from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import executor
from engine.scheduler.mesos.offer_book import ExecutorCost
from engine.scheduler.offers import Placement, ranges_from_ports

EXECUTOR_PREFIX = "nutshell-executor-"
EXECUTOR_COST = ExecutorCost(cpus=0.01, mem=64.0)  # AliECS's executorCPU / executorMemory
PASSED_ON = ("PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONPYCACHEPREFIX")

Json = dict[str, Any]


def executor_id(machine_id: str) -> str:
    return f"{EXECUTOR_PREFIX}{machine_id}"


def _scalar(name: str, value: float) -> Json:
    return {"name": name, "type": "SCALAR", "scalar": {"value": round(value, 6)}}


def executor_info(machine_id: str, workdir: Path, environ: Mapping[str, str] | None = None
                  ) -> Json:
    """The agent's executor: the engine's interpreter running `executor.cli mesos`."""
    env = os.environ if environ is None else environ
    source_root = str(Path(executor.__file__).resolve().parent.parent)
    variables = [{"name": "PYTHONUNBUFFERED", "value": "1"},
                 {"name": "PYTHONPATH", "value": source_root},
                 {"name": "NUTSHELL_HOME", "value": str(workdir)}]
    variables += [{"name": k, "value": env[k]} for k in PASSED_ON if k in env]
    return {"executor_id": {"value": executor_id(machine_id)},
            "name": "nutshell executor", "type": "CUSTOM",
            "command": {"shell": False, "value": sys.executable,
                        "arguments": [sys.executable, "-m", "executor.cli", "mesos"],
                        "environment": {"variables": variables}},
            "resources": [_scalar("cpus", EXECUTOR_COST.cpus), _scalar("mem", EXECUTOR_COST.mem)]}


def port_resource(ports: Iterable[int]) -> Json:
    return {"name": "ports", "type": "RANGES",
            "ranges": {"range": [{"begin": r.begin, "end": r.end}
                                 for r in ranges_from_ports(ports)]}}


def task_info(task_id: str, name: str, placement: Placement, command_json: str,
              executor: Json, *, environment_id: str, detector: str, log_path: str) -> Json:
    """TaskInfo: resources as placed, the command record in `data`, the §7.3 labels; its
    `agent_id` is set by the ACCEPT, from the offers it accepts."""
    wants = placement.descriptor.wants
    resources = [_scalar(name, value) for name, value in
                 (("cpus", wants.cpu), ("mem", wants.memory)) if value > 0]
    if placement.ports:
        resources.append(port_resource(placement.ports))
    labels = [{"key": "environmentId", "value": environment_id},
              {"key": "detector", "value": detector},
              {"key": "logPath", "value": log_path}]
    return {"name": name, "task_id": {"value": task_id},
            "executor": executor, "resources": resources, "labels": {"labels": labels},
            "data": base64.b64encode(command_json.encode()).decode("ascii")}
