"""An o2control client made only from the .proto files, for wire-compatibility tests.

Run as a separate process so nothing of nutshell is imported: it compiles
o2control.proto (with the events.proto and common.proto it imports) with grpc_tools
into a scratch directory, calls the core at ADDRESS step by step and prints one JSON
line per step: the reply as MessageToDict, or {"code", "details"} for a failed call,
each with the JSON of any binary trailing metadata under its key.
Health and reflection are asked with the stock grpcio-health-checking and
grpcio-reflection stubs, as any gRPC tool would.

usage: o2control_only_client.py PROTO_ROOT ADDRESS STEPS_JSON
steps: [["info"], ["list"], ["create", workflow, {vars}, autoTransition?],
        ["create_async", workflow, {vars}], ["wait", id, state or NOT_FOUND], ["get", id, tree],
        ["auto", workflow, {vars}, request_id], ["subscribe", request_id],
        ["control", id, OPTYPE], ["destroy", id], ["tasks"], ["task", id], ["cleanup", [ids]],
        ["detectors"], ["services"], ["roles", id, glob],
        ["templates"], ["repos"], ["health", service], ["reflection"]]
An id "$env" stands for the environment the last "create" made, "$task" for its dummy task.
"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from grpc_tools import protoc

root, address, steps = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
scratch = Path(tempfile.mkdtemp())
protos = ["engine/api/protos/o2control.proto", "engine/api/protos/events.proto",
          "engine/api/protos/common.proto"]
for relative in protos:
    (scratch / "in" / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / relative, scratch / "in" / relative)
out = scratch / "out"
out.mkdir()
assert protoc.main(["protoc", f"-I{scratch / 'in'}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *protos]) == 0
for package in ("engine", "engine/api", "engine/api/protos"):
    (out / package / "__init__.py").touch()
sys.path.insert(0, str(out))

import grpc
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine.api.protos import o2control_pb2 as o2
from engine.api.protos import o2control_pb2_grpc as o2_grpc

assert Path(sys.modules["engine"].__file__).is_relative_to(out), "imported nutshell itself"
channel = grpc.insecure_channel(address)
control = o2_grpc.ControlStub(channel)
environment = task = ""


def env_id(text: str) -> str:
    return environment if text == "$env" else text


def task_id(text: str) -> str:
    return task if text == "$task" else text


def trailer(metadata) -> dict:
    """nutshell's extras in the trailing metadata (binary JSON values), by key."""
    return {key: json.loads(value) for key, value in metadata or () if key.endswith("-bin")}


def answer(call, request) -> dict:
    try:
        reply, done = call.with_call(request, timeout=60)
        return {**MessageToDict(reply), **trailer(done.trailing_metadata())}
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details(),
                **trailer(error.trailing_metadata())}


for step in steps:
    kind, began = step[0], time.monotonic()
    if kind == "info":
        reply = answer(control.GetFrameworkInfo, o2.GetFrameworkInfoRequest())
    elif kind == "list":
        reply = answer(control.GetEnvironments, o2.GetEnvironmentsRequest(showTaskInfos=True))
    elif kind == "create":
        reply = answer(control.NewEnvironment, o2.NewEnvironmentRequest(
            workflowTemplate=step[1], vars=step[2], requestUser={"name": "o2client"},
            autoTransition=len(step) > 3 and step[3]))
        environment = reply.get("environment", {}).get("id", environment)
        task = next((t["taskId"] for t in reply.get("environment", {}).get("tasks", [])
                     if "/dummy@" in t["className"]), task)
    elif kind == "create_async":
        reply = answer(control.NewEnvironmentAsync, o2.NewEnvironmentRequest(
            workflowTemplate=step[1], vars=step[2]))
        environment = reply.get("environment", {}).get("id", environment)
    elif kind == "auto":
        reply = answer(control.NewAutoEnvironment, o2.NewAutoEnvironmentRequest(
            workflowTemplate=step[1], vars=step[2], id=step[3]))
    elif kind == "subscribe":
        try:
            stream = control.Subscribe(o2.SubscribeRequest(id=step[1]), timeout=60)
            reply = {"events": [MessageToDict(event) for event in stream]}
        except grpc.RpcError as error:
            reply = {"code": error.code().name, "details": error.details()}
    elif kind == "wait":
        deadline = time.monotonic() + 30
        while True:
            reply = answer(control.GetEnvironment, o2.GetEnvironmentRequest(id=env_id(step[1])))
            state = reply.get("environment", {}).get("state") or reply.get("code")
            if state == step[2] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    elif kind == "get":
        reply = answer(control.GetEnvironment,
                       o2.GetEnvironmentRequest(id=env_id(step[1]), showWorkflowTree=step[2]))
    elif kind == "control":
        reply = answer(control.ControlEnvironment, o2.ControlEnvironmentRequest(
            id=env_id(step[1]), type=o2.ControlEnvironmentRequest.Optype.Value(step[2])))
    elif kind == "destroy":
        reply = answer(control.DestroyEnvironment, o2.DestroyEnvironmentRequest(id=env_id(step[1])))
    elif kind == "tasks":
        reply = answer(control.GetTasks, o2.GetTasksRequest())
    elif kind == "task":
        reply = answer(control.GetTask, o2.GetTaskRequest(taskId=task_id(step[1])))
    elif kind == "cleanup":
        reply = answer(control.CleanupTasks,
                       o2.CleanupTasksRequest(taskIds=[task_id(t) for t in step[1]]))
    elif kind == "detectors":
        reply = {"active": answer(control.GetActiveDetectors, o2.Empty()),
                 "available": answer(control.GetAvailableDetectors, o2.Empty())}
    elif kind == "services":
        reply = answer(control.GetIntegratedServices, o2.Empty())
    elif kind == "roles":
        reply = answer(control.GetRoles, o2.GetRolesRequest(envId=env_id(step[1]),
                                                             pathSpec=step[2]))
    elif kind == "templates":
        reply = answer(control.GetWorkflowTemplates,
                       o2.GetWorkflowTemplatesRequest(allWorkflows=True))
    elif kind == "repos":
        reply = answer(control.ListRepos, o2.ListReposRequest(getRevisions=True))
    elif kind == "health":
        reply = answer(health_pb2_grpc.HealthStub(channel).Check,
                       health_pb2.HealthCheckRequest(service=step[1]))
    elif kind == "reflection":
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
        reply = {"services": sorted(s.name for s in response.list_services_response.service)}
    else:
        raise SystemExit(f"unknown step {kind!r}")
    print(json.dumps({"step": kind, "reply": reply,
                      "seconds": round(time.monotonic() - began, 3)}), flush=True)
