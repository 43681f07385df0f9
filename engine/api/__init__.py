"""The engine's public gRPC API: o2control.Control plus our nutshell.ControlExt.

`messages` turns the facade's records into o2control (and extension) messages and
back; `CoreServer` serves an Engine; `RemoteEngine` is an Engine over gRPC, with
the same coroutines, records and exceptions.
"""
from engine.api.client import RemoteEngine, RemoteSubscription
from engine.api.errors import AccessDenied, RemoteEngineError
from engine.api.security import (
    ClientCredentials,
    Role,
    SecuritySettings,
    SecuritySettingsError,
    is_loopback,
    load_client_credentials,
    load_security,
)
from engine.api.server import DEFAULT_ADDRESS, AddressInUse, CoreServer

__all__ = ["DEFAULT_ADDRESS", "AccessDenied", "AddressInUse", "ClientCredentials", "CoreServer",
           "RemoteEngine", "RemoteEngineError", "RemoteSubscription", "Role", "SecuritySettings",
           "SecuritySettingsError", "is_loopback", "load_client_credentials", "load_security"]
