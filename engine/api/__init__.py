"""The engine's public gRPC API: o2control.Control plus our nutshell.ControlExt.

`messages` turns the facade's records into o2control (and extension) messages and
back; `CoreServer` serves an Engine; `RemoteEngine` is an Engine over gRPC, with
the same coroutines, records and exceptions.
"""
from engine.api.client import RemoteEngine, RemoteSubscription
from engine.api.errors import RemoteEngineError
from engine.api.server import DEFAULT_ADDRESS, AddressInUse, CoreServer

__all__ = ["DEFAULT_ADDRESS", "AddressInUse", "CoreServer", "RemoteEngine", "RemoteEngineError",
           "RemoteSubscription"]
