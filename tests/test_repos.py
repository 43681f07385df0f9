"""The repository manager on real git repositories made in tmp dirs.

"Remote" repositories live under tmp_path/remotes/<group>/<name>.git; git's own
URL rewriting (url.<base>.insteadOf, set through GIT_CONFIG_* variables) makes
`https://git.example.org/<group>/<name>.git` fetch from there, so the real
clone/fetch path runs. The corpus templates are copied into such a repository
at test time.
"""
from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import git
import pytest

from engine import Engine
from engine.repos import (
    LOCAL_REVISION,
    RepoError,
    RepoKind,
    RepoManager,
    parse_identifier,
    parse_reference,
)
from engine.repos.settings import RepoSettings
from engine.store import Store
from engine.store.settings import DEFAULT_REPO, DEFAULT_REVISION, DEFAULT_REVISIONS
from engine.workdir import WorkingDirectory
from tests.conftest import CORPUS

HOST = "git.example.org"


class Upstream:
    """A repository others clone from; commits go straight into its working tree."""

    def __init__(self, path: Path, branch: str = "master") -> None:
        self.path = path
        path.mkdir(parents=True)
        self.repo = git.Repo.init(path, initial_branch=branch)
        with self.repo.config_writer() as config:
            config.set_value("user", "name", "Test")
            config.set_value("user", "email", "test@example.org")
        self.repo.close()

    def write(self, relative: str, text: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str, **files: str) -> str:
        """Write files named like `tasks__readout__yaml` (tasks/readout.yaml), add all, commit."""
        for key, text in files.items():
            parts = key.split("__")
            if parts[-1] == "yaml":
                parts = [*parts[:-2], f"{parts[-2]}.yaml"]
            self.write("/".join(parts), text)
        self.repo.git.add("-A")
        self.repo.git.commit("-m", message, "--allow-empty")
        return self.head()

    def head(self) -> str:
        return self.repo.git.rev_parse("HEAD")

    def branch(self, name: str) -> None:
        self.repo.git.branch(name)

    def checkout(self, name: str) -> None:
        self.repo.git.checkout(name)

    def tag(self, name: str, annotated: bool = False) -> None:
        if annotated:
            self.repo.git.tag("-a", name, "-m", f"release {name}")
        else:
            self.repo.git.tag(name)


def workflow(name: str, marker: str = "", public: bool = False) -> str:
    tag = "!public " if public else ""
    return f"name: {tag}{name}\ndefaults:\n  marker: \"{marker}\"\nroles: []\n"


@pytest.fixture
def remotes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "remotes"
    base.mkdir()
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{base.as_uri()}/.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"https://{HOST}/")
    return base


@pytest.fixture
def workdir(tmp_path: Path) -> WorkingDirectory:
    return WorkingDirectory(tmp_path / "home")


def saved(workdir: WorkingDirectory) -> RepoSettings:
    """The repository settings as a fresh connection to the working directory's store reads them."""
    with Store.open(workdir) as store:
        return store.settings.load_repo_settings()


def forget_settings(workdir: WorkingDirectory) -> None:
    """Drop the repository settings from the store, as if none had ever been saved."""
    with Store.open(workdir) as store:
        for key in (DEFAULT_REPO, DEFAULT_REVISION, DEFAULT_REVISIONS):
            store.settings.delete(key)


@pytest.fixture
def upstream(remotes: Path) -> Upstream:
    """group/templates: master (2 commits), branch other, tags v1 (light) and v2 (annotated)."""
    up = Upstream(remotes / "group" / "templates.git")
    up.commit("first", workflows__alpha__yaml=workflow("alpha", "m1", public=True))
    up.tag("v1")
    up.commit("second", workflows__alpha__yaml=workflow("alpha", "m2", public=True),
              workflows__beta__yaml=workflow("beta", "m2"),
              tasks__sleeper__yaml="name: sleeper\n", jit__cmd="o2-dpl-workflow --x\n")
    up.tag("v2", annotated=True)
    up.branch("other")
    up.checkout("other")
    up.commit("on other", workflows__alpha__yaml=workflow("alpha", "other", public=True))
    up.checkout("master")
    return up


_OPEN: list[RepoManager] = []


def manager(workdir: WorkingDirectory) -> RepoManager:
    """A RepoManager closed after the test (its git cat-file helpers must not outlive it)."""
    repos = RepoManager(workdir)
    _OPEN.append(repos)
    return repos


@pytest.fixture(autouse=True)
def close_managers() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


REPO = f"{HOST}/group/templates"


# --- identifiers and references -------------------------------------------------------------------

