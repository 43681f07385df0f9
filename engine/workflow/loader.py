"""One place that wires workflow loading for a working directory.

Loading needs the repositories, the configuration service, the function
library with the JIT DPL generator, and a renderer on that library; the
engine, the CLI and the benchmark all want them put together the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.config.embedded import EmbeddedConfiguration
from engine.config.service import ConfigurationService
from engine.repos import RepoError, RepoManager
from engine.templates.functions import FunctionLibrary, new_uid
from engine.templates.render import Renderer
from engine.workdir import WorkingDirectory
from engine.workflow.dpl import JitGenerator
from engine.workflow.processor import load_workflow, load_workflow_file
from engine.workflow.roles import Workflow, WorkflowError


def _environment_id(given: str | None) -> str:
    return new_uid() if given is None else given


class WorkflowLoader:
    """Loads workflows of one working directory. Thread-safe; build one and reuse it."""

    def __init__(self, workdir: WorkingDirectory, *, repos: RepoManager | None = None,
                 config: ConfigurationService | None = None,
                 plugin_objects: Mapping[str, Any] | None = None,
                 o2_profile: Path | None = None) -> None:
        self.workdir = workdir.ensure()
        self._owned: list[Any] = []
        if repos is None:
            repos = RepoManager(workdir)
            self._owned.append(repos)
        if config is None:
            config = EmbeddedConfiguration(workdir)
            self._owned.append(config)
        self.repos = repos
        self.config = config
        extra = {} if o2_profile is None else {"profile": o2_profile}
        self.dpl = JitGenerator(self.repos, workdir.jit, self.config, **extra)
        self.library = FunctionLibrary(self.config, dpl=self.dpl, plugin_objects=plugin_objects,
                                       dump_dir=workdir.dumps)
        self.renderer = Renderer(self.library.namespaces)

    def load(self, reference: str, user_vars: Mapping[str, Any] | None = None, *,
             environment_id: str | None = None, global_vars: Mapping[str, str] | None = None
             ) -> Workflow:
        """`[<repo>/workflows/]<name>[@<revision>]` processed with the request's variables.

        Templates expect `environment_id` (AliECS always has one); without one given
        (None) a fresh id is used, as for a dry run. Pass "" for none at all.
        """
        return load_workflow(reference, user_vars or {}, repos=self.repos, library=self.library,
                             renderer=self.renderer, config=self.config,
                             environment_id=_environment_id(environment_id),
                             jit_dir=self.workdir.jit, global_vars=global_vars)

    def load_file(self, file: Any, user_vars: Mapping[str, Any] | None = None, *,
                  environment_id: str | None = None,
                  global_vars: Mapping[str, str] | None = None) -> Workflow:
        """An already-read template file (engine.repos.TemplateFile) processed (see load)."""
        return load_workflow_file(file, user_vars or {}, repos=self.repos, library=self.library,
                                  renderer=self.renderer, config=self.config,
                                  environment_id=_environment_id(environment_id),
                                  jit_dir=self.workdir.jit, global_vars=global_vars)

    def load_local(self, repo_path: str | Path, workflow: str,
                   user_vars: Mapping[str, Any] | None = None, *,
                   environment_id: str | None = None,
                   global_vars: Mapping[str, str] | None = None) -> Workflow:
        """`--repo PATH`: a workflow of a local repository's working tree, without adding it."""
        try:
            repo = self.repos.open_local(str(Path(repo_path).resolve()))
        except (RepoError, OSError) as error:  # not a (non-bare) git repository
            raise WorkflowError(f"cannot open repository {repo_path}: {error}") from None
        name = workflow.removesuffix(".yaml")
        if "/workflows/" not in name:
            name = f"{repo}/workflows/{name}"
        return self.load(name, user_vars, environment_id=environment_id, global_vars=global_vars)

    def close(self) -> None:
        """Close the repositories and configuration this loader opened (not those given)."""
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> "WorkflowLoader":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
