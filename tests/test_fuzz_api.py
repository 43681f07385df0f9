"""Bad input over gRPC: every request message of o2control.Control and nutshell.ControlExt
with generated field values (random text and ids, huge and negative numbers, unknown
enum values, random JSON variables) sent to a real CoreServer on a real Engine.

Every reply is OK or a proper status with a message — never UNKNOWN (an exception
escaped a handler) nor an unexpected exception the server had to log; the server keeps
serving; and nothing half-applies: after each call the one environment the module made
is still there, CONFIGURED, with the same tasks, no other environment or task exists,
and the repositories are as they were.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given
from hypothesis import strategies as st

from engine import USER_ERRORS, Engine, EnvEvent, WorkingDirectory
from engine.api.errors import METADATA_KEY
from engine.api.protos import nutshell_pb2 as ext
from engine.api.protos import nutshell_pb2_grpc as ext_grpc
from engine.api.protos import o2control_pb2 as o2
from engine.api.protos import o2control_pb2_grpc as o2_grpc
from engine.api.server import CoreServer
from engine.environment.manager import parse_event
from tests.conftest import control_ports, make_template_repo
from tests.fuzzing import fuzz_settings
from tests.test_environment_e2e import DUMMY

FUZZ = fuzz_settings(25)
TIMEOUT = 30.0  # seconds for one call; a refused request answers at once

SETTINGS = """\
agents:
  a1:
    ports: {data}-{data_end},{control}-{control_end}
"""
WORKFLOW = """\
name: tiny
defaults:
  fail_on: ""
roles:
  - name: dummy
    task:
      load: dummy
"""
# Errors a call may end with: the engine's user errors, and what the server raises itself.
EXPECTED_KINDS = {cls.__name__ for cls in USER_ERRORS} | {
    "ValueError", "UnknownTaskError", "RoleGlobError", "DestroyRefused"}
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED,
            grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.UNIMPLEMENTED}


LOGGERS = ("engine", "grpc")


class _Failures(logging.Handler):
    """Records the server logs with a traceback: an exception it did not expect."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # the generated base servicer raises NotImplementedError for a method nutshell
        # does not serve (Teardown, ModifyEnvironment): the client gets UNIMPLEMENTED
        if record.exc_info and not isinstance(record.exc_info[1], NotImplementedError):
            self.records.append(record)


@dataclass
class Core:
    address: str
    environment_id: str
    task_ids: list[str]
    repo: str
    repo_path: Path
    failures: _Failures
    channel: grpc.Channel
    run: Callable[[Any], Any]

    @property
    def control(self) -> o2_grpc.ControlStub:
        return o2_grpc.ControlStub(self.channel)

    @property
    def extension(self) -> ext_grpc.ControlExtStub:
        return ext_grpc.ControlExtStub(self.channel)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    """A CoreServer on an Engine, on their own thread and loop, with one environment."""
    root = tmp_path_factory.mktemp("fuzz-api")
    workdir = WorkingDirectory(root / "home").ensure()
    data, control = 20500 + 20 * random.randrange(40), control_ports(20)
    workdir.settings_file.write_text(SETTINGS.format(data=data, data_end=data + 9,
                                                     control=control, control_end=control + 9))
    repo_path = make_template_repo(root / "templates", {
        "workflows/tiny.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY}, corpus=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-core", daemon=True)
    thread.start()

    def run(work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout=120)

    async def start() -> tuple[Engine, CoreServer, str, Any, str]:
        engine = Engine(workdir)
        added = await engine.add_repo(str(repo_path), "master")
        info = await engine.create_environment(f"{added.repo}/workflows/tiny@master")
        # GitPython keeps `git cat-file` processes per repository object: start them now
        # (the suite's fixture fails a test that leaves a new process behind)
        await engine.refresh_repos(-1)
        await engine.list_workflow_templates(all_branches=True, all_tags=True,
                                             all_workflows=True)
        await engine.render_workflow(f"{added.repo}/workflows/tiny@master")
        server = CoreServer(engine)
        address = await server.start("127.0.0.1:0")
        return engine, server, address, info, added.repo

    engine, server, address, info, repo = run(start())
    failures = _Failures()
    for logger in LOGGERS:  # grpc logs what escapes a servicer (or its interceptor)
        logging.getLogger(logger).addHandler(failures)
    channel = grpc.insecure_channel(address)
    try:
        yield Core(address, info.id, sorted(t.task_id for t in info.tasks), repo, repo_path,
                   failures, channel, run)
    finally:
        channel.close()
        for logger in LOGGERS:
            logging.getLogger(logger).removeHandler(failures)

        async def stop() -> None:
            await server.stop(0)
            for environment in await engine.list_environments():
                await engine.destroy_environment(environment.id, force=True)
            await engine.shutdown_agents()
            await engine.close()
        run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# ---------------------------------------------------------------- generated requests

TEXT = st.one_of(st.text(max_size=24), st.sampled_from(
    ["", " ", "*", "**", "?", "[", "[!]", "{a,b}", "..", "/", "\x00", "é", "a" * 300,
     "-1", "0", "null", "{}", "[]", "tiny", "master", "@", "x@y", "/etc/passwd"]))
INT32 = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([-1, 0, 1, 2, 2**31 - 1]))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6),
                              st.floats(allow_nan=False)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=5), inner,
                                                            max_size=3)), max_leaves=8)
