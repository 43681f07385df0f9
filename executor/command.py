"""The command a task runs, in the shape AliECS's core sends it.

The core puts a JSON `TaskCommandInfo` in Mesos `TaskInfo.Data`; the executor
builds the process from it. Key names and value types are kept exactly, so a
body written by either side reads on the other.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from executor.controlmode import ControlMode
from executor.redaction import redact_argv, redact_env

SHELL = "/bin/sh"


class CommandError(ValueError):
    """A TaskCommandInfo field holds something we cannot run; the message names the field."""


class OutputMode(str, Enum):
    """Where a task's stdout (or stderr) goes besides its log file.

    AliECS sends "stdout" to the executor's log and "all" also to InfoLogger;
    nutshell has no InfoLogger, so both forward to the `executor` logger.
    """

    NONE = "none"
    STDOUT = "stdout"
    ALL = "all"

    def __str__(self) -> str:
        return self.value

    @property
    def forwards(self) -> bool:
        return self is not OutputMode.NONE


def uses_occlite_json(argv: Sequence[str]) -> bool:
    """Whether the process serves OCClite (JSON codec, bare method paths).

    AliECS looks for an argv element containing the substring "-P OCClite".
    With shell=true the whole command line is one `sh -c` element, so that
    matches; with shell=false "-P" and "OCClite" are separate items and AliECS
    picks protobuf, then fails to talk to the plugin (a quirk of its code).
    We keep the substring rule and ALSO accept "-P" directly followed by
    "OCClite" as separate items: this is where nutshell does better.
    """
    if any("-P OCClite" in item for item in argv):
        return True
    return any(a == "-P" and b == "OCClite" for a, b in zip(argv, argv[1:]))


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise CommandError(f"{name} must be a list of strings, not {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise CommandError(f"{name}[{index}] must be a string, not {type(item).__name__}")
    return tuple(value)


def _output_mode(value: Any, name: str) -> OutputMode:
    if value is None or value == "":
        return OutputMode.NONE
    if isinstance(value, OutputMode):
        return value
    try:
        return OutputMode(value)
    except ValueError:
        raise CommandError(f"{name} must be none|stdout|all, not {value!r}") from None


def _control_mode(value: Any) -> ControlMode:
    if isinstance(value, ControlMode):
        return value
    if isinstance(value, str):
        return ControlMode.parse(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ControlMode(value)
        except ValueError:
            raise CommandError(f"controlMode {value} is not a control mode number (0-7)") from None
    raise CommandError(f"controlMode must be a string such as \"direct\", not {value!r}")


def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise CommandError(f"{name} {value} is out of range ({bound})")
    return value


@dataclass(frozen=True)
class TaskCommand:
    """One TaskCommandInfo. `timeout_ns` is in nanoseconds (Go time.Duration); 0 = none."""

    value: str
    arguments: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    shell: bool = False
    user: str = ""
    stdout: OutputMode = OutputMode.NONE
    stderr: OutputMode = OutputMode.NONE
    control_port: int = 0
    control_mode: ControlMode = ControlMode.DIRECT
    timeout_ns: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value.strip():
            raise CommandError(f"value (the executable or shell line) must be a non-empty string, "
                               f"not {self.value!r}")
        if not isinstance(self.shell, bool):
            raise CommandError(f"shell must be true or false, not {self.shell!r}")
        if not isinstance(self.user, str):
            raise CommandError(f"user must be a string, not {self.user!r}")
        object.__setattr__(self, "arguments", _strings(self.arguments, "arguments"))
        object.__setattr__(self, "env", _strings(self.env, "env"))
        object.__setattr__(self, "stdout", _output_mode(self.stdout, "stdout"))
        object.__setattr__(self, "stderr", _output_mode(self.stderr, "stderr"))
        object.__setattr__(self, "control_mode", _control_mode(self.control_mode))
        _int(self.control_port, "controlPort", 0, 65535)
        _int(self.timeout_ns, "timeout", 0)
        for index, entry in enumerate(self.env):
            name, sep, _ = entry.partition("=")
            if not sep or not name:
                raise CommandError(f"env[{index}] {entry!r} is not of the form NAME=VALUE")

    @property
    def environment(self) -> dict[str, str]:
        """The env entries as a mapping; a later entry for a name wins, as in execve."""
        return dict(entry.partition("=")[::2] for entry in self.env)

    @property
    def timeout(self) -> float | None:
        """The timeout in seconds, None when there is none."""
        return self.timeout_ns / 1e9 if self.timeout_ns else None

    def argv(self) -> list[str]:
        """What is executed: `sh -c "<value> <args…>"` (joined with spaces, unquoted, as
        AliECS does) when shell, else the executable and its arguments."""
        if self.shell:
            return [SHELL, "-c", " ".join((self.value, *self.arguments))]
        return [self.value, *self.arguments]

    @property
    def uses_occlite_json(self) -> bool:
        return uses_occlite_json(self.argv())

    def describe(self) -> str:
        """The command for messages: the shell line, or the argv joined; secret-named
        options and NAME=VALUE words show *** (redaction.py)."""
        return " ".join(redact_argv(self.argv()[2:] if self.shell else self.argv()))

    def redacted(self) -> TaskCommand:
        """This command as it may be shown or stored: secret-named env values and options ***."""
        return replace(self, env=tuple(redact_env(self.env)), arguments=tuple(redact_argv(self.arguments)))

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> TaskCommand:
        """Parse a TaskCommandInfo body (text or an already decoded mapping).

        Missing keys take Go's zero values; unknown keys are ignored, as Go's
        encoding/json does. `log` is read as the deprecated alias of `stdout`.
        """
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise CommandError(f"TaskCommandInfo is not valid JSON: {error}") from None
        if not isinstance(data, Mapping):
            raise CommandError(f"TaskCommandInfo must be a JSON object, not {type(data).__name__}")
        stdout = data.get("stdout")
        if stdout in (None, ""):
            stdout = data.get("log")
        return cls(
            value=data.get("value") or "",
            arguments=data.get("arguments"),  # type: ignore[arg-type]  # validated in __post_init__
            env=data.get("env"),  # type: ignore[arg-type]
            shell=False if data.get("shell") is None else data["shell"],
            user=data.get("user") or "",
            stdout=stdout,  # type: ignore[arg-type]
            stderr=data.get("stderr"),  # type: ignore[arg-type]
            control_port=0 if data.get("controlPort") is None else data["controlPort"],
            control_mode=data.get("controlMode") or ControlMode.DIRECT,
            timeout_ns=0 if data.get("timeout") is None else data["timeout"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": list(self.env),
            "shell": self.shell,
            "value": self.value,
            "user": self.user,
            "arguments": list(self.arguments),
            "stdout": self.stdout.value,
            "stderr": self.stderr.value,
            "controlPort": self.control_port,
            "controlMode": str(self.control_mode),
            "timeout": self.timeout_ns,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
