"""peanut's command line, Go `flag` style as in AliECS: `-addr x`, `-addr=x`, `--addr x`.

A first word that is not a flag is the command; everything after a bare `--`
is a command line for peanut to launch (TUI only).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from occlib.options import DEFAULT_CONTROL_PORT
from occlib.owner import TOKEN_ENV, control_token
from peanut.durations import parse_duration
from peanut.modes import PeanutMode

DEFAULT_HOST = "localhost"
DEFAULT_TIMEOUT = 30.0
COMMANDS = ("get-state", "transition", "direct-step", "fmq-step", "state-stream", "event-stream")

USAGE = """\
usage: peanut [flags] [command [args…]] [-- CMD …]

  without a command: the TUI (modes direct, fmq, fmq-step; default direct)
  -- CMD …           (TUI) launch CMD with OCC_CONTROL_PORT set to the port of -addr and
                     a fresh OCC_CONTROL_TOKEN, so only this peanut drives it

commands:
  get-state
  transition <from> <to> [key=value…]     OCC states; the event is derived from them
  direct-step <src> <event> [key=value…]  one raw OCC Transition over protobuf
  fmq-step <srcFMQ> "<fmqEvent>" [key=value…]  one raw FairMQ step over OCClite JSON
  state-stream                            print the StateStream (direct mode only)
  event-stream                            print the EventStream

flags:
  -addr host:port   OCC endpoint (default localhost:47100; direct mode: localhost:$OCC_CONTROL_PORT if set)
  -mode MODE        direct|fmq (CLI, default fmq) or direct|fmq|fmq-step (TUI, default direct)
  -timeout DUR      time limit for connecting and for each call, Go syntax (default 30s)
  -config FILE      YAML/JSON file flattened to dot keys, sent as transition arguments
  -token TOKEN      the task's OCC_CONTROL_TOKEN, sent with every call (else $OCC_CONTROL_TOKEN);
                    a task the executor started refuses calls without it. Prefer the
                    variable: a -token value shows in `ps`
"""

_VALUE_FLAGS = ("addr", "mode", "timeout", "config", "token")
_HELP_FLAGS = ("h", "help")


class FlagError(ValueError):
    """A command line peanut cannot use; the message names the flag or word."""


@dataclass
class PeanutFlags:
    addr: str | None = None
    mode: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    config: str | None = None
    token: str | None = None
    help: bool = False
    command: str | None = None
    args: list[str] = field(default_factory=list)
    launch: list[str] = field(default_factory=list)


def _flag_name(word: str) -> tuple[str, str | None] | None:
    """("addr", "x") for "-addr=x", ("addr", None) for "--addr", None for a non-flag."""
    if not word.startswith("-") or word in ("-", "--"):
        return None
    body = word[2:] if word.startswith("--") else word[1:]
    name, sep, value = body.partition("=")
    return name, (value if sep else None)


def parse_flags(argv: Sequence[str]) -> PeanutFlags:
    flags = PeanutFlags()
    words = list(argv)
    if "--" in words:
        cut = words.index("--")
        words, flags.launch = words[:cut], words[cut + 1:]
        if not flags.launch:
            raise FlagError("nothing to launch after --")
    positional: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        parsed = _flag_name(word)
        if parsed is None:
            positional.append(word)
            continue
        name, value = parsed
        if name in _HELP_FLAGS:
            flags.help = True
            continue
        if name not in _VALUE_FLAGS:
            raise FlagError(f"flag provided but not defined: {word.split('=', 1)[0]}")
        if value is None:
            if index >= len(words):
                raise FlagError(f"flag needs an argument: -{name}")
            value = words[index]
            index += 1
        if name == "timeout":
            try:
                flags.timeout = parse_duration(value)
            except ValueError as err:
                raise FlagError(f"-timeout: {err}") from None
        else:
            setattr(flags, name, value)
    if positional:
        flags.command, flags.args = positional[0], positional[1:]
        if flags.command not in COMMANDS:
            raise FlagError(f"unknown command {flags.command!r}; commands: {', '.join(COMMANDS)}")
    return flags


def check_address(address: str) -> str:
    """`address` if it is host:port with a port number, else FlagError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FlagError(f"-addr {address!r}: expected host:port")
    return address


def resolve_address(addr: str | None, mode: PeanutMode, environ: Mapping[str, str] | None = None) -> str:
    """The -addr value, or the default: in direct mode the OCC_CONTROL_PORT of the environment."""
    if addr:
        return check_address(addr)
    env = os.environ if environ is None else environ
    port = env.get("OCC_CONTROL_PORT", "") if mode is PeanutMode.DIRECT else ""
    if port:
        if not port.isdigit():
            raise FlagError(f"OCC_CONTROL_PORT {port!r} is not a port number")
        return check_address(f"{DEFAULT_HOST}:{port}")
    return f"{DEFAULT_HOST}:{DEFAULT_CONTROL_PORT}"


def resolve_token(token: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The -token value, else $OCC_CONTROL_TOKEN, else "" (no token sent)."""
    if token is not None:
        if not token.strip():
            raise FlagError(f"-token is empty; give the task's {TOKEN_ENV} or leave the flag out")
        return token.strip()
    return control_token(environ)


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])
