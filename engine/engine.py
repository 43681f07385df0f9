"""`engine.Engine`: the one facade of the engine.

Front-ends, the future gRPC server and tests talk to the engine only through
this class and the records `engine` exports. Every method is a coroutine;
blocking work (git, YAML, template processing) runs in a worker thread so a
caller's event loop never stalls.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, TypeVar

from engine.demo import ensure_demo_configuration, ensure_demo_repository
from engine.environment.environment import EnvironmentInfo, TaskInfo, TransitionResult
from engine.environment.events import Subscription
from engine.environment.manager import EnvironmentManager
from engine.environment.roster import RoleInfo, Roster, query_roles, workflow_tree
from engine.environment.statemachine import EnvEvent
from engine.hosting import EngineHost, local_user
from engine.identity import CallerIdentity
from engine.integration.services import IntegratedService, describe_services
from engine.repos import AddResult, RepoInfo, WorkflowTemplateInfo
from engine.scheduler.agent_info import AgentInfo, describe_agents
from engine.scheduler.agents import load_agents
from engine.scheduler.local_agent import find_running
from engine.scheduler.local_pool import LocalAgentPool
from engine.scheduler.mesos.settings import Backend, load_backend
from engine.store import AsyncStore
from engine.workdir import WorkingDirectory
from engine.workflow.loader import WorkflowLoader

T = TypeVar("T")


class Engine:
    def __init__(self, workdir: WorkingDirectory | None = None, *, demo: bool = False,
                 mesos: str = "") -> None:
        """`demo`: the embedded default front-ends start on — the demo template repository
        is created on first use and added (the default repository when none is set).
        `mesos`: a master URL (http://HOST:5050) to schedule on, whatever nutshell.yaml's
        `backend:` says (local agents by default)."""
        self.workdir = (workdir or WorkingDirectory.from_environment()).ensure()
        self._demo = demo
        self._mesos = mesos
        self._loader: WorkflowLoader | None = None
        self._lock = threading.Lock()
        self._manager: EnvironmentManager | None = None
        self._manager_lock = asyncio.Lock()
        self._host: EngineHost | None = None

    def _workflows(self) -> WorkflowLoader:
        """Built on first use: opening the repositories and the configuration costs time."""
        with self._lock:
            if self._loader is None:
                if self._demo:  # before the configuration service reads the file
                    ensure_demo_configuration(self.workdir)
                loader = WorkflowLoader(self.workdir)
                if self._demo:
                    try:
                        ensure_demo_repository(self.workdir, loader.repos)
                    except BaseException:
                        loader.close()
                        raise
                self._loader = loader
            return self._loader

    async def _run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(work, *args, **kwargs)

    async def _environments(self, opened: Callable[[EnvironmentManager], object] | None = None
                            ) -> EnvironmentManager:
        """Built on first use: this engine takes the working directory's host lock
        (EngineHostedElsewhere if another process hosts it), opens the store and recovers
        the environments a previous host left, re-adopting their live tasks."""
        async with self._manager_lock:
            if self._manager is None:
                host = await asyncio.to_thread(EngineHost.acquire, self.workdir)
                store: AsyncStore | None = None
                manager: EnvironmentManager | None = None
                try:
                    store = await AsyncStore.open(self.workdir)
                    backend = await asyncio.to_thread(load_backend, self.workdir.settings_file,
                                                      self._mesos)
                    manager = EnvironmentManager(self.workdir, self._workflows, store, backend)
                    if opened is not None:
                        opened(manager)
                    await manager.recover()
                except BaseException:
                    if manager is not None:
                        await manager.close()
                    if store is not None:
                        await store.close()
                    await asyncio.to_thread(host.release)
                    raise
                self._host, self._manager = host, manager
            return self._manager

    @property
    def host(self) -> EngineHost | None:
        """This engine's hold on the working directory, once it hosts it."""
        return self._host

    async def start_hosting(self) -> EngineHost:
        """Host the working directory's engine now (lock, core.json, recovery) rather than at
        the first environment call; `nutshell core` does, then publishes its address with
        `set_address`. EngineHostedElsewhere if another process hosts it."""
        await self._environments()
        assert self._host is not None
        return self._host

    async def close(self) -> None:
        """Release what the engine holds (git helper processes, the configuration store,
        the agent connections). Executors and their tasks keep running, so the next engine
        finds them again; `shutdown_agents` stops them."""
        async with self._manager_lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            await manager.close()
            await manager.store.close()
        host, self._host = self._host, None
        if host is not None:
            await self._run(host.release)
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
        backend, _ = await self._run(load_backend, self.workdir.settings_file, self._mesos)
        if backend is Backend.MESOS:  # the framework is torn down through a subscription
            return await (await self._environments()).agents.shutdown()
        return await LocalAgentPool(self.workdir, lambda _agent, _body: None).shutdown()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- repositories (coconut `repo …`) ----------------------------------------------------

    async def add_repo(self, identifier: str, default_revision: str = "") -> AddResult:
        return await self._run(lambda: self._workflows().repos.add(identifier, default_revision))

    async def list_repos(self) -> list[RepoInfo]:
        return await self._run(lambda: self._workflows().repos.list())

    async def remove_repo(self, index: int) -> str:
        """Remove the repo at `index`; returns the new default repo if it changed, else ""."""
        return await self._run(lambda: self._workflows().repos.remove(index))

    async def refresh_repos(self, index: int = -1) -> None:
        await self._run(lambda: self._workflows().repos.refresh(index))

    async def set_default_repo(self, index: int) -> None:
        await self._run(lambda: self._workflows().repos.set_default(index))

    async def set_global_default_revision(self, revision: str) -> None:
        await self._run(lambda: self._workflows().repos.set_global_default_revision(revision))

    async def set_repo_default_revision(self, index: int, revision: str) -> None:
        await self._run(lambda: self._workflows().repos.set_repo_default_revision(index, revision))

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
                                 *, emulate: bool = False, user: str = "",
                                 environment_id: str = "") -> EnvironmentInfo:
        """Deploy and configure a workflow; the environment is CONFIGURED on return.

        `environment_id` names it in advance (letters and digits, unused), for a caller that
        must know the id before the creation ends; by default the engine makes one.
        TransitionFailed (with the table of the failed tasks) leaves nothing deployed.
        """
        manager = await self._environments()
        return await manager.create(workflow, variables, emulate=emulate, user=user,
                                    environment_id=environment_id)

    async def control_environment(self, environment_id: str, event: EnvEvent | str,
                                  user: str = "") -> TransitionResult:
        """CONFIGURE, START_ACTIVITY (START), STOP_ACTIVITY (STOP) or RESET.

        TransitionRefused changes nothing; EnvironmentBusy while another transition runs.
        """
        manager = await self._environments()
        return await manager.control(environment_id, event, user)

    async def destroy_environment(self, environment_id: str, user: str = "", *,
                                  keep_tasks: bool = False, allow_in_running_state: bool = True,
                                  force: bool = False) -> TransitionResult:
        """§1.1.4: a RUNNING environment is stopped first unless allow_in_running_state=False
        (then DestroyRefused, a TransitionRefused); force skips STOP/RESET; keep_tasks
        releases the tasks (unlocked, left for a task cleanup) instead of killing them."""
        manager = await self._environments()
        return await manager.destroy(environment_id, user, keep_tasks=keep_tasks,
                                     allow_in_running_state=allow_in_running_state, force=force)

    async def list_environments(self) -> list[EnvironmentInfo]:
        return (await self._environments()).list()

    async def get_environment(self, environment_id: str) -> EnvironmentInfo:
        return (await self._environments()).get(environment_id)

    async def subscribe(self) -> Subscription:
        """Environment and task state changes from now on; close() the subscription when done.

        Subscribing first thing also gets what recovery reports when this engine starts
        hosting (environments recovered, tasks that died while no engine ran)."""
        early: list[Subscription] = []
        manager = await self._environments(lambda opened: early.append(opened.subscribe()))
        return early[0] if early else manager.subscribe()

    # --- roster (coconut `task …`, `role query`, `env show --workflow`, task logs) ---------

    async def _roster(self) -> Roster:
        return Roster(await self._environments())

    async def list_tasks(self) -> list[TaskInfo]:
        """Every task: those of the environments (locked), then those the executors run
        for no environment (unlocked)."""
        return await (await self._roster()).list_tasks()

    async def cleanup_tasks(self, task_ids: Sequence[str] = ()
                            ) -> tuple[list[TaskInfo], list[TaskInfo]]:
        """Kill the unlocked tasks named, or every unlocked task when none is; (killed,
        running). Tasks of environments are locked and never killed."""
        return await (await self._roster()).cleanup(task_ids)

    async def query_roles(self, environment_id: str, path_glob: str) -> list[RoleInfo]:
        """The environment's roles whose path matches a glob (`*` within a path element,
        `**` across), each with its subtree."""
        roster = await self._roster()
        return query_roles(roster.environment(environment_id), path_glob)

    async def get_workflow_tree(self, environment_id: str) -> RoleInfo:
        """The environment's root role with its subtree, states and variables."""
        roster = await self._roster()
        return workflow_tree(roster.environment(environment_id))

    async def task_log(self, task_id: str, lines: int = 100) -> str:
        """The last `lines` lines of a task's captured output."""
        return await (await self._roster()).task_log(task_id, lines)

    # --- instance (o2control GetFrameworkInfo, detectors, integrated services) -------------

    async def list_detectors(self) -> list[str]:
        """Every detector of the configuration's inventory, TRG included, sorted."""
        return await self._run(lambda: self._workflows().config.list_detectors(True))

    async def integrated_services(self) -> list[IntegratedService]:
        """The integration plugins the settings list (loaded on first use) and their state."""
        manager = await self._environments()
        loader = await self._run(self._workflows)
        return describe_services(await manager.loaded_plugins(loader))  # the set in use

    async def global_default_revision(self) -> str:
        """The revision a repository added without one defaults to (o2control ListRepos)."""
        return await self._run(lambda: self._workflows().repos.global_default_revision)

    # --- agents (the console's hosts view, `nutshell agents list`) ------------------------

    async def list_agents(self) -> list[AgentInfo]:
        """Every declared local agent: attributes, cpus / mem / ports in total and held by the
        environments' live tasks, whether its executor runs (and its pid), its task count.
        On Mesos: every agent the master lists, as the master reports it now."""
        manager = await self._environments()
        describe = getattr(manager.agents, "describe", None)
        if describe is not None:  # Mesos: the master's agents, executors and use, as now
            return list(await describe())
        specs = manager.agents.specs or await self._run(load_agents, self.workdir.settings_file)
        running = await self._run(find_running, self.workdir.root)
        return describe_agents(specs, manager.tasks.in_use(), running)

    # --- identity (what the console may offer) ---------------------------------------------

    async def who_am_i(self) -> CallerIdentity:
        """In-process, nobody is checked: the local user, with every right."""
        return CallerIdentity(user=local_user(), role="admin", authenticated=False)
