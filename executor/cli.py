"""`nutshell-executor`: run one task the way the executor does.

`run-task` reads a TaskCommandInfo (the JSON record the core puts in a Mesos
TaskInfo), launches the task, drives it through the given OCC events, and
prints every message the executor would send to the core, one JSON object per
line. Then it takes the task down (walk to DONE, then signals), unless
`--hold` keeps it until SIGINT or SIGTERM.

`agent` serves one local agent: the engine launches and drives tasks over its
Agent gRPC service (executor/agent_server.py).

`mesos` runs as a Mesos custom executor: a Mesos agent starts it for the
engine's framework and hands it the tasks (executor/mesos_executor.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Sequence, TextIO

from executor.command import CommandError, TaskCommand
from executor.hook_task import HookTask
from executor.reports import HookResult, Report, TaskIdentity
from executor.tasks import make_task
from executor.task import Task
from occlib.states import OccEvent

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad input on the command line or in the task file; the message names it."""


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


def _event(text: str) -> OccEvent:
    try:
        return OccEvent(text.upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an OCC event ({', '.join(e.value for e in OccEvent)})") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="nutshell-executor", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run-task", help="launch one task, drive it, take it down",
                              description="Launch the task of TASK_JSON (a TaskCommandInfo file, "
                                          "or - for stdin), drive it, then take it down.")
    run.add_argument("task_json", metavar="TASK_JSON")
    run.add_argument("--then", nargs="+", type=_event, default=[], metavar="EVENT",
                     help="OCC events to send in order once the task runs "
                          "(e.g. CONFIGURE START STOP RESET); a hook task is triggered once per event")
    run.add_argument("--arg", action="append", type=_pair, default=[], metavar="KEY=VALUE",
                     help="argument sent with every transition (repeatable)")
    run.add_argument("--task-id", default="", help="task id (default: <host>-task)")
    run.add_argument("--environment-id", default="", help="environmentId label")
    run.add_argument("--detector", default="", help="detector label")
    run.add_argument("--log", type=Path, help="append the task's output to this file")
    run.add_argument("--hold", action="store_true",
                     help="keep the task until SIGINT or SIGTERM instead of taking it down")
    run.add_argument("--verbose", action="store_true", help="log the executor's work on stderr")
    agent = commands.add_parser("agent", help="serve one local agent's tasks to the engine",
                                description="Serve the Agent service for the tasks of one local "
                                            "agent until SIGTERM; then take them down.")
    agent.add_argument("--name", required=True, help="the agent's name (e.g. flp001)")
    agent.add_argument("--listen", required=True, metavar="ADDRESS",
                       help="unix:PATH (socket made 0600) or 127.0.0.1:PORT (0: any free port)")
    agent.add_argument("--secret-file", required=True, type=Path, metavar="FILE",
                       help="the installation's secret (mode 0600); every call must carry it")
    agent.add_argument("--info-file", required=True, type=Path, metavar="FILE",
                       help="where to write name, pid and address for an engine to find this executor")
    agent.add_argument("--log-dir", type=Path, metavar="DIR",
                       help="task logs go to DIR/<task id>.log unless a launch names a file")
    agent.add_argument("--verbose", action="store_true", help="log the executor's work on stderr")
    mesos = commands.add_parser("mesos", help="run as a Mesos custom executor (started by an agent)",
                                description="Run the tasks a Mesos agent hands this executor until "
                                            "SHUTDOWN or SIGTERM; then take them down. Task output "
                                            "goes to $MESOS_SANDBOX/<task id>.log.")
    mesos.add_argument("--verbose", action="store_true", help="log the executor's work on stderr")
    return top


def _load(source: str) -> TaskCommand:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise UsageError(f"{source}: {error.strerror}") from None
    try:
        return TaskCommand.from_json(text)
    except (CommandError, ValueError) as error:
        raise UsageError(f"{source}: {error}") from None


class MessagePrinter:
    """Every report as the JSON body the core would receive; remembers failures."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failures: list[str] = []

    def __call__(self, record: Report) -> None:
        body = record.to_message()
        if isinstance(record, HookResult):
            body["exitCode"] = record.exit_code
        error = body.get("error")
        if error:
            self.failures.append(str(error))
        if body.get("state") == "TASK_FAILED":
            self.failures.append(str(body.get("message", "task failed")))
        print(json.dumps(body), file=self.out, flush=True)


async def _drive(task: Task, events: list[OccEvent], arguments: dict[str, str],
                 printer: MessagePrinter) -> bool:
    if not await task.launch():
        return False
    for event in events:
        if isinstance(task, HookTask):
            result = await task.trigger(arguments)
            ok = result.ok
        else:
            ok = (await task.transition(task.state, event, arguments)).ok
        if not ok:
            return False
    return not printer.failures


async def run_task(options: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    command = _load(options.task_json)
    identity = TaskIdentity(task_id=options.task_id or f"{socket.gethostname()}-task",
                            environment_id=options.environment_id, detector=options.detector)
    printer = MessagePrinter(out)
    try:
        task = make_task(identity, command, printer, log_path=options.log)
    except CommandError as error:
        raise UsageError(f"{options.task_json}: {error}") from None
    loop = asyncio.get_running_loop()
    driving = asyncio.current_task()
    assert driving is not None
    signalled = asyncio.Event()
    holding = False

    def on_signal() -> None:
        # One handler for the whole run: swapping handlers would leave a gap
        # in which SIGTERM kills the process before the task is taken down.
        signalled.set()
        if not holding:
            driving.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    ok = False
    try:
        ok = await _drive(task, options.then, dict(options.arg), printer)
        if options.hold and ok:
            holding = True
            if not signalled.is_set():
                await signalled.wait()
    except asyncio.CancelledError:
        print("interrupted: taking the task down", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await task.kill()
    for failure in printer.failures:
        print(f"error: {failure}", file=sys.stderr)
    return 0 if ok else EXIT_FAILED


async def serve_agent(options: argparse.Namespace) -> int:
    from executor.agent_server import AgentOptions, SecretError, check_listen, serve

    try:
        check_listen(options.listen)
        await serve(AgentOptions(name=options.name, listen=options.listen,
                                 secret_file=options.secret_file, info_file=options.info_file,
                                 log_dir=options.log_dir))
    except (SecretError, ValueError, OSError) as error:
        raise UsageError(str(error)) from None
    return 0


async def serve_mesos(options: argparse.Namespace) -> int:
    from executor.mesos_executor import NotUnderMesos, run_executor

    try:
        return await run_executor(options)
    except NotUnderMesos as error:
        raise UsageError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if options.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if options.command == "agent":
            return asyncio.run(serve_agent(options))
        if options.command == "mesos":
            return asyncio.run(serve_mesos(options))
        return asyncio.run(run_task(options))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
