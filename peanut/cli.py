"""`peanut`: the CLI when a command is given, the TUI otherwise (as AliECS peanut)."""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from peanut.commands import FORCED_MODE, CommandError, CommandLine, run
from peanut.config_file import ConfigFileError, load_config_file
from peanut.flags import USAGE, FlagError, PeanutFlags, parse_flags, resolve_address, resolve_token
from peanut.modes import PeanutMode
from peanut.output import Printer

EXIT_FAILURE = 1
EXIT_USAGE = 2

CLI_MODES = (PeanutMode.DIRECT, PeanutMode.FMQ)
TUI_MODES = (PeanutMode.DIRECT, PeanutMode.FMQ, PeanutMode.FMQ_STEP)


def _command_line(flags: PeanutFlags) -> CommandLine:
    assert flags.command is not None
    if flags.launch:
        raise FlagError(f"-- CMD (launching a process) is for the TUI, not with {flags.command}")
    mode = FORCED_MODE.get(flags.command)
    if mode is None:
        try:
            mode = PeanutMode.parse(flags.mode or PeanutMode.FMQ.value, CLI_MODES)
        except ValueError as err:
            raise FlagError(f"{err} (fmq-step is a TUI mode; the CLI has the fmq-step command)") from None
    file_arguments = load_config_file(flags.config) if flags.config else {}
    return CommandLine(command=flags.command, words=flags.args, mode=mode,
                       address=resolve_address(flags.addr, mode), timeout=flags.timeout,
                       file_arguments=file_arguments, token=resolve_token(flags.token))


def _run_tui(flags: PeanutFlags) -> int:
    try:
        mode = PeanutMode.parse(flags.mode or PeanutMode.DIRECT.value, TUI_MODES)
    except ValueError as err:
        raise FlagError(str(err)) from None
    address = resolve_address(flags.addr, mode)
    from peanut.tui.app import PeanutApp  # Textual loads only for the TUI

    config = load_config_file(flags.config) if flags.config else None
    app = PeanutApp(address=address, mode=mode, timeout=flags.timeout, launch=flags.launch,
                    config_path=flags.config, config=config, token=resolve_token(flags.token))
    app.run()
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    printer = Printer()
    try:
        flags = parse_flags(sys.argv[1:] if argv is None else argv)
        if flags.help:
            print(USAGE, end="")
            return 0
        if flags.command is None:
            return _run_tui(flags)
        line = _command_line(flags)
    except FlagError as err:
        printer.error(str(err))
        printer.info("run peanut -h for the usage")
        return EXIT_USAGE
    except ConfigFileError as err:
        printer.error(f"-config: {err}")
        return EXIT_FAILURE
    streaming = line.command.endswith("-stream")
    try:
        asyncio.run(run(line, printer))
    except CommandError as err:
        printer.error(str(err))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        if streaming:
            printer.info("stopped")
            return 0
        printer.error(f"{line.command}: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
