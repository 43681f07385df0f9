"""The demo template repository: something to run before any real repository exists.

Created on first use at `<workdir>/demo-templates` as a real git repository with
one commit (GitPython), and added to the RepoManager as a local repository. Local
repositories are not persisted, so the engine calls ensure_demo_repository() at
every start: it is idempotent and cheap once the repository is there.

Its one workflow, `demo`, runs with no variables given. Per host of `hosts`:
an occlib dummy in direct mode, a FairMQ-emulator chain (sampler → sink) in
fairmq mode, a basic task and a hook task at START; once per environment a
testplugin call after CONFIGURE. Every part but the dummy can be switched off
from the console's form (the `!public` variables).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import git

from engine.repos import RepoError, RepoManager
from engine.scheduler.agents import default_agents
from engine.workdir import WorkingDirectory

log = logging.getLogger("engine.demo")

DEMO_FOLDER = "demo-templates"
DEMO_WORKFLOW = "demo"
COMMIT_MESSAGE = "nutshell demo templates"
_AUTHOR = git.Actor("nutshell", "nutshell@localhost")


def demo_repository_path(workdir: WorkingDirectory) -> Path:
    """Where the demo repository lives in a working directory."""
    return workdir.root / DEMO_FOLDER


def default_hosts() -> list[str]:
    """The machine ids of the built-in local agents: the template's `hosts` default.

    The engine passes its own agents' ids as `hosts`; this default only makes
    the template render on its own (dry runs, `template render`).
    """
    return [agent.machine_id for agent in default_agents()]


def _yaml_text(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(value)


def _workflow(hosts: list[str]) -> str:
    return f"""\
name: !public {DEMO_WORKFLOW}
description: !public "nutshell demo: per host an occlib dummy, a FairMQ emulator chain, a basic task and a START hook; one testplugin call"
defaults:
  hosts: !public
    value: {_yaml_text(json.dumps(hosts))}
    type: string
    label: "Hosts"
    description: "JSON list of the machine ids to run on; the engine fills in every local agent"
    widget: editBox
    panel: General_Configuration
    index: 0
  dummy_event_interval: !public
    value: "0.01"
    type: number
    label: "Dummy event interval (s)"
    description: "The occlib dummies count one event per interval while RUNNING"
    widget: editBox
    panel: Dummy
    index: 1
  eos_after: !public
    value: ""
    type: number
    label: "End of stream after N events"
    description: "The dummies signal END_OF_STREAM after this many events; empty for never"
    widget: editBox
    panel: Dummy
    index: 2
  fairmq_chain_enabled: !public
    value: "true"
    type: bool
    label: "FairMQ chain"
    description: "Run a sampler and a sink of the FairMQ emulator on every host"
    widget: checkBox
    panel: General_Configuration
    index: 3
  basic_enabled: !public
    value: "true"
    type: bool
    label: "Basic task"
    description: "Run a short shell command on every host at START"
    widget: checkBox
    panel: General_Configuration
    index: 4
  hook_enabled: !public
    value: "true"
    type: bool
    label: "START hook"
    description: "Run a hook task on every host before START_ACTIVITY"
    widget: checkBox
    panel: General_Configuration
    index: 5
  testplugin_enabled: !public
    value: "true"
    type: bool
    label: "testplugin call"
    description: "Call testplugin.Test() after CONFIGURE (non-critical)"
    widget: checkBox
    panel: General_Configuration
    index: 6
roles:
  - name: host-{{{{ it }}}}
    for:
      range: "{{{{ hosts }}}}"
      var: it
    constraints:
      - attribute: machine_id
        value: "{{{{ it }}}}"
    roles:
      - name: dummy
        task:
          load: dummy
      - name: fairmq-chain
        enabled: "{{{{ fairmq_chain_enabled == 'true' }}}}"
        roles:
          - name: sampler
            task:
              load: fairmq-sampler
          - name: sink
            connect:
              - name: data
                type: pull
                transport: zeromq
                target: "{{{{ Parent().Path }}}}.sampler:data"
            task:
              load: fairmq-sink
      - name: basic
        enabled: "{{{{ basic_enabled == 'true' }}}}"
        task:
          load: demo-basic
      - name: start-hook
        enabled: "{{{{ hook_enabled == 'true' }}}}"
        task:
          load: demo-hook
          trigger: before_START_ACTIVITY
          timeout: 10s
          critical: false
  - name: testplugin
    enabled: "{{{{ testplugin_enabled == 'true' }}}}"
    call:
      func: testplugin.Test()
      trigger: after_CONFIGURE
      timeout: 5s
      critical: false
"""


def _defaults(python: str, **more: str) -> str:
    """A `defaults:` section: the interpreter of the occlib examples, and `more`."""
    lines = [f"  {name}: {_yaml_text(value)}" for name, value in {"python": python, **more}.items()]
    return "defaults:\n" + "\n".join(lines) + "\n"


def _dummy(python: str) -> str:
    # shell, so an empty eos_after drops its option; exec, so the task's pid is python's.
    return f"""\
name: dummy
control:
  mode: direct
{_defaults(python, dummy_event_interval="0.01", eos_after="")}wants:
  cpu: 0.01
  memory: 32
