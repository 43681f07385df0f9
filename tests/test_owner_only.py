"""Only a task's owner drives it: per-task OCC tokens, loopback control ports, the agent secret.

Real processes over real gRPC: the occlib dummy and the FairMQ emulator given a
token in their environment, a task the executor started (it makes the token),
peanut given the token or not, and a real `nutshell-executor agent` called on
every RPC without its secret. A stranger is a process of another user (when
the tests run as root) or any client that does not hold the token.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from engine.scheduler.agents import default_agents
from engine.scheduler.local_agent import SECRET_FILE, LocalAgentProcess, find_running
from executor.command import TaskCommand
from executor.controlled_task import ControlledTask, ControlTimings
from executor.controlmode import ControlMode
from executor.dialer import Backoff
from executor.occ_client import OccCallError, connect
from executor.protos import agent_pb2
from executor.reports import TaskIdentity
from occlib.owner import TOKEN_ENV
from peanut.modes import PeanutMode
from peanut.tui.app import PeanutApp
from peanut.tui.components.status_bar import StatusBar
from occlib.states import OccEvent, OccState
from tests.conftest import ROOT, free_port, wait_for_port

PROTO = str(ROOT / "occlib" / "protos" / "occ.proto")
CLIENT = str(ROOT / "tests" / "clients" / "proto_only_client.py")
PEANUT = str(Path(sys.executable).with_name("peanut"))
TOKEN = "token-of-the-owner-0123456789"
FAST = ControlTimings(dial_timeout=10, backoff=Backoff(base=0.05), startup_timeout=10,
                      poll_interval=0.05, term_grace=1, int_grace=1)
NOBODY = 65534


class Process:
    """A controlled process started by the test itself, with the environment it is given."""

    def __init__(self, module: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--control-port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Process] = []

    def run(module: str, **env: str) -> Process:
        process = Process(module, env, tmp_path / f"process-{len(started)}.log")
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


def drive(address: str, steps: list, token: str | None = None) -> list[dict]:
    """The client made only from occ.proto, in its own interpreter, with or without a token."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    done = subprocess.run([sys.executable, CLIENT, PROTO, address, json.dumps(steps)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# ---------------------------------------------------------------- OCC endpoints

def test_an_occlib_process_with_a_token_answers_only_calls_that_carry_it(start) -> None:
    dummy = start("occlib.examples.dummy", **{TOKEN_ENV: TOKEN})
    steps = [["get"], ["transition", "STANDBY", "CONFIGURE", {}], ["events"], ["states"],
             ["sleep", 0.3], ["streams"]]
    absent = drive(dummy.address, steps)
    assert [reply["code"] for reply in absent[:2]] == ["UNAUTHENTICATED"] * 2
    assert all(f"no 'authorization: Bearer <token>' metadata (the token is in the task's "
               f"${TOKEN_ENV})" in reply["details"] for reply in absent[:2])
    assert "/occ_pb.Occ/GetState refused" in absent[0]["details"]
    assert absent[2] == {"events": ["error UNAUTHENTICATED"], "states": ["error UNAUTHENTICATED"]}
    wrong = drive(dummy.address, steps[:2], token="not-" + TOKEN)
    assert [(r["code"], r["details"].endswith("wrong token")) for r in wrong] == \
        [("UNAUTHENTICATED", True)] * 2
    owner = drive(dummy.address, [["get"], ["transition", "STANDBY", "CONFIGURE", {}]], token=TOKEN)
    # nothing the strangers sent reached the process: it is still in STANDBY for its owner
    assert owner[0] == {"state": "STANDBY", "pid": dummy.proc.pid}
    assert owner[1] == {"trigger": "EXECUTOR", "state": "CONFIGURED", "event": "CONFIGURE", "ok": True}


async def test_the_fairmq_emulator_with_a_token_refuses_json_calls_without_it(start) -> None:
    device = start("occlib.examples.fairmq", **{TOKEN_ENV: TOKEN})
    async with connect(device.address, json=True) as stranger:
        with pytest.raises(OccCallError) as refused:
            await stranger.get_state()
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert "OCClite endpoint" in refused.value.details and "GetState refused" in refused.value.details
        with pytest.raises(OccCallError, match="UNAUTHENTICATED"):
            await stranger.transition("IDLE", "INIT DEVICE")
        with pytest.raises(OccCallError, match="UNAUTHENTICATED"):
            async for _ in stranger.event_stream():
                pass
    async with connect(device.address, json=True, token=TOKEN) as owner:
        assert (await owner.get_state())[0] == "IDLE"
        reply = await owner.transition("IDLE", "INIT DEVICE")
        assert reply.ok and reply.state == "INITIALIZING DEVICE"


