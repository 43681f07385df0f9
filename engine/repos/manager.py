"""The repository manager (AliECS core/repos): which template repositories exist,
their default revisions, and reading templates from them.

Repositories are cloned without checkout under `<workdir>/repos/<host>/<path>/<name>`
and read from git objects at a commit (see engine.repos.gitstore). The settings
(default repository, global default revision, each repository's default
revision) live in the working directory's sqlite store (engine.repos.settings;
a repos.json of an older nutshell is moved in once); a new RepoManager on the
same working directory brings the same repositories back, and also adopts clones it finds
under `repos/` as AliECS does (a persisted repository whose clone is gone is
cloned again; one that cannot be is left out with a warning but kept in the
settings). Nothing is fetched at start-up: call refresh(). Local repositories (an absolute path) are read
in place, revision "local" being their working tree, and are not persisted.

Cloning is plain git: an identifier `host/path/name` is fetched from
`https://host/path/name.git`. To serve such identifiers from elsewhere (a
mirror, or local repositories in tests) use git's own URL rewriting, e.g.
`git config --global url."file:///srv/mirror/".insteadOf "https://git.example.org/"`
or the same through GIT_CONFIG_COUNT/GIT_CONFIG_KEY_n/GIT_CONFIG_VALUE_n in
the environment; nothing in nutshell special-cases it.
"""
from __future__ import annotations

import builtins
import fnmatch
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from engine.repos.gitstore import GitRepository
from engine.repos.identifier import RepoIdentifier, TemplateReference, parse_identifier, parse_reference
from engine.repos.listing import ParsedWorkflowInfo, parse_workflow_info
from engine.repos.records import (
    LOCAL_REVISION,
    AddResult,
    RepoError,
    RepoInfo,
    RepoKind,
    TemplateFile,
    WorkflowTemplateInfo,
)
from engine.repos.settings import RepoSettingsStore
from engine.workdir import WorkingDirectory

log = logging.getLogger("engine.repos")

FALLBACK_REVISIONS = ("master", "main")
WORKFLOWS = "workflows"
TASKS = "tasks"
_LISTING_CACHE_SIZE = 1024


def _info(revision: str, note: str) -> str:
    return f'The default revision for this repository has been set to "{revision}"{note}.'


