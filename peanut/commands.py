"""The CLI commands of peanut, each one async function over a PeanutSession.

Every command first checks the link with GetState, so an unreachable address
or the wrong transport fails the same clear way whatever was asked.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from executor.occ_client import OccCallError
from peanut.arguments import ArgumentError, merge_arguments, parse_arguments
from peanut.connection import describe_failure
from peanut.modes import PeanutMode
from peanut.output import Printer, timestamp
from peanut.session import DeviceStatus, PeanutSession, TransitionResult
from peanut.transitions import event_between, parse_state


class CommandError(Exception):
    """A command that cannot run or failed; str() is the one line the user reads."""


@dataclass
class CommandLine:
    """A parsed peanut command: what to run against which endpoint, in which mode."""

    command: str
    words: list[str]
    mode: PeanutMode
    address: str
    timeout: float
    file_arguments: Mapping[str, str] = field(default_factory=dict)
    token: str = ""  # the task's OCC_CONTROL_TOKEN


def _positional(line: CommandLine, names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """The command's positional words by name, and its key=value arguments merged with -config."""
    if len(line.words) < len(names):
        usage = " ".join(f"<{n}>" for n in names)
        raise CommandError(f"{line.command}: expected {line.command} {usage} [key=value…]")
    try:
        explicit = parse_arguments(line.words[len(names):])
    except ArgumentError as err:
        raise CommandError(f"{line.command}: {err}") from None
    return line.words[:len(names)], merge_arguments(line.file_arguments, explicit)


def _no_words(line: CommandLine) -> None:
    if line.words:
        raise CommandError(f"{line.command} takes no arguments, got {' '.join(line.words)!r}")


async def _check_link(session: PeanutSession) -> DeviceStatus:
    try:
        await session.wait_connected()
        return await session.status()
    except (TimeoutError, OccCallError) as err:
        raise CommandError(describe_failure(err, session.address, session.mode, session.timeout)) from None


def _report(printer: Printer, result: TransitionResult, what: str) -> None:
    for step in result.steps:
        printer.line(step.line(), "green" if step.ok else "red")
    if not result.ok:
        raise CommandError(f"{what} failed: {result.error}")
    shown = result.state
    if result.device_state not in ("", result.state):
        shown += f" (FairMQ {result.device_state})"
    printer.line(f"state: {shown}", "bold")


async def get_state(session: PeanutSession, line: CommandLine, printer: Printer) -> None:
    _no_words(line)
    status = await _check_link(session)
    printer.line(f"state: {status.describe()}", "bold")
    printer.line(f"pid: {status.pid}")


async def transition(session: PeanutSession, line: CommandLine, printer: Printer) -> None:
    (src_word, dst_word), arguments = _positional(line, ("from", "to"))
    try:
        src, dst = parse_state(src_word), parse_state(dst_word)
        event = event_between(src, dst)
    except ValueError as err:
        raise CommandError(f"transition: {err}") from None
    await _check_link(session)
    what = f"transition {src.value} → {dst.value} ({event.value}) at {session.address}"
    printer.info(what + (f" with {len(arguments)} argument(s)" if arguments else ""))
    result = await session.transition(src, event, arguments)
    _report(printer, result, what)
    if result.state != dst.value:
        raise CommandError(f"{what}: ended in {result.state}, not {dst.value}")


async def raw_step(session: PeanutSession, line: CommandLine, printer: Printer) -> None:
    (src, event), arguments = _positional(line, ("src", "event"))
    await _check_link(session)
    what = f"{line.command} {event!r} from {src} at {session.address}"
    _report(printer, await session.step(src, event, arguments), what)


async def event_stream(session: PeanutSession, line: CommandLine, printer: Printer) -> None:
    _no_words(line)
    status = await _check_link(session)
    printer.info(f"following events of {session.address} (state {status.describe()}); Ctrl+C to stop")
    async for event in session.event_stream():
        printer.line(f"{timestamp()} {event.name}")
    printer.info("event stream ended")


async def state_stream(session: PeanutSession, line: CommandLine, printer: Printer) -> None:
    _no_words(line)
    status = await _check_link(session)
    if session.mode.json:
        raise CommandError(f"state-stream: {session.address} speaks OCClite ({session.mode} mode), "
                           f"which has no StateStream; use -mode direct with an OCClib process")
    printer.info(f"following states of {session.address} (state {status.describe()}); Ctrl+C to stop")
    async for kind, state in session.state_stream():
        printer.line(f"{timestamp()} {kind.name} {state}")
    printer.info("state stream ended")


COMMANDS: dict[str, Callable[[PeanutSession, CommandLine, Printer], Awaitable[None]]] = {
    "get-state": get_state,
    "transition": transition,
    "direct-step": raw_step,
    "fmq-step": raw_step,
    "state-stream": state_stream,
    "event-stream": event_stream,
}

# Commands whose transport is fixed, whatever -mode says.
FORCED_MODE = {"direct-step": PeanutMode.DIRECT, "fmq-step": PeanutMode.FMQ}


async def run(line: CommandLine, printer: Printer) -> None:
    """Run one command; CommandError on any failure."""
    session = PeanutSession(line.address, line.mode, line.timeout, line.token)
    try:
        await COMMANDS[line.command](session, line, printer)
    except OccCallError as err:
        failure = describe_failure(err, session.address, session.mode, session.timeout)
        raise CommandError(f"{line.command}: {failure}") from None
    finally:
        await session.close()
