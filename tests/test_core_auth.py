"""Access control of `nutshell core`: TLS, mutual TLS, bearer tokens and roles, the audit
log, the requesting user, the loopback default and clear errors for bad settings.

Two real `nutshell core` processes serve the module: one over TLS (users known by bearer
token), one over mutual TLS (users known by client certificate, or by a token sent along).
Certificates are made here with `cryptography`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from console.cli import main
from console.tui.app import ConsoleApp
from console.tui.command_line import CommandScreen
from engine import CallerIdentity, Engine, EnvEvent, UnknownEnvironmentError, WorkingDirectory
from engine.api import (
    AccessDenied,
    ClientCredentials,
    RemoteEngine,
    RemoteEngineError,
    SecuritySettingsError,
    load_client_credentials,
    load_security,
)
from engine.api.auth import METHOD_ACCESS, UNLISTED
from engine.api.protos import nutshell_pb2 as ext
from engine.api.protos import o2control_pb2 as o2
from engine.api.protos import o2control_pb2_grpc as o2_grpc
from engine.api.security import (
    Role,
    SecuritySettings,
    TlsSettings,
    User,
    restart_needed,
    token_hash,
)
from engine.audit import AUDIT_FILE, AuditRecord, AuditRotation, read_audit, rotated_files
from engine.environment.events import EventKind
from engine.scheduler.local_agent import find_running
from tests.conftest import control_ports, free_port, make_template_repo
from tests.test_core_api import PAUSE, SETTINGS, WORKFLOW
from tests.test_environment_e2e import DUMMY
from tests.test_tui import SIZE, loaded, notes, table, until

TOKENS = {"olga": "observer-token-0123456789abcdef", "otto": "operator-token-0123456789abcdef",
          "ada": "admin-token-0123456789abcdef"}
ROLES = {"olga": "observer", "otto": "operator", "ada": "admin"}


# --- certificates ------------------------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def issue(self, common_name: str, *, server: bool = False) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) signed by this authority."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(_name(common_name))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=2)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: bytes
    rogue_ca: bytes
    clients: dict[str, tuple[bytes, bytes]]  # CN → (cert, key)


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    authority, rogue = Authority.make("nutshell test CA"), Authority.make("rogue CA")
    cert, key = authority.issue("localhost", server=True)
    (folder / "ca.crt").write_bytes(authority.pem)
    (folder / "core.crt").write_bytes(cert)
    (folder / "core.key").write_bytes(key)
    clients = {cn: authority.issue(cn)
               for cn in ("gui-observer", "ops-operator", "root-admin", "stranger")}
    clients["rogue-operator"] = rogue.issue("ops-operator")  # right CN, wrong CA
    return Pki(folder, authority.pem, rogue.pem, clients)


def security_yaml(*, mutual: bool) -> str:
    users = "".join(f"    {name}:\n      role: {ROLES[name]}\n"
                    f"      token_sha256: {token_hash(token)}\n"
                    for name, token in TOKENS.items())
    users += ("    gui:\n      role: observer\n      cert_cn: gui-observer\n"
              "    ops:\n      role: operator\n      cert_cn: [ops-operator]\n"
              "    root:\n      role: admin\n      cert_cn: root-admin\n")
    client_ca = "    client_ca: tls/ca.crt\n" if mutual else ""
    return (f"security:\n  tls:\n    cert: tls/core.crt\n    key: tls/core.key\n"
            f"{client_ca}  users:\n{users}client:\n  ca: tls/ca.crt\n")


def as_user(pki: Pki, *, token: str = "", client: str = "", ca: bytes | None = None
            ) -> ClientCredentials:
    cert, key = pki.clients[client] if client else (None, None)
    return ClientCredentials(token=token, tls=True, ca=pki.ca if ca is None else ca,
                             cert=cert, key=key)


# --- the module's core -------------------------------------------------------------------

@dataclass
class Secured:
    workdir: WorkingDirectory
    address: str
    reference: str
    pki: Pki


def agents_settings(index: int = 0) -> str:
    """One agent, on port ranges of its own: `index` keeps this module's cores apart."""
    data = 19900 + 30 * random.randrange(20) + 10 * index
    control = control_ports(30) + 10 * index
    return SETTINGS.format(data=data, data_end=data + 9, control=control,
                           control_end=control + 9)


