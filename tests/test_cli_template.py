"""`nutshell template …` and `nutshell repo …` as a user runs them: real processes, real git."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_template_repo

HOSTS = '{"hosts": ["flp001", "flp002"]}'
INVENTORY = """
o2:
  hardware:
    detectors:
      ITS: {flps: {flp001: {}}}
      TPC: {flps: {flp002: {}}}
"""


@pytest.fixture
def nutshell(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "configuration.yaml").write_text(INVENTORY)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NUTSHELL_HOME": str(home)}
        return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True,
                              text=True, timeout=120, cwd=ROOT, env=env)
    return run


def test_render_prints_the_role_tree(nutshell, corpus_repo: Path) -> None:
    done = nutshell("template", "render", "readout-dataflow", "--repo", str(corpus_repo), "-e", HOSTS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "readout-dataflow [aggregator]"
    assert "  host-flp001 [aggregator]  host=flp001" in lines
    assert any(line.startswith("    readout [task]  class=") and line.endswith("/tasks/readout@local  host=flp002")
               for line in lines)
    assert any("fairmq-shmcleanup [task]" in line and "trigger=before_DEPLOY" in line for line in lines)
    # the untagged mappings AliECS drops are reported, not fatal
    assert "foc_dpl_workflow is a mapping without !public" in done.stderr


def test_render_json_has_the_documented_shape(nutshell, corpus_repo: Path) -> None:
    done = nutshell("template", "render", "readout-dataflow", "--repo", str(corpus_repo),
                    "-e", 'hosts=["flp001"]', "-e", "dcs_enabled=true", "-o", "json")
    assert done.returncode == 0, done.stderr
    tree = json.loads(done.stdout)
    assert (tree["name"], tree["path"], tree["kind"]) == ("readout-dataflow", "readout-dataflow", "aggregator")

    def walk(role: dict):
        yield role
        for child in role.get("roles", ()):
            yield from walk(child)

    roles = list(walk(tree))
    assert {r["kind"] for r in roles} <= {"aggregator", "task", "call", "include"}
    readout = next(r for r in roles if r["path"] == "readout-dataflow.host-flp001.readout")
    assert readout["class"].endswith("/tasks/readout@local")
    assert readout["constraints"] == [{"attribute": "machine_id", "value": "flp001"}]
    calls = [r for r in roles if r["kind"] == "call"]
    assert calls and all(r["func"].startswith("dcs.") and r["trigger"] for r in calls)
    assert all(isinstance(r["constraints"], list) for r in roles)


def test_render_errors_name_the_file_role_field_and_expression(nutshell, corpus_repo: Path) -> None:
    done = nutshell("template", "render", "readout-dataflow", "--repo", str(corpus_repo))
    assert done.returncode == 1
    assert "file workflows/readout-dataflow.yaml" in done.stderr
    assert "role readout-dataflow" in done.stderr and "field defaults.detectors" in done.stderr
    assert "inventory.DetectorsForHosts(hosts)" in done.stderr and "unknown name hosts" in done.stderr
    assert "Traceback" not in done.stderr
    missing = nutshell("template", "render", "no-such-workflow", "--repo", str(corpus_repo))
    assert missing.returncode == 1 and "no-such-workflow" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_vars = nutshell("template", "render", "readout-dataflow", "--repo", str(corpus_repo), "-e", "{oops")
    assert bad_vars.returncode == 1 and "-e '{oops': not valid JSON" in bad_vars.stderr


def test_template_list_shows_public_workflows_and_variables(nutshell, corpus_repo: Path) -> None:
    done = nutshell("template", "list", "--repo", str(corpus_repo), "-d")
    assert done.returncode == 0, done.stderr
    assert f"{corpus_repo}@local  readout-dataflow" in done.stdout
    assert "    dcs_enabled (bool, checkBox, General_Configuration) 'DCS' = 'false'" in done.stdout
    assert "o2-roc-config" not in done.stdout  # not !public
    everything = json.loads(nutshell("template", "list", "--repo", str(corpus_repo), "-a", "-o", "json").stdout)
    assert len(everything) == 10


def test_repo_commands_persist_between_runs(nutshell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # host/path/name identifiers are cloned over https; git's URL rewriting points them here.
    remotes = tmp_path / "remotes"
    make_template_repo(remotes / "alice" / "controlworkflows.git")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{remotes.as_uri()}/.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "https://git.example.org/")
    added = nutshell("repo", "add", "git.example.org/alice/controlworkflows")
    assert added.returncode == 0, added.stderr
    assert "repository git.example.org/alice/controlworkflows added" in added.stdout
    assert 'set to "master" (global default value)' in added.stdout
    listed = nutshell("repo", "list")
    demo = tmp_path / "home" / "demo-templates"  # the embedded default's demo
    assert listed.stdout.splitlines() == [
        f"  0  {demo}  (local, default revision local)",
        "* 1  git.example.org/alice/controlworkflows  (https, default revision master)"]
    rendered = nutshell("template", "render", "readout-dataflow", "-e", HOSTS, "-o", "json")
    assert rendered.returncode == 0, rendered.stderr
    readout = json.loads(rendered.stdout)["roles"][0]["roles"][0]
    assert readout["class"].startswith("git.example.org/alice/controlworkflows/tasks/readout@")
    wrong = nutshell("repo", "default-revision", "1", "nope")
    assert wrong.returncode == 1 and "revision 'nope' not found" in wrong.stderr
    assert nutshell("repo", "remove", "1").returncode == 0
    assert nutshell("repo", "list").stdout.splitlines() == [
        f"* 0  {demo}  (local, default revision local)"]