def test_https_identifier_forms() -> None:
    ident = parse_identifier("github.com/AliceO2Group/ControlWorkflows/")
    assert ident.kind is RepoKind.HTTPS
    assert ident.id == "github.com/AliceO2Group/ControlWorkflows"
    assert ident.clone_url == "https://github.com/AliceO2Group/ControlWorkflows.git"
    assert ident.directory(Path("/r")) == Path("/r/github.com/AliceO2Group/ControlWorkflows")
    nested = parse_identifier("gitlab.cern.ch/a/b/c/repo.git")
    assert (nested.host, nested.path, nested.name) == ("gitlab.cern.ch", "a/b/c", "repo")
    assert nested.id == "gitlab.cern.ch/a/b/c/repo"


def test_ssh_and_local_identifier_forms() -> None:
    ssh = parse_identifier("gitlab.cern.ch:/group/repo.git")
    assert ssh.kind is RepoKind.SSH
    assert ssh.id == "gitlab.cern.ch:/group/repo"
    assert ssh.clone_url == "ssh://gitlab.cern.ch/group/repo.git"
    assert ssh.directory(Path("/r")) == Path("/r/gitlab.cern.ch:/group/repo")
    local = parse_identifier("/home/user/work/../templates/")
    assert local.kind is RepoKind.LOCAL
    assert local.id == "/home/user/templates"
    assert local.directory(Path("/r")) == Path("/home/user/templates")


