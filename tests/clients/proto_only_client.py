"""An OCC client made only from occ.proto, for wire-compatibility tests.

Run as a separate process so nothing of nutshell is imported: it compiles
occ.proto with grpc_tools into a scratch directory, drives one process through
the steps given as JSON, and prints one JSON line per step.

usage: proto_only_client.py OCC_PROTO ADDRESS STEPS_JSON
With $OCC_CONTROL_TOKEN set, every call carries `authorization: Bearer <token>`.
steps: [["get"], ["transition", src, event, {k: v}], ["events"], ["states"], ["sleep", s]]
"""
import json
import os
import sys
import tempfile
import threading
import time

from grpc_tools import protoc

proto, address, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = tempfile.mkdtemp()
folder, _, name = proto.rpartition("/")
assert protoc.main(["protoc", f"-I{folder}", f"--python_out={out}", f"--grpc_python_out={out}", name]) == 0
sys.path.insert(0, out)
import grpc  # noqa: E402
import occ_pb2  # noqa: E402
import occ_pb2_grpc  # noqa: E402

assert "occlib" not in sys.modules
channel = grpc.insecure_channel(address)
token = os.environ.get("OCC_CONTROL_TOKEN", "")
metadata = (("authorization", f"Bearer {token}"),) if token else ()
stub = occ_pb2_grpc.OccStub(channel)
events: list = []
states: list = []


def follow(call, sink, convert):
    try:
        for reply in call:
            sink.append(convert(reply))
        sink.append("closed")
    except grpc.RpcError as error:
        sink.append(f"error {error.code().name}")


for step in steps:
    kind = step[0]
    if kind == "get":
        try:
            reply = stub.GetState(occ_pb2.GetStateRequest(), timeout=5, metadata=metadata)
            print(json.dumps({"state": reply.state, "pid": reply.pid}), flush=True)
        except grpc.RpcError as error:
            print(json.dumps({"code": error.code().name, "details": error.details()}), flush=True)
    elif kind == "transition":
        src, event, arguments = step[1], step[2], step[3]
        request = occ_pb2.TransitionRequest(
            srcState=src, transitionEvent=event,
            arguments=[occ_pb2.ConfigEntry(key=k, value=v) for k, v in arguments.items()])
        try:
            reply = stub.Transition(request, timeout=10, metadata=metadata)
            print(json.dumps({"trigger": occ_pb2.StateChangeTrigger.Name(reply.trigger),
                              "state": reply.state, "event": reply.transitionEvent,
                              "ok": reply.ok}), flush=True)
        except grpc.RpcError as error:
            print(json.dumps({"code": error.code().name, "details": error.details()}), flush=True)
    elif kind == "events":
        call = stub.EventStream(occ_pb2.EventStreamRequest(), metadata=metadata)
        threading.Thread(target=follow, daemon=True,
                         args=(call, events, lambda r: occ_pb2.DeviceEventType.Name(r.event.type))).start()
    elif kind == "states":
        call = stub.StateStream(occ_pb2.StateStreamRequest(), metadata=metadata)
        threading.Thread(target=follow, daemon=True, args=(call, states, lambda r: r.state)).start()
    elif kind == "sleep":
        time.sleep(step[1])
    elif kind == "streams":
        print(json.dumps({"events": events, "states": states}), flush=True)