def _v4(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """gRPC listens on a dual-stack socket: 127.0.0.1 shows as ::ffff:127.0.0.1."""
    address = ipaddress.ip_address(ip)
    return getattr(address, "ipv4_mapped", None) or address


def _other_addresses() -> list[str]:
    return sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                   if a.family == socket.AF_INET and not a.address.startswith("127.")})


@pytest.mark.parametrize("module", ["occlib.examples.dummy", "occlib.examples.fairmq"])
def test_the_control_port_listens_on_loopback_only(start, module: str) -> None:
    process = start(module)
    listening = [c.laddr for c in psutil.Process(process.proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert [(str(_v4(ip)), port) for ip, port in listening] == [("127.0.0.1", process.port)]
    others = _other_addresses()
    if not others:
        pytest.skip("this machine has no address but loopback")
    for address in others:
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.settimeout(5)
            probe.connect((address, process.port))


# ---------------------------------------------------------------- a task the executor started

@pytest.fixture
async def tasks() -> AsyncIterator[list[ControlledTask]]:
    made: list[ControlledTask] = []
    yield made
    for task in made:
        await task.kill()


def _task(tmp_path: Path, tasks: list[ControlledTask], module: str, mode: str) -> ControlledTask:
    command = TaskCommand(sys.executable, arguments=("-u", "-m", module), control_port=free_port(),
                          control_mode=ControlMode.parse(mode))
    task = ControlledTask(TaskIdentity(f"t{len(tasks)}", environment_id="env1"), command,
                          lambda report: None, log_path=tmp_path / f"t{len(tasks)}.log", timings=FAST,
                          hostname="testhost", plugin_search_path="/opt/occ/lib/")
    tasks.append(task)
    return task


def environ_of(pid: int) -> dict[str, str]:
    return psutil.Process(pid).environ()


@pytest.mark.parametrize("module, mode", [("occlib.examples.dummy", "direct"),
                                          ("occlib.examples.fairmq", "fairmq")])
async def test_a_task_the_executor_starts_obeys_the_executor_only(
        tmp_path: Path, tasks: list[ControlledTask], module: str, mode: str) -> None:
    task = _task(tmp_path, tasks, module, mode)
    assert await task.launch()
    assert task.process is not None
    env = environ_of(task.process.pid)
    token = env[TOKEN_ENV]
    assert len(token) >= 32 and env["OCC_CONTROL_HOST"] == "127.0.0.1"
    json_mode = mode == "fairmq"
    async with connect(task.address, json=json_mode) as stranger:
        with pytest.raises(OccCallError) as refused:
            await stranger.get_state()
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(OccCallError, match="UNAUTHENTICATED"):
            await stranger.transition("STANDBY" if not json_mode else "IDLE",
                                      "CONFIGURE" if not json_mode else "INIT DEVICE")
    response = await task.transition(OccState.STANDBY, OccEvent.CONFIGURE)
    assert response.error == "" and task.state is OccState.CONFIGURED
    # whoever holds the token (a developer's peanut given it) is the owner too
    async with connect(task.address, json=json_mode, token=token) as holder:
        assert (await holder.get_state())[0] in ("CONFIGURED", "READY")


async def test_two_tasks_get_different_tokens(tmp_path: Path, tasks: list[ControlledTask]) -> None:
    first, second = (_task(tmp_path, tasks, "occlib.examples.dummy", "direct") for _ in range(2))
    assert all(await asyncio.gather(first.launch(), second.launch()))
    assert first.process is not None and second.process is not None
    one, other = environ_of(first.process.pid)[TOKEN_ENV], environ_of(second.process.pid)[TOKEN_ENV]
    assert one != other
    async with connect(second.address, token=one) as wrong:
        with pytest.raises(OccCallError, match="wrong token"):
            await wrong.get_state()


# ---------------------------------------------------------------- peanut

def peanut(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    return subprocess.run([PEANUT, *args], capture_output=True, text=True, timeout=30, env=env)


def test_peanut_drives_a_task_it_holds_the_token_of_and_says_why_it_cannot_otherwise(start) -> None:
    dummy = start("occlib.examples.dummy", **{TOKEN_ENV: TOKEN})
    refused = peanut("-mode", "direct", "-addr", dummy.address, "-timeout", "5s", "get-state")
    assert refused.returncode == 1
    assert "UNAUTHENTICATED" in refused.stderr and "give peanut the task's token" in refused.stderr
    by_env = peanut("-mode", "direct", "-addr", dummy.address, "transition", "STANDBY", "CONFIGURED",
                    token=TOKEN)
    assert by_env.returncode == 0, by_env.stderr
    by_flag = peanut("-mode", "direct", "-addr", dummy.address, "-token", TOKEN, "get-state")
    assert by_flag.returncode == 0 and "CONFIGURED" in by_flag.stdout


# ---------------------------------------------------------------- the agent channel

@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "home"
    root.mkdir()
    yield root
    for running in find_running(root).values():
        proc = psutil.Process(running.pid)
        proc.terminate()
        proc.wait(timeout=15)


def _request(method: object) -> object:
    return getattr(agent_pb2, method.input_type.name)()  # type: ignore[attr-defined]


async def test_the_agent_refuses_every_rpc_without_its_secret(home: Path) -> None:
    starter = LocalAgentProcess(home, default_agents()[0])
    async with await starter.connect() as owner:
        address = owner.address
        assert (await owner.list_tasks()).tasks == ()
    socket_path = Path(address.removeprefix("unix:"))
    info = socket_path.lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE((home / SECRET_FILE).stat().st_mode) == 0o600
    methods = agent_pb2.DESCRIPTOR.services_by_name["Agent"].methods
    assert {m.name for m in methods} >= {"Launch", "Command", "CommandBatch", "Kill", "ListTasks", "Events"}
    async with grpc.aio.insecure_channel(address) as channel:
        for method in methods:
            path = f"/{method.containing_service.full_name}/{method.name}"
            for metadata, why in (((), "no 'authorization: Bearer <secret>' metadata"),
                                  ((("authorization", "Bearer not-it"),), "wrong secret")):
                if method.server_streaming:
                    call = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                                response_deserializer=lambda b: b)
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        async for _ in call(_request(method), metadata=metadata, timeout=10):
                            pass
                else:
                    call = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                               response_deserializer=lambda b: b)
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await call(_request(method), metadata=metadata, timeout=10)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, path
                assert refused.value.details().endswith(f"{path} refused: {why}")


@pytest.mark.skipif(os.getuid() != 0, reason="becoming another user needs root")
async def test_a_process_of_another_user_reaches_neither_socket_secret_nor_token(
        home: Path, tmp_path: Path, tasks: list[ControlledTask]) -> None:
    starter = LocalAgentProcess(home, default_agents()[0])
    async with await starter.connect() as owner:
        address = owner.address
    task = _task(tmp_path, tasks, "occlib.examples.dummy", "direct")
    assert await task.launch() and task.process is not None
    # the stranger may walk the directories (as on a shared machine); the files guard themselves
    for folder in (home, *home.parents):
        if folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o011)
    probe = """
import socket, sys
results = []
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); results.append("socket: connected")
except OSError as e:
    results.append(f"socket: {e.strerror}")
for path in sys.argv[2:]:
    try:
        open(path).read(); results.append(f"{path}: read")
    except OSError as e:
        results.append(f"{path}: {e.strerror}")
print("\\n".join(results))
"""
    environ = f"/proc/{task.process.pid}/environ"
    done = subprocess.run(["/usr/bin/python3", "-c", probe, address.removeprefix("unix:"),
                           str(home / SECRET_FILE), environ], capture_output=True, text=True,
                          timeout=30, cwd="/", preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["socket: Permission denied",
                                        f"{home / SECRET_FILE}: Permission denied",
                                        f"{environ}: Permission denied"]


async def test_peanut_owns_the_process_it_launches() -> None:
    port = free_port()
    app = PeanutApp(address=f"127.0.0.1:{port}", mode=PeanutMode.DIRECT, timeout=10,
                    launch=(sys.executable, "-m", "occlib.examples.dummy"))
    async with app.run_test(size=(120, 36)) as pilot:
        bar = app.query_one(StatusBar)
        for _ in range(500):  # the launched dummy comes up and peanut reads its state
            if bar.state == "STANDBY":
                break
            await pilot.pause(0.02)
        assert bar.state == "STANDBY"
        assert app.launched is not None and app.launched.process is not None
        assert environ_of(app.launched.process.pid)[TOKEN_ENV] == app.launched.token
        assert app.launched.token not in " ".join(psutil.Process(app.launched.process.pid).cmdline())
        async with connect(f"127.0.0.1:{port}") as stranger:
            with pytest.raises(OccCallError, match="UNAUTHENTICATED"):
                await stranger.get_state()
        await pilot.press("q")


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_the_executor_refuses_a_secret_file_another_user_owns(home: Path) -> None:
    secret = home / SECRET_FILE
    secret.write_text("planted-by-someone-else\n")
    secret.chmod(0o600)
    os.chown(secret, NOBODY, NOBODY)
    done = subprocess.run([sys.executable, "-m", "executor.cli", "agent", "--name", "flp001",
                           "--listen", f"unix:{home / 'flp001.sock'}", "--secret-file", str(secret),
                           "--info-file", str(home / "flp001.json")],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"secret file {secret}: owned by uid {NOBODY}, not by this user (0)" in done.stderr
    assert not (home / "flp001.sock").exists()
