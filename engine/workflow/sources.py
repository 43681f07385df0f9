"""Where the templates a workflow refers to are read from.

A role's `load:` and `include:` resolve next to the file that holds the role:
the same repository at the same commit (reference §5), or, for a workflow
that dpl.* generated, the JIT directory first (its task templates sit next to
it) and the generating repository after that. Reads of a pinned commit are
cached across loads; the working tree of a local repository ("local") is
read again by every load.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.task.taskclass import TaskClass
from engine.workflow.roles import WorkflowError

JIT_NAME = re.compile(r"^jit-[0-9a-f]{40}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class RepoReader(Protocol):
    """engine.repos.RepoManager as far as loading uses it."""

    def resolve_workflow(self, reference: str) -> Any: ...

    def read_workflow(self, repo: str, commit: str, reference: str) -> Any: ...

    def read_task(self, repo: str, commit: str, reference: str) -> Any: ...

    def read_file(self, repo: str, commit: str, path: str) -> str | None: ...


@dataclass(frozen=True)
class LoadedClass:
    """A task class and the revision to show it at (the loading workflow's for a bare name)."""

    task_class: TaskClass
    revision: str


@dataclass(frozen=True)
class JitFile:
    """A template dpl.* generated into the JIT directory.

    A generated workflow carries the repo, revision and commit it was generated
    for, so what it refers to and is not generated resolves there; a generated
    task template is named by the JIT directory and its workflow's name.
    """

    repo: str
    revision: str
    commit: str
    path: str  # relative to jit_dir: workflows/<name>.yaml or tasks/<name>.yaml
    text: str
    jit_dir: Path

    @property
    def origin(self) -> str:
        return str(self.jit_dir / self.path)


def is_pinned(file: Any) -> bool:
    """Whether a file's commit pins its content (a hash, not a working tree)."""
    return bool(_COMMIT.match(getattr(file, "commit", "") or ""))


def jit_workflow_path(jit_dir: Path, name: str) -> Path:
    return jit_dir / "workflows" / f"{name}.yaml"


def file_stem(path: str) -> str:
    """`workflows/readout-dataflow.yaml` → `readout-dataflow`."""
    name = path.rsplit("/", 1)[-1]
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class PinnedCache:
    """Workflows and task classes read at pinned commits, shared by every load (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.classes: dict[tuple[str, str, str], LoadedClass] = {}
        self.workflows: dict[tuple[str, str, str], Any] = {}


class TemplateReader:
    """Reads workflows and task classes relative to the file that refers to them, for one load.

    Reads at a pinned commit go to the shared PinnedCache; working-tree reads
    ("local") are kept for this load only, so the next load sees edits.
    """

    def __init__(self, repos: RepoReader, jit_dir: Path | None,
                 pinned: PinnedCache | None = None) -> None:
        self.repos = repos
        self.jit_dir = jit_dir
        self.pinned = pinned if pinned is not None else PinnedCache()
        self._classes: dict[tuple[str, str, str], LoadedClass] = {}
        self._workflows: dict[tuple[str, str, str], Any] = {}

    def _jit_file(self, relative: str, repo: str, revision: str, commit: str) -> JitFile | None:
        if self.jit_dir is None:
            return None
        path = self.jit_dir / relative
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise WorkflowError(f"cannot read generated template {path}: {error}") from None
        return JitFile(repo=repo, revision=revision, commit=commit, path=relative, text=text,
                       jit_dir=self.jit_dir)

    def workflow(self, base: Any, reference: str) -> Any:
        """The workflow an `include:` in `base` names: a generated `jit-<sha1>` in the JIT
        directory, else `<repo>/workflows/<name>` at base's repo and commit."""
        reference = reference.strip()
        if JIT_NAME.match(reference):
            generated = self._jit_file(f"workflows/{reference}.yaml", base.repo, base.revision,
                                       base.commit)
            if generated is not None:
                return generated
        key = (base.repo, base.commit, reference)
        pinned = is_pinned(base)
        if pinned:
            with self.pinned.lock:
                found = self.pinned.workflows.get(key)
        else:
            found = self._workflows.get(key)
        if found is not None:
            return found
        file = self.repos.read_workflow(base.repo, base.commit, reference)
        if pinned and is_pinned(file):
            with self.pinned.lock:
                self.pinned.workflows[key] = file
        else:
            self._workflows[key] = file
        return file

    def task_class(self, base: Any, reference: str) -> LoadedClass:
        """The task class a `load:` in `base` names, read and checked once per commit.

        Raises TaskClassError for an invalid template; repo errors pass through.
        """
        reference = reference.strip()
        jit = isinstance(base, JitFile)
        key = (base.repo, f"{base.commit}:{base.path}" if jit else base.commit, reference)
        shared = jit or is_pinned(base)
        if shared:
            with self.pinned.lock:
                found = self.pinned.classes.get(key)
        else:
            found = self._classes.get(key)
        if found is not None:
            return found
        file: Any = None
        if jit and "/" not in reference:
            generator = file_stem(base.path)
            file = self._jit_file(f"tasks/{reference.removesuffix('.yaml')}.yaml",
                                  str(self.jit_dir), generator, generator)
        if file is None:
            file = self.repos.read_task(base.repo, base.commit, reference)
        same_place = file.repo == base.repo and file.commit == base.commit
        loaded = LoadedClass(TaskClass.from_template(file),
                             base.revision if same_place else file.revision)
        if shared and (isinstance(file, JitFile) or is_pinned(file)):
            with self.pinned.lock:
                loaded = self.pinned.classes.setdefault(key, loaded)
        else:
            self._classes[key] = loaded
        return loaded


__all__ = ["JIT_NAME", "JitFile", "LoadedClass", "PinnedCache", "RepoReader", "TemplateReader",
           "file_stem", "is_pinned", "jit_workflow_path"]
