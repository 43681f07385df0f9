"""occlib: make a Python program controllable over OCC.

    class Reader(occlib.Controllable):
        def configure(self, args): self.rate = int(args["rate"])
        def iterate_running(self): return self.read_one()

    sys.exit(occlib.serve(Reader()))
"""
from occlib.controllable import Arguments, Controllable
from occlib.server import OccServer, PortBusy, serve, serve_with
from occlib.states import DeviceEventType, OccEvent, OccState, Trigger

__all__ = [
    "Arguments",
    "Controllable",
    "DeviceEventType",
    "OccEvent",
    "OccServer",
    "OccState",
    "PortBusy",
    "Trigger",
    "serve",
    "serve_with",
]
