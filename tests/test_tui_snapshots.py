"""Snapshot tests of the console's main views: each screen as an SVG, compared with the one
kept in tests/__snapshots__/test_tui_snapshots/ (syrupy, the snapshot library under
pytest-textual-snapshot). A view that renders differently fails plain `pytest`.

After an intended change of a view, look at the new pictures and keep them:
    .venv/bin/python -m pytest tests/test_tui_snapshots.py --snapshot-update

The screens must be the same on any machine on any day, so what would differ is pinned
where it comes from: a fixed terminal size and the default theme; the environment's id
given at creation and the engine's ids made by a counter (task ids); the agents' ports
fixed in nutshell.yaml; a time zone of UTC. The console sees the real engine through
StableEngine, which writes every moment as one fixed time, every pid as one number, and
the test's temporary directory, the interpreter and the checkout as fixed names. The
tests wait for the screen, not for widgets: until it shows what the view must show and
stops changing.
"""
from __future__ import annotations

import asyncio
import dataclasses
import difflib
import html
import inspect
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from textual.app import App
from textual.pilot import Pilot

from console.engine_thread import ThreadedEngine
from console.tui.app import ConsoleApp
from engine import EnvEvent, WorkingDirectory
from engine.scheduler.local_agent import find_running
from tests.conftest import make_template_repo
from tests.test_cli_env import WORKFLOW
from tests.test_environment_e2e import DUMMY, settings
from tests.test_tui_form import EDITORS, DialogApp
from themes import DEFAULT_THEME, use_themes

SIZE = (120, 40)
ENVIRONMENT = "2snapshotEnv"
REPO = "git.example.org/snap/templates"
MOMENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PID = 4242
PORTS = -1000  # settings(): data ports 18000-, control ports 31000- (the others use 19000-/32000-)
STABLE_FOR = 0.5  # seconds a screen must stay the same to be taken
CELL_WIDTH = 12.2  # of a character in rich's SVG
PUBLIC_CLI = WORKFLOW.replace("name: cli", "name: !public cli")


class SVGSnapshot(SingleFileSnapshotExtension):
    """One .svg file a snapshot, as pytest-textual-snapshot keeps them; rich's per-export id
    is taken out so only what the screen shows counts."""

    file_extension = "svg"
    _write_mode = WriteMode.TEXT

    def serialize(self, data: Any, **kwargs: Any) -> str:
        return re.sub(r"\bterminal-\d+-", "terminal-", str(data))