def nutshell(workdir: WorkingDirectory, *argv: str, token: str = "",
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUTSHELL_HOME": str(workdir.root)}
    env.pop("NUTSHELL_TOKEN", None)
    if token:
        env["NUTSHELL_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "console.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_core(workdir: WorkingDirectory, address: str, *options: str,
               errors: IO[str] | None = None) -> subprocess.Popen[str]:
    """A `nutshell core` process serving `workdir` on `address`; its stderr goes to
    `errors` (a file the test reads while it runs), else to a pipe stop_core reads."""
    process = subprocess.Popen([sys.executable, "-m", "console.cli", "core", "--listen", address,
                                *options],
                               env={**os.environ, "NUTSHELL_HOME": str(workdir.root)},
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE if errors is None else errors, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving" not in line:
        process.kill()
        _, said = process.communicate(timeout=10)
        raise AssertionError(f"nutshell core did not start: {line!r} {said}")
    return process


def stop_core(process: subprocess.Popen[str]) -> str:
    """Stop the core; what it wrote on stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=20)
    return errors


def stop_agents(workdir: WorkingDirectory) -> None:
    async def shutdown() -> None:
        async with Engine(workdir) as cleanup:
            await cleanup.shutdown_agents()
    asyncio.run(shutdown())
    assert find_running(workdir.root) == {}


@contextmanager
def running_core(root: Path, *, mutual: bool) -> Iterator[Secured]:
    workdir = WorkingDirectory(root / "home").ensure()
    pki = make_pki(workdir.root / "tls")
    workdir.settings_file.write_text(agents_settings(int(mutual)) + security_yaml(mutual=mutual))
    repo = make_template_repo(root / "templates", {
        "workflows/tiny.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY, "tasks/pause.yaml": PAUSE,
    }, corpus=False)
    address = f"127.0.0.1:{free_port()}"
    process = start_core(workdir, address)
    admin = as_user(pki, token=TOKENS["ada"], client="root-admin" if mutual else "")
    try:
        async def warm_up() -> str:
            """The repository added and an environment run once, so the core's helper
            processes (executors, git) exist before the tests count processes."""
            async with RemoteEngine(address, admin) as ada:
                added = await ada.add_repo(str(repo), "master")
                reference = f"{added.repo}/workflows/tiny@master"
                await ada.list_repos()
                info = await ada.create_environment(reference)
                await ada.destroy_environment(info.id)
            return reference
        reference = asyncio.run(warm_up())
        yield Secured(workdir, address, reference, pki)
    finally:
        errors = stop_core(process)
        stop_agents(workdir)
    assert "unauthenticated" not in errors  # a secured core prints no loopback notice


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A core over TLS; users known by their bearer tokens."""
    with running_core(tmp_path_factory.mktemp("tls"), mutual=False) as core:
        yield core


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A core over mutual TLS; users known by their certificates (or a token)."""
    with running_core(tmp_path_factory.mktemp("mtls"), mutual=True) as core:
        yield core


# --- roles over TLS and mutual TLS -------------------------------------------------------

async def refused(call: Awaitable[object], method: str, needed: str) -> str:
    """The one-line reason a refused call gives; it names the method and the role."""
    with pytest.raises(AccessDenied) as caught:
        await call
    message = str(caught.value)
    assert method in message and f"needs role {needed}" in message and "\n" not in message
    return message


async def test_an_observer_reads_and_is_refused_every_change(secured: Secured) -> None:
    async with RemoteEngine(secured.address, as_user(secured.pki, token=TOKENS["olga"])) as olga:
        assert await olga.list_environments() == []
        assert await olga.list_agents()
        assert await olga.list_repos()
        subscription = await olga.subscribe()
        subscription.close()
        await refused(olga.create_environment(secured.reference), "CreateEnvironment",
                      "operator")
        await refused(olga.control_environment("nope", EnvEvent.START_ACTIVITY),
                      "ControlEnvironment", "operator")
        await refused(olga.destroy_environment("nope"), "DestroyEnvironment", "operator")
        await refused(olga.task_log("nope"), "TaskLog", "operator")
        message = await refused(olga.add_repo("somewhere"), "AddRepo", "admin")
        assert "user olga is observer" in message and TOKENS["olga"] not in message
        await refused(olga.set_global_default_revision("main"), "SetGlobalDefaultRevision",
                      "admin")
        assert await olga.list_workflow_templates()  # from the repositories: an observer's
        await refused(olga.list_workflow_templates(repo_path="/etc"),  # a path on the core's
                      "reading templates from a path on the core", "admin")  # machine: not
        await refused(olga.render_workflow("x", repo_path="/etc"),
                      "rendering from a path on the core", "admin")


async def test_an_operator_runs_an_environment_as_itself_and_is_refused_admin_calls(
        secured: Secured) -> None:
    async with RemoteEngine(secured.address, as_user(secured.pki, token=TOKENS["otto"])) as otto:
        subscription = await otto.subscribe()
        created = await otto.create_environment(secured.reference, user="mallory")
        started = await otto.control_environment(created.id, EnvEvent.START_ACTIVITY,
                                                 user="mallory")
        assert started.user == "otto"  # the token's user, not the one the request named

        async def until_running() -> set[str]:
            users = set()
            async for event in subscription:
                if event.environment_id == created.id and event.user:
                    users.add(event.user)
                if (event.environment_id, event.kind, event.state) == (
                        created.id, EventKind.ENVIRONMENT, "RUNNING"):
                    return users
            raise AssertionError("the event stream ended before RUNNING")
        users = await asyncio.wait_for(until_running(), 30)
        subscription.close()
        assert users == {"otto"}
        await otto.destroy_environment(created.id, user="mallory",
                                       allow_in_running_state=True)
        await refused(otto.add_repo("somewhere"), "AddRepo", "admin")
        await refused(otto.cleanup_tasks(), "CleanupTasks", "admin")
        await refused(otto.shutdown_agents(), "ShutdownAgents", "admin")

    records = read_audit(secured.workdir.root / AUDIT_FILE)
    mine = [r for r in records if r.target.get("environment") == created.id]
    assert [(r.method, r.user, r.role, r.outcome) for r in mine] == [
        ("nutshell.ControlExt/CreateEnvironment", "otto", "operator", "OK"),
        ("nutshell.ControlExt/ControlEnvironment", "otto", "operator", "OK"),
        ("nutshell.ControlExt/DestroyEnvironment", "otto", "operator", "OK")]
    assert mine[1].target["event"] == "START_ACTIVITY"
    assert any(r.method == "nutshell.ControlExt/AddRepo" and r.user == "otto"
               and r.outcome == "PERMISSION_DENIED" for r in records)
    text = (secured.workdir.root / AUDIT_FILE).read_text()
    assert not any(token in text for token in TOKENS.values())


async def test_an_admin_may_call_what_the_others_may_not(secured: Secured) -> None:
    async with RemoteEngine(secured.address, as_user(secured.pki, token=TOKENS["ada"])) as ada:
        assert await ada.cleanup_tasks() == ([], [])
        with pytest.raises(UnknownEnvironmentError):  # allowed: the engine answers
            await ada.control_environment("nope", EnvEvent.STOP_ACTIVITY)
        # A failed call's line is queued before its status leaves, a good call's written
        # before its reply: once this one answers, both lines are in the file.
        await ada.set_global_default_revision("master")
    records = read_audit(secured.workdir.root / AUDIT_FILE)
    assert any(r.method == "o2control.Control/SetGlobalDefaultRevision" and r.user == "ada"
               and r.role == "admin" and r.outcome == "OK" for r in records)
    assert any(r.method == "nutshell.ControlExt/ControlEnvironment" and r.user == "ada"
               and r.outcome == "NOT_FOUND" and r.target == {"environment": "nope",
                                                             "event": "STOP_ACTIVITY"}
               for r in records)


async def test_the_o2control_service_is_checked_too(secured: Secured) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=secured.pki.ca)
    async with grpc.aio.secure_channel(secured.address, credentials) as channel:
        stub = o2_grpc.ControlStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.GetEnvironments(o2.GetEnvironmentsRequest())
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        observer = (("authorization", f"Bearer {TOKENS['olga']}"),)
        await stub.GetEnvironments(o2.GetEnvironmentsRequest(), metadata=observer)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.ControlEnvironment(o2.ControlEnvironmentRequest(id="x"),
                                          metadata=observer)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.details() == ("o2control.Control/ControlEnvironment: needs role "
                                          "operator; user olga is observer")
        health = health_pb2_grpc.HealthStub(channel)  # open to standard probes
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_unauthenticated_and_unknown_clients_are_refused(secured: Secured) -> None:
    async with RemoteEngine(secured.address, as_user(secured.pki)) as nobody:
        with pytest.raises(AccessDenied, match="ListEnvironments: needs credentials"):
            await nobody.list_environments()
        with pytest.raises(AccessDenied):
            await nobody.subscribe()
    wrong = "not-a-known-token-at-all"
    async with RemoteEngine(secured.address, as_user(secured.pki, token=wrong)) as guess:
        with pytest.raises(AccessDenied, match="token is not one this core knows") as caught:
            await guess.control_environment("nope", EnvEvent.START_ACTIVITY)
    assert wrong not in str(caught.value)
    records = read_audit(secured.workdir.root / AUDIT_FILE)
    assert any(r.outcome == "UNAUTHENTICATED" and r.user == "" and
               r.method == "nutshell.ControlExt/ControlEnvironment" for r in records)


async def test_a_client_that_does_not_trust_the_core_or_is_not_trusted_fails(
        secured: Secured) -> None:
    rogue = as_user(secured.pki, token=TOKENS["ada"], ca=secured.pki.rogue_ca)
    async with RemoteEngine(secured.address, rogue) as wrong_ca:
        with pytest.raises(RemoteEngineError, match="cannot reach the engine") as caught:
            await wrong_ca.list_environments()
    assert not isinstance(caught.value, AccessDenied)
    plain = ClientCredentials(token=TOKENS["ada"])  # no TLS at all
    async with RemoteEngine(secured.address, plain) as cleartext:
        with pytest.raises(RemoteEngineError, match="cannot reach the engine"):
            await cleartext.list_environments()


async def test_over_mutual_tls_certificates_name_users_and_their_roles(
        mutual: Secured) -> None:
    async with RemoteEngine(mutual.address, as_user(mutual.pki, client="gui-observer")) as gui:
        assert await gui.list_environments() == []
        await refused(gui.control_environment("nope", EnvEvent.START_ACTIVITY),
                      "ControlEnvironment", "operator")
        await refused(gui.add_repo("x"), "AddRepo", "admin")
    async with RemoteEngine(mutual.address, as_user(mutual.pki, client="ops-operator")) as ops:
        created = await ops.create_environment(mutual.reference, user="mallory")
        started = await ops.control_environment(created.id, EnvEvent.START_ACTIVITY,
                                                user="mallory")
        assert started.user == "ops"
        await ops.destroy_environment(created.id, allow_in_running_state=True)
        await refused(ops.cleanup_tasks(), "CleanupTasks", "admin")
    async with RemoteEngine(mutual.address, as_user(mutual.pki, client="root-admin")) as root:
        assert await root.cleanup_tasks() == ([], [])
    async with RemoteEngine(mutual.address, as_user(mutual.pki, client="stranger")) as who:
        with pytest.raises(AccessDenied, match="ListEnvironments: needs credentials"):
            await who.list_environments()
    # a token sent along names the user instead of the certificate
    async with RemoteEngine(mutual.address, as_user(mutual.pki, client="gui-observer",
                                                    token=TOKENS["otto"])) as both:
        with pytest.raises(UnknownEnvironmentError):  # allowed: the engine answers
            await both.control_environment("nope", EnvEvent.START_ACTIVITY)
    records = read_audit(mutual.workdir.root / AUDIT_FILE)
    assert [(r.method, r.user, r.role, r.outcome) for r in records
            if r.target.get("environment") == created.id] == [
        ("nutshell.ControlExt/CreateEnvironment", "ops", "operator", "OK"),
        ("nutshell.ControlExt/ControlEnvironment", "ops", "operator", "OK"),
        ("nutshell.ControlExt/DestroyEnvironment", "ops", "operator", "OK")]


async def test_mutual_tls_refuses_a_client_without_a_trusted_certificate(
        mutual: Secured) -> None:
    token_only = as_user(mutual.pki, token=TOKENS["ada"])
    impostor = as_user(mutual.pki, client="rogue-operator")  # the right CN, another CA
    for credentials in (token_only, impostor):
        async with RemoteEngine(mutual.address, credentials) as client:
            with pytest.raises(RemoteEngineError, match="cannot reach the engine") as caught:
                await client.list_environments()
        assert not isinstance(caught.value, AccessDenied)


# --- reloading users and certificates on SIGHUP --------------------------------------------

def reloadable_settings(agents: str, users: dict[str, tuple[str, str]], *, cert: str = "core",
                        tls: bool = True, security: bool = True) -> str:
    """nutshell.yaml with `users` (name → role, token), served with tls/`cert`.crt; a small
    audit.log limit, so the core rotates it."""
    lines = [agents, "client:\n  ca: tls/ca.crt\n"]
    if security:
        lines.append("security:\n  audit: {max_bytes: 1500, keep: 50}\n")
        if tls:
            lines.append(f"  tls: {{cert: tls/{cert}.crt, key: tls/{cert}.key}}\n")
        lines.append("  users:\n" + "".join(
            f"    {name}: {{role: {role}, token_sha256: {token_hash(token)}}}\n"
            for name, (role, token) in users.items()))
    return "".join(lines)


@dataclass
class Reloadable:
    workdir: WorkingDirectory
    address: str
    pki: Pki
    process: subprocess.Popen[str]
    agents: str  # nutshell.yaml's agents section, kept by every rewrite
    errors: Path  # the core's stderr

    def rewrite(self, users: dict[str, tuple[str, str]], *, cert: str = "core",
                tls: bool = True, security: bool = True) -> None:
        self.workdir.settings_file.write_text(reloadable_settings(
            self.agents, users, cert=cert, tls=tls, security=security))

    async def reload(self) -> AuditRecord:
        """SIGHUP, then the audit line of the reload it caused, once written."""
        sent = dt.datetime.now(dt.UTC)
        self.process.send_signal(signal.SIGHUP)
        while True:
            lines = [record for record in read_audit(self.workdir.root / AUDIT_FILE)
                     if record.method == "reload"
                     and dt.datetime.fromisoformat(record.time) >= sent]
            if lines:
                return lines[0]
            assert self.process.poll() is None, self.errors.read_text()
            await asyncio.sleep(0.05)


FIRST_USERS = {name: (ROLES[name], token) for name, token in TOKENS.items()}


@pytest.fixture(scope="module")
def reloadable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reloadable]:
    """A core over TLS whose nutshell.yaml the tests rewrite and reload."""
    root = tmp_path_factory.mktemp("reload")
    workdir = WorkingDirectory(root / "home").ensure()
    pki = make_pki(workdir.root / "tls")
    errors, agents, address = root / "core.stderr", agents_settings(2), f"127.0.0.1:{free_port()}"
    workdir.settings_file.write_text(reloadable_settings(agents, FIRST_USERS))
    with errors.open("w") as sink:
        process = start_core(workdir, address, errors=sink)
    core = Reloadable(workdir, address, pki, process, agents, errors)
    try:
        yield core
    finally:
        stop_core(core.process)
        stop_agents(workdir)


async def code_of(address: str, pki: Pki, token: str) -> grpc.StatusCode:
    """The status of a read (GetEnvironments) with `token`, over a connection of its own."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca)
    async with grpc.aio.secure_channel(address, credentials) as channel:
        try:
            await o2_grpc.ControlStub(channel).GetEnvironments(
                o2.GetEnvironmentsRequest(), metadata=(("authorization", f"Bearer {token}"),))
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_sighup_reloads_users_for_the_next_call_and_keeps_them_when_the_file_is_bad(
        reloadable: Reloadable) -> None:
    core, nina = reloadable, "new-operator-token-0123456789abcdef"
    settings = core.workdir.settings_file
    core.rewrite(FIRST_USERS)
    assert (await core.reload()).outcome == "OK"
    async with RemoteEngine(core.address, as_user(core.pki, token=TOKENS["otto"])) as otto:
        with pytest.raises(UnknownEnvironmentError):  # an operator: allowed, the engine answers
            await otto.control_environment("nope", EnvEvent.START_ACTIVITY)
        assert await code_of(core.address, core.pki, TOKENS["olga"]) is grpc.StatusCode.OK
        # olga removed, otto demoted, nina new
        core.rewrite({"ada": FIRST_USERS["ada"], "otto": ("observer", TOKENS["otto"]),
                      "nina": ("operator", nina)})
        record = await core.reload()
        assert (record.user, record.method, record.outcome) == ("core", "reload", "OK")
        assert record.target == {"file": str(settings)}
        assert "users ada (admin), otto (observer), nina (operator)" in record.detail
        assert await code_of(core.address, core.pki, TOKENS["olga"]) is \
            grpc.StatusCode.UNAUTHENTICATED
        await refused(otto.control_environment("nope", EnvEvent.START_ACTIVITY),
                      "ControlEnvironment", "operator")  # on the connection it had
        assert await otto.list_environments() == []
        async with RemoteEngine(core.address, as_user(core.pki, token=nina)) as new:
            with pytest.raises(UnknownEnvironmentError):
                await new.control_environment("nope", EnvEvent.START_ACTIVITY)
            core.rewrite({"nina": ("boss", nina)})
            record = await core.reload()
            assert record.outcome == "INVALID_ARGUMENT"
            assert record.detail.startswith(
                f"reload refused: {settings}: security.users.nina.role: 'boss' is not a role")
            with pytest.raises(UnknownEnvironmentError):  # the users in force are kept
                await new.control_environment("nope", EnvEvent.START_ACTIVITY)
            await refused(otto.control_environment("nope", EnvEvent.START_ACTIVITY),
                          "ControlEnvironment", "operator")
    said = core.errors.read_text().splitlines()
    assert f"ERROR: reload refused: {settings}: security.users.nina.role: 'boss' is not a " \
        "role; use observer, operator, admin; the settings in force are kept" in said
    assert (f"nutshell core: {settings}: security reloaded: users ada (admin), otto "
            "(observer), nina (operator); certificates unchanged") in said
    rotated = rotated_files(core.workdir.root / AUDIT_FILE)  # security.audit.max_bytes: 1500
    assert rotated and all(os.stat(file).st_mode & 0o777 == 0o600 for file in rotated)


async def test_sighup_serves_new_certificates_to_new_connections_but_never_turns_tls_off(
        reloadable: Reloadable) -> None:
    core, ada = reloadable, TOKENS["ada"]
    second = Authority.make("second CA")
    cert, key = second.issue("localhost", server=True)
    (core.pki.folder / "second.crt").write_bytes(cert)
    (core.pki.folder / "second.key").write_bytes(key)
    core.rewrite(FIRST_USERS)
    assert (await core.reload()).outcome == "OK"
    try:
        async with RemoteEngine(core.address, as_user(core.pki, token=ada)) as before:
            assert await before.list_environments() == []
            core.rewrite(FIRST_USERS, cert="second")
            record = await core.reload()
            assert record.outcome == "OK"
            assert record.detail.endswith("certificates replaced for new connections")
            assert await before.list_environments() == []  # its connection keeps its certificate
        async with RemoteEngine(core.address, as_user(core.pki, token=ada)) as first_ca:
            with pytest.raises(RemoteEngineError, match="cannot reach the engine"):
                await first_ca.list_environments()
        second_ca = as_user(core.pki, token=ada, ca=second.pem)
        async with RemoteEngine(core.address, second_ca) as after:
            assert await after.list_environments() == []
            for change, words in (({"tls": False}, "security.tls: removed; switching between "
                                    "plaintext and TLS needs a restart of nutshell core"),
                                  ({"security": False}, "security: removed; turning access "
                                   "control on or off needs a restart of nutshell core")):
                core.rewrite(FIRST_USERS, cert="second", **change)
                record = await core.reload()
                assert record.outcome == "FAILED_PRECONDITION"
                assert words in record.detail
                assert await after.list_environments() == []
                with pytest.raises(AccessDenied, match="needs credentials"):
                    async with RemoteEngine(core.address, as_user(
                            core.pki, ca=second.pem)) as anonymous:
                        await anonymous.list_environments()
    finally:
        core.rewrite(FIRST_USERS)  # the first certificate again, for the next test
        assert (await core.reload()).outcome == "OK"


# --- front-ends ----------------------------------------------------------------------------

async def test_the_cli_passes_credentials_and_shows_a_refusal_in_one_line(
        secured: Secured) -> None:
    async with RemoteEngine(secured.address, as_user(secured.pki, token=TOKENS["otto"])) as otto:
        created = await otto.create_environment(secured.reference)
        try:
            await asyncio.to_thread(cli_refusal, secured, created.id)
        finally:
            await otto.destroy_environment(created.id)


def cli_refusal(secured: Secured, environment_id: str) -> None:
    """An observer's `nutshell env list` works, its `env control` is refused in one line."""
    listed = nutshell(secured.workdir, "env", "list", token=TOKENS["olga"])
    assert listed.returncode == 0 and environment_id in listed.stdout, listed.stderr
    denied = nutshell(secured.workdir, "env", "control", environment_id, "-e", "START",
                      token=TOKENS["olga"])
    lines = denied.stderr.strip().splitlines()
    assert denied.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "ControlEnvironment: needs role operator; user olga is observer" in lines[0]
    anonymous = nutshell(secured.workdir, "env", "list")
    assert anonymous.returncode == 1 and "needs credentials" in anonymous.stderr
    assert TOKENS["olga"] not in denied.stderr + denied.stdout


async def test_each_role_learns_who_it_is(secured: Secured) -> None:
    for name, token in TOKENS.items():
        async with RemoteEngine(secured.address, as_user(secured.pki, token=token)) as remote:
            assert await remote.who_am_i() == CallerIdentity(name, ROLES[name], True)
    async with RemoteEngine(secured.address, as_user(secured.pki)) as anonymous:
        with pytest.raises(AccessDenied, match="WhoAmI: needs credentials"):
            await anonymous.who_am_i()
    local = await Engine(secured.workdir).who_am_i()  # in-process: nobody checks
    assert (local.role, local.authenticated, local.describe()) == ("admin", False, "")


async def test_an_observer_console_is_read_only_and_names_the_user(
        secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUTSHELL_TOKEN", TOKENS["olga"])
    async with RemoteEngine(secured.address, as_user(secured.pki, token=TOKENS["otto"])) as otto:
        info = await otto.create_environment(secured.reference)
        try:
            app = ConsoleApp(secured.workdir, core=secured.address)
            async with app.run_test(size=SIZE) as pilot:
                view = await loaded(pilot)
                await until(pilot, lambda: info.id in table(app).rows_by_id, "the environment")
                assert app.readonly and view.readonly
                assert view.sub_title == (f"environments · {secured.address} · olga (observer)"
                                          " (read-only)")
                await pilot.press("s")
                await until(pilot, lambda: any(n.startswith("read-only console:")
                                               for n in notes(app)), "the refusal told")
                assert f"read-only console: Start (START_ACTIVITY) of {info.id} refused" in \
                    notes(app)
                assert not [n for n in notes(app) if "needs role" in n]  # never asked the core
                await pilot.press("colon")
                line = app.screen
                assert isinstance(line, CommandScreen) and line.readonly
                await pilot.press("escape")
                await until(pilot, lambda: app.screen is view, "the command line closed")
                await pilot.press("q")
            assert (await otto.get_environment(info.id)).state == "CONFIGURED"
        finally:
            await otto.destroy_environment(info.id)
    refusals = [record for record in read_audit(secured.workdir.root / AUDIT_FILE)
                if record.user == "olga" and record.target.get("environment") == info.id]
    assert refusals == []


async def test_an_operator_console_may_act_and_names_the_user(
        secured: Secured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUTSHELL_TOKEN", TOKENS["otto"])
    app = ConsoleApp(secured.workdir, core=secured.address)
    async with app.run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        assert not app.readonly and not view.readonly
        assert view.sub_title == f"environments · {secured.address} · otto (operator)"
        shown = {key for key, active in view.active_bindings.items() if active.binding.show}
        assert {"c", "s", "t", "r", "R", "d", "n"} <= shown
        await pilot.press("q")


def test_an_observer_shell_refuses_changes_before_asking_the_core(
        secured: Secured, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NUTSHELL_HOME", str(secured.workdir.root))
    monkeypatch.setenv("NUTSHELL_TOKEN", TOKENS["olga"])
    otto = as_user(secured.pki, token=TOKENS["otto"])

    async def create() -> str:
        async with RemoteEngine(secured.address, otto) as remote:
            return (await remote.create_environment(secured.reference)).id

    async def destroy(environment_id: str) -> None:
        async with RemoteEngine(secured.address, otto) as remote:
            await remote.destroy_environment(environment_id)

    environment_id = asyncio.run(create())
    try:
        capsys.readouterr()
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            pipe.send_text(f"env list\nenv control {environment_id} -e START\nexit\n")
            assert main(["shell"]) == 0
        captured = capsys.readouterr()
    finally:
        asyncio.run(destroy(environment_id))
    assert environment_id in captured.out
    assert captured.err.splitlines() == [
        "error: read-only: olga is an observer; `environment control` changes things and is "
        "refused"]
    asked = [record for record in read_audit(secured.workdir.root / AUDIT_FILE)
             if record.user == "olga" and record.method.endswith("ControlEnvironment")
             and record.target.get("environment") == environment_id]
    assert asked == []  # refused by the shell: the core never heard of it


def test_client_credentials_come_from_the_environment_or_a_private_token_file(
        tmp_path: Path) -> None:
    settings = tmp_path / "nutshell.yaml"
    (tmp_path / "token").write_text("file-token\n")
    settings.write_text("client:\n  token_file: token\n")
    os.chmod(tmp_path / "token", 0o644)
    with pytest.raises(SecuritySettingsError) as caught:
        load_client_credentials(settings, {})
    assert str(caught.value) == (f"{settings}: client.token_file: {tmp_path / 'token'}: others "
                                 "may read it (mode 0644); chmod 600 it")
    os.chmod(tmp_path / "token", 0o600)
    from_file = load_client_credentials(settings, {})
    assert from_file.token == "file-token" and not from_file.tls
    assert "file-token" not in repr(from_file)
    assert load_client_credentials(settings, {"NUTSHELL_TOKEN": "env-token"}).token == "env-token"
    settings.write_text("client:\n  cert: c.pem\n")
    with pytest.raises(SecuritySettingsError, match=r"client\.key: missing"):
        load_client_credentials(settings, {})


# --- the loopback default and bad settings ------------------------------------------------

async def test_loopback_without_security_works_for_the_local_user_and_says_so(
        tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(agents_settings())
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.to_thread(start_core, workdir, address)
    try:
        async with RemoteEngine(address) as local:
            assert await local.list_environments() == []
            assert await local.who_am_i() == CallerIdentity("", "admin", False)
            await local.set_global_default_revision("master")
    finally:
        errors = await asyncio.to_thread(stop_core, process)
        await asyncio.to_thread(stop_agents, workdir)
    notices = [line for line in errors.splitlines() if "unauthenticated" in line]
    assert notices == ["nutshell core: no `security:` in nutshell.yaml: unauthenticated, "
                       "loopback only"]
    (record,) = read_audit(workdir.root / AUDIT_FILE)
    assert (record.method, record.role, record.outcome) == (
        "o2control.Control/SetGlobalDefaultRevision", "local", "OK")


async def test_a_non_loopback_address_needs_security_or_insecure(tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(agents_settings())
    port = free_port()
    process = await asyncio.to_thread(start_core, workdir, f"0.0.0.0:{port}", "--insecure")
    try:
        async with RemoteEngine(f"127.0.0.1:{port}") as anyone:
            assert await anyone.list_environments() == []
    finally:
        errors = await asyncio.to_thread(stop_core, process)
        await asyncio.to_thread(stop_agents, workdir)
    assert [line for line in errors.splitlines() if "unauthenticated" in line] == [
        f"nutshell core: --insecure: unauthenticated on 0.0.0.0:{port}; anyone who reaches it "
        "may control environments"]

    port = free_port()
    done = await asyncio.to_thread(nutshell, workdir, "core", "--listen", f"0.0.0.0:{port}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: refusing to listen on 0.0.0.0:{port} without authentication: add a `security:` section (TLS and users) to nutshell.yaml, "
        "or pass --insecure on a trusted network"]
    workdir.settings_file.write_text(
        f"security:\n  users:\n    a:\n      role: admin\n      token_sha256: {'a' * 64}\n")
    tokens_only = await asyncio.to_thread(nutshell, workdir, "core", "--listen",
                                          f"0.0.0.0:{free_port()}")
    assert tokens_only.returncode == 1 and "security.tls" in tokens_only.stderr


@pytest.mark.parametrize(("section", "field", "words"), [
    ("security:\n  tls:\n    cert: tls/missing.crt\n    key: k\n", "security.tls.cert",
     "missing.crt: cannot be read: No such file or directory"),
    ("security:\n  tls:\n    key: k\n", "security.tls.cert", "missing"),
    ("security:\n  tls:\n    cert: c\n    key: k\n    require_client_cert: true\n",
     "security.tls.require_client_cert", "needs client_ca"),
    ("security:\n  tls:\n    cert: c\n    key: k\n    client_ca: ca\n"
     "    require_client_cert: false\n", "security.tls.require_client_cert",
     "only when it requires them"),
    ("security:\n  users:\n    bob:\n      role: boss\n      token_sha256: x\n",
     "security.users.bob.role", "'boss' is not a role"),
    ("security:\n  users:\n    bob:\n      role: admin\n      token_sha256: secret\n",
     "security.users.bob.token_sha256", "not a SHA-256"),
    ("security:\n  users:\n    bob:\n      role: admin\n", "security.users.bob",
     "neither token_sha256 nor cert_cn"),
    ("security:\n  tls: {}\n  users: {}\n  tokens: x\n", "security", "unknown field(s) tokens"),
    ("security:\n  users: {}\n", "security.users", "declares no user"),
    ("security:\n  audit: {max_bytes: 0}\n  users: {a: {role: admin, cert_cn: a}}\n",
     "security.audit.max_bytes", "must be a whole number ≥ 1, not 0"),
    ("security:\n  audit: {size: 5}\n  users: {a: {role: admin, cert_cn: a}}\n",
     "security.audit", "unknown field(s) size; allowed: keep, max_bytes"),
])
def test_bad_security_settings_name_file_and_field(tmp_path: Path, section: str, field: str,
                                                   words: str) -> None:
    settings = tmp_path / "nutshell.yaml"
    settings.write_text(section)
    with pytest.raises(SecuritySettingsError) as caught:
        load_security(settings)
    assert str(caught.value).startswith(f"{settings}: {field}")
    assert words in str(caught.value)


def test_the_key_must_be_the_certificates_and_audit_limits_are_read(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "tls")
    (pki.folder / "other.key").write_bytes(pki.clients["stranger"][1])
    settings = tmp_path / "nutshell.yaml"
    users = "  users: {a: {role: admin, cert_cn: a}}\n"
    settings.write_text(f"security:\n  tls: {{cert: tls/core.crt, key: tls/other.key}}\n{users}")
    with pytest.raises(SecuritySettingsError) as caught:
        load_security(settings)
    assert str(caught.value).startswith(
        f"{settings}: security.tls.key: {pki.folder / 'other.key'} is not the private key of "
        f"{pki.folder / 'core.crt'}")
    settings.write_text(f"security:\n  tls: {{cert: tls/core.crt, key: tls/core.key}}\n{users}")
    read = load_security(settings)
    assert read is not None and read.audit == AuditRotation()  # 10 MiB, 5 files
    settings.write_text(f"security:\n  audit: {{max_bytes: 2048, keep: 3}}\n{users}")
    read = load_security(settings)
    assert read is not None and read.audit == AuditRotation(max_bytes=2048, keep=3)


def test_a_reload_is_refused_only_for_what_needs_a_restart() -> None:
    users = (User("a", Role.ADMIN, cert_names=frozenset({"a"})),)
    tls, mutual_tls = TlsSettings(b"c", b"k"), TlsSettings(b"c", b"k", b"ca", True)
    tokens, over_tls = SecuritySettings(None, users), SecuritySettings(tls, users)
    over_mutual_tls = SecuritySettings(mutual_tls, users)
    new_material = SecuritySettings(TlsSettings(b"c2", b"k2"), ())
    assert [restart_needed(over_tls, new_material), restart_needed(tokens, tokens),
            restart_needed(None, None)] == ["", "", ""]
    assert restart_needed(None, tokens).startswith("security: added; turning access control")
    assert restart_needed(over_tls, None).startswith("security: removed; turning access")
    assert restart_needed(over_tls, tokens).startswith("security.tls: removed; switching "
                                                       "between plaintext and TLS")
    assert restart_needed(tokens, over_tls).startswith("security.tls: added")
    assert restart_needed(over_tls, over_mutual_tls).startswith(
        "security.tls.client_ca: added; switching mutual TLS on or off needs a restart")
    assert restart_needed(over_mutual_tls, over_tls).startswith("security.tls.client_ca: removed")


def test_nutshell_core_refuses_bad_security_settings_in_one_line(tmp_path: Path) -> None:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    (workdir.root / "c.pem").write_text("not a certificate")
    workdir.settings_file.write_text("security:\n  tls:\n    cert: c.pem\n    key: c.pem\n")
    done = nutshell(workdir, "core", "--listen", f"127.0.0.1:{free_port()}", timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {workdir.settings_file}: security.tls.cert: {workdir.root / 'c.pem'}: not a "
        "PEM file (no -----BEGIN line)"]


def test_every_method_of_the_control_services_is_in_the_role_table() -> None:
    methods = {f"/{service.full_name}/{method.name}"
               for descriptor in (o2.DESCRIPTOR, ext.DESCRIPTOR)
               for service in descriptor.services_by_name.values()
               for method in service.methods}
    assert methods == set(METHOD_ACCESS)
    assert all(access is not UNLISTED for access in METHOD_ACCESS.values())
