"""An `Engine` served over grpc.aio: o2control.Control, our ControlExt, health, reflection.

The servicers are thin: each call reads its request, calls the facade and builds the
reply with `messages`. A failure is answered with the status code of reference §3.1
and the engine's exception in the trailing metadata (errors.py), so `RemoteEngine`
raises what an in-process engine raises.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine import USER_ERRORS, Engine, EnvironmentInfo, EnvState, TransitionFailed
from engine.api import messages, requests
from engine.api.auth import AccessInterceptor, SecurityInForce, caller, require_role, requester
from engine.api.certificates import ServerCertificates
from engine.api.errors import Operation, details, status_code, trailing_metadata
from engine.api.protos import events_pb2
from engine.api.protos import nutshell_pb2 as ext
from engine.api.protos import nutshell_pb2_grpc as ext_grpc
from engine.api.protos import o2control_pb2 as o2
from engine.api.protos import o2control_pb2_grpc as o2_grpc
from engine.api.security import (
    Role,
    SecuritySettings,
    SecuritySettingsError,
    load_security,
    restart_needed,
)
from engine.audit import AUDIT_FILE, AuditLog, AuditRecord, AuditRotation
from engine.environment.events import EnvironmentEvent, EventKind, Subscription
from engine.environment.roleglob import RoleGlobError
from engine.environment.roster import RoleInfo, UnknownTaskError
from engine.repos import RepoError
from engine.templates.functions import new_uid

log = logging.getLogger("engine.api")

T = TypeVar("T")
DEFAULT_ADDRESS = "127.0.0.1:32102"  # AliECS core's gRPC port, coconut's default endpoint
RESULT_METADATA_KEY = "nutshell-result-bin"  # a ControlEnvironment's result table, JSON
INSTANCE_NAME = "nutshell instance"
EXPECTED = (*USER_ERRORS, UnknownTaskError, RoleGlobError, ValueError)
AUTO_POLL = 1.0  # seconds between state checks of an autoTransition environment (§1.1.3)
# A big environment's role tree with every role's consolidated stack outgrows gRPC's 4 MB.
MESSAGE_LIMITS = (("grpc.max_send_message_length", 256 << 20),
                  ("grpc.max_receive_message_length", 256 << 20))
SUBSCRIBE_POLL = 0.05  # seconds between looks for the NewAutoEnvironment a Subscribe names
# How long the events of a finished NewAutoEnvironment wait for a Subscribe that has not come:
# a client that never subscribes must not keep them (and its id) for the core's lifetime.
AUTO_CHANNEL_GRACE = 60.0


class AddressInUse(Exception):
    """The address to listen on is taken (or cannot be bound); the message names it."""


async def _answer(context: grpc.aio.ServicerContext, operation: Operation,
                  work: Awaitable[T]) -> T:
    """The facade's answer, or the call aborted with the status and metadata of its error."""
    try:
        return await work
    except Exception as error:
        if not isinstance(error, EXPECTED):
            log.exception("engine call failed")
        await _abort(context, error, operation)


async def _abort(context: grpc.aio.ServicerContext, error: Exception,
                 operation: Operation) -> NoReturn:
    await context.abort(status_code(error, operation), details(error), trailing_metadata(error))
    raise AssertionError("context.abort returned")  # it raises; this keeps NoReturn honest


def _user(request: Any) -> str:
    """The requesting user: the authenticated caller, else the name the request gives."""
    return requester(request.requestUser.name if request.HasField("requestUser") else "")


def _product_version() -> o2.Version:
    try:
        text = version("nutshell")
    except PackageNotFoundError:
        text = "0.0.0"
    numbers = [int(part) if part.isdigit() else 0 for part in text.split(".")[:3]]
    numbers += [0] * (3 - len(numbers))
    return o2.Version(major=numbers[0], minor=numbers[1], patch=numbers[2],
                      productName="nutshell", versionStr=text)


def _detectors_of(root: RoleInfo) -> list[str]:
    """The detectors an environment uses: its `detectors` variable (a JSON list)."""
    try:
        listed = json.loads(root.consolidated_stack.get("detectors", "[]"))
    except ValueError:
        return []
    return [str(d) for d in listed] if isinstance(listed, list) else []


