"""`RemoteEngine`: an `Engine` whose engine runs in another process (`nutshell core`).

Same coroutines, arguments, records and exceptions as `engine.Engine`, over the
core's ControlExt service (o2control where it already says everything), so a
front-end cannot tell the two apart. A call to an engine that cannot be reached
raises RemoteEngineError naming the address.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import grpc
from google.protobuf import empty_pb2

from engine.api import messages
from engine.api.errors import RemoteEngineError, from_rpc_error
from engine.api.protos import nutshell_pb2 as ext
from engine.api.protos import nutshell_pb2_grpc as ext_grpc
from engine.api.protos import o2control_pb2 as o2
from engine.api.protos import o2control_pb2_grpc as o2_grpc
from engine.api.security import ClientCredentials
from engine.api.server import MESSAGE_LIMITS
from engine.environment.environment import EnvironmentInfo, TaskInfo, TransitionResult
from engine.environment.events import EventQueue
from engine.environment.roster import RoleInfo
from engine.environment.statemachine import EnvEvent
from engine.identity import CallerIdentity
from engine.integration.services import IntegratedService
from engine.repos import AddResult, RepoInfo, WorkflowTemplateInfo
from engine.scheduler.agent_info import AgentInfo

T = TypeVar("T")
EMPTY = empty_pb2.Empty()


class RemoteSubscription(EventQueue):
    """Events of a remote engine, read like `engine.Subscription`."""

    def __init__(self, call: Any, address: str) -> None:
        super().__init__()
        self._call = call
        self._address = address
        self._reader: asyncio.Task[None] | None = None

    async def _open(self) -> None:
        """Wait for the stream's first message: from then on nothing is missed."""
        try:
            first = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, self._address) from None
        if first is grpc.aio.EOF or first.kind != messages.SUBSCRIBED:
            raise RemoteEngineError(f"engine at {self._address}: the event stream did not open")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                self.put(messages.event_record(message))
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass  # the engine went away or we closed: the iteration ends
        finally:
            self.put(None)

    def close(self) -> None:
        self._call.cancel()
        if self._reader is None:
            super().close()


