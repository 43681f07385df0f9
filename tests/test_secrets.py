"""Secrets stay where they belong: an engine, a real executor, real tasks, real sqlite.

Each task's OCC token is in that task's environment and nowhere else: not on
its command line, not in another task's environment, not in events, the store,
what the API and the console show, or any log. The installation's agent secret
and credentials the engine runs with (NUTSHELL_TOKEN here) reach no task.
Secret-named variables a template gives a task reach that task, and show as ***
wherever an operator looks (redaction.py).
"""
from __future__ import annotations

import logging
import random
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from console.tui.detail_pane import role_fields, task_fields
from engine import Engine, WorkingDirectory
from engine.api import messages
from engine.scheduler.local_agent import SECRET_FILE, find_running
from executor.command import TaskCommand
from executor.redaction import REDACTED, is_secret_name, redact_argv, redact_env, without_secrets
from occlib.owner import TOKEN_ENV
from tests.conftest import make_template_repo

ENGINE_CREDENTIAL = "engine-credential-7c1f3e"
TEMPLATE_PASSWORD = "hunter2-from-the-template"
WORKFLOW_TOKEN = "workflow-token-5b2d"

SETTINGS = """\
agents:
  a1:
    ports: {data}-{data_end},{control}-{control_end}
"""

WORKFLOW = f"""\
name: secrets
defaults:
  api_token: "{WORKFLOW_TOKEN}"
roles:
  - name: one
    task:
      load: dummy
  - name: two
    task:
      load: dummy
"""

DUMMY = f"""\
name: dummy
control:
  mode: direct
defaults:
  db_password: "{TEMPLATE_PASSWORD}"
wants:
  cpu: 0.01
  memory: 32
command:
  shell: true
  env:
    - "DB_PASSWORD={{{{ db_password }}}}"
  value: "exec {sys.executable} -m occlib.examples.dummy"
  arguments:
    - "--o2-role {{{{ task_parent_role }}}}"
"""


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Engine, str]]:
    # the engine runs with a credential of its own; the executor it starts inherits it
    monkeypatch.setenv("NUTSHELL_TOKEN", ENGINE_CREDENTIAL)
    workdir = WorkingDirectory(tmp_path / "home").ensure()
    data, control = 19500 + 20 * random.randrange(30), 32100 + 20 * random.randrange(30)
    workdir.settings_file.write_text(SETTINGS.format(data=data, data_end=data + 9, control=control,
                                                     control_end=control + 9))
    repo = make_template_repo(tmp_path / "templates", {"workflows/secrets.yaml": WORKFLOW,
                                                       "tasks/dummy.yaml": DUMMY}, corpus=False)
    engine = Engine(workdir)
    try:
        added = await engine.add_repo(str(repo), "master")
        yield engine, f"{added.repo}/workflows/secrets@master"
    finally:
        await engine.shutdown_agents()
        await engine.close()
    assert find_running(workdir.root) == {}


def _files_text(folder: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.rglob("*"))
                     if path.is_file())


def _store_text(store: Path) -> str:
    """Every value of every table, as a fresh connection reads it."""
    with sqlite3.connect(store) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(row) for table in tables for row in db.execute(f"SELECT * FROM {table}"))


