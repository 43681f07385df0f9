"""Where a controlled process listens and which role it plays.

Precedence as in OCClib: command-line option, then environment variable, then
the default. Options this module does not know are left for the program.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

DEFAULT_CONTROL_PORT = 47100
DEFAULT_ROLE = "default-role"
DEFAULT_CONTROL_HOST = "127.0.0.1"


class OptionError(ValueError):
    """A control option has a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class ControlOptions:
    control_port: int
    role: str
    control_host: str


def _port(value: str, source: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise OptionError(f"{source}: {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise OptionError(f"{source}: {port} is not a port number (1-65535)")
    return port


def control_options(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[ControlOptions, list[str]]:
    """Resolve the control options from `argv` and the environment; return them and the rest of argv."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--control-port")
    parser.add_argument("--o2-role")
    parser.add_argument("--control-host")
    known, rest = parser.parse_known_args(list(argv))
    if known.control_port is not None:
        port = _port(known.control_port, "--control-port")
    elif env.get("OCC_CONTROL_PORT"):
        port = _port(env["OCC_CONTROL_PORT"], "OCC_CONTROL_PORT")
    else:
        port = DEFAULT_CONTROL_PORT
    role = known.o2_role or env.get("O2_ROLE") or DEFAULT_ROLE
    host = known.control_host or env.get("OCC_CONTROL_HOST") or DEFAULT_CONTROL_HOST
    return ControlOptions(control_port=port, role=role, control_host=host), rest