VARS_JSON = st.one_of(TEXT, JSON.map(json.dumps),
                      st.dictionaries(st.text(max_size=6), JSON, max_size=3).map(json.dumps),
                      st.integers(1, 4000).map(lambda n: '{"a": ' + "[" * n + "]" * n + "}"),
                      st.sampled_from(["{", '{"a":', "[1]", "5", '"x"', "true", "NaN",
                                       '{"a": NaN}', '{"": ""}']))
ALLOWED_IN_CONFIGURED = {EnvEvent.START_ACTIVITY, EnvEvent.RESET, EnvEvent.GO_ERROR,
                         EnvEvent.EXIT}


def _changes_the_environment(event: str) -> bool:
    try:
        return parse_event(event) in ALLOWED_IN_CONFIGURED
    except ValueError:
        return False


def field_strategy(field: FieldDescriptor, core: Core, method: str) -> st.SearchStrategy[Any]:
    """Values for one field: by its name where it names something, else by its type."""
    name = field.name if field.type == FieldDescriptor.TYPE_STRING or field.is_repeated else ""
    environment_ids = st.one_of(TEXT, st.sampled_from(
        [core.environment_id, core.environment_id.lower(), core.environment_id + "x"]))
    task_ids = st.one_of(TEXT, st.sampled_from(core.task_ids))
    if name in ("id", "envId", "environmentId") and method not in (
            "NewAutoEnvironment", "CreateEnvironment", "Subscribe"):
        return environment_ids
    if name == "id" and method == "CreateEnvironment":
        return st.one_of(TEXT, st.just(core.environment_id))
    if name in ("workflowTemplate", "reference"):  # creates must fail: never the real one
        return st.one_of(TEXT.filter(lambda t: "tiny" not in t), st.sampled_from([
            f"{core.repo}/workflows/nope", f"{core.repo}/workflows/tiny@no-such-revision",
            "nope/workflows/tiny", f"{core.repo}/tasks/dummy", "tiny@", "@master"]))
    if name == "varsJson":
        return VARS_JSON
    if name in ("name", "identifier") and method == "AddRepo":  # local: never the network
        return st.one_of(TEXT.filter(lambda t: "." not in t and ":" not in t),
                         st.sampled_from([str(core.repo_path), "/nonexistent/repo", "/tmp",
                                          "relative/path", "host.example/x"]))
    if name == "index" and method == "RemoveRepo":
        return INT32.filter(lambda i: i != 0)  # index 0 is the module's repository
    if name == "taskId":
        return task_ids
    if name == "taskIds":
        return st.lists(task_ids, max_size=3)
    if name == "event":
        return st.one_of(TEXT, st.sampled_from([e.value for e in EnvEvent]),
                         st.sampled_from(["start", " STOP_ACTIVITY ", "NOOP"]))
    if name == "repoPath":  # one-off local repositories join the list for the session (by
        # design), and a relative path is the core's working directory: keep to paths that
        # are no other repository
        return st.one_of(st.sampled_from(["", "/nonexistent", "/tmp", str(core.repo_path)]),
                         TEXT.map(lambda t: f"/nonexistent/{t}"))
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return st.dictionaries(TEXT, TEXT, max_size=3)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        single = message_strategy(field.message_type, core, method)
        return st.lists(single, max_size=2) if field.is_repeated else single
    if field.type == FieldDescriptor.TYPE_ENUM:
        single = st.integers(-3, 12)  # proto3 enums take any number, known or not
    elif field.type == FieldDescriptor.TYPE_BOOL:
        single = st.booleans()
    elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
                        FieldDescriptor.TYPE_SFIXED32):
        single = INT32
    elif field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        single = st.integers(0, 2**32 - 1)
    elif field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        single = st.integers(-2**63, 2**63 - 1)
    else:
        single = TEXT
    return st.lists(single, max_size=3) if field.is_repeated else single