async def test_a_task_token_lives_in_its_own_environment_only(
        engine: tuple[Engine, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    engine_, reference = engine
    events = await engine_.subscribe()
    info = await engine_.create_environment(reference, user="alice")
    started = await engine_.control_environment(info.id, "START_ACTIVITY", user="alice")
    assert started.ok
    agent_secret = (engine_.workdir.root / SECRET_FILE).read_text().strip()

    environs = {task.task_id: psutil.Process(task.pid).environ() for task in info.tasks
                if task.pid is not None}
    assert len(environs) == 2
    tokens = {task_id: env[TOKEN_ENV] for task_id, env in environs.items()}
    assert len(set(tokens.values())) == 2 and all(len(t) >= 32 for t in tokens.values())
    for task_id, env in environs.items():
        assert env["DB_PASSWORD"] == TEMPLATE_PASSWORD  # the task's own secret reaches it
        assert "NUTSHELL_TOKEN" not in env and ENGINE_CREDENTIAL not in env.values()
        assert agent_secret not in "\n".join(env.values())
        others = [t for other, t in tokens.items() if other != task_id]
        assert not any(t in "\n".join(env.values()) for t in others)

    secrets = [*tokens.values(), agent_secret, ENGINE_CREDENTIAL]
    shown_secrets = [*secrets, TEMPLATE_PASSWORD, WORKFLOW_TOKEN]

    def clean(text: str, what: str, among: list[str]) -> None:
        leaked = [secret for secret in among if secret in text]
        assert not leaked, f"{what} shows {len(leaked)} secret(s)"

    for task in info.tasks:
        assert task.pid is not None
        clean(" ".join(psutil.Process(task.pid).cmdline()), f"cmdline of {task.task_id}", secrets)

    # what the API and the console show
    tasks = await engine_.list_tasks()
    roles = await engine_.query_roles(info.id, "**")
    tree = await engine_.get_workflow_tree(info.id)
    environment = await engine_.get_environment(info.id)
    shown = [repr(tasks), repr(roles), repr(tree), repr(environment),
             *(str(messages.task_detail(task, info.id)) for task in tasks),
             *(str(messages.role_info(role)) for role in roles),
             str(messages.environment_info(environment, tree)),
             *(repr(task_fields(task)) for task in tasks),
             *(repr(role_fields(role, "RUNNING", "ACTIVE")) for role in roles)]
    clean("\n".join(shown), "the API and the console", shown_secrets)
    assert tree.defaults["api_token"] == REDACTED and tree.consolidated_stack["api_token"] == REDACTED
    one = next(role for role in roles if role.full_path == "secrets.one")
    assert role_fields(one, "RUNNING", "ACTIVE")["  api_token"].plain == REDACTED  # the detail pane

    stopped = await engine_.control_environment(info.id, "STOP_ACTIVITY", user="alice")
    assert stopped.ok
    store = _store_text(engine_.workdir.store)
    clean(store, "the store", [*secrets, TEMPLATE_PASSWORD])
    assert f"DB_PASSWORD={REDACTED}" in store  # the launch command is kept, its secret is not

    destroyed = await engine_.destroy_environment(info.id, user="alice")
    assert destroyed.state == "DONE"
    seen = []
    while not events.queue.empty():
        seen.append(events.queue.get_nowait())
    events.close()
    assert any(event is not None and event.kind.value == "task" for event in seen)
    clean(repr(seen), "the events", shown_secrets)
    clean(_files_text(engine_.workdir.logs), "the logs of the executor and tasks", secrets)
    clean(caplog.text, "the engine's log", secrets)


def test_one_rule_names_secrets_and_every_view_hides_them() -> None:
    assert all(is_secret_name(name) for name in (
        TOKEN_ENV, "NUTSHELL_TOKEN", "db_password", "apiKey", "AWS_SECRET_ACCESS_KEY", "passwd",
        "ssh-private-key", "client.credentials", "BEARER"))
    assert not any(is_secret_name(name) for name in (
        "OCC_CONTROL_PORT", "PWD", "SSH_AUTH_SOCK", "KEYMAP", "monkey", "O2_ROLE", "tokenizer"))
    assert redact_env(["A=1", "DB_PASSWORD=x=y", "broken"]) == ["A=1", f"DB_PASSWORD={REDACTED}", "broken"]
    assert redact_argv(["prog", "--password", "x", "-token=y", "DB_KEY=z", "-v"]) == \
        ["prog", "--password", REDACTED, f"-token={REDACTED}", f"DB_KEY={REDACTED}", "-v"]
    assert redact_argv(["/bin/sh", "-c", "prog --secret s --id 1"]) == \
        ["/bin/sh", "-c", f"prog --secret {REDACTED} --id 1"]
    assert without_secrets({"PATH": "/bin", "NUTSHELL_TOKEN": "t"}) == {"PATH": "/bin"}
    command = TaskCommand("prog", arguments=("--api-key", "k"), env=("API_KEY=k", "MODE=a"), shell=True)
    assert command.describe() == f"prog --api-key {REDACTED}"
    assert command.redacted().env == (f"API_KEY={REDACTED}", "MODE=a")
    assert command.argv() == ["/bin/sh", "-c", "prog --api-key k"]  # what runs keeps the value