class RemoteEngine:
    """The engine of a `nutshell core` at `address` ("host:port"), reached with
    `credentials` (bearer token, TLS material; none: plaintext, no token)."""

    def __init__(self, address: str, credentials: ClientCredentials | None = None) -> None:
        self.address = address
        self.credentials = credentials or ClientCredentials()
        token = self.credentials.token
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._channel: grpc.aio.Channel | None = None
        self._ext: ext_grpc.ControlExtStub | None = None
        self._o2: o2_grpc.ControlStub | None = None

    def _stubs(self) -> tuple[ext_grpc.ControlExtStub, o2_grpc.ControlStub]:
        """Made on first use, inside the caller's event loop (a channel belongs to one)."""
        if self._ext is None or self._o2 is None:
            self._channel = self._open_channel()
            self._ext = ext_grpc.ControlExtStub(self._channel)
            self._o2 = o2_grpc.ControlStub(self._channel)
        return self._ext, self._o2

    def _open_channel(self) -> grpc.aio.Channel:
        given = self.credentials
        if not given.tls:
            return grpc.aio.insecure_channel(self.address, options=MESSAGE_LIMITS)
        options = [*MESSAGE_LIMITS]
        if given.server_name:
            options.append(("grpc.ssl_target_name_override", given.server_name))
        return grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(
            root_certificates=given.ca, private_key=given.key, certificate_chain=given.cert),
            options=options)

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error, self.address) from None

    @property
    def _extension(self) -> ext_grpc.ControlExtStub:
        return self._stubs()[0]

    @property
    def _control(self) -> o2_grpc.ControlStub:
        return self._stubs()[1]

    async def close(self) -> None:
        """Close the connection; the engine, its executors and tasks keep running."""
        channel, self._channel, self._ext, self._o2 = self._channel, None, None, None
        if channel is not None:
            await channel.close()

    async def shutdown_agents(self) -> list[str]:
        reply = await self._call(self._extension.ShutdownAgents, EMPTY)
        return list(reply.agents)

    async def list_agents(self) -> list[AgentInfo]:
        reply = await self._call(self._extension.ListAgents, EMPTY)
        return [messages.agent_record(agent) for agent in reply.agents]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- repositories --------------------------------------------------------------------

    async def add_repo(self, identifier: str, default_revision: str = "") -> AddResult:
        reply = await self._call(self._extension.AddRepo, ext.AddRepoRequest(
            identifier=identifier, defaultRevision=default_revision))
        return messages.add_result_record(reply)

    async def list_repos(self) -> list[RepoInfo]:
        reply = await self._call(self._extension.ListRepos, EMPTY)
        return [messages.repo_record(repo) for repo in reply.repos]

    # The o2control RPCs where they mean the same; the extension where they do not.

    async def remove_repo(self, index: int) -> str:
        reply = await self._call(self._control.RemoveRepo, o2.RemoveRepoRequest(index=index))
        return reply.newDefaultRepo

    async def refresh_repos(self, index: int = -1) -> None:
        await self._call(self._control.RefreshRepos, o2.RefreshReposRequest(index=index))

    async def set_default_repo(self, index: int) -> None:
        await self._call(self._control.SetDefaultRepo, o2.SetDefaultRepoRequest(index=index))

    async def set_global_default_revision(self, revision: str) -> None:
        await self._call(self._control.SetGlobalDefaultRevision,
                         o2.SetGlobalDefaultRevisionRequest(revision=revision))

    async def set_repo_default_revision(self, index: int, revision: str) -> None:
        await self._call(self._extension.SetRepoDefaultRevision,
                         ext.RevisionRequest(index=index, revision=revision))

    async def global_default_revision(self) -> str:
        reply = await self._call(self._control.ListRepos, o2.ListReposRequest())
        return reply.globalDefaultRevision

    # --- templates -----------------------------------------------------------------------

    async def list_workflow_templates(self, repo_pattern: str = "", revision_pattern: str = "",
                                      *, all_branches: bool = False, all_tags: bool = False,
                                      all_workflows: bool = False,
                                      repo_path: str | Path | None = None
                                      ) -> list[WorkflowTemplateInfo]:
        reply = await self._call(self._extension.ListWorkflowTemplates, ext.TemplatesRequest(
            repoPattern=repo_pattern, revisionPattern=revision_pattern, allBranches=all_branches,
            allTags=all_tags, allWorkflows=all_workflows,
            repoPath=str(Path(repo_path).resolve()) if repo_path is not None else ""))
        return [messages.template_record(template) for template in reply.templates]

    async def render_workflow(self, reference: str, variables: Mapping[str, Any] | None = None,
                              *, repo_path: str | Path | None = None) -> dict[str, Any]:
        reply = await self._call(self._extension.RenderWorkflow, ext.RenderRequest(
            reference=reference, varsJson=messages.variables_json(variables),
            repoPath=str(Path(repo_path).resolve()) if repo_path is not None else ""))
        return dict(json.loads(reply.treeJson))

    # --- environments --------------------------------------------------------------------

    async def create_environment(self, workflow: str, variables: Mapping[str, Any] | None = None,
                                 *, emulate: bool = False, user: str = "",
                                 environment_id: str = "") -> EnvironmentInfo:
        reply = await self._call(self._extension.CreateEnvironment, ext.CreateEnvironmentRequest(
            workflowTemplate=workflow, varsJson=messages.variables_json(variables),
            emulate=emulate, user=user, id=environment_id))
        return messages.environment_record(reply)

    async def control_environment(self, environment_id: str, event: EnvEvent | str,
                                  user: str = "") -> TransitionResult:
        reply = await self._call(self._extension.ControlEnvironment, ext.ControlEnvironmentRequest(
            id=environment_id, event=str(event), user=user))
        return messages.result_record(reply)

    async def destroy_environment(self, environment_id: str, user: str = "", *,
                                  keep_tasks: bool = False, allow_in_running_state: bool = True,
                                  force: bool = False) -> TransitionResult:
        reply = await self._call(self._extension.DestroyEnvironment, ext.DestroyEnvironmentRequest(
            id=environment_id, user=user, keepTasks=keep_tasks,
            allowInRunningState=allow_in_running_state, force=force))
        return messages.result_record(reply)

    async def list_environments(self) -> list[EnvironmentInfo]:
        reply = await self._call(self._extension.ListEnvironments, EMPTY)
        return [messages.environment_record(info) for info in reply.environments]

    async def get_environment(self, environment_id: str) -> EnvironmentInfo:
        reply = await self._call(self._extension.GetEnvironment, ext.EnvironmentRequest(id=environment_id))
        return messages.environment_record(reply)

    async def subscribe(self) -> RemoteSubscription:
        """Environment and task state changes from now on; close() the subscription when done."""
        subscription = RemoteSubscription(
            self._extension.Subscribe(EMPTY, metadata=self._metadata), self.address)
        await subscription._open()
        return subscription

    # --- roster --------------------------------------------------------------------------

    async def list_tasks(self) -> list[TaskInfo]:
        reply = await self._call(self._extension.ListTasks, EMPTY)
        return messages.tasks_records(reply.tasks)

    async def cleanup_tasks(self, task_ids: Sequence[str] = ()
                            ) -> tuple[list[TaskInfo], list[TaskInfo]]:
        reply = await self._call(self._extension.CleanupTasks,
                                 ext.CleanupTasksRequest(taskIds=list(task_ids)))
        return messages.tasks_records(reply.killed), messages.tasks_records(reply.running)

    async def query_roles(self, environment_id: str, path_glob: str) -> list[RoleInfo]:
        reply = await self._call(self._extension.QueryRoles, ext.QueryRolesRequest(
            environmentId=environment_id, pathGlob=path_glob))
        return [messages.role_record(role) for role in reply.roles]

    async def get_workflow_tree(self, environment_id: str) -> RoleInfo:
        reply = await self._call(self._extension.GetWorkflowTree,
                                 ext.EnvironmentRequest(id=environment_id))
        return messages.role_record(reply)

    async def task_log(self, task_id: str, lines: int = 100) -> str:
        reply = await self._call(self._extension.TaskLog, ext.TaskLogRequest(taskId=task_id, lines=lines))
        return reply.text

    # --- instance ------------------------------------------------------------------------

    async def list_detectors(self) -> list[str]:
        reply = await self._call(self._control.GetFrameworkInfo, o2.GetFrameworkInfoRequest())
        return list(reply.detectorsInInstance)

    async def integrated_services(self) -> list[IntegratedService]:
        reply = await self._call(self._control.GetIntegratedServices, o2.Empty())
        return [IntegratedService(name=name, pretty_name=info.name, enabled=info.enabled,
                                  endpoint=info.endpoint, connection_state=info.connectionState,
                                  data=info.data)
                for name, info in reply.services.items()]

    # --- identity ------------------------------------------------------------------------

    async def who_am_i(self) -> CallerIdentity:
        """Who the core takes these credentials for (any authenticated caller may ask)."""
        reply = await self._call(self._extension.WhoAmI, EMPTY)
        return CallerIdentity(user=reply.user, role=reply.role, authenticated=reply.authenticated)