def message_strategy(descriptor: Any, core: Core, method: str) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    fields = {f.name: field_strategy(f, core, method) for f in descriptor.fields}

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for key, value in values.items():
            target = getattr(message, key)
            if isinstance(value, dict):
                target.update(value)
            elif isinstance(value, list) and value and isinstance(value[0], Message):
                target.extend(value)
            elif isinstance(value, list):
                target.extend(value)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, key, value)
        return message

    return st.fixed_dictionaries({}, optional=fields).map(build)


def _safe(method: str, request: Message, core: Core) -> Message:
    """Keep generated requests from doing what a valid request does to the module's
    environment (start, reset, destroy it): those are not bad input."""
    ours = getattr(request, "id", None) == core.environment_id or getattr(
        request, "envId", None) == core.environment_id
    if method == "RemoveRepo" and request.index == 0:  # an absent index is 0 too
        request.index = 1
    if method == "RefreshRepos" and request.index in (0, -1):  # a valid refresh reopens
        request.index = 1  # the repository: new git processes, which the suite counts
    if method == "DestroyEnvironment" and ours:
        request.id = "not" + core.environment_id
    if method == "ControlEnvironment" and ours:
        if isinstance(request, o2.ControlEnvironmentRequest):
            known = request.type in o2.ControlEnvironmentRequest.Optype.values()
            name = o2.ControlEnvironmentRequest.Optype.Name(request.type) if known else ""
            if _changes_the_environment(name):
                request.type = o2.ControlEnvironmentRequest.STOP_ACTIVITY
        elif _changes_the_environment(request.event):
            request.event = "STOP_ACTIVITY"
    return request


METHODS = [(service, method) for module, service in ((o2, "Control"), (ext, "ControlExt"))
           for method in module.DESCRIPTOR.services_by_name[service].methods
           if not method.server_streaming and method.input_type.fields]


# ---------------------------------------------------------------- checks

@dataclass(frozen=True)
class Snapshot:
    environments: tuple[tuple[str, str, int], ...]
    tasks: tuple[tuple[str, str, int], ...]
    repos: tuple[tuple[str, str, bool], ...]


def snapshot(core: Core) -> Snapshot:
    """What a bad request must not change; taking it also shows the server serves."""
    listed = core.extension.ListEnvironments(empty_pb2.Empty(), timeout=TIMEOUT)
    tasks = core.extension.ListTasks(empty_pb2.Empty(), timeout=TIMEOUT)
    repos = core.extension.ListRepos(empty_pb2.Empty(), timeout=TIMEOUT)
    return Snapshot(
        environments=tuple(sorted((e.id, e.state, len(e.tasks)) for e in listed.environments)),
        tasks=tuple(sorted((t.taskId, t.state, t.pid) for t in tasks.tasks)),
        repos=tuple((r.name, r.defaultRevision, r.default) for r in repos.repos))