@pytest.fixture
def svg(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(SVGSnapshot)


@pytest.fixture
def kept(request: pytest.FixtureRequest) -> Path:
    """Where syrupy keeps this test's snapshot (for a readable difference when it fails)."""
    here = Path(__file__)
    return here.parent / "__snapshots__" / here.stem / f"{request.node.name}.svg"


_TEXT = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>')


def screen_lines(svg_text: str) -> list[str]:
    """The characters of an SVG screen, line by line (colours left out)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for match in _TEXT.finditer(svg_text):
        x, y = float(match.group(1)), float(match.group(2))
        rows.setdefault(y, []).append((x, html.unescape(match.group(3))))
    lines = []
    for y in sorted(rows):
        line = ""
        for x, text in sorted(rows[y]):
            line = line.ljust(round(x / CELL_WIDTH)) + text
        lines.append(line.rstrip())
    return lines


# --- what would differ from one run to the next, pinned


class CountingUids:
    """Task and command ids in the order the engine asks for them."""

    def __init__(self) -> None:
        self.count = 0

    def new(self) -> str:
        self.count += 1
        return f"tsk{self.count:08d}"


class StableEngine:
    """The real engine as the console sees it, with every datetime written as MOMENT,
    every pid as PID and the temporary directory as /snapshot, in all it returns."""

    def __init__(self, engine: ThreadedEngine, temporary: Path) -> None:
        self._engine = engine
        self._paths = {str(temporary): "/snapshot", sys.executable: "python",
                       str(Path(__file__).resolve().parents[1]): "/nutshell"}

    def _stable(self, value: Any) -> Any:
        if isinstance(value, str):
            for path, shown in self._paths.items():
                value = value.replace(path, shown)
            return value
        if isinstance(value, datetime):
            return MOMENT
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
            return type(value)(*(self._stable(item) for item in value))
        if isinstance(value, (list, tuple)):
            return type(value)(self._stable(item) for item in value)
        if isinstance(value, dict):
            return {self._stable(key): self._stable(item) for key, item in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes: dict[str, Any] = {}
            for field in dataclasses.fields(value):
                if field.init:
                    current = getattr(value, field.name)
                    pid = "pid" in field.name and isinstance(current, int)
                    changes[field.name] = PID if pid else self._stable(current)
            return dataclasses.replace(value, **changes)
        return value

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._engine, name)
        if name == "subscribe" or not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            return self._stable(await attribute(*args, **kwargs))
        return call

    async def close(self) -> None:
        """The module's fixture closes the engine, not each console."""


# --- one engine and one environment for the module


@contextmanager
def pinned_zone(zone: str) -> Iterator[None]:
    """Local time is `zone`'s while in the block."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StableEngine, Path]]:
    """A RUNNING environment of `cli` (one dummy on each of agents a1, a2) from a repository
    named as a remote one (git's URL rewriting serves it from the temporary directory)."""
    temporary = tmp_path_factory.mktemp("snapshot")
    mirror = temporary / "mirror"
    make_template_repo(mirror / "snap" / "templates.git", {
        "workflows/cli.yaml": PUBLIC_CLI, "tasks/dummy.yaml": DUMMY}, corpus=False)
    workdir = WorkingDirectory(temporary / "home").ensure()
    workdir.settings_file.write_text(settings(PORTS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("engine.templates.functions._UIDS", CountingUids())
        patch.setenv("GIT_CONFIG_COUNT", "1")
        patch.setenv("GIT_CONFIG_KEY_0", f"url.file://{mirror}/.insteadOf")
        patch.setenv("GIT_CONFIG_VALUE_0", "https://git.example.org/")
        engine = ThreadedEngine(workdir, demo=True)

        async def start() -> None:
            await engine.add_repo(REPO)
            await engine.create_environment(f"{REPO}/workflows/cli", user="operator",
                                            environment_id=ENVIRONMENT)
            await engine.control_environment(ENVIRONMENT, EnvEvent.START_ACTIVITY,
                                             user="operator")
            # git's reader processes start here, with the engine, not in a test's time
            await engine.list_repos()
            await engine.list_workflow_templates(all_workflows=True)
            await engine.list_workflow_templates()

        async def stop() -> None:
            try:
                if any(info.id == ENVIRONMENT for info in await engine.list_environments()):
                    await engine.destroy_environment(ENVIRONMENT)
                await engine.shutdown_agents()
            finally:
                await engine.close()

        try:
            asyncio.run(start())
            with pinned_zone("UTC"):
                yield StableEngine(engine, temporary), temporary
        finally:
            asyncio.run(stop())
    assert find_running(workdir.root) == {}


@pytest.fixture
def console(stable: tuple[StableEngine, Path], monkeypatch: pytest.MonkeyPatch) -> ConsoleApp:
    """A console on the module's engine, its working directory written as `home`."""
    engine, temporary = stable
    monkeypatch.chdir(temporary)
    return ConsoleApp(WorkingDirectory(Path("home")), engine=engine)  # type: ignore[arg-type]


# --- taking a screen


async def settled(pilot: Pilot[Any], *shows: str, limit: float = 20.0) -> str:
    """The screen once it shows every text of `shows` and stays the same for STABLE_FOR."""
    app = pilot.app
    deadline = time.monotonic() + limit
    last = ""
    while True:
        await pilot.pause(STABLE_FOR)
        screen = app.export_screenshot()
        text = screen.replace("&#160;", " ")
        if screen == last and all(show in text for show in shows):
            return screen
        if time.monotonic() > deadline:
            missing = [show for show in shows if show not in text]
            raise AssertionError(f"the screen never settled showing {missing or shows}; it "
                                 f"shows:\n" + "\n".join(screen_lines(screen)))
        last = screen


async def snap(app: App[Any], svg: SnapshotAssertion, kept: Path, *shows: str,
               keys: tuple[str, ...] = ()) -> None:
    """Run `app`, press `keys` once it settled, and compare the screen that then settles;
    a difference fails with the lines that differ."""
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, *(("2snapshotEnv",) if isinstance(app, ConsoleApp) else ()))
        if keys:
            await pilot.press(*keys)
        screen = await settled(pilot, *shows)
    matches = svg == screen  # syrupy compares (or, updating, keeps) here
    if not matches:
        before = screen_lines(kept.read_text()) if kept.exists() else []
        difference = difflib.unified_diff(before, screen_lines(screen), "kept", "now",
                                          lineterm="")
        pytest.fail(f"{kept.name} differs (colours are compared too):\n" + "\n".join(difference))


# --- the views


async def test_environments_view(console: ConsoleApp, svg: SnapshotAssertion,
                                 kept: Path) -> None:
    await snap(console, svg, kept, "RUNNING", "a1, a2")


async def test_environment_screen(console: ConsoleApp, svg: SnapshotAssertion,
                                  kept: Path) -> None:
    await snap(console, svg, kept, "host-a2", "tsk00000002", "last transition",
               keys=("enter", "down", "down", "down"))


async def test_tasks_view(console: ConsoleApp, svg: SnapshotAssertion,
                          kept: Path) -> None:
    await snap(console, svg, kept, "tsk00000002", "cli.host-a2.dummy", keys=("2",))


async def test_hosts_view(console: ConsoleApp, svg: SnapshotAssertion,
                          kept: Path) -> None:
    await snap(console, svg, kept, f"pid {PID}", "18010", keys=("3",))


async def test_templates_view(console: ConsoleApp, svg: SnapshotAssertion,
                              kept: Path) -> None:
    await snap(console, svg, kept, REPO, "demo", keys=("4",))


async def test_new_environment_form(console: ConsoleApp, svg: SnapshotAssertion,
                                    kept: Path) -> None:
    await snap(console, svg, kept, "New environment", "Hosts", "Create", keys=("n",))


async def test_keys_help(console: ConsoleApp, svg: SnapshotAssertion,
                         kept: Path) -> None:
    await snap(console, svg, kept, "Configure", keys=("question_mark",))


class ThemedDialog(DialogApp):
    """The new-environment dialog alone, in the console's default theme."""

    def on_mount(self) -> None:
        use_themes(self, DEFAULT_THEME)
        super().on_mount()


@pytest.mark.parametrize("names", [("run_type", "mode", "expert_only"),
                                   ("cards", "env", "gain", "notes")],
                         ids=["combo-radio-disabled-list", "list-map-slider-text"])
async def test_form_editors(tmp_path: Path, svg: SnapshotAssertion, kept: Path,
                            names: tuple[str, ...]) -> None:
    """The form's editors (combo, radio set, list, map, bounded number, text area), no engine;
    in two parts, as the dialog's form area shows some twenty lines."""
    (editors,) = EDITORS
    template = dataclasses.replace(editors, var_specs=tuple(
        spec for spec in editors.var_specs if spec.name in names))
    await snap(ThemedDialog(tmp_path, [template]), svg, kept, "editors", "Create")
