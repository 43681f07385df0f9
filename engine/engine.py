"""`engine.Engine`: the one facade of the engine.

Front-ends, the future gRPC server and tests talk to the engine only through
this class and the records `engine` exports. Every method is a coroutine;
blocking work (git, YAML, template processing) runs in a worker thread so a
caller's event loop never stalls.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

from engine.environment.environment import EnvironmentInfo, TransitionResult
from engine.environment.events import Subscription
from engine.environment.manager import EnvironmentManager
from engine.environment.statemachine import EnvEvent
from engine.repos import AddResult, RepoInfo, WorkflowTemplateInfo
from engine.scheduler.local_pool import LocalAgentPool
from engine.store import AsyncStore
from engine.workdir import WorkingDirectory
from engine.workflow.loader import WorkflowLoader

T = TypeVar("T")


class Engine:
    def __init__(self, workdir: WorkingDirectory | None = None) -> None:
        self.workdir = (workdir or WorkingDirectory.from_environment()).ensure()
        self._loader: WorkflowLoader | None = None
        self._lock = threading.Lock()
        self._manager: EnvironmentManager | None = None
        self._manager_lock = asyncio.Lock()

    def _workflows(self) -> WorkflowLoader:
        """Built on first use: opening the repositories and the configuration costs time."""
        with self._lock:
            if self._loader is None:
                self._loader = WorkflowLoader(self.workdir)
            return self._loader

    async def _run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(work, *args, **kwargs)

    async def _environments(self) -> EnvironmentManager:
        """Built on first use, with the store; the agents start at the first deployment."""
        async with self._manager_lock:
            if self._manager is None:
                store = await AsyncStore.open(self.workdir)
                self._manager = EnvironmentManager(self.workdir, self._workflows, store)
            return self._manager

    async def close(self) -> None:
        """Release what the engine holds (git helper processes, the configuration store,
        the agent connections). Executors and their tasks keep running, so the next engine
        finds them again; `shutdown_agents` stops them."""
        async with self._manager_lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            await manager.close()
            await manager.store.close()
        with self._lock:
            loader, self._loader = self._loader, None
        if loader is not None:
            await self._run(loader.close)

    async def shutdown_agents(self) -> list[str]:
        """Stop every executor of the working directory, their tasks with them; returns the
        names of the agents stopped."""
        async with self._manager_lock:
            manager = self._manager
        if manager is not None:
            return await manager.agents.shutdown()
        return await LocalAgentPool(self.workdir, lambda _agent, _body: None).shutdown()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- repositories (coconut `repo …`) ----------------------------------------------------

    async def add_repo(self, identifier: str, default_revision: str = "") -> AddResult:
        return await self._run(self._workflows().repos.add, identifier, default_revision)

    async def list_repos(self) -> list[RepoInfo]:
        return await self._run(self._workflows().repos.list)

    async def remove_repo(self, index: int) -> str:
        """Remove the repo at `index`; returns the new default repo if it changed, else ""."""
        return await self._run(self._workflows().repos.remove, index)

    async def refresh_repos(self, index: int = -1) -> None:
        await self._run(self._workflows().repos.refresh, index)

    async def set_default_repo(self, index: int) -> None:
        await self._run(self._workflows().repos.set_default, index)

    async def set_global_default_revision(self, revision: str) -> None:
        await self._run(self._workflows().repos.set_global_default_revision, revision)

    async def set_repo_default_revision(self, index: int, revision: str) -> None:
        await self._run(self._workflows().repos.set_repo_default_revision, index, revision)

    # --- templates (coconut `template …`) ---------------------------------------------------

    async def list_workflow_templates(self, repo_pattern: str = "", revision_pattern: str = "",
                                      *, all_branches: bool = False, all_tags: bool = False,
                                      all_workflows: bool = False,
                                      repo_path: str | Path | None = None
                                      ) -> list[WorkflowTemplateInfo]:
        """Workflow templates with their public VarSpecs; `repo_path` lists one local repo."""
        def work() -> list[WorkflowTemplateInfo]:
            loader = self._workflows()
            pattern = repo_pattern
            if repo_path is not None:
                pattern = loader.repos.open_local(str(Path(repo_path).resolve()))
            return loader.repos.list_templates(pattern, revision_pattern, all_branches, all_tags,
                                               all_workflows, global_vars=loader.config.vars())
        return await self._run(work)

    async def render_workflow(self, reference: str, variables: Mapping[str, Any] | None = None,
                              *, repo_path: str | Path | None = None) -> dict[str, Any]:
        """Resolve a workflow without deploying it: the role tree as plain data.

        The shape is the one of `nutshell template render -o json`: a root object
        with name, path, kind, roles, and per kind class / func, trigger,
        constraints.
        """
        def work() -> dict[str, Any]:
            loader = self._workflows()
            if repo_path is not None:
                workflow = loader.load_local(repo_path, reference, variables)
            else:
                workflow = loader.load(reference, variables)
            return workflow.to_dict()
        return await self._run(work)

    # --- environments (coconut `env …`) -----------------------------------------------------

    async def create_environment(self, workflow: str, variables: Mapping[str, Any] | None = None,
                                 *, emulate: bool = False, user: str = "") -> EnvironmentInfo:
        """Deploy and configure a workflow; the environment is CONFIGURED on return.

        TransitionFailed (with the table of the failed tasks) leaves nothing deployed.
        """
        manager = await self._environments()
        return await manager.create(workflow, variables, emulate=emulate, user=user)

    async def control_environment(self, environment_id: str, event: EnvEvent | str,
                                  user: str = "") -> TransitionResult:
        """CONFIGURE, START_ACTIVITY (START), STOP_ACTIVITY (STOP) or RESET.

        TransitionRefused changes nothing; EnvironmentBusy while another transition runs.
        """
        manager = await self._environments()
        return await manager.control(environment_id, event, user)

    async def destroy_environment(self, environment_id: str, user: str = "") -> TransitionResult:
        manager = await self._environments()
        return await manager.destroy(environment_id, user)

    async def list_environments(self) -> list[EnvironmentInfo]:
        return (await self._environments()).list()

    async def get_environment(self, environment_id: str) -> EnvironmentInfo:
        return (await self._environments()).get(environment_id)

    async def subscribe(self) -> Subscription:
        """Environment and task state changes from now on; close() the subscription when done."""
        return (await self._environments()).subscribe()
