"""A dummy controlled process for tests and demos.

It counts "events" while RUNNING and logs every transition with its
arguments. Switches make it misbehave on purpose; each is a command-line
option and also a transition argument of the same name (e.g. key `fail-on`,
value `START`), so a test can arm it at launch or at CONFIGURE.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import occlib
from occlib.options import OptionError, control_options
from occlib.states import OccEvent

CRASH_EXIT_CODE = 3


def _events(value: str) -> set[str]:
    names = {part.strip().upper() for part in value.split(",") if part.strip()}
    unknown = names - {e.value for e in OccEvent}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown event(s) {', '.join(sorted(unknown))}; "
                                         f"expected {', '.join(e.value for e in OccEvent)}")
    return names


def _count(value: str) -> int:
    count = int(value)
    if count < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return count


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m occlib.examples.dummy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control-port", help="OCC port (else $OCC_CONTROL_PORT, else 47100)")
    p.add_argument("--o2-role", help="role name (else $O2_ROLE, else default-role)")
    p.add_argument("--control-host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--fail-on", type=_events, default=set(), metavar="EVENT[,EVENT]",
                   help="these transitions' handlers fail, so the process goes to ERROR")
    p.add_argument("--crash-on", type=_events, default=set(), metavar="EVENT[,EVENT]",
                   help=f"exit with code {CRASH_EXIT_CODE} inside these transitions' handlers")
    p.add_argument("--crash-at-start", action="store_true",
                   help=f"exit with code {CRASH_EXIT_CODE} before serving")
    p.add_argument("--startup-delay", type=float, default=0.0, metavar="SEC",
                   help="sleep this long before serving")
    p.add_argument("--eos-after", type=_count, metavar="N",
                   help="signal END_OF_STREAM after N events while RUNNING")
    p.add_argument("--internal-error-after", type=_count, metavar="N",
                   help="fail iterate_check after N events (ERROR + TASK_INTERNAL_ERROR)")
    p.add_argument("--event-interval", type=float, default=0.01, metavar="SEC",
                   help="one event is counted per interval while RUNNING (default 0.01)")
    return p


SWITCHES = ("fail-on", "crash-on", "eos-after", "internal-error-after", "event-interval")


class Dummy(occlib.Controllable):
    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__()
        self.fail_on: set[str] = options.fail_on
        self.crash_on: set[str] = options.crash_on
        self.eos_after: int | None = options.eos_after
        self.internal_error_after: int | None = options.internal_error_after
        self.loop_interval = options.event_interval
        self.events = 0

    def _arm(self, args: occlib.Arguments) -> None:
        """Transition arguments with a switch's name re-arm that switch."""
        converters: dict[str, Any] = {"fail-on": _events, "crash-on": _events,
                                      "eos-after": _count, "internal-error-after": _count,
                                      "event-interval": float}
        for name in SWITCHES:
            if name in args:
                value = converters[name](str(args[name]))
                if name == "event-interval":
                    self.loop_interval = value
                else:
                    setattr(self, name.replace("-", "_"), value)

    def _handle(self, event: OccEvent, args: occlib.Arguments) -> int:
        self._arm(args)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(args.items())) or "no arguments"
        print(f"dummy[{self.role}]: {event.value} run={self.run_number} events={self.events} "
              f"arguments: {shown}", flush=True)
        if event.value in self.crash_on:
            print(f"dummy[{self.role}]: crashing in {event.value} as asked", flush=True)
            os._exit(CRASH_EXIT_CODE)
        if event.value in self.fail_on:
            print(f"dummy[{self.role}]: failing {event.value} as asked", flush=True)
            return 1
        return 0

    def configure(self, args: occlib.Arguments) -> int:
        return self._handle(OccEvent.CONFIGURE, args)

    def start(self, args: occlib.Arguments) -> int:
        self.events = 0
        return self._handle(OccEvent.START, args)

    def stop(self, args: occlib.Arguments) -> int:
        return self._handle(OccEvent.STOP, args)

    def reset(self, args: occlib.Arguments) -> int:
        return self._handle(OccEvent.RESET, args)

    def exit(self, args: occlib.Arguments) -> int:
        return self._handle(OccEvent.EXIT, args)

    def recover(self, args: occlib.Arguments) -> int:
        return self._handle(OccEvent.RECOVER, args)

    def iterate_running(self) -> int:
        self.events += 1
        if self.eos_after is not None and self.events >= self.eos_after:
            print(f"dummy[{self.role}]: end of stream after {self.events} events", flush=True)
            return 1
        return 0

    def iterate_check(self) -> int:
        if self.internal_error_after is not None and self.events >= self.internal_error_after:
            print(f"dummy[{self.role}]: internal error after {self.events} events", flush=True)
            self.internal_error_after = None
            return 1
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options = parser().parse_args(args)
    try:
        control, _ = control_options(args)
    except OptionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if options.crash_at_start:
        print("dummy: crashing at start as asked", file=sys.stderr, flush=True)
        return CRASH_EXIT_CODE
    if options.startup_delay:
        time.sleep(options.startup_delay)
    return occlib.serve_with(Dummy(options), control)


if __name__ == "__main__":
    sys.exit(main())