def _is_full_hash(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


class RepoManager:
    """Template repositories of one working directory. Thread-safe; its methods block
    (git, sqlite), so the engine calls them in worker threads."""

    def __init__(self, workdir: WorkingDirectory, *, ssh_key: Path | None = None) -> None:
        self._workdir = workdir
        self._root = workdir.repos
        self._lock = threading.RLock()
        self._repos: dict[str, GitRepository] = {}
        # One-off local repositories (`--repo PATH`, a local path in a reference): read like
        # the others, never listed nor counted by the indexes of remove/set_default.
        self._local: dict[str, GitRepository] = {}
        self._default_revisions: dict[str, str] = {}
        self._default_repo = ""
        self._adding: set[str] = set()
        self._listing: OrderedDict[str, ParsedWorkflowInfo] = OrderedDict()  # by blob hash
        self._env = None if ssh_key is None else {
            "GIT_SSH_COMMAND": f"ssh -i {ssh_key} -o StrictHostKeyChecking=no "
                               f"-o UserKnownHostsFile=/dev/null"}
        self._settings_store = RepoSettingsStore(workdir)
        try:
            self._settings = self._settings_store.load()
        except RepoError:
            self._settings_store.close()
            raise
        self._unavailable: dict[str, str] = {}
        self._restore()

    # --- start-up and persistence ----------------------------------------------------------------

    def _restore(self) -> None:
        """Bring back the persisted repositories and any clone found under repos/ (no fetch)."""
        wanted = dict(self._settings.default_revisions)
        for found in self._discover():
            wanted.setdefault(found, "")
        for repo_id, revision in wanted.items():
            try:
                ident = parse_identifier(repo_id)
                if ident.kind is RepoKind.LOCAL:
                    continue
                repo, _ = self._open_or_clone(ident, fetch_existing=False)
                try:
                    chosen, _ = self._choose_default_revision(repo, revision)
                except RepoError:
                    repo.close()
                    raise
            except RepoError as error:
                log.warning("repository %s not restored: %s", repo_id, error)
                self._unavailable[repo_id] = revision
                continue
            self._repos[repo.id] = repo
            self._default_revisions[repo.id] = chosen
        default = self._settings.default_repo
        if default in self._repos:
            self._default_repo = default
        elif self._repos:
            self._default_repo = sorted(self._repos)[0]

    def _discover(self) -> list[str]:
        """Identifiers of the clones under repos/ (a folder holding .git is a repository)."""
        found: list[str] = []
        if not self._root.is_dir():
            return found
        for folder, subfolders, _ in os.walk(self._root):
            if ".git" in subfolders:
                # repos/github.com/org/name → github.com/org/name; repos/host:/path/name → host:/path/name
                found.append(Path(folder).relative_to(self._root).as_posix())
                subfolders[:] = []
            else:
                subfolders[:] = [s for s in subfolders if not s.startswith(".")]
        return sorted(found)

    def _save(self) -> None:
        """Persist the settings (caller holds the lock); local repositories are left out."""
        revisions = dict(self._unavailable)
        revisions.update({repo_id: rev for repo_id, rev in self._default_revisions.items()
                          if not self._repos[repo_id].is_local})
        default = self._default_repo
        if default and self._repos[default].is_local:
            default = self._settings.default_repo if self._settings.default_repo in revisions else ""
        self._settings.default_repo = default
        self._settings.default_revisions = revisions
        self._settings_store.save(self._settings)

    # --- opening ----------------------------------------------------------------------------------

    def _open_or_clone(self, ident: RepoIdentifier, *, fetch_existing: bool) -> tuple[GitRepository, bool]:
        """The repository, opened (and fetched if asked) or freshly cloned; True if cloned."""
        directory = ident.directory(self._root)
        if ident.kind is RepoKind.LOCAL:
            if not directory.is_dir():
                raise RepoError(f"local repository {ident.id}: no such directory")
            repo = GitRepository(ident, directory)
            if not (directory / ".git").exists():
                repo.close()
                raise RepoError(f"local repository {ident.id}: a bare repository has no working "
                                f"tree to read")
            return repo, False
        if (directory / ".git").is_dir():
            repo = GitRepository(ident, directory)
            if fetch_existing:
                repo.fetch(self._env)
            return repo, False
        self._root.mkdir(parents=True, exist_ok=True)
        return GitRepository.clone(ident, directory, self._root, self._env), True

    def _choose_default_revision(self, repo: GitRepository, requested: str) -> tuple[str, str]:
        """AliECS's choice: the requested revision, the global default, master, main."""
        if repo.is_local:
            if requested and repo.has_revision(requested):
                return requested, _info(requested, "")
            return LOCAL_REVISION, _info(LOCAL_REVISION, " (fallback value)" if requested else "")
        global_default = self._settings.global_default_revision
        candidates = [requested] if requested else []
        candidates += [global_default, *FALLBACK_REVISIONS]
        for revision in candidates:
            if repo.has_revision(revision):
                if revision == requested:
                    return revision, _info(revision, "")
                if revision == global_default:
                    return revision, _info(revision, " (global default value)")
                return revision, _info(revision, " (fallback value)")
        tried = ", ".join(dict.fromkeys(candidates))
        raise RepoError(f"cannot fall back to any default revision for {repo.id}: "
                        f"none of {tried} is a branch or tag there")

    # --- the API of coconut repo ... --------------------------------------------------------------

    def add(self, identifier: str, default_revision: str = "") -> AddResult:
        """Add (clone or open) a repository; the first one added becomes the default."""
        ident = parse_identifier(identifier)
        with self._lock:
            if ident.id in self._repos or ident.id in self._adding:
                raise RepoError(f"repository {ident.id} is already present")
            self._adding.add(ident.id)
        try:
            repo, cloned = self._open_or_clone(ident, fetch_existing=True)
            try:
                revision, info = self._choose_default_revision(repo, default_revision.strip())
            except RepoError:
                if cloned:
                    repo.delete(self._root)
                else:
                    repo.close()
                raise
            with self._lock:
                self._repos[repo.id] = repo
                self._default_revisions[repo.id] = revision
                self._unavailable.pop(repo.id, None)
                one_off = self._local.pop(repo.id, None)  # now a listed one
                if one_off is not None:
                    one_off.close()
                if not self._default_repo:
                    self._default_repo = repo.id
                self._save()
        finally:
            with self._lock:
                self._adding.discard(ident.id)
        return AddResult(repo.id, revision, info)

    def open_local(self, path: str | os.PathLike[str]) -> str:
        """Open a local repository for one-off use (`--repo PATH`): not persisted, not the
        default, not listed (list() and the indexes stay as they were); closed at close()."""
        absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
        ident = parse_identifier(absolute)
        with self._lock:
            if ident.id in self._repos or ident.id in self._local:
                return ident.id
        repo, _ = self._open_or_clone(ident, fetch_existing=False)
        with self._lock:
            if ident.id in self._repos or ident.id in self._local:
                repo.close()
                return ident.id
            self._local[repo.id] = repo
        return repo.id

    def _revision_of(self, repo: GitRepository) -> str:
        """A repository's default revision; a one-off local one reads its working tree
        (caller holds the lock)."""
        return self._default_revisions.get(repo.id, LOCAL_REVISION)

    def _ids(self) -> list[str]:
        return sorted(self._repos)

    def _at(self, index: int) -> GitRepository:
        """The repository at an index of the alphabetical list (caller holds the lock)."""
        ids = self._ids()
        if not 0 <= index < len(ids):
            span = f"indexes 0 to {len(ids) - 1}" if ids else "no repositories"
            raise RepoError(f"no repository at index {index} (there are {span})")
        return self._repos[ids[index]]

    def remove(self, index: int) -> str:
        """Remove a repository (and its clone); returns the new default repository if it changed."""
        with self._lock:
            repo = self._at(index)
            was_default = repo.id == self._default_repo
            del self._repos[repo.id]
            del self._default_revisions[repo.id]
            repo.delete(self._root)
            new_default = ""
            if was_default:
                self._default_repo = self._ids()[0] if self._repos else ""
                new_default = self._default_repo
            self._save()
            return new_default

    def list(self) -> builtins.list[RepoInfo]:
        with self._lock:
            repos = [(self._repos[i], i == self._default_repo, self._default_revisions[i])
                     for i in self._ids()]
        return [RepoInfo(index=n, name=repo.id, kind=repo.ident.kind, default=is_default,
                         default_revision=revision, revisions=tuple(sorted(repo.branches())),
                         tags=tuple(sorted(repo.tags())))
                for n, (repo, is_default, revision) in enumerate(repos)]

    def refresh(self, index: int = -1) -> None:
        """Fetch one repository (or all, index -1) with force and re-read its branches and tags."""
        with self._lock:
            targets = [self._repos[i] for i in self._ids()] if index == -1 else [self._at(index)]
        errors: builtins.list[str] = []
        for repo in targets:
            try:
                repo.fetch(self._env)
            except RepoError as error:
                errors.append(str(error))
        if errors:
            raise RepoError("refresh failed: " + "; ".join(errors))

    def set_default(self, index: int) -> None:
        with self._lock:
            repo = self._at(index)
            if repo.id == self._default_repo:
                raise RepoError(f"{repo.id} is already the default repo")
            self._default_repo = repo.id
            self._save()

    def set_global_default_revision(self, revision: str) -> None:
        revision = revision.strip()
        if not revision:
            raise RepoError("the global default revision cannot be empty")
        with self._lock:
            self._settings.global_default_revision = revision
            self._save()

    def set_repo_default_revision(self, index: int, revision: str) -> None:
        revision = revision.strip()
        with self._lock:
            repo = self._at(index)
        if not revision or not repo.has_revision(revision):
            available = sorted(repo.branches()) + sorted(repo.tags())
            raise RepoError(f"could not update default revision for {repo.id}: revision {revision!r} "
                            f"not found (available: {', '.join(available) or 'none'})")
        with self._lock:
            if self._repos.get(repo.id) is not repo:
                raise RepoError(f"repository {repo.id} was removed meanwhile")
            self._default_revisions[repo.id] = revision
            self._save()

    def revisions(self, index: int) -> tuple[builtins.list[str], builtins.list[str]]:
        """(branches, tags) of a repository, sorted."""
        with self._lock:
            repo = self._at(index)
        return sorted(repo.branches()), sorted(repo.tags())

    @property
    def default_repo(self) -> str:
        """The default repository's identifier, "" when there is none."""
        with self._lock:
            return self._default_repo

    @property
    def global_default_revision(self) -> str:
        with self._lock:
            return self._settings.global_default_revision

    def default_revision(self, repo: str) -> str:
        """The default revision of a known repository."""
        with self._lock:
            return self._revision_of(self._known(repo, repo))

    def close(self) -> None:
        """Stop the git helper processes of every repository and close the settings' store
        connection (reads and saves open them again)."""
        with self._lock:
            for repo in [*self._repos.values(), *self._local.values()]:
                repo.close()
            self._local.clear()
            self._settings_store.close()

    def __enter__(self) -> "RepoManager":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading templates ------------------------------------------------------------------------

    def _known(self, repo_id: str, reference: str) -> GitRepository:
        """A registered repository by identifier (caller holds the lock)."""
        key = parse_identifier(repo_id).id
        repo = self._repos.get(key, self._local.get(key))
        if repo is None:
            known = ", ".join(self._ids()) or "none"
            raise RepoError(f"{reference}: unknown repository {key} (known: {known})")
        return repo

    def _repo_for(self, repo_id: str, reference: str, *, add_missing: bool) -> GitRepository:
        """The repository a reference names; local paths are opened, others added if asked."""
        with self._lock:
            if not repo_id:
                if not self._default_repo:
                    raise RepoError(f"{reference}: no repository given and no default repository "
                                    f"(add one first)")
                return self._repos[self._default_repo]
            if repo_id in self._repos:
                return self._repos[repo_id]
            if repo_id in self._local:
                return self._local[repo_id]
        if parse_identifier(repo_id).kind is RepoKind.LOCAL:
            self.open_local(repo_id)
        elif add_missing:
            # AliECS's EnsureReposPresent: a task or include from another repository brings it in.
            self.add(repo_id)
        with self._lock:
            return self._known(repo_id, reference)

    def _commit_of(self, repo: GitRepository, commit: str) -> str:
        if commit == LOCAL_REVISION and repo.is_local:
            return commit
        return commit if _is_full_hash(commit) else repo.resolve(commit)

    def _read(self, repo: GitRepository, revision: str, commit: str, path: str,
              what: str, reference: str) -> TemplateFile:
        text = repo.read(commit, path)
        if text is None:
            at = revision if revision == commit else f"{revision} ({commit[:12]})"
            raise RepoError(f"{what} {reference!r} not found: no {path} in {repo.id} at {at}")
        return TemplateFile(repo=repo.id, revision=revision, commit=commit, path=path, text=text)

    def resolve_workflow(self, reference: str) -> TemplateFile:
        """Read `[<repo>/workflows/]<name>[@<revision>]` (default repo, default revision)."""
        ref = parse_reference(reference, WORKFLOWS)
        repo = self._repo_for(ref.repo, reference, add_missing=False)
        with self._lock:
            revision = ref.revision or self._revision_of(repo)
        commit = repo.resolve(revision)
        return self._read(repo, revision, commit, ref.path, "workflow template", reference)

    def _read_relative(self, repo_id: str, commit: str, ref: TemplateReference, what: str,
                       reference: str) -> TemplateFile:
        with self._lock:
            base = self._known(repo_id, reference)
        if not ref.repo or ref.repo == base.id:
            target = base
            if ref.revision:
                revision, resolved = ref.revision, base.resolve(ref.revision)
            else:
                resolved = self._commit_of(base, commit)
                revision = resolved
        else:
            target = self._repo_for(ref.repo, reference, add_missing=True)
            with self._lock:
                revision = ref.revision or self._revision_of(target)
            resolved = target.resolve(revision)
        return self._read(target, revision, resolved, ref.path, what, reference)

    def read_task(self, repo: str, commit: str, reference: str) -> TemplateFile:
        """A task template for `load:`: a bare name is read from the same repo and commit."""
        return self._read_relative(repo, commit, parse_reference(reference, TASKS),
                                   "task template", reference)

    def read_workflow(self, repo: str, commit: str, reference: str) -> TemplateFile:
        """A workflow for `include:`: a bare name is read from the same repo and commit."""
        return self._read_relative(repo, commit, parse_reference(reference, WORKFLOWS),
                                   "workflow template", reference)

    def read_file(self, repo: str, commit: str, path: str) -> str | None:
        """Any file of a repository at a commit (e.g. jit/<name>); None if it is not there."""
        with self._lock:
            target = self._known(repo, f"{repo}/{path}@{commit}")
        return target.read(self._commit_of(target, commit), path)

    # --- listing ----------------------------------------------------------------------------------

    def list_templates(self, repo_pattern: str = "", revision_pattern: str = "",
                       all_branches: bool = False, all_tags: bool = False,
                       all_workflows: bool = False,
                       global_vars: Mapping[str, str] | None = None
                       ) -> builtins.list[WorkflowTemplateInfo]:
        """Workflow templates per repository and revision, public ones unless all_workflows.

        repo_pattern: a glob over identifiers or an index ("" = all); revision_pattern:
        a glob over branch and tag names or a commit hash ("" = each default revision).
        global_vars (o2/runtime/aliecs/vars) replaces the reported default of a public
        variable declared under `defaults`, as AliECS's GetWorkflowTemplates does.
        """
        if (all_branches or all_tags) and revision_pattern:
            raise RepoError("cannot list all branches or all tags together with a revision pattern")
        results: builtins.list[WorkflowTemplateInfo] = []
        for repo in self._match_repos(repo_pattern):
            for revision, commit in self._match_revisions(repo, revision_pattern, all_branches,
                                                          all_tags):
                for name, info in sorted(self._workflow_infos(repo, revision, commit).items()):
                    if not (all_workflows or info.public):
                        continue
                    specs = info.var_specs
                    if global_vars:
                        specs = tuple(replace(s, default_value=global_vars[s.name])
                                      if s.name in info.from_defaults and s.name in global_vars
                                      else s for s in specs)
                    results.append(WorkflowTemplateInfo(repo.id, revision, name, info.description,
                                                        info.public, specs))
        return results

    def _match_repos(self, pattern: str) -> builtins.list[GitRepository]:
        with self._lock:
            text = pattern.strip()
            if text.lstrip("-").isdigit():
                return [self._at(int(text))]
            if text in self._local:  # a one-off local repository, named exactly
                return [self._local[text]]
            glob = text or "*"
            return [self._repos[i] for i in self._ids() if fnmatch.fnmatchcase(i, glob)]

    def _match_revisions(self, repo: GitRepository, pattern: str, all_branches: bool,
                         all_tags: bool) -> builtins.list[tuple[str, str]]:
        if all_branches or all_tags:
            found: dict[str, str] = {}
            if all_tags:
                found.update(repo.tags())
            if all_branches:
                found.update(repo.branches())
            return sorted(found.items())
        if not pattern:
            with self._lock:
                revision = self._revision_of(repo)
            return [(revision, repo.resolve(revision))]
        names = {**repo.tags(), **repo.branches()}
        matched = sorted((n, c) for n, c in names.items() if fnmatch.fnmatchcase(n, pattern))
        if matched:
            return matched
        if repo.is_local and pattern == LOCAL_REVISION:
            return [(LOCAL_REVISION, LOCAL_REVISION)]
        commit = repo.commit_for_hash(pattern)
        return [(pattern, commit)] if commit is not None else []

    def _workflow_infos(self, repo: GitRepository, revision: str,
                        commit: str) -> dict[str, ParsedWorkflowInfo]:
        """The listing facts of workflows/*.yaml at a commit, parsed once per file content."""
        infos: dict[str, ParsedWorkflowInfo] = {}
        for file_name in repo.list_files(commit, WORKFLOWS):
            if not file_name.endswith(".yaml"):
                continue
            path = f"{WORKFLOWS}/{file_name}"
            blob = repo.blob_id(commit, path)
            with self._lock:
                cached = self._listing.get(blob) if blob is not None else None
                if cached is not None:
                    self._listing.move_to_end(blob)
            if cached is None:
                text = repo.read(commit, path) or ""
                cached = parse_workflow_info(text, f"{repo.id}/{path}@{revision}")
                if blob is not None:
                    with self._lock:
                        self._listing[blob] = cached
                        if len(self._listing) > _LISTING_CACHE_SIZE:
                            self._listing.popitem(last=False)
            infos[file_name[:-5]] = cached
        return infos
