"""Who may call `nutshell core`, and how front-ends prove who they are: nutshell.yaml's
`security:` (the core's side) and `client:` (the front-ends' side) sections.

```yaml
security:
  tls:                          # paths relative to the working directory
    cert: tls/core.crt          # the core's certificate chain (PEM)
    key: tls/core.key           # its private key (PEM)
    client_ca: tls/ca.crt       # CA of client certificates: mutual TLS, every client
                                # must present one (gRPC cannot ask for one optionally)
  users:
    alice:
      role: admin               # observer | operator | admin
      token_sha256: 5e88…       # printf %s "$TOKEN" | sha256sum (a list for several)
    gui:
      role: observer
      cert_cn: gui.example.org  # mTLS: a client certificate with this CN is this user
  audit:                        # optional: when audit.log rotates (engine.audit)
    max_bytes: 10485760         # audit.log → audit.log.1 past this size (default 10 MiB)
    keep: 5                     # rotated files kept (default 5)
client:
  token_file: ~/.config/nutshell/token  # the bearer token; must be mode 0600
  ca: tls/ca.crt                # CA that signed the core's certificate (TLS to the core)
  cert: tls/alice.crt           # client certificate and key, for mutual TLS
  key: tls/alice.key
  server_name: core.example.org # the name the core's certificate carries, if not its host
```
nutshell.yaml keeps only SHA-256 hashes of tokens: a token is random and long, so its
hash cannot be turned back into it, and the file may be shared. $NUTSHELL_TOKEN (the
token itself) wins over `client.token_file`. With mutual TLS a call may still carry a
token, which then names the user instead of the certificate. No `security:` section means no
authentication, which `nutshell core` allows on a loopback address only.

`nutshell core` reads the section again on SIGHUP: users, certificates and the audit
rotation change for the next call; `restart_needed` says what a running core cannot change.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from engine.audit import AuditRotation
from engine.config.service import ConfigurationError

SECTION = "security"
CLIENT_SECTION = "client"
TOKEN_ENV = "NUTSHELL_TOKEN"
_SECTION_KEYS = frozenset({"tls", "users", "audit"})
_AUDIT_KEYS = frozenset({"max_bytes", "keep"})
_TLS_KEYS = frozenset({"cert", "key", "client_ca", "require_client_cert"})
_USER_KEYS = frozenset({"role", "token_sha256", "cert_cn"})
_CLIENT_KEYS = frozenset({"token_file", "ca", "cert", "key", "server_name"})


class SecuritySettingsError(ConfigurationError, ValueError):
    """The security or client settings are wrong; the message names the file and field."""


class Role(str, Enum):
    """What a user may do, each role everything the one before may and more."""

    OBSERVER = "observer"  # read-only calls
    OPERATOR = "operator"  # + create, transitions, destroy, task logs
    ADMIN = "admin"        # + repositories, configuration, cleanup, stopping agents

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    token_hashes: frozenset[str] = frozenset()  # SHA-256 hex of its bearer tokens
    cert_names: frozenset[str] = frozenset()    # client certificate CNs that are this user


@dataclass(frozen=True)
class TlsSettings:
    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)
    require_client_cert: bool = False


@dataclass(frozen=True)
class SecuritySettings:
    """The core's side: its TLS material and the users it knows."""

    tls: TlsSettings | None
    users: tuple[User, ...]
    audit: AuditRotation = field(default_factory=AuditRotation)

    def user_of_token(self, token: str) -> User | None:
        digest = token_hash(token)
        return next((u for u in self.users if digest in u.token_hashes), None)

    def user_of_certificate(self, common_name: str) -> User | None:
        return next((u for u in self.users if common_name in u.cert_names), None)


@dataclass(frozen=True)
class ClientCredentials:
    """What a front-end presents to the core: a bearer token and TLS material."""

    token: str = field(default="", repr=False)
    tls: bool = False
    ca: bytes | None = field(default=None, repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)
    server_name: str = ""


def token_hash(token: str) -> str:
    """The SHA-256 (hex) nutshell.yaml keeps for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_loopback(address: str) -> bool:
    """Whether "host:port" listens on this machine only (localhost, 127.0.0.0/8, ::1)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_document(settings_file: Path) -> Any:
    try:
        text = settings_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SecuritySettingsError(f"{settings_file}: cannot be read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SecuritySettingsError(f"{settings_file}: not UTF-8 text ({error.reason} at byte "
                                    f"{error.start})") from None
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError as error:
        raise SecuritySettingsError(f"{settings_file}: not valid YAML: {error}") from None


def _section(document: Any, name: str, keys: frozenset[str], origin: str
             ) -> Mapping[str, Any] | None:
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise SecuritySettingsError(f"{origin}: must be a mapping of sections, not "
                                    f"{type(document).__name__}")
    section = document.get(name)
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise SecuritySettingsError(f"{origin}: {name}: must be a mapping ({', '.join(sorted(keys))}), "
                                    f"not {type(section).__name__}")
    _no_unknown(section, keys, f"{origin}: {name}")
    return section


def _no_unknown(section: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in section if k not in keys)
    if unknown:
        raise SecuritySettingsError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                                    f"allowed: {', '.join(sorted(keys))}")


