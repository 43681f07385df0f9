"""One git repository, read through its object database and never checked out.

AliECS checks revisions out in a shared clone and serialises loads with a
mutex. Here files are read from git objects at a commit (`<commit>:<path>`
through GitPython's persistent `git cat-file --batch`), so two loads at
different revisions cannot trample each other, and a clone needs no working
tree at all. The cat-file processes live until close(); a lock per repository
keeps their request/response pairs from interleaving between threads. Local
repositories are the exception: revision "local" reads their working tree as
it is on disk.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import git
from gitdb.exc import BadName, BadObject

from engine.repos.identifier import RepoIdentifier
from engine.repos.records import LOCAL_REVISION, RepoError, RepoKind

REMOTE_PREFIX = "refs/remotes/origin/"
HEADS_PREFIX = "refs/heads/"
TAGS_PREFIX = "refs/tags/"
_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")
_FULL_HASH = re.compile(r"^[0-9a-f]{40}$")
_CACHE_SIZE = 4096


def _git_message(error: git.GitCommandError) -> str:
    """git's complaint on one line, without GitPython's framing and clone chatter."""
    text = (error.stderr or "").strip() or str(error)
    text = text.replace("stderr: ", "").strip().strip("'")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("Cloning into")]
    return " ".join(lines)


class GitRepository:
    """A clone (or a local repository) with thread-safe, cached reads at commits."""

    def __init__(self, ident: RepoIdentifier, directory: Path) -> None:
        self.ident = ident
        self.directory = directory
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._repo = self._open()

    @property
    def id(self) -> str:
        return self.ident.id

    @property
    def is_local(self) -> bool:
        return self.ident.kind is RepoKind.LOCAL

    def _open(self) -> git.Repo:
        try:
            return git.Repo(self.directory)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise RepoError(f"{self.id}: {self.directory} is not a git repository") from None

    @classmethod
    def clone(cls, ident: RepoIdentifier, directory: Path, repos_root: Path,
              env: dict[str, str] | None = None) -> "GitRepository":
        """Clone without checkout; on failure remove what was created."""
        existed = {p for p in (directory, *directory.parents) if p.exists()}
        try:
            cloned = git.Repo.clone_from(ident.clone_url, directory, no_checkout=True, env=env)
        except git.GitCommandError as error:
            _remove_created(directory, existed, repos_root)
            raise RepoError(f"cannot clone {ident.id} from {ident.clone_url}: "
                            f"{_git_message(error)}") from None
        with cloned.config_writer() as config:
            config.set_value("core", "ignorecase", "true")
        cloned.close()
        return cls(ident, directory)

    def fetch(self, env: dict[str, str] | None = None) -> None:
        """Fetch origin with force (branches, tags, pruning gone ones) and re-read the refs."""
        with self._lock:
            if self.is_local:
                self._reopen()
                return
            try:
                self._repo.git.fetch("--force", "--tags", "--prune", "origin", env=env)
            except git.GitCommandError as error:
                raise RepoError(f"cannot fetch {self.id} from {self.ident.clone_url}: "
                                f"{_git_message(error)}") from None
            self._reopen()

    def _reopen(self) -> None:
        self._repo.close()
        self._repo = self._open()

    def close(self) -> None:
        with self._lock:
            self._repo.close()

    def delete(self, repos_root: Path) -> None:
        """Remove the clone and its empty parent folders (never for a local repository)."""
        self.close()
        if self.is_local:
            return
        shutil.rmtree(self.directory, ignore_errors=True)
        _remove_empty_parents(self.directory.parent, repos_root)

    # --- refs ------------------------------------------------------------------------------------

    def _refs(self, prefix: str) -> dict[str, str]:
        """name → commit hash of the refs under a prefix (symbolic HEAD left out)."""
        found: dict[str, str] = {}
        with self._lock:
            for ref in self._repo.references:
                path = ref.path
                if not path.startswith(prefix):
                    continue
                name = path[len(prefix):]
                if name == "HEAD":
                    continue
                try:
                    found[name] = ref.commit.hexsha
                except (ValueError, BadName, BadObject):
                    continue  # a ref to something that is no commit
        return found

    def branches(self) -> dict[str, str]:
        """Branches: origin's for a clone, the repository's own for a local one."""
        return self._refs(HEADS_PREFIX if self.is_local else REMOTE_PREFIX)

    def tags(self) -> dict[str, str]:
        return self._refs(TAGS_PREFIX)

    def _header(self, spec: str) -> tuple[str, str] | None:
        """(hexsha, type) of an object spec such as `<hash>^{commit}`, None if it does not exist."""
        try:
            hexsha, kind, _ = self._repo.git.get_object_header(spec)
        except ValueError as error:
            if "ambiguous" in str(error):
                raise RepoError(f"{self.id}: {spec.split('^')[0]!r} is ambiguous") from None
            return None
        return hexsha.decode() if isinstance(hexsha, bytes) else hexsha, \
            kind.decode() if isinstance(kind, bytes) else kind

    def commit_for_hash(self, text: str) -> str | None:
        """The full hash of the commit a (possibly abbreviated) hash names, or None."""
        if not _HEX.match(text):
            return None
        with self._lock:
            found = self._header(f"{text.lower()}^{{commit}}")
        return found[0] if found is not None else None

    def has_revision(self, revision: str) -> bool:
        """Whether a default revision is usable: a branch, a tag or a full commit hash."""
        if self.is_local and revision == LOCAL_REVISION:
            return True
        if revision in self.branches() or revision in self.tags():
            return True
        return bool(_FULL_HASH.match(revision)) and self.commit_for_hash(revision) == revision

    def resolve(self, revision: str) -> str:
        """The commit of a revision: a branch (origin's first), a tag, then a commit hash."""
        if self.is_local and revision == LOCAL_REVISION:
            return LOCAL_REVISION
        branches = self.branches()
        if revision in branches:
            return branches[revision]
        tags = self.tags()
        if revision in tags:
            return tags[revision]
        commit = self.commit_for_hash(revision)
        if commit is not None:
            return commit
        raise RepoError(
            f"revision {revision!r} not found in repository {self.id}: no branch, tag or commit "
            f"of that name (branches: {', '.join(sorted(branches)) or 'none'}; "
            f"tags: {', '.join(sorted(tags)) or 'none'})")

    # --- contents --------------------------------------------------------------------------------

    def read(self, commit: str, path: str) -> str | None:
        """The text of a file at a commit ("local": the working tree), None if it is not there."""
        _check_path(path, self.id)
        if commit == LOCAL_REVISION:
            return self._read_worktree(path)
        key = (commit, path)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            self._check_commit(commit)
            found = self._header(f"{commit}:{path}")
            text = None
            if found is not None and found[1] == "blob":
                _, _, _, data = self._repo.git.get_object_data(found[0])
                text = self._decode(data, commit, path)
            self._cache[key] = text
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return text

    def blob_id(self, commit: str, path: str) -> str | None:
        """The blob hash of a file at a commit (None if absent or "local"): a key for caches."""
        _check_path(path, self.id)
        if commit == LOCAL_REVISION:
            return None
        with self._lock:
            found = self._header(f"{commit}:{path}")
        return found[0] if found is not None and found[1] == "blob" else None

    def list_files(self, commit: str, folder: str) -> list[str]:
        """Names of the files directly in a folder at a commit, sorted."""
        _check_path(folder, self.id)
        if commit == LOCAL_REVISION:
            base = self.directory / folder
            if not base.is_dir():
                return []
            return sorted(entry.name for entry in os.scandir(base) if entry.is_file())
        with self._lock:
            tree = self._tree(commit)
            try:
                sub = tree / folder
            except KeyError:
                return []
            return sorted(blob.name for blob in sub.blobs) if sub.type == "tree" else []

    def _check_commit(self, commit: str) -> None:
        found = self._header(f"{commit}^{{commit}}") if _FULL_HASH.match(commit) else None
        if found is None or found[0] != commit:
            raise RepoError(f"commit {commit!r} not found in repository {self.id}")

    def _tree(self, commit: str) -> git.Tree:
        self._check_commit(commit)
        return git.Commit(self._repo, bytes.fromhex(commit)).tree

    def _decode(self, data: bytes, commit: str, path: str) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RepoError(f"{self.id}/{path}@{commit}: not UTF-8 text ({error})") from None

    def _read_worktree(self, path: str) -> str | None:
        target = self.directory / path
        try:
            data = target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return self._decode(data, LOCAL_REVISION, path)


def _check_path(path: str, repo: str) -> None:
    """A path in a repository: relative, no empty/dot segments, nothing cat-file would split on."""
    parts = path.split("/")
    if (not path or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or c == "\x7f" for c in path)):
        raise RepoError(f"bad file path {path!r} for repository {repo}")


def _remove_empty_parents(folder: Path, repos_root: Path) -> None:
    """Remove empty folders from `folder` up to (not including) the repos root."""
    root = repos_root.resolve()
    current = folder
    while current.resolve() != root and root in current.resolve().parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def _remove_created(directory: Path, existed: set[Path], repos_root: Path) -> None:
    if directory not in existed:
        shutil.rmtree(directory, ignore_errors=True)
    _remove_empty_parents(directory.parent, repos_root)