command:
  shell: true
  value: "exec {{{{ python }}}} -m occlib.examples.dummy"
  arguments:
    - "--o2-role {{{{ task_parent_role }}}}"
    - "--event-interval {{{{ dummy_event_interval }}}}"
    - "{{{{ eos_after == '' ? '' : '--eos-after ' + eos_after }}}}"
"""


def _fairmq(name: str, python: str, channels: str) -> str:
    return f"""\
name: {name}
control:
  mode: fairmq
{_defaults(python)}wants:
  cpu: 0.01
  memory: 32
{channels}command:
  value: "{{{{ python }}}}"
  arguments:
    - "-m"
    - "occlib.examples.fairmq"
"""


SAMPLER_BIND = """\
bind:
  - name: data
    type: push
    transport: zeromq
    addressing: tcp
"""


def _basic(name: str, line: str) -> str:
    return f"""\
name: {name}
control:
  mode: basic
wants:
  cpu: 0.01
  memory: 8
command:
  shell: true
  value: {_yaml_text(line)}
"""


def demo_files(python: str | None = None, hosts: list[str] | None = None) -> dict[str, str]:
    """The demo repository's files (path → text); `python` runs the occlib examples."""
    python = python or sys.executable
    return {
        f"workflows/{DEMO_WORKFLOW}.yaml": _workflow(default_hosts() if hosts is None else hosts),
        "tasks/dummy.yaml": _dummy(python),
        "tasks/fairmq-sampler.yaml": _fairmq("fairmq-sampler", python, SAMPLER_BIND),
        "tasks/fairmq-sink.yaml": _fairmq("fairmq-sink", python, ""),
        "tasks/demo-basic.yaml": _basic(
            # A basic task whose command ends would end the run (§1.2): this one lasts
            # until STOP kills it.
            "demo-basic", "echo demo basic task {{ task_parent_role }} of {{ environment_id }}"
                          "; exec sleep infinity"),
        "tasks/demo-hook.yaml": _basic(
            "demo-hook", "echo START hook {{ task_parent_role }} of {{ environment_id }}"),
    }


def _is_complete(path: Path) -> bool:
    """A git repository with a commit (a crash mid-creation leaves none: see _create)."""
    if not (path / ".git").is_dir():
        return False
    try:
        with git.Repo(path) as repo:
            return repo.head.is_valid()
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False


def _create(path: Path, python: str) -> None:
    """Write and commit the templates in a scratch folder, then rename it into place, so
    the repository appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{DEMO_FOLDER}-", dir=path.parent))
    try:
        with git.Repo.init(scratch, initial_branch="master") as repo:
            for relative, text in demo_files(python).items():
                target = scratch / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                repo.index.add([relative])
            repo.index.commit(COMMIT_MESSAGE, author=_AUTHOR, committer=_AUTHOR)
        if path.exists() and not _is_complete(path):
            log.warning("demo repository %s is incomplete; making it again", path)
            shutil.rmtree(path)
        try:
            os.rename(scratch, path)
        except OSError:
            if not _is_complete(path):  # not another process winning the race
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


DEMO_CONFIGURATION = """\
# The embedded configuration service of this working directory, in AliECS's
# file-backend layout (o2/components/<component>/<RUNTYPE>/<role>/<entry>, …).
# Written with the demo templates: it enables the test integration plugin, which
# the demo workflow calls. Edit freely; nutshell never writes this file again.
o2:
  components:
    aliecs:
      ANY:
        any:
          settings: |
            integrationPlugins:
              - testplugin
            testPluginEndpoint: "embedded"
"""


def ensure_demo_configuration(workdir: WorkingDirectory) -> bool:
    """Write the demo's configuration.yaml (the testplugin its call needs) when the working
    directory has none; True if written. An existing file is never touched."""
    path = workdir.configuration_file
    try:
        with open(path, "x", encoding="utf-8") as file:  # never over a file written meanwhile
            file.write(DEMO_CONFIGURATION)
    except FileExistsError:
        return False
    except OSError as error:
        raise RepoError(f"cannot write the demo configuration {path}: {error}") from None
    log.info("wrote the demo configuration %s (testplugin enabled)", path)
    return True


def ensure_demo_repository(workdir: WorkingDirectory, repos: RepoManager, *,
                           python: str | None = None) -> str:
    """The demo repository, created if missing and added to `repos`; returns its identifier.

    It becomes the default repository only when `repos` has none: a default the
    user chose is never taken away (the demo is not persisted, so it is added
    again at each start).
    """
    path = demo_repository_path(workdir)
    if not _is_complete(path):
        try:
            _create(path, python or sys.executable)
        except (OSError, git.GitError) as error:
            raise RepoError(f"cannot create the demo repository at {path}: {error}") from None
        log.info("created the demo template repository at %s", path)
    repo_id = str(path.resolve())
    if any(info.name == repo_id for info in repos.list()):
        return repo_id
    try:
        repos.add(repo_id)
    except RepoError:
        if not any(info.name == repo_id for info in repos.list()):  # not a concurrent add
            raise
    return repo_id