def check_reply(call: Callable[..., Any], request: Message, core: Core) -> None:
    try:
        call(request, timeout=TIMEOUT)
    except grpc.RpcError as error:
        code, text = error.code(), error.details() or ""
        metadata = dict(error.trailing_metadata() or ())
        kind = json.loads(metadata[METADATA_KEY])["kind"] if METADATA_KEY in metadata else ""
        assert code is not grpc.StatusCode.UNKNOWN, f"{request!r}: UNKNOWN: {text}"
        assert code in REFUSALS or (code is grpc.StatusCode.INTERNAL and kind), \
            f"{request!r}: {code.name}: {text}"
        assert text.strip(), f"{request!r}: {code.name} without a message"
        assert not kind or kind in EXPECTED_KINDS, f"{request!r}: {kind}: {text}"
    unexpected = [r.getMessage() + "\n" + logging.Formatter().formatException(r.exc_info)
                  for r in core.failures.records if r.exc_info]
    core.failures.records.clear()
    assert not unexpected, f"{request!r}: the server logged " + "\n".join(unexpected)


@pytest.mark.parametrize(("service", "method"), [(s, m.name) for s, m in METHODS],
                         ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_bad_requests_are_refused_cleanly(core: Core, service: str, method: str) -> None:
    stub = core.control if service == "Control" else core.extension
    module = o2 if service == "Control" else ext
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    before = snapshot(core)
    global_revision = core.control.ListRepos(o2.ListReposRequest(),
                                             timeout=TIMEOUT).globalDefaultRevision

    @given(message_strategy(descriptor.input_type, core, method))
    @FUZZ
    def fuzz(request: Message) -> None:
        request = _safe(method, request, core)
        check_reply(getattr(stub, method), request, core)
        if method == "SetGlobalDefaultRevision":  # any revision is a valid global default
            core.control.SetGlobalDefaultRevision(o2.SetGlobalDefaultRevisionRequest(
                revision=global_revision), timeout=TIMEOUT)
        after = snapshot(core)
        assert after == before, f"{request!r} changed {before} into {after}"

    fuzz()


def test_streams_with_bad_requests_end_cleanly(core: Core) -> None:
    """Subscribe to a NewAutoEnvironment request id nobody made: it waits for it (as
    AliECS does) until the client gives up; the server goes on serving."""
    before = snapshot(core)
    for request_id in ("", "never-requested", "never\x00requested", "n" * 1000):
        stream = core.control.Subscribe(o2.SubscribeRequest(id=request_id), timeout=0.3)
        with pytest.raises(grpc.RpcError) as caught:
            list(stream)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert snapshot(core) == before


@pytest.mark.parametrize("text", [
    "{", "[1, 2]", "5", '"text"', "null", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_bad_variables_json_is_invalid_argument(core: Core, text: str) -> None:
    """Found by the fuzzer: varsJson was decoded outside the error handling, so bad JSON
    (or JSON that is no object) ended the call as UNKNOWN with a traceback."""
    before = snapshot(core)
    reference = f"{core.repo}/workflows/tiny@master"
    for call, request in (
            (core.extension.CreateEnvironment,
             ext.CreateEnvironmentRequest(workflowTemplate=reference, varsJson=text)),
            (core.extension.RenderWorkflow, ext.RenderRequest(reference=reference,
                                                              varsJson=text))):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=TIMEOUT)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("varsJson: ")
    assert snapshot(core) == before


@pytest.mark.parametrize("number", [7, 99, -1, 2**31 - 1])
def test_unknown_optype_is_invalid_argument(core: Core, number: int) -> None:
    """Found by the fuzzer: an Optype number the enum lacks raised ValueError outside
    the error handling (UNKNOWN)."""
    before = snapshot(core)
    with pytest.raises(grpc.RpcError) as caught:
        core.control.ControlEnvironment(o2.ControlEnvironmentRequest(
            id=core.environment_id, type=number), timeout=TIMEOUT)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"type: {number} is not a ControlEnvironmentRequest.Optype" in caught.value.details()
    assert snapshot(core) == before
