"""peanut's TUI driven with Textual's Pilot against real tasks over real gRPC."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from textual.pilot import Pilot
from textual.widgets import Input

from peanut.connection import LinkState
from peanut.modes import PeanutMode
from peanut.tui.app import PeanutApp
from peanut.tui.components.config_table import NOT_PUSHED, PUSHED, ConfigTable
from peanut.tui.components.log_pane import LogPane
from peanut.tui.components.path_prompt import PathPrompt
from peanut.tui.components.status_bar import StatusBar
from tests.conftest import free_port
from themes import DEFAULT_THEME

DUMMY = "occlib.examples.dummy"
FAIRMQ = "occlib.examples.fairmq"
SIZE = (120, 36)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Let the app run until `condition` holds; fail naming `what` if it never does."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            log = "\n".join(pilot.app.query_one(LogPane).history)
            raise AssertionError(f"never saw {what}; log:\n{log}")
        await pilot.pause(0.02)


def status(app: PeanutApp) -> StatusBar:
    return app.query_one(StatusBar)


async def press_until_state(pilot: Pilot[None], key: str, state: str) -> None:
    app = pilot.app
    assert isinstance(app, PeanutApp)
    await pilot.press(key)
    await until(pilot, lambda: status(app).state == state and not app.driver.busy,
                f"state {state} after key {key!r}")


async def enter_path(pilot: Pilot[None], path: str) -> None:
    """`l`, then the path into the prompt (set at once: typing a long path key by key is slow)."""
    await pilot.press("l")
    await until(pilot, lambda: isinstance(pilot.app.screen, PathPrompt), "the path prompt")
    prompt = pilot.app.screen.query_one(Input)
    prompt.value = path
    await pilot.press("end", "enter")


def app_for(address: str, mode: PeanutMode = PeanutMode.DIRECT, timeout: float = 5.0,
            launch: tuple[str, ...] = ()) -> PeanutApp:
    return PeanutApp(address=address, mode=mode, timeout=timeout, launch=launch)


async def test_keys_drive_the_dummy_through_every_state(spawn) -> None:
    dummy = spawn(DUMMY)
    app = app_for(dummy.address)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).link is LinkState.CONNECTED, "CONNECTED")
        await until(pilot, lambda: status(app).state == "STANDBY", "STANDBY")
        assert status(app).pid == dummy.proc.pid
        assert app.theme == DEFAULT_THEME
        log = app.query_one(LogPane)
        await pilot.press("n")  # reconnect: a new channel, the streams followed again
        await until(pilot, lambda: sum("connected to" in line for line in log.history) == 2
                    and status(app).link is LinkState.CONNECTED, "CONNECTED again after n")
        for key, state in (("c", "CONFIGURED"), ("s", "RUNNING"), ("t", "CONFIGURED"),
                           ("r", "STANDBY"), ("x", "DONE")):
            await press_until_state(pilot, key, state)
        assert log.contains("CONFIGURE: STANDBY → CONFIGURED ok (trigger EXECUTOR)")
        assert log.contains("state RUNNING (STATE_STABLE)")  # followed on StateStream
        await until(pilot, lambda: log.contains("event stream ended"), "the end of the EventStream")
        assert dummy.proc.wait(timeout=10) == 0
        await until(pilot, lambda: status(app).link is LinkState.UNREACHABLE, "UNREACHABLE after EXIT")


async def test_loaded_config_is_pushed_with_configure_and_quit_sends_nothing(spawn, tmp_path: Path) -> None:
    dummy = spawn(DUMMY)
    config = tmp_path / "readout.yaml"
    config.write_text("chans:\n  data:\n    - address: tcp://*:5555\nrunNumber: 9\n")
    app = app_for(dummy.address)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).state == "STANDBY", "STANDBY")
        log = app.query_one(LogPane)
        await enter_path(pilot, str(tmp_path / "missing.yaml"))
        await until(pilot, lambda: log.contains("missing.yaml: no such file"), "the load error")
        await enter_path(pilot, str(config))
        table = app.query_one(ConfigTable)
        await until(pilot, lambda: table.row_count == 2, "the config keys in the table")
        assert table.statuses() == [NOT_PUSHED, NOT_PUSHED]
        assert [table.get_row_at(i)[1:] for i in range(2)] == [["chans.data.0.address", "tcp://*:5555"],
                                                               ["runNumber", "9"]]
        await press_until_state(pilot, "c", "CONFIGURED")
        await until(pilot, lambda: table.statuses() == [PUSHED, PUSHED], "PUSHED")
        await pilot.press("q")
    assert "CONFIGURE run=9 events=0 arguments: chans.data.0.address=tcp://*:5555, runNumber=9" \
        in dummy.output()
    assert "EXIT" not in dummy.output() and dummy.proc.poll() is None


async def test_unreachable_and_wrong_mode_are_shown(spawn) -> None:
    app = app_for(f"127.0.0.1:{free_port()}", timeout=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).link is LinkState.UNREACHABLE, "UNREACHABLE")
        await pilot.press("c")
        await until(pilot, lambda: app.query_one(LogPane).contains("CONFIGURE not sent"), "refusal")
    device = spawn(FAIRMQ, "--id", "x", "-P", "OCClite")
    app = app_for(device.address)  # protobuf at an OCClite device
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).link is LinkState.WRONG_MODE, "WRONG MODE")
        assert app.query_one(LogPane).contains("try -mode fmq")


async def test_fmq_modes_drive_the_fairmq_emulator(spawn) -> None:
    device = spawn(FAIRMQ, "--id", "x", "-P", "OCClite")
    app = app_for(device.address, PeanutMode.FMQ)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).state == "IDLE (OCC STANDBY)", "IDLE")
        await press_until_state(pilot, "c", "READY (OCC CONFIGURED)")
        log = app.query_one(LogPane)
        for step in ("INIT DEVICE: IDLE → INITIALIZING DEVICE ok", "INIT TASK: DEVICE READY → READY ok"):
            assert log.contains(step)
        await press_until_state(pilot, "s", "RUNNING")
        await press_until_state(pilot, "t", "READY (OCC CONFIGURED)")
        await press_until_state(pilot, "r", "IDLE (OCC STANDBY)")
    app = app_for(device.address, PeanutMode.FMQ_STEP)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).state == "IDLE (OCC STANDBY)", "IDLE")
        await pilot.press("s")  # an OCC key does nothing in fmq-step mode
        for key, state in (("1", "INITIALIZING DEVICE"), ("2", "INITIALIZED"),
                           ("3", "BOUND"), ("4", "DEVICE READY"),
                           ("5", "READY (OCC CONFIGURED)"), ("6", "RUNNING"), ("7", "READY (OCC CONFIGURED)"),
                           ("8", "DEVICE READY"), ("9", "IDLE (OCC STANDBY)")):
            await press_until_state(pilot, key, state)
        await pilot.click("#send-end")
        await until(pilot, lambda: app.query_one(LogPane).contains("END done: EXITING"), "END by button")
        assert device.proc.wait(timeout=10) == 0


async def test_launched_process_is_controlled_and_terminated_at_quit() -> None:
    port = free_port()
    app = app_for(f"127.0.0.1:{port}", launch=(sys.executable, "-m", DUMMY))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status(app).state == "STANDBY", "the launched dummy in STANDBY")
        assert app.launched is not None and app.launched.process is not None
        pid = app.launched.process.pid
        assert status(app).pid == pid
        await press_until_state(pilot, "c", "CONFIGURED")
        log = app.query_one(LogPane)
        await until(pilot, lambda: log.contains(f"[{pid}] dummy[default-role]: CONFIGURE"),
                    "the dummy's own output line")
        await pilot.press("q")
    assert app.launched.process.returncode is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
