"""The fault tests' fixtures: a working directory with agents a1 and a2 and the `faults`
workflow in a repository (`setup`), and an engine on it (`engine`); common.py has the rest."""
from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine import Engine, WorkingDirectory
from engine.scheduler.local_agent import find_running
from tests.conftest import make_template_repo
from tests.faults.common import DUMMY, HOLD, WORKFLOW, Setup
from tests.test_environment_e2e import settings


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    workdir.settings_file.write_text(settings(20 * random.randrange(38)))
    repo = make_template_repo(tmp_path / "templates", {
        "workflows/faults.yaml": WORKFLOW, "tasks/dummy.yaml": DUMMY,
        "tasks/hold.yaml": HOLD}, corpus=False)
    try:
        yield Setup(workdir, repo)
    finally:
        await Engine(workdir).shutdown_agents()
    assert find_running(workdir.root) == {}


@pytest.fixture
async def engine(setup: Setup) -> AsyncIterator[tuple[Engine, str]]:
    """An engine on `setup`'s working directory and the reference of `faults`."""
    engine = Engine(setup.workdir)
    try:
        added = await engine.add_repo(str(setup.repo), "master")
        yield engine, f"{added.repo}/workflows/faults@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()