@pytest.mark.parametrize("text, message", [
    ("", "empty repository identifier"),
    ("https://github.com/a/b", "without a protocol prefix"),
    ("github.com/a/b@master", "has no @revision"),
    ("localhost/a/b", "with a dot in the host"),
    ("github.com/onlyone", "with a dot in the host"),
    ("github.com//b/c", "empty, '.' or '..' path segment"),
    ("github.com/a/../c", "empty, '.' or '..' path segment"),
    ("host:/single", "expected host:/path/name"),
])
def test_bad_identifiers(text: str, message: str) -> None:
    with pytest.raises(RepoError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_identifier(text)


def test_references() -> None:
    ref = parse_reference("readout-dataflow", "workflows")
    assert (ref.repo, ref.path, ref.revision) == ("", "workflows/readout-dataflow.yaml", "")
    ref = parse_reference("github.com/a/b/workflows/x.yaml@v1.2", "workflows")
    assert (ref.repo, ref.path, ref.revision) == ("github.com/a/b", "workflows/x.yaml", "v1.2")
    ref = parse_reference("/srv/repo/tasks/readout@abc123", "tasks")
    assert (ref.repo, ref.path, ref.revision) == ("/srv/repo", "tasks/readout.yaml", "abc123")
    for bad, message in [("", "empty workflow reference"),
                         ("x@", "empty name or revision"),
                         ("workflows/x", "must have the form <repo>/workflows/<name>"),
                         ("github.com/a/b/workflows/../x", "is no template name")]:
        with pytest.raises(RepoError, match=message):
            parse_reference(bad, "workflows")


# --- adding and the default revision ---------------------------------------------------------------

def test_add_clones_without_checkout_and_uses_global_default(upstream: Upstream,
                                                             workdir: WorkingDirectory) -> None:
    repos = manager(workdir)
    result = repos.add(REPO)
    assert result.repo == REPO
    assert result.revision == "master"
    assert result.info == ('The default revision for this repository has been set to "master" '
                           '(global default value).')
    clone = workdir.repos / HOST / "group" / "templates"
    assert sorted(p.name for p in clone.iterdir()) == [".git"]  # nothing checked out
    with git.Repo(clone) as cloned:
        assert cloned.config_reader().get_value("core", "ignorecase") is True
    assert repos.default_repo == REPO


def test_add_with_requested_branch_tag_and_hash(upstream: Upstream, remotes: Path,
                                                workdir: WorkingDirectory) -> None:
    repos = manager(workdir)
    result = repos.add(REPO, "other")
    assert (result.revision, result.info) == (
        "other", 'The default revision for this repository has been set to "other".')
    repos.remove(0)
    assert repos.add(REPO, "v2").info == \
        'The default revision for this repository has been set to "v2".'
    repos.remove(0)
    head = upstream.head()
    assert repos.add(REPO, head).revision == head


def test_add_requested_missing_falls_back_to_global_default(upstream: Upstream,
                                                            workdir: WorkingDirectory) -> None:
    result = manager(workdir).add(REPO, "no-such-branch")
    assert result.revision == "master"
    assert result.info.endswith('"master" (global default value).')


def test_add_uses_configured_global_default(upstream: Upstream, workdir: WorkingDirectory) -> None:
    repos = manager(workdir)
    repos.set_global_default_revision("other")
    assert repos.global_default_revision == "other"
    assert repos.add(REPO).info.endswith('"other" (global default value).')


def test_add_falls_back_to_master_then_main(remotes: Path, workdir: WorkingDirectory) -> None:
    only_main = Upstream(remotes / "group" / "mainonly.git", branch="main")
    only_main.commit("c", workflows__w__yaml=workflow("w"))
    repos = manager(workdir)
    repos.set_global_default_revision("stable")
    result = repos.add(f"{HOST}/group/mainonly")
    assert result.revision == "main"
    assert result.info == 'The default revision for this repository has been set to "main" (fallback value).'
    has_master = Upstream(remotes / "group" / "withmaster.git")
    has_master.commit("c")
    result = repos.add(f"{HOST}/group/withmaster", "nope")
    assert (result.revision, result.info) == (
        "master", 'The default revision for this repository has been set to "master" (fallback value).')


def test_add_fails_without_any_default_revision_and_cleans_up(remotes: Path,
                                                              workdir: WorkingDirectory) -> None:
    odd = Upstream(remotes / "group" / "odd.git", branch="develop")
    odd.commit("c")
    repos = manager(workdir)
    with pytest.raises(RepoError, match=r"cannot fall back to any default revision for "
                                        r"git\.example\.org/group/odd: none of wanted, master, main"):
        repos.add(f"{HOST}/group/odd", "wanted")
    assert not (workdir.repos / HOST).exists()
    assert repos.list() == []
    assert saved(workdir) == RepoSettings()


def test_add_unreachable_repository(remotes: Path, workdir: WorkingDirectory) -> None:
    repos = manager(workdir)
    with pytest.raises(RepoError, match=r"cannot clone git\.example\.org/group/missing from "
                                        r"https://git\.example\.org/group/missing\.git: "):
        repos.add(f"{HOST}/group/missing")
    assert not (workdir.repos / HOST).exists()


def test_add_twice_is_an_error(upstream: Upstream, workdir: WorkingDirectory) -> None:
    repos = manager(workdir)
    repos.add(REPO)
    with pytest.raises(RepoError, match=r"repository git\.example\.org/group/templates is already present"):
        repos.add(f"{REPO}.git/")


# --- list, remove, defaults ------------------------------------------------------------------------

@pytest.fixture
def three(upstream: Upstream, remotes: Path, workdir: WorkingDirectory) -> RepoManager:
    for name in ("zeta", "alpha"):
        up = Upstream(remotes / "group" / f"{name}.git")
        up.commit("c", workflows__w__yaml=workflow("w", name))
    repos = manager(workdir)
    repos.add(REPO)          # first: the default
    repos.add(f"{HOST}/group/zeta")
    repos.add(f"{HOST}/group/alpha", "master")
    return repos


def test_list_is_alphabetical_with_defaults_and_revisions(three: RepoManager) -> None:
    rows = three.list()
    assert [(r.index, r.name, r.default) for r in rows] == [
        (0, f"{HOST}/group/alpha", False), (1, REPO, True), (2, f"{HOST}/group/zeta", False)]
    templates = rows[1]
    assert templates.kind is RepoKind.HTTPS
    assert templates.default_revision == "master"
    assert templates.revisions == ("master", "other")
    assert templates.tags == ("v1", "v2")
    assert three.revisions(1) == (["master", "other"], ["v1", "v2"])


def test_remove_by_index_repoints_default(three: RepoManager, workdir: WorkingDirectory) -> None:
    assert three.remove(2) == ""                      # zeta: not the default
    assert not (workdir.repos / HOST / "group" / "zeta").exists()
    assert three.remove(1) == f"{HOST}/group/alpha"   # the default goes; index 0 takes over
    assert three.default_repo == f"{HOST}/group/alpha"
    assert three.remove(0) == ""
    assert three.default_repo == ""
    assert three.list() == []
    assert not (workdir.repos / HOST).exists()        # empty parents cleaned up
    with pytest.raises(RepoError, match=r"no repository at index 0 \(there are no repositories\)"):
        three.remove(0)


def test_index_out_of_range(three: RepoManager) -> None:
    for call in (lambda: three.remove(3), lambda: three.set_default(-1),
                 lambda: three.revisions(7), lambda: three.refresh(3)):
        with pytest.raises(RepoError, match=r"no repository at index -?\d+ \(there are indexes 0 to 2\)"):
            call()


def test_set_default(three: RepoManager) -> None:
    three.set_default(0)
    assert three.default_repo == f"{HOST}/group/alpha"
    assert [r.default for r in three.list()] == [True, False, False]
    with pytest.raises(RepoError, match=r"git\.example\.org/group/alpha is already the default repo"):
        three.set_default(0)


def test_set_repo_default_revision(three: RepoManager) -> None:
    three.set_repo_default_revision(1, "v1")
    assert three.list()[1].default_revision == "v1"
    assert three.resolve_workflow("alpha").text == workflow("alpha", "m1", public=True)
    with pytest.raises(RepoError, match=r"could not update default revision for "
                                        r"git\.example\.org/group/templates: revision 'nope' not found "
                                        r"\(available: master, other, v1, v2\)"):
        three.set_repo_default_revision(1, "nope")
    with pytest.raises(RepoError, match="the global default revision cannot be empty"):
        three.set_global_default_revision("  ")


def test_settings_persist_across_managers(three: RepoManager, workdir: WorkingDirectory,
                                          tmp_path: Path) -> None:
    three.set_default(2)
    three.set_repo_default_revision(1, "other")
    three.set_global_default_revision("v2")
    local = Upstream(tmp_path / "localrepo")
    local.commit("c", workflows__w__yaml=workflow("w"))
    three.add(str(local.path))
    assert saved(workdir) == RepoSettings(
        default_repo=f"{HOST}/group/zeta", global_default_revision="v2",
        default_revisions={f"{HOST}/group/alpha": "master", REPO: "other",
                           f"{HOST}/group/zeta": "master"})
    assert not workdir.repo_settings.exists()  # no repos.json any more
    again = manager(workdir)
    assert [(r.name, r.default, r.default_revision) for r in again.list()] == [
        (f"{HOST}/group/alpha", False, "master"), (REPO, False, "other"),
        (f"{HOST}/group/zeta", True, "master")]       # the local repository is not persisted
    assert again.global_default_revision == "v2"
    assert again.resolve_workflow(f"{REPO}/workflows/alpha").text == \
        workflow("alpha", "other", public=True)


def test_clones_are_adopted_without_settings(three: RepoManager, workdir: WorkingDirectory) -> None:
    forget_settings(workdir)
    again = manager(workdir)
    assert [r.name for r in again.list()] == [f"{HOST}/group/alpha", REPO, f"{HOST}/group/zeta"]
    assert again.default_repo == f"{HOST}/group/alpha"


def test_missing_clones_are_cloned_again_or_kept_aside(three: RepoManager, workdir: WorkingDirectory,
                                                       remotes: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    three.close()
    shutil.rmtree(workdir.repos / HOST / "group" / "zeta")
    shutil.rmtree(workdir.repos / HOST / "group" / "alpha")
    shutil.rmtree(remotes / "group" / "alpha.git")
    again = manager(workdir)
    assert [r.name for r in again.list()] == [REPO, f"{HOST}/group/zeta"]   # zeta cloned again
    assert "repository git.example.org/group/alpha not restored: cannot clone" in caplog.text
    again.set_default(1)
    assert saved(workdir).default_revisions == {
        f"{HOST}/group/alpha": "master", REPO: "master", f"{HOST}/group/zeta": "master"}


def test_ssh_identifiers_clone_over_ssh_urls(upstream: Upstream, remotes: Path,
                                             workdir: WorkingDirectory,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_COUNT", "2")
    monkeypatch.setenv("GIT_CONFIG_KEY_1", f"url.{remotes.as_uri()}/.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_1", "ssh://ssh.example.org/")
    repos = manager(workdir)
    result = repos.add("ssh.example.org:/group/templates.git")
    assert result.repo == "ssh.example.org:/group/templates"
    assert (workdir.repos / "ssh.example.org:" / "group" / "templates" / ".git").is_dir()
    assert "m2" in repos.resolve_workflow("ssh.example.org:/group/templates/workflows/alpha").text
    repos.close()
    forget_settings(workdir)
    assert [r.name for r in manager(workdir).list()] == ["ssh.example.org:/group/templates"]


def test_an_older_repos_json_is_moved_into_the_store_once(three: RepoManager,
                                                           workdir: WorkingDirectory,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    three.close()
    forget_settings(workdir)
    legacy = {"default_repo": f"{HOST}/group/zeta", "default_revision": "v2",
              "default_revisions": {REPO: "other", f"{HOST}/group/zeta": "master",
                                    f"{HOST}/group/gone": "master"}}
    workdir.repo_settings.write_text(json.dumps(legacy))
    migrated = workdir.root / "repos.json.migrated"
    with caplog.at_level("INFO", logger="engine.repos"):
        again = manager(workdir)
    assert "repository settings moved from" in caplog.text
    assert not workdir.repo_settings.exists()
    assert json.loads(migrated.read_text()) == legacy
    expected = [(f"{HOST}/group/alpha", False, "master"), (REPO, False, "other"),
                (f"{HOST}/group/zeta", True, "master")]  # alpha: a clone adopted
    assert [(r.name, r.default, r.default_revision) for r in again.list()] == expected
    assert again.global_default_revision == "v2"
    assert saved(workdir) == RepoSettings(f"{HOST}/group/zeta", "v2", legacy["default_revisions"])
    again.close()
    # Once: the renamed file is not read again, and a later repos.json loses to the store.
    migrated.write_text(json.dumps({**legacy, "default_revision": "other"}))
    workdir.repo_settings.write_text(json.dumps({**legacy, "default_repo": REPO}))
    third = manager(workdir)
    assert [(r.name, r.default, r.default_revision) for r in third.list()] == expected
    assert "already holds repository settings" in caplog.text
    assert json.loads(migrated.read_text())["default_repo"] == REPO
    assert saved(workdir).global_default_revision == "v2"


def test_broken_repos_json(workdir: WorkingDirectory) -> None:
    """An unreadable older file stops the opening, naming it, and stays for the user to mend."""
    workdir.root.mkdir(parents=True)
    workdir.repo_settings.write_text("{not json")
    with pytest.raises(RepoError, match=r"repos\.json: invalid JSON in the repository settings"):
        manager(workdir)
    workdir.repo_settings.write_text('{"default_revisions": ["a"]}')
    with pytest.raises(RepoError, match="default_revisions must map repository names to revisions"):
        manager(workdir)
    assert workdir.repo_settings.exists()
    assert saved(workdir) == RepoSettings()


# --- reading templates -----------------------------------------------------------------------------

@pytest.fixture
def repos(upstream: Upstream, workdir: WorkingDirectory) -> RepoManager:
    manager_ = manager(workdir)
    manager_.add(REPO)
    return manager_


def test_resolve_workflow_at_revisions(repos: RepoManager, upstream: Upstream) -> None:
    default = repos.resolve_workflow("alpha")
    assert default.repo == REPO
    assert default.revision == "master"
    assert default.commit == upstream.head()
    assert default.path == "workflows/alpha.yaml"
    assert default.name == "alpha"
    assert default.origin == f"{REPO}/workflows/alpha.yaml@master"
    assert "m2" in default.text
    assert "other" in repos.resolve_workflow(f"{REPO}/workflows/alpha@other").text
    assert "m1" in repos.resolve_workflow("alpha.yaml@v1").text
    assert "m2" in repos.resolve_workflow("alpha@v2").text      # annotated tag, peeled
    first = upstream.repo.git.rev_parse("v1")
    by_hash = repos.resolve_workflow(f"alpha@{first}")
    assert (by_hash.commit, "m1" in by_hash.text) == (first, True)
    assert repos.resolve_workflow(f"alpha@{first[:7]}").commit == first


def test_branch_wins_over_tag_of_the_same_name(repos: RepoManager, upstream: Upstream) -> None:
    upstream.checkout("other")
    upstream.tag("master")   # a tag named like the branch, on another commit
    upstream.checkout("master")
    repos.refresh()
    assert "m2" in repos.resolve_workflow("alpha@master").text


def test_resolve_errors(repos: RepoManager, workdir: WorkingDirectory) -> None:
    with pytest.raises(RepoError, match=r"revision 'nope' not found in repository "
                                        r"git\.example\.org/group/templates: no branch, tag or commit "
                                        r"of that name \(branches: master, other; tags: v1, v2\)"):
        repos.resolve_workflow("alpha@nope")
    with pytest.raises(RepoError, match=r"workflow template 'gamma' not found: no workflows/gamma\.yaml "
                                        r"in git\.example\.org/group/templates at master \([0-9a-f]{12}\)"):
        repos.resolve_workflow("gamma")
    with pytest.raises(RepoError, match=r"github\.com/x/y/workflows/a: unknown repository github\.com/x/y "
                                        r"\(known: git\.example\.org/group/templates\)"):
        repos.resolve_workflow("github.com/x/y/workflows/a")
    empty = manager(WorkingDirectory(workdir.root.parent / "empty"))
    with pytest.raises(RepoError, match="alpha: no repository given and no default repository"):
        empty.resolve_workflow("alpha")


def test_tasks_and_includes_read_at_the_workflow_commit(repos: RepoManager,
                                                        upstream: Upstream) -> None:
    wf = repos.resolve_workflow("alpha")
    upstream.commit("moved on", tasks__sleeper__yaml="name: sleeper\n# new\n",
                    workflows__beta__yaml=workflow("beta", "m3"))
    repos.refresh()
    task = repos.read_task(wf.repo, wf.commit, "sleeper")
    assert (task.text, task.commit, task.revision) == ("name: sleeper\n", wf.commit, wf.commit)
    assert task.origin == f"{REPO}/tasks/sleeper.yaml@{wf.commit}"
    assert "m2" in repos.read_workflow(wf.repo, wf.commit, "beta").text
    assert "# new" in repos.read_task(wf.repo, wf.commit, "sleeper@master").text
    assert "m3" in repos.read_workflow(wf.repo, wf.commit, f"{REPO}/workflows/beta@master").text
    # a full path into the same repository without a revision stays at the same commit
    assert repos.read_task(wf.repo, wf.commit, f"{REPO}/tasks/sleeper").text == "name: sleeper\n"
    assert repos.read_file(wf.repo, wf.commit, "jit/cmd") == "o2-dpl-workflow --x\n"
    assert repos.read_file(wf.repo, wf.commit, "jit/missing") is None
    assert repos.read_file(wf.repo, "v1", "jit/cmd") is None
    with pytest.raises(RepoError, match=r"task template 'ghost' not found: no tasks/ghost\.yaml in "
                                        r"git\.example\.org/group/templates at [0-9a-f]{40}$"):
        repos.read_task(wf.repo, wf.commit, "ghost")
    with pytest.raises(RepoError, match=r"commit '0{40}' not found in repository"):
        repos.read_task(wf.repo, "0" * 40, "sleeper")
    with pytest.raises(RepoError, match=r"bad file path '\.\./x' for repository"):
        repos.read_file(wf.repo, wf.commit, "../x")
    with pytest.raises(RepoError, match=r"bad file path 'tasks/a\\nb\.yaml' for repository"):
        repos.read_task(wf.repo, wf.commit, "a\nb")
    assert repos.read_task(wf.repo, wf.commit, "sleeper").text == "name: sleeper\n"  # still in step


def test_task_from_another_repository_is_added(repos: RepoManager, remotes: Path) -> None:
    other = Upstream(remotes / "other" / "tasks.git")
    other.commit("c", tasks__remote__yaml="name: remote\n")
    wf = repos.resolve_workflow("alpha")
    task = repos.read_task(wf.repo, wf.commit, f"{HOST}/other/tasks/tasks/remote")
    assert (task.repo, task.revision, task.text) == (f"{HOST}/other/tasks", "master", "name: remote\n")
    assert [r.name for r in repos.list()] == [REPO, f"{HOST}/other/tasks"]


def test_concurrent_reads_at_two_revisions(repos: RepoManager, upstream: Upstream) -> None:
    first = upstream.repo.git.rev_parse("v1")
    second = upstream.repo.git.rev_parse("other")
    barrier = threading.Barrier(8)

    def load(n: int) -> tuple[str, str]:
        barrier.wait() if n < 8 else None
        revision = "v1" if n % 2 else "other"
        wf = repos.resolve_workflow(f"alpha@{revision}")
        repos.read_file(wf.repo, wf.commit, f"workflows/alpha.yaml")
        return revision, wf.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(load, range(64)))
    for revision, text in results:
        assert ("m1" if revision == "v1" else "other") in text
    assert repos.resolve_workflow("alpha@v1").commit == first
    assert repos.resolve_workflow("alpha@other").commit == second


# --- refresh ---------------------------------------------------------------------------------------

def test_refresh_picks_up_commits_branches_and_tags(repos: RepoManager, upstream: Upstream) -> None:
    before = repos.resolve_workflow("alpha").commit
    after = upstream.commit("third", workflows__alpha__yaml=workflow("alpha", "m3", public=True))
    upstream.branch("feature/new")
    upstream.tag("v3")
    assert repos.resolve_workflow("alpha").commit == before   # not fetched yet
    repos.refresh(0)
    assert repos.resolve_workflow("alpha").commit == after
    assert "m3" in repos.resolve_workflow("alpha@feature/new").text
    assert repos.revisions(0) == (["feature/new", "master", "other"], ["v1", "v2", "v3"])
    upstream.repo.git.branch("-D", "other")
    repos.refresh()
    assert repos.revisions(0)[0] == ["feature/new", "master"]


def test_refresh_of_a_vanished_upstream(repos: RepoManager, upstream: Upstream) -> None:
    shutil.rmtree(upstream.path)
    with pytest.raises(RepoError, match=r"refresh failed: cannot fetch git\.example\.org/group/templates "
                                        r"from https://git\.example\.org/group/templates\.git: "):
        repos.refresh()


# --- local repositories ----------------------------------------------------------------------------

def test_local_repository_reads_the_working_tree(tmp_path: Path, workdir: WorkingDirectory) -> None:
    local = Upstream(tmp_path / "mine")
    local.commit("c", workflows__w__yaml=workflow("w", "committed"), tasks__t__yaml="name: t\n")
    local.write("workflows/w.yaml", workflow("w", "edited"))   # uncommitted
    repos = manager(workdir)
    result = repos.add(str(local.path) + "/")
    assert (result.repo, result.revision) == (str(local.path), LOCAL_REVISION)
    assert result.info == 'The default revision for this repository has been set to "local".'
    wf = repos.resolve_workflow("w")
    assert (wf.revision, wf.commit, "edited" in wf.text) == ("local", "local", True)
    assert wf.origin == f"{local.path}/workflows/w.yaml@local"
    assert repos.read_task(wf.repo, wf.commit, "t").text == "name: t\n"
    assert "committed" in repos.resolve_workflow(f"{local.path}/workflows/w@master").text
    info = repos.list()[0]
    assert (info.kind, info.default_revision, info.revisions) == (RepoKind.LOCAL, "local", ("master",))
    repos.remove(0)
    assert (local.path / "workflows" / "w.yaml").exists()      # never deleted


def test_open_local_is_one_off(tmp_path: Path, workdir: WorkingDirectory, upstream: Upstream,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    local = Upstream(tmp_path / "mine")
    local.commit("c", workflows__w__yaml=workflow("w", "here"))
    repos = manager(workdir)
    repos.add(REPO)
    monkeypatch.chdir(tmp_path)
    repo_id = repos.open_local("mine")
    assert repo_id == str(local.path)
    assert repos.open_local(local.path) == repo_id
    assert repos.default_repo == REPO
    assert "here" in repos.resolve_workflow(f"{repo_id}/workflows/w").text
    assert [r.name for r in manager(workdir).list()] == [REPO]
    assert [r.name for r in repos.list()] == [REPO]  # nor listed in this session
    assert [(t.repo, t.revision, t.name) for t in repos.list_templates(repo_id, all_workflows=True)] == [
        (repo_id, LOCAL_REVISION, "w")]
    assert repos.default_revision(repo_id) == LOCAL_REVISION
    with pytest.raises(RepoError, match=r"no repository at index 1 \(there are indexes 0 to 0\)"):
        repos.set_default(1)


async def test_a_one_off_repo_path_leaves_the_listed_repositories_and_their_indexes(
        tmp_path: Path) -> None:
    """ListWorkflowTemplates/RenderWorkflow with repoPath read a local repository without
    adding it: list_repos() and what each index names stay as they were."""
    paths = {}
    for name in ("a", "b", "c"):  # b sorts between the two listed ones
        local = Upstream(tmp_path / name)
        local.commit("c", workflows__w__yaml=workflow("w", name, public=True))
        paths[name] = str(local.path)
    async with Engine(WorkingDirectory(tmp_path / "home").ensure()) as engine:
        await engine.add_repo(paths["a"])
        await engine.add_repo(paths["c"])
        before = await engine.list_repos()
        (listed,) = await engine.list_workflow_templates(repo_path=paths["b"])
        assert (listed.repo, listed.name) == (paths["b"], "w")
        rendered = await engine.render_workflow("w", repo_path=paths["b"])
        assert rendered["name"] == "w"
        assert await engine.list_repos() == before
        assert [t.repo for t in await engine.list_workflow_templates()] == [paths["a"], paths["c"]]
        await engine.set_default_repo(1)
        assert [r.name for r in await engine.list_repos() if r.default] == [paths["c"]]
        await engine.remove_repo(1)
        assert [r.name for r in await engine.list_repos()] == [paths["a"]]
        (again,) = await engine.list_workflow_templates(repo_path=paths["b"])  # still there
        assert again.repo == paths["b"]


def test_local_repository_errors(tmp_path: Path, workdir: WorkingDirectory) -> None:
    repos = manager(workdir)
    with pytest.raises(RepoError, match=r"local repository /nonexistent/x: no such directory"):
        repos.add("/nonexistent/x")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError, match=rf"{plain}: {plain} is not a git repository"):
        repos.open_local(plain)
    local = Upstream(tmp_path / "mine")
    local.commit("c", workflows__w__yaml=workflow("w"))
    (local.path / "sub").mkdir()
    with pytest.raises(RepoError, match=r"mine/sub is not a git repository"):
        repos.add(str(local.path / "sub"))
    git.Repo.init(tmp_path / "bare.git", bare=True).close()
    with pytest.raises(RepoError, match=r"bare\.git: a bare repository has no working tree to read"):
        repos.add(str(tmp_path / "bare.git"))


def test_local_reference_opens_the_repository(tmp_path: Path, workdir: WorkingDirectory) -> None:
    local = Upstream(tmp_path / "mine")
    local.commit("c", workflows__w__yaml=workflow("w", "direct"))
    repos = manager(workdir)
    assert "direct" in repos.resolve_workflow(f"{local.path}/workflows/w").text


# --- listing ---------------------------------------------------------------------------------------

@pytest.fixture
def corpus(remotes: Path, workdir: WorkingDirectory) -> RepoManager:
    """group/controlworkflows holding the corpus on master; tag old with a smaller copy."""
    up = Upstream(remotes / "group" / "controlworkflows.git")
    shutil.copytree(CORPUS / "tasks", up.path / "tasks")
    shutil.copytree(CORPUS / "workflows", up.path / "workflows")
    (up.path / "workflows" / "readout-dataflow.yaml").unlink()
    up.commit("without readout-dataflow")
    up.tag("old")
    shutil.copy(CORPUS / "workflows" / "readout-dataflow.yaml", up.path / "workflows")
    up.commit("all")
    up.branch("copy")
    repos = manager(workdir)
    repos.add(f"{HOST}/group/controlworkflows")
    return repos


CW = f"{HOST}/group/controlworkflows"


def test_every_corpus_template_loads(corpus: RepoManager) -> None:
    names = sorted(p.stem for p in (CORPUS / "workflows").glob("*.yaml"))
    assert len(names) == 10
    for name in names:
        wf = corpus.resolve_workflow(name)
        assert wf.text == (CORPUS / "workflows" / f"{name}.yaml").read_text()
        for task in sorted((CORPUS / "tasks").glob("*.yaml")):
            assert corpus.read_task(wf.repo, wf.commit, task.stem).text == task.read_text()


def test_list_public_templates_with_var_specs(corpus: RepoManager) -> None:
    listed = corpus.list_templates()
    assert [(t.repo, t.revision, t.name, t.public) for t in listed] == [
        (CW, "master", "readout-dataflow", True)]
    rdf = listed[0]
    assert rdf.description == "Main workflow template for ALICE data taking"
    assert len(rdf.var_specs) == 111
    specs = {s.name: s for s in rdf.var_specs}
    run_type = specs["run_type"]
    assert (run_type.default_value, run_type.widget, run_type.label) == ("PHYSICS", "comboBox", "Run Type")
    assert "PHYSICS" in run_type.allowed_values and "TECHNICAL" in run_type.allowed_values
    assert specs["dd_enabled"].type == "bool"


def test_list_all_workflows_and_revision_patterns(corpus: RepoManager) -> None:
    everything = corpus.list_templates(all_workflows=True)
    assert len(everything) == 10
    assert {t.name: t.public for t in everything}["o2-roc-config"] is False
    assert [t.var_specs for t in everything if t.name == "o2-roc-config"] == [()]
    assert corpus.list_templates(revision_pattern="old") == []    # no public workflow there
    old = corpus.list_templates(revision_pattern="ol*", all_workflows=True)
    assert {t.revision for t in old} == {"old"} and len(old) == 9
    by_branches = corpus.list_templates(all_branches=True)
    assert [(t.revision, t.name) for t in by_branches] == [
        ("copy", "readout-dataflow"), ("master", "readout-dataflow")]
    assert {t.revision for t in corpus.list_templates(all_tags=True, all_workflows=True)} == {"old"}
    head = corpus.resolve_workflow("readout-dataflow").commit
    assert [t.revision for t in corpus.list_templates(revision_pattern=head)] == [head]
    with pytest.raises(RepoError, match="cannot list all branches or all tags together with a revision pattern"):
        corpus.list_templates(revision_pattern="master", all_tags=True)


def test_list_repo_patterns_and_global_vars(corpus: RepoManager, upstream: Upstream) -> None:
    corpus.add(REPO)
    assert {t.repo for t in corpus.list_templates()} == {CW, REPO}
    assert [t.repo for t in corpus.list_templates(repo_pattern="1")] == [REPO]
    assert {t.repo for t in corpus.list_templates(repo_pattern="*/control*")} == {CW}
    assert corpus.list_templates(repo_pattern="nothing*") == []
    with pytest.raises(RepoError, match="no repository at index 5"):
        corpus.list_templates(repo_pattern="5")
    tuned = corpus.list_templates(repo_pattern="0", global_vars={"run_type": "TECHNICAL", "x": "y"})
    assert {s.name: s.default_value for s in tuned[0].var_specs}["run_type"] == "TECHNICAL"


def test_list_rejects_duplicate_public_variables_and_bad_yaml(repos: RepoManager,
                                                              upstream: Upstream) -> None:
    spec = "!public {value: '1', type: string}"
    upstream.commit("dup", workflows__dup__yaml=(
        f"name: !public dup\ndefaults:\n  x: {spec}\nroles:\n  - name: r\n    vars:\n      x: {spec}\n"))
    repos.refresh()
    with pytest.raises(RepoError, match=r"git\.example\.org/group/templates/workflows/dup\.yaml@master: "
                                        r"duplicate public variable 'x'"):
        repos.list_templates()
    upstream.commit("fix", workflows__dup__yaml="name: !public dup\n")
    upstream.commit("broken", workflows__bad__yaml="name: [unclosed\n")
    repos.refresh()
    with pytest.raises(RepoError, match=r"workflows/bad\.yaml@master:2:1: "):
        repos.list_templates()