class ControlService(o2_grpc.ControlServicer):
    """o2control.Control over the facade, wire-compatible with AliECS (§3.1)."""

    def __init__(self, engine: Engine, framework_id: str) -> None:
        self.engine = engine
        self.framework_id = framework_id
        self._jobs: set[asyncio.Task[Any]] = set()
        self._channels: dict[str, asyncio.Queue[events_pb2.Event | None]] = {}
        self._subscribed: set[str] = set()  # the ids a Subscribe is reading
        self._destroy_flags = set(inspect.signature(engine.destroy_environment).parameters)

    def _keep(self, job: asyncio.Task[Any]) -> None:
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)

    # --- framework and detectors -------------------------------------------------------

    async def _active_detectors(self) -> list[str]:
        active: set[str] = set()
        for info in await self.engine.list_environments():
            try:
                active.update(_detectors_of(await self.engine.get_workflow_tree(info.id)))
            except KeyError:
                continue  # destroyed meanwhile
        return sorted(active)

    async def _framework_info(self) -> o2.GetFrameworkInfoReply:
        environments = await self.engine.list_environments()
        everything = await self.engine.list_detectors()
        active = await self._active_detectors()
        hosts = {task.host for info in environments for task in info.tasks if task.host}
        return o2.GetFrameworkInfoReply(
            frameworkId=self.framework_id, environmentsCount=len(environments),
            tasksCount=sum(len(info.tasks) for info in environments), state="CONNECTED",
            hostsCount=len(hosts), instanceName=INSTANCE_NAME, version=_product_version(),
            configurationEndpoint=f"file://{self.engine.workdir.configuration_file}",
            detectorsInInstance=everything, activeDetectors=active,
            availableDetectors=[d for d in everything if d not in active],
            timestamp=messages.now_ms())

    async def GetFrameworkInfo(self, request: o2.GetFrameworkInfoRequest,
                               context: grpc.aio.ServicerContext) -> o2.GetFrameworkInfoReply:
        return await _answer(context, Operation.OTHER, self._framework_info())

    async def GetActiveDetectors(self, request: o2.Empty, context: grpc.aio.ServicerContext
                                 ) -> o2.GetActiveDetectorsReply:
        active = await _answer(context, Operation.OTHER, self._active_detectors())
        return o2.GetActiveDetectorsReply(detectors=active, timestamp=messages.now_ms())

    async def GetAvailableDetectors(self, request: o2.Empty, context: grpc.aio.ServicerContext
                                    ) -> o2.GetAvailableDetectorsReply:
        async def available() -> list[str]:
            active = set(await self._active_detectors())
            return [d for d in await self.engine.list_detectors() if d not in active]
        found = await _answer(context, Operation.OTHER, available())
        return o2.GetAvailableDetectorsReply(detectors=found, timestamp=messages.now_ms())

    async def GetIntegratedServices(self, request: o2.Empty, context: grpc.aio.ServicerContext
                                    ) -> o2.ListIntegratedServicesReply:
        services = await _answer(context, Operation.OTHER, self.engine.integrated_services())
        return o2.ListIntegratedServicesReply(
            services={s.name: o2.IntegratedServiceInfo(
                name=s.pretty_name, enabled=s.enabled, endpoint=s.endpoint,
                connectionState=s.connection_state, data=s.data) for s in services},
            timestamp=messages.now_ms())

    # --- environments ------------------------------------------------------------------

    async def GetEnvironments(self, request: o2.GetEnvironmentsRequest,
                              context: grpc.aio.ServicerContext) -> o2.GetEnvironmentsReply:
        environments = await _answer(context, Operation.OTHER, self.engine.list_environments())
        replies = []
        for info in sorted(environments, key=lambda e: e.created):
            message = messages.environment_info(info)
            if not request.showTaskInfos:
                del message.tasks[:]
            replies.append(message)
        return o2.GetEnvironmentsReply(frameworkId=self.framework_id, environments=replies,
                                       timestamp=messages.now_ms())

    async def _create(self, request: o2.NewEnvironmentRequest | o2.NewAutoEnvironmentRequest,
                      environment_id: str = "") -> EnvironmentInfo:
        return await self.engine.create_environment(request.workflowTemplate, dict(request.vars),
                                                    user=_user(request),
                                                    environment_id=environment_id)

    async def NewEnvironment(self, request: o2.NewEnvironmentRequest,
                             context: grpc.aio.ServicerContext) -> o2.NewEnvironmentReply:
        info = await _answer(context, Operation.CREATE, self._create(request))
        if request.autoTransition:
            self._keep(asyncio.create_task(self._auto_run(info.id, _user(request))))
        return o2.NewEnvironmentReply(environment=messages.environment_info(info),
                                      public=request.public, timestamp=messages.now_ms())

    async def _auto_run(self, environment_id: str, user: str) -> None:
        """autoTransition (§1.1.3): START, wait for the run to end, then destroy."""
        try:
            await self.engine.control_environment(environment_id, "START_ACTIVITY", user)
            while (await self.engine.get_environment(environment_id)).state == EnvState.RUNNING:
                await asyncio.sleep(AUTO_POLL)
        except EXPECTED as error:
            log.warning("auto-transition of environment %s: %s", environment_id, error)
        try:
            await self.engine.destroy_environment(environment_id, user)
        except EXPECTED as error:
            log.warning("auto-transition of environment %s: destroy: %s", environment_id, error)

    async def NewAutoEnvironment(self, request: o2.NewAutoEnvironmentRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> o2.NewAutoEnvironmentReply:
        """§1.1.3: create, START, wait for the run to end and destroy, in the background;
        the environment's events go to the stream `Subscribe(request.id)` reads."""
        if not request.id or request.id in self._channels:
            await _abort(context, ValueError(
                f"NewAutoEnvironment needs an id no other request used, not {request.id!r}: "
                "Subscribe reads the events by it"), Operation.OTHER)
        channel: asyncio.Queue[events_pb2.Event | None] = asyncio.Queue()
        self._channels[request.id] = channel
        subscription = await _answer(context, Operation.OTHER, self.engine.subscribe())
        job = asyncio.create_task(self._auto_environment(request, subscription, new_uid(),
                                                         channel))
        job.add_done_callback(_log_failure)
        self._keep(job)
        return o2.NewAutoEnvironmentReply(timestamp=messages.now_ms())

    async def _auto_environment(self, request: o2.NewAutoEnvironmentRequest,
                                subscription: Subscription, environment_id: str,
                                channel: asyncio.Queue[events_pb2.Event | None]) -> None:
        async def forward() -> None:
            async for event in subscription:
                if event.environment_id == environment_id:
                    channel.put_nowait(messages.event_message(event))

        forwarding = asyncio.create_task(forward())
        try:
            info = await self._create(request, environment_id)
        except EXPECTED as error:
            where = error.result.environment_id if isinstance(error, TransitionFailed) else ""
            failure = messages.event_message(EnvironmentEvent(
                EventKind.ENVIRONMENT, where, "ERROR", user=_user(request),
                message="cannot create new environment"))  # AliECS's words, GUIs match them
            failure.environmentEvent.error = str(error)
            channel.put_nowait(failure)
        else:
            await self._auto_run(info.id, _user(request))
        finally:
            subscription.close()  # the events so far are forwarded, then the stream ends
            await forwarding
            channel.put_nowait(None)
            self._keep(asyncio.create_task(self._release_unread(request.id, channel)))

    async def _release_unread(self, channel_id: str,
                              channel: asyncio.Queue[events_pb2.Event | None]) -> None:
        """Forget a finished request's events AUTO_CHANNEL_GRACE s on if no Subscribe
        took them (a Subscribe that did forgets them when its stream ends); its id may then
        be used again."""
        await asyncio.sleep(AUTO_CHANNEL_GRACE)
        if channel_id not in self._subscribed and self._channels.get(channel_id) is channel:
            del self._channels[channel_id]

    async def Subscribe(self, request: o2.SubscribeRequest, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[events_pb2.Event]:
        """The events of the NewAutoEnvironment request `request.id`, until its environment
        is gone. As in AliECS it waits for that request to arrive first."""
        while request.id not in self._channels:
            await asyncio.sleep(SUBSCRIBE_POLL)
        channel = self._channels[request.id]
        self._subscribed.add(request.id)
        try:
            while (event := await channel.get()) is not None:
                yield event
        finally:
            self._subscribed.discard(request.id)
            if self._channels.get(request.id) is channel:
                del self._channels[request.id]

    async def NewEnvironmentAsync(self, request: o2.NewEnvironmentRequest,
                                  context: grpc.aio.ServicerContext) -> o2.NewEnvironmentReply:
        """The new environment's id and state PENDING as soon as the engine has it; the
        creation goes on (its outcome on the event streams), or its error if it fails first.
        The id is chosen here and handed to the engine, so concurrent requests never mix."""
        environment_id = new_uid()
        subscription = await _answer(context, Operation.OTHER, self.engine.subscribe())
        creation = asyncio.create_task(self._create(request, environment_id))
        self._keep(creation)
        creation.add_done_callback(_log_failure)

        async def named() -> bool:  # the engine has the environment (its first event)
            async for event in subscription:
                if event.environment_id == environment_id:
                    return True
            return False

        naming = asyncio.create_task(named())
        try:
            await asyncio.wait({creation, naming}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            subscription.close()
        if naming.done() and naming.result():
            info = o2.EnvironmentInfo(id=environment_id, state="PENDING")
        else:
            naming.cancel()
            info = messages.environment_info(await _answer(context, Operation.CREATE, creation))
        return o2.NewEnvironmentReply(environment=info, public=request.public,
                                      timestamp=messages.now_ms())

    async def GetEnvironment(self, request: o2.GetEnvironmentRequest,
                             context: grpc.aio.ServicerContext) -> o2.GetEnvironmentReply:
        async def work() -> tuple[EnvironmentInfo, RoleInfo]:
            info = await self.engine.get_environment(request.id)
            return info, await self.engine.get_workflow_tree(request.id)
        info, root = await _answer(context, Operation.OTHER, work())
        reply = o2.GetEnvironmentReply(environment=messages.environment_info(info, root),
                                       public=True, timestamp=messages.now_ms())
        if request.showWorkflowTree:
            reply.workflow.CopyFrom(messages.role_info(root))
        return reply

    async def ControlEnvironment(self, request: o2.ControlEnvironmentRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> o2.ControlEnvironmentReply:
        event = await _answer(context, Operation.OTHER, requests.optype(request.type))
        started = messages.now_ms()
        result = await _answer(context, Operation.CONTROL, self.engine.control_environment(
            request.id, event, _user(request)))
        context.set_trailing_metadata(((RESULT_METADATA_KEY, json.dumps(
            [row.to_dict() for row in result.rows]).encode()),))
        return messages.control_reply(result, started, messages.now_ms())

    async def DestroyEnvironment(self, request: o2.DestroyEnvironmentRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> o2.DestroyEnvironmentReply:
        flags = {"keep_tasks": request.keepTasks,
                 "allow_in_running_state": request.allowInRunningState, "force": request.force}

        async def work() -> o2.CleanupTasksReply:
            info = await self.engine.get_environment(request.id)
            accepted = {k: v for k, v in flags.items() if k in self._destroy_flags}
            result = await self.engine.destroy_environment(request.id, _user(request), **accepted)
            failed = {row.task_id for row in result.rows if row.failed}
            tasks = {task.task_id: messages.short_task_info(task) for task in info.tasks}
            if request.keepTasks and "keep_tasks" in accepted:
                return o2.CleanupTasksReply(runningTasks=tasks.values(),
                                            timestamp=messages.now_ms())
            return o2.CleanupTasksReply(
                killedTasks=[t for i, t in tasks.items() if i not in failed],
                runningTasks=[t for i, t in tasks.items() if i in failed],
                timestamp=messages.now_ms())
        cleanup = await _answer(context, Operation.DESTROY, work())
        return o2.DestroyEnvironmentReply(cleanupTasksReply=cleanup, timestamp=messages.now_ms())

    # --- tasks and roles -----------------------------------------------------------------

    async def GetTasks(self, request: o2.GetTasksRequest, context: grpc.aio.ServicerContext
                       ) -> o2.GetTasksReply:
        tasks = await _answer(context, Operation.OTHER, self.engine.list_tasks())
        return o2.GetTasksReply(tasks=[messages.short_task_info(t) for t in tasks],
                                timestamp=messages.now_ms())

    async def GetTask(self, request: o2.GetTaskRequest, context: grpc.aio.ServicerContext
                      ) -> o2.GetTaskReply:
        async def work() -> o2.TaskInfo:
            for info in await self.engine.list_environments():
                for task in info.tasks:
                    if task.task_id == request.taskId:
                        return messages.task_detail(task, info.id)
            for task in await self.engine.list_tasks():
                if task.task_id == request.taskId:
                    return messages.task_detail(task, "")
            raise UnknownTaskError(request.taskId)
        task = await _answer(context, Operation.OTHER, work())
        return o2.GetTaskReply(task=task, timestamp=messages.now_ms())

    async def CleanupTasks(self, request: o2.CleanupTasksRequest,
                           context: grpc.aio.ServicerContext) -> o2.CleanupTasksReply:
        killed, running = await _answer(context, Operation.OTHER,
                                        self.engine.cleanup_tasks(list(request.taskIds)))
        return o2.CleanupTasksReply(killedTasks=[messages.short_task_info(t) for t in killed],
                                    runningTasks=[messages.short_task_info(t) for t in running],
                                    timestamp=messages.now_ms())

    async def GetRoles(self, request: o2.GetRolesRequest, context: grpc.aio.ServicerContext
                       ) -> o2.GetRolesReply:
        roles = await _answer(context, Operation.OTHER,
                              self.engine.query_roles(request.envId, request.pathSpec))
        return o2.GetRolesReply(roles=[messages.role_info(r) for r in roles],
                                timestamp=messages.now_ms())

    # --- templates and repositories ------------------------------------------------------

    async def GetWorkflowTemplates(self, request: o2.GetWorkflowTemplatesRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> o2.GetWorkflowTemplatesReply:
        templates = await _answer(context, Operation.OTHER, self.engine.list_workflow_templates(
            request.repoPattern, request.revisionPattern, all_branches=request.allBranches,
            all_tags=request.allTags, all_workflows=request.allWorkflows))
        return o2.GetWorkflowTemplatesReply(
            workflowTemplates=[messages.workflow_template_info(t) for t in templates],
            timestamp=messages.now_ms())

    async def ListRepos(self, request: o2.ListReposRequest, context: grpc.aio.ServicerContext
                        ) -> o2.ListReposReply:
        async def work() -> o2.ListReposReply:
            repos = await self.engine.list_repos()
            return o2.ListReposReply(
                repos=[messages.repo_info(r, request.getRevisions) for r in repos],
                globalDefaultRevision=await self.engine.global_default_revision(),
                timestamp=messages.now_ms())
        return await _answer(context, Operation.OTHER, work())

    async def AddRepo(self, request: o2.AddRepoRequest, context: grpc.aio.ServicerContext
                      ) -> o2.AddRepoReply:
        added = await _answer(context, Operation.OTHER,
                              self.engine.add_repo(request.name, request.defaultRevision))
        return o2.AddRepoReply(newDefaultRevision=added.revision, info=added.info,
                               timestamp=messages.now_ms())

    async def RemoveRepo(self, request: o2.RemoveRepoRequest, context: grpc.aio.ServicerContext
                         ) -> o2.RemoveRepoReply:
        new_default = await _answer(context, Operation.OTHER,
                                    self.engine.remove_repo(request.index))
        return o2.RemoveRepoReply(newDefaultRepo=new_default, timestamp=messages.now_ms())

    async def RefreshRepos(self, request: o2.RefreshReposRequest,
                           context: grpc.aio.ServicerContext) -> o2.Empty:
        await _answer(context, Operation.OTHER, self.engine.refresh_repos(request.index))
        return o2.Empty()

    async def SetDefaultRepo(self, request: o2.SetDefaultRepoRequest,
                             context: grpc.aio.ServicerContext) -> o2.Empty:
        await _answer(context, Operation.OTHER, self.engine.set_default_repo(request.index))
        return o2.Empty()

    async def SetGlobalDefaultRevision(self, request: o2.SetGlobalDefaultRevisionRequest,
                                       context: grpc.aio.ServicerContext) -> o2.Empty:
        await _answer(context, Operation.OTHER,
                      self.engine.set_global_default_revision(request.revision))
        return o2.Empty()

    async def SetRepoDefaultRevision(self, request: o2.SetRepoDefaultRevisionRequest,
                                     context: grpc.aio.ServicerContext
                                     ) -> o2.SetRepoDefaultRevisionReply:
        """As AliECS: a revision the repo lacks is answered OK, the reason in `info`."""
        async def work() -> str:
            try:
                await self.engine.set_repo_default_revision(request.index, request.revision)
            except RepoError as error:
                return str(error)
            return ""
        info = await _answer(context, Operation.OTHER, work())
        return o2.SetRepoDefaultRevisionReply(info=info, timestamp=messages.now_ms())


def _log_failure(job: asyncio.Task[Any]) -> None:
    if not job.cancelled() and job.exception() is not None:
        log.warning("a background environment job failed: %s", job.exception())


class ControlExtService(ext_grpc.ControlExtServicer):
    """nutshell.ControlExt: the facade one call per method, records whole."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._destroy_flags = set(inspect.signature(engine.destroy_environment).parameters)
        self._streams: set[Subscription] = set()

    async def ListEnvironments(self, request: empty_pb2.Empty,
                               context: grpc.aio.ServicerContext) -> ext.EnvironmentList:
        found = await _answer(context, Operation.OTHER, self.engine.list_environments())
        return ext.EnvironmentList(environments=[messages.environment_message(e) for e in found])

    async def GetEnvironment(self, request: ext.EnvironmentRequest,
                             context: grpc.aio.ServicerContext) -> ext.Environment:
        info = await _answer(context, Operation.OTHER, self.engine.get_environment(request.id))
        return messages.environment_message(info)

    async def CreateEnvironment(self, request: ext.CreateEnvironmentRequest,
                                context: grpc.aio.ServicerContext) -> ext.Environment:
        variables = await _answer(context, Operation.OTHER, requests.variables(request.varsJson))
        info = await _answer(context, Operation.CREATE, self.engine.create_environment(
            request.workflowTemplate, variables,
            emulate=request.emulate, user=requester(request.user), environment_id=request.id))
        return messages.environment_message(info)

    async def ControlEnvironment(self, request: ext.ControlEnvironmentRequest,
                                 context: grpc.aio.ServicerContext) -> ext.TransitionResult:
        result = await _answer(context, Operation.CONTROL, self.engine.control_environment(
            request.id, request.event, requester(request.user)))
        return messages.result_message(result)

    async def DestroyEnvironment(self, request: ext.DestroyEnvironmentRequest,
                                 context: grpc.aio.ServicerContext) -> ext.TransitionResult:
        flags = {"keep_tasks": request.keepTasks,
                 "allow_in_running_state": request.allowInRunningState, "force": request.force}
        accepted = {k: v for k, v in flags.items() if k in self._destroy_flags}
        result = await _answer(context, Operation.DESTROY, self.engine.destroy_environment(
            request.id, requester(request.user), **accepted))
        return messages.result_message(result)

    async def Subscribe(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[ext.Event]:
        subscription = await _answer(context, Operation.OTHER, self.engine.subscribe())
        self._streams.add(subscription)
        try:
            yield ext.Event(kind=messages.SUBSCRIBED)
            async for event in subscription:
                yield messages.event_ext_message(event)
        finally:
            self._streams.discard(subscription)
            subscription.close()

    def close(self) -> None:
        """End every event stream, so a stopping server need not wait for its subscribers."""
        for subscription in list(self._streams):
            subscription.close()

    async def ListTasks(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
                        ) -> ext.TaskList:
        tasks = await _answer(context, Operation.OTHER, self.engine.list_tasks())
        return ext.TaskList(tasks=messages.tasks_message(tasks))

    async def CleanupTasks(self, request: ext.CleanupTasksRequest,
                           context: grpc.aio.ServicerContext) -> ext.CleanupTasksReply:
        killed, running = await _answer(context, Operation.OTHER,
                                        self.engine.cleanup_tasks(list(request.taskIds)))
        return ext.CleanupTasksReply(killed=messages.tasks_message(killed),
                                     running=messages.tasks_message(running))

    async def QueryRoles(self, request: ext.QueryRolesRequest,
                         context: grpc.aio.ServicerContext) -> ext.RoleList:
        roles = await _answer(context, Operation.OTHER, self.engine.query_roles(
            request.environmentId, request.pathGlob))
        return ext.RoleList(roles=[messages.role_ext_message(r) for r in roles])

    async def GetWorkflowTree(self, request: ext.EnvironmentRequest,
                              context: grpc.aio.ServicerContext) -> ext.RoleInfo:
        root = await _answer(context, Operation.OTHER, self.engine.get_workflow_tree(request.id))
        return messages.role_ext_message(root)

    async def TaskLog(self, request: ext.TaskLogRequest, context: grpc.aio.ServicerContext
                      ) -> ext.TaskLogReply:
        text = await _answer(context, Operation.OTHER,
                             self.engine.task_log(request.taskId, request.lines))
        return ext.TaskLogReply(text=text)

    async def ShutdownAgents(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
                             ) -> ext.AgentList:
        agents = await _answer(context, Operation.OTHER, self.engine.shutdown_agents())
        return ext.AgentList(agents=agents)

    async def ListAgents(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
                         ) -> ext.AgentInfoList:
        agents = await _answer(context, Operation.OTHER, self.engine.list_agents())
        return ext.AgentInfoList(agents=[messages.agent_message(agent) for agent in agents])

    async def WhoAmI(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
                     ) -> ext.Identity:
        """The authenticated caller; without security nobody is checked and the client's
        user is unknown here: user "", every right, authenticated false."""
        identity = caller()
        if identity is None:
            return ext.Identity(user="", role=str(Role.ADMIN), authenticated=False)
        return ext.Identity(user=identity.user, role=str(identity.role), authenticated=True)

    async def ListRepos(self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
                        ) -> ext.RepoList:
        repos = await _answer(context, Operation.OTHER, self.engine.list_repos())
        return ext.RepoList(repos=[messages.repo_message(r) for r in repos])

    async def AddRepo(self, request: ext.AddRepoRequest, context: grpc.aio.ServicerContext
                      ) -> ext.AddRepoReply:
        added = await _answer(context, Operation.OTHER,
                              self.engine.add_repo(request.identifier, request.defaultRevision))
        return messages.add_result_message(added)

    async def SetRepoDefaultRevision(self, request: ext.RevisionRequest,
                                     context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await _answer(context, Operation.OTHER, self.engine.set_repo_default_revision(
            request.index, request.revision))
        return empty_pb2.Empty()

    async def ListWorkflowTemplates(self, request: ext.TemplatesRequest,
                                    context: grpc.aio.ServicerContext) -> ext.TemplateList:
        if request.repoPath:
            await require_role(context, Role.ADMIN, "reading templates from a path on the core")
        templates = await _answer(context, Operation.OTHER, self.engine.list_workflow_templates(
            request.repoPattern, request.revisionPattern, all_branches=request.allBranches,
            all_tags=request.allTags, all_workflows=request.allWorkflows,
            repo_path=request.repoPath or None))
        return ext.TemplateList(templates=[messages.template_message(t) for t in templates])

    async def RenderWorkflow(self, request: ext.RenderRequest,
                             context: grpc.aio.ServicerContext) -> ext.RenderReply:
        if request.repoPath:
            await require_role(context, Role.ADMIN, "rendering from a path on the core")
        variables = await _answer(context, Operation.OTHER, requests.variables(request.varsJson))
        tree = await _answer(context, Operation.OTHER, self.engine.render_workflow(
            request.reference, variables,
            repo_path=request.repoPath or None))
        return ext.RenderReply(treeJson=json.dumps(tree))


def check_free(address: str) -> None:
    """AddressInUse unless `address` ("host:port") can be bound now: a clear one-line error
    before gRPC, which would only log its own."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as error:
        raise AddressInUse(f"cannot listen on {address}: {error}") from None
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(where)
        except OSError as error:
            raise AddressInUse(f"cannot listen on {address}: {error.strerror or error}") from None


@dataclass(frozen=True)
class SecurityReload:
    """What re-reading nutshell.yaml's `security:` did: applied, or refused (the settings
    in force kept), and the line that says so."""

    applied: bool
    message: str


RELOAD_USER = "core"  # the user of a reload's audit line: the core itself, on SIGHUP


def _users(settings: SecuritySettings | None) -> str:
    if settings is None:
        return "none (no security: section, nobody is checked)"
    return ", ".join(f"{user.name} ({user.role})" for user in settings.users)


@dataclass
class CoreServer:
    """The gRPC server of `nutshell core`: start on an address, stop, wait. `security`:
    its TLS and who may call what at start (auth.py); `reload_security` replaces them
    while serving. Every changing call goes to audit.log."""

    engine: Engine
    framework_id: str = ""
    security: SecuritySettings | None = None  # None: no TLS, nobody checked (loopback)

    def __post_init__(self) -> None:
        self.framework_id = self.framework_id or f"nutshell-{self.engine.workdir.root}"
        self.in_force = SecurityInForce(self.security)
        self.audit = AuditLog(self.engine.workdir.root / AUDIT_FILE,
                              self.security.audit if self.security else AuditRotation())
        self.certificates = (ServerCertificates(self.security.tls)
                             if self.security is not None and self.security.tls is not None
                             else None)
        self._reloading = asyncio.Lock()
        # No SO_REUSEPORT: a second core on the same port must fail, not share it.
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *MESSAGE_LIMITS],
                                      interceptors=[AccessInterceptor(self.in_force, self.audit)])
        self.control = ControlService(self.engine, self.framework_id)
        o2_grpc.add_ControlServicer_to_server(self.control, self.server)
        self.extension = ControlExtService(self.engine)
        ext_grpc.add_ControlExtServicer_to_server(self.extension, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (o2.DESCRIPTOR.services_by_name["Control"].full_name,
                 ext.DESCRIPTOR.services_by_name["ControlExt"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.server)
        self._names = names[:3]
        self.address = ""

    async def start(self, address: str = DEFAULT_ADDRESS) -> str:
        """Listen on `address` (port 0: any free one); returns the "host:port" bound.
        AddressInUse when it cannot be bound."""
        check_free(address)
        try:
            port = (self.server.add_insecure_port(address) if self.certificates is None else
                    self.server.add_secure_port(address, self.certificates.credentials()))
        except RuntimeError as error:
            raise AddressInUse(f"cannot listen on {address}: {error}") from None
        await self.server.start()
        for name in ("", *self._names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.address = f"{address.rpartition(':')[0]}:{port}"
        return self.address

    async def stop(self, grace: float = 2.0) -> None:
        """Answer NOT_SERVING, let calls under way finish for `grace` s, then stop."""
        await self.health.enter_graceful_shutdown()
        self.extension.close()
        await self.control.close()
        await self.server.stop(grace)
        await asyncio.to_thread(self.audit.close)

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def reload_security(self) -> SecurityReload:
        """Read nutshell.yaml's `security:` again and put it in force for the next call:
        users, tokens, certificate names, roles, the core's certificates (new connections)
        and the audit rotation. Invalid settings, or a change only a restart can make
        (restart_needed), keep those in force. Either way one audit line says what came of
        it (user "core", method "reload")."""
        settings_file = self.engine.workdir.settings_file
        async with self._reloading:
            running = self.in_force.settings
            try:
                read = await asyncio.to_thread(load_security, settings_file)
            except SecuritySettingsError as error:
                return await self._reloaded("INVALID_ARGUMENT", f"reload refused: {error}; "
                                            "the settings in force are kept")
            if why := restart_needed(running, read):
                return await self._reloaded("FAILED_PRECONDITION", f"reload refused: "
                                            f"{settings_file}: {why}; the settings in force "
                                            "are kept")
            certificates = "unchanged"
            if read is not None and read.tls is not None and self.certificates is not None \
                    and self.certificates.replace(read.tls):
                certificates = "replaced for new connections"
            self.in_force.settings = read
            if read is not None:
                self.audit.rotation = read.audit
            return await self._reloaded("OK", f"{settings_file}: security reloaded: users "
                                        f"{_users(read)}; certificates {certificates}")

    async def _reloaded(self, outcome: str, message: str) -> SecurityReload:
        try:
            await self.audit.record(AuditRecord(
                user=RELOAD_USER, role="", method="reload", outcome=outcome,
                target={"file": str(self.engine.workdir.settings_file)}, detail=message))
        except OSError as error:
            log.error("cannot write the audit log %s: %s", self.audit.path, error)
        return SecurityReload(outcome == "OK", message)
