"""Which scheduler backend the engine uses, and the Mesos framework's settings.

Both come from nutshell.yaml (the working directory's engine settings, beside
its `agents:` section); `nutshell core --mesos URL` overrides the choice:

```yaml
backend: mesos                  # or local (the default)
mesos:
  master: http://127.0.0.1:5050
  framework_name: nutshell      # FrameworkInfo.name
  role: "*"
  user: root
  principal: ""
  failover_timeout: 1000h       # a Go duration, or seconds
```
The defaults are AliECS's (§7.1), except the framework name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from engine.config.service import ConfigurationError
from engine.gosyntax import parse_go_duration

BACKEND_KEY = "backend"
SECTION = "mesos"
DEFAULT_MASTER = "http://127.0.0.1:5050"
DEFAULT_FAILOVER_TIMEOUT = 1000 * 3600.0  # seconds: AliECS's mesosFailoverTimeout, 1000h
_KEYS = frozenset({"master", "framework_name", "role", "user", "principal", "failover_timeout"})


class Backend(str, Enum):
    LOCAL = "local"
    MESOS = "mesos"

    def __str__(self) -> str:
        return self.value


class MesosSettingsError(ConfigurationError, ValueError):
    """The backend or mesos settings are wrong; the message names the file and the field."""


@dataclass(frozen=True)
class MesosSettings:
    """What the framework subscribes with (FrameworkInfo) and where."""

    master: str = DEFAULT_MASTER
    framework_name: str = "nutshell"
    role: str = "*"
    user: str = "root"
    principal: str = ""
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT  # seconds

    @property
    def address(self) -> str:
        """host:port of the master, as pymesos' driver takes it."""
        return master_address(self.master)

    @property
    def url(self) -> str:
        """http://host:port, for the master's HTTP endpoints (/master/slaves)."""
        return f"http://{self.address}"


def master_address(master: str, where: str = "mesos.master") -> str:
    """`host:port` of a master given as http://host:port, host:port or host (port 5050)."""
    text = master.strip()
    if not text:
        raise MesosSettingsError(f"{where}: is empty; give the master as http://HOST:5050")
    if text.startswith(("zk://", "zoo://")):
        raise MesosSettingsError(f"{where}: {text!r}: ZooKeeper master URLs are not supported; "
                                 "give the master as http://HOST:5050")
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MesosSettingsError(f"{where}: {text!r} is not a master address such as "
                                 "http://HOST:5050")
    try:
        port = parts.port or 5050
    except ValueError:
        raise MesosSettingsError(f"{where}: {text!r} has a bad port") from None
    return f"{parts.hostname}:{port}"


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise MesosSettingsError(f"{where}: must be a duration such as 1000h, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        try:
            seconds = parse_go_duration(str(value))
        except ValueError:
            raise MesosSettingsError(f"{where}: {value!r} is not a duration such as 1000h "
                                     "or 30s") from None
    if seconds < 0:
        raise MesosSettingsError(f"{where}: must not be negative, not {value!r}")
    return seconds


def parse_settings(document: Any, origin: str) -> tuple[Backend, MesosSettings]:
    """The backend and mesos settings of a parsed nutshell.yaml (None: the defaults)."""
    if document is None:
        return Backend.LOCAL, MesosSettings()
    if not isinstance(document, Mapping):
        raise MesosSettingsError(f"{origin}: must be a mapping of sections, not "
                                 f"{type(document).__name__}")
    choice = str(document.get(BACKEND_KEY) or Backend.LOCAL.value).strip().lower()
    try:
        backend = Backend(choice)
    except ValueError:
        raise MesosSettingsError(f"{origin}: {BACKEND_KEY}: {choice!r} is not a backend; "
                                 "use local or mesos") from None
    section = document.get(SECTION) or {}
    if not isinstance(section, Mapping):
        raise MesosSettingsError(f"{origin}: {SECTION}: must be a mapping (master, "
                                 f"framework_name, …), not {type(section).__name__}")
    unknown = sorted(str(k) for k in section if k not in _KEYS)
    if unknown:
        raise MesosSettingsError(f"{origin}: {SECTION}: unknown field(s) {', '.join(unknown)}; "
                                 f"allowed: {', '.join(sorted(_KEYS))}")
    defaults = MesosSettings()

    def text(key: str, default: str) -> str:
        value = section.get(key)
        return default if value is None else str(value).strip()

    master = text("master", defaults.master)
    master_address(master, f"{origin}: {SECTION}.master")
    failover = section.get("failover_timeout")
    settings = MesosSettings(
        master=master, framework_name=text("framework_name", defaults.framework_name),
        role=text("role", defaults.role) or "*", user=text("user", defaults.user),
        principal=text("principal", defaults.principal),
        failover_timeout=(defaults.failover_timeout if failover is None
                          else _seconds(failover, f"{origin}: {SECTION}.failover_timeout")))
    if not settings.framework_name:
        raise MesosSettingsError(f"{origin}: {SECTION}.framework_name: must not be empty")
    return backend, settings


def load_backend(settings_file: Path, master: str = "") -> tuple[Backend, MesosSettings]:
    """The backend nutshell.yaml chooses and its mesos settings (blocking: a worker thread).

    `master` (from `nutshell core --mesos URL`) selects the Mesos backend with that master,
    whatever the file says. A missing file means the local backend.
    """
    try:
        text = settings_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as error:
        raise MesosSettingsError(f"{settings_file}: cannot be read: {error.strerror}") from None
    try:
        document = yaml.safe_load(text) if text else None
    except yaml.YAMLError as error:
        raise MesosSettingsError(f"{settings_file}: not valid YAML: {error}") from None
    backend, settings = parse_settings(document, str(settings_file))
    if master:
        master_address(master, "--mesos")
        return Backend.MESOS, MesosSettings(master, settings.framework_name, settings.role,
                                            settings.user, settings.principal,
                                            settings.failover_timeout)
    return backend, settings