def _path(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise SecuritySettingsError(f"{where}: must be a file path, not {value!r}")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else base / path


def _read_file(value: Any, base: Path, where: str) -> bytes:
    path = _path(value, base, where)
    try:
        return path.read_bytes()
    except OSError as error:
        raise SecuritySettingsError(f"{where}: {path}: cannot be read: "
                                    f"{error.strerror or error}") from None


def _read_pem(value: Any, base: Path, where: str) -> bytes:
    data = _read_file(value, base, where)
    if b"-----BEGIN " not in data:
        raise SecuritySettingsError(f"{where}: {_path(value, base, where)}: not a PEM file "
                                    "(no -----BEGIN line)")
    return data


def _strings(value: Any, where: str) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise SecuritySettingsError(f"{where}: must be a string or a list of strings (quote "
                                    "a value YAML would read as a number)")
    return frozenset(i.strip() for i in items)


def _user(name: Any, entry: Any, where: str) -> User:
    if not isinstance(entry, Mapping):
        raise SecuritySettingsError(f"{where}: must be a mapping (role, token_sha256, cert_cn)")
    _no_unknown(entry, _USER_KEYS, where)
    try:
        role = Role(str(entry.get("role", "")).strip().lower())
    except ValueError:
        raise SecuritySettingsError(
            f"{where}.role: {entry.get('role')!r} is not a role; use "
            f"{', '.join(r.value for r in Role)}") from None
    hashes = _strings(entry.get("token_sha256", []), f"{where}.token_sha256")
    bad = [h for h in hashes if len(h) != 64 or any(c not in "0123456789abcdef" for c in h.lower())]
    if bad:
        raise SecuritySettingsError(f"{where}.token_sha256: not a SHA-256 in hex (64 digits); "
                                    "make one with: printf %s \"$TOKEN\" | sha256sum")
    names = _strings(entry.get("cert_cn", []), f"{where}.cert_cn")
    if not hashes and not names:
        raise SecuritySettingsError(f"{where}: has neither token_sha256 nor cert_cn; "
                                    "nobody could be this user")
    return User(str(name), role, frozenset(h.lower() for h in hashes), names)


def _loadable(raw_tls: Mapping[str, Any], client_ca: bytes | None, base: Path, where: str
              ) -> None:
    """The key must be the certificate's and the client CA a certificate: gRPC would
    otherwise fail every handshake (or, on a reload, keep the old material while the log
    said the new one was in force)."""
    cert = _path(raw_tls["cert"], base, f"{where}.cert")
    key = _path(raw_tls["key"], base, f"{where}.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # an encrypted key gets an empty passphrase, not a prompt (gRPC cannot use one)
        context.load_cert_chain(cert, key, password=b"")
    except (ssl.SSLError, OSError) as error:
        if getattr(error, "reason", "") == "KEY_VALUES_MISMATCH":
            raise SecuritySettingsError(f"{where}.key: {key} is not the private key of "
                                        f"{cert}") from None
        raise SecuritySettingsError(f"{where}.key: {key} with {cert}: cannot be loaded ({error}); "
                                    "TLS needs an unencrypted PEM key and its certificate"
                                    ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode(errors="replace"))
        except ssl.SSLError as error:
            raise SecuritySettingsError(f"{where}.client_ca: "
                                        f"{_path(raw_tls['client_ca'], base, where)}: not a "
                                        f"certificate ({error})") from None


def _count(section: Mapping[str, Any], key: str, default: int, least: int, where: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise SecuritySettingsError(f"{where}.{key}: must be a whole number ≥ {least}, not "
                                    f"{value!r}")
    return value


def _audit(raw: Any, where: str) -> AuditRotation:
    if raw is None:
        return AuditRotation()
    if not isinstance(raw, Mapping):
        raise SecuritySettingsError(f"{where}: must be a mapping (max_bytes, keep), not "
                                    f"{type(raw).__name__}")
    _no_unknown(raw, _AUDIT_KEYS, where)
    default = AuditRotation()
    return AuditRotation(max_bytes=_count(raw, "max_bytes", default.max_bytes, 1, where),
                         keep=_count(raw, "keep", default.keep, 1, where))


def parse_security(document: Any, origin: str, base: Path) -> SecuritySettings | None:
    """The `security:` section of a parsed nutshell.yaml (None: there is none); files are
    read relative to `base`, the working directory."""
    section = _section(document, SECTION, _SECTION_KEYS, origin)
    if section is None:
        return None
    where = f"{origin}: {SECTION}"
    tls: TlsSettings | None = None
    raw_tls = section.get("tls")
    if raw_tls is not None:
        if not isinstance(raw_tls, Mapping):
            raise SecuritySettingsError(f"{where}.tls: must be a mapping (cert, key, client_ca, "
                                        "require_client_cert)")
        _no_unknown(raw_tls, _TLS_KEYS, f"{where}.tls")
        for key in ("cert", "key"):
            if key not in raw_tls:
                raise SecuritySettingsError(f"{where}.tls.{key}: missing; TLS needs the core's "
                                            "certificate (cert) and its private key (key)")
        has_ca = raw_tls.get("client_ca") is not None
        require = raw_tls.get("require_client_cert", has_ca)
        if not isinstance(require, bool):
            raise SecuritySettingsError(f"{where}.tls.require_client_cert: must be true or "
                                        f"false, not {require!r}")
        if require and not has_ca:
            raise SecuritySettingsError(f"{where}.tls.require_client_cert: needs client_ca, the "
                                        "CA that signs client certificates")
        if has_ca and not require:
            raise SecuritySettingsError(
                f"{where}.tls.require_client_cert: false with client_ca: gRPC verifies client "
                "certificates only when it requires them; drop client_ca for TLS without "
                "client certificates")
        client_ca = (_read_pem(raw_tls["client_ca"], base, f"{where}.tls.client_ca")
                     if has_ca else None)
        tls = TlsSettings(_read_pem(raw_tls["cert"], base, f"{where}.tls.cert"),
                          _read_pem(raw_tls["key"], base, f"{where}.tls.key"),
                          client_ca, require)
        _loadable(raw_tls, client_ca, base, f"{where}.tls")
    raw_users = section.get("users")
    if not isinstance(raw_users, Mapping) or not raw_users:
        raise SecuritySettingsError(f"{where}.users: declares no user (a mapping of user name "
                                    "to role and token_sha256/cert_cn); every call would be "
                                    "refused")
    users = tuple(_user(name, entry, f"{where}.users.{name}") for name, entry in raw_users.items())
    return SecuritySettings(tls, users, _audit(section.get("audit"), f"{where}.audit"))


def restart_needed(running: SecuritySettings | None, read: SecuritySettings | None) -> str:
    """Why a running core cannot take the settings `read` in place of `running` ("" when
    it can): gRPC fixes at start whether a port speaks TLS and whether it asks client
    certificates; users, certificates, keys and the client CA may change."""
    if (running is None) != (read is None):
        return (f"{SECTION}: {'added' if running is None else 'removed'}; turning access "
                "control on or off needs a restart of nutshell core")
    if running is None or read is None:
        return ""
    if (running.tls is None) != (read.tls is None):
        return (f"{SECTION}.tls: {'added' if running.tls is None else 'removed'}; switching "
                "between plaintext and TLS needs a restart of nutshell core")
    if (running.tls is not None and read.tls is not None
            and running.tls.require_client_cert != read.tls.require_client_cert):
        return (f"{SECTION}.tls.client_ca: {'added' if read.tls.require_client_cert else 'removed'}; "
                "switching mutual TLS on or off needs a restart of nutshell core")
    return ""


def load_security(settings_file: Path) -> SecuritySettings | None:
    """The core's security settings from nutshell.yaml (blocking: a worker thread)."""
    document = _read_document(settings_file)
    return parse_security(document, str(settings_file), settings_file.parent)


def _token_from_file(value: Any, base: Path, where: str) -> str:
    path = _path(value, base, where)
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise SecuritySettingsError(f"{where}: {path}: cannot be read: "
                                    f"{error.strerror or error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecuritySettingsError(f"{where}: {path}: others may read it (mode "
                                    f"{stat.S_IMODE(mode):04o}); chmod 600 it")
    token = _read_file(value, base, where).decode(errors="replace").strip()
    if not token:
        raise SecuritySettingsError(f"{where}: {path}: is empty")
    return token


def load_client_credentials(settings_file: Path, environ: Mapping[str, str] | None = None
                            ) -> ClientCredentials:
    """What a front-end of this working directory presents to its core: nutshell.yaml's
    `client:` section, $NUTSHELL_TOKEN first (blocking: a worker thread). TLS is on when the
    section names a CA or certificate, or the core's `security.tls` is set."""
    env = os.environ if environ is None else environ
    document = _read_document(settings_file)
    origin, base = str(settings_file), settings_file.parent
    section = _section(document, CLIENT_SECTION, _CLIENT_KEYS, origin) or {}
    where = f"{origin}: {CLIENT_SECTION}"
    token = env.get(TOKEN_ENV, "").strip()
    if not token and section.get("token_file") is not None:
        token = _token_from_file(section["token_file"], base, f"{where}.token_file")
    if ("cert" in section) != ("key" in section):
        missing = "key" if "cert" in section else "cert"
        raise SecuritySettingsError(f"{where}.{missing}: missing; a client certificate needs "
                                    "both cert and key")

    def read(key: str) -> bytes | None:
        value = section.get(key)
        return None if value is None else _read_pem(value, base, f"{where}.{key}")

    core = document.get(SECTION) if isinstance(document, Mapping) else None
    core_tls = isinstance(core, Mapping) and core.get("tls") is not None
    ca, cert, key = read("ca"), read("cert"), read("key")
    server_name = str(section.get("server_name") or "").strip()
    return ClientCredentials(token=token, tls=bool(ca or cert or core_tls), ca=ca, cert=cert,
                             key=key, server_name=server_name)
