"""Access control of the core API: who is calling, whether their role allows the method,
and the audit line of every call that changes something.

`AccessInterceptor` wraps every method of o2control.Control and nutshell.ControlExt
(health and reflection stay open, so grpc_health_probe and grpcurl work without
credentials: they reveal only whether the core serves and the public .proto schemas).
With security settings, a call must carry `authorization: Bearer <token>` of a known
user, or come over mutual TLS with a client certificate whose CN a user claims; the
token wins when both are given. The user's role must reach the method's, from
METHOD_ACCESS, the one table of who may call what. Without security settings (the
loopback default) nobody is checked and the request's user name stands. The settings
live in one `SecurityInForce`, which the interceptor asks at every call: a reload
(SIGHUP) replaces them there, for the next call.

The authenticated user is the requesting user: the servicers ask `requester()` for the
name to record, which is the caller's identity whenever there is one.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import Message

from engine.api.security import Role, SecuritySettings
from engine.audit import AuditLog, AuditRecord

log = logging.getLogger("engine.api.auth")

_O2 = "/o2control.Control/"
_EXT = "/nutshell.ControlExt/"
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
AUTHORIZATION = "authorization"
LOCAL_ROLE = "local"  # the role an audit line names when no security is configured


@dataclass(frozen=True)
class Access:
    role: Role
    audited: bool  # it changes something: one audit line per call


def _table(role: Role, audited: bool, *methods: str) -> dict[str, Access]:
    return {method: Access(role, audited) for method in methods}


METHOD_ACCESS: dict[str, Access] = {
    **_table(Role.OBSERVER, False, *(_O2 + m for m in (
        "GetFrameworkInfo", "GetEnvironments", "GetEnvironment", "GetActiveDetectors",
        "GetAvailableDetectors", "GetTasks", "GetTask", "GetRoles", "GetWorkflowTemplates",
        "ListRepos", "Subscribe", "GetIntegratedServices"))),
    **_table(Role.OBSERVER, False, *(_EXT + m for m in (
        "ListEnvironments", "GetEnvironment", "Subscribe", "ListTasks", "QueryRoles",
        "GetWorkflowTree", "ListAgents", "ListRepos", "ListWorkflowTemplates",
        "RenderWorkflow", "WhoAmI"))),
    **_table(Role.OPERATOR, True, *(_O2 + m for m in (
        "NewAutoEnvironment", "NewEnvironment", "NewEnvironmentAsync", "ControlEnvironment",
        "ModifyEnvironment", "DestroyEnvironment"))),
    **_table(Role.OPERATOR, True, *(_EXT + m for m in (
        "CreateEnvironment", "ControlEnvironment", "DestroyEnvironment"))),
    **_table(Role.OPERATOR, False, _EXT + "TaskLog"),  # reads, but what tasks print
    **_table(Role.ADMIN, True, *(_O2 + m for m in (
        "Teardown", "CleanupTasks", "AddRepo", "RemoveRepo", "RefreshRepos", "SetDefaultRepo",
        "SetGlobalDefaultRevision", "SetRepoDefaultRevision"))),
    **_table(Role.ADMIN, True, *(_EXT + m for m in (
        "CleanupTasks", "ShutdownAgents", "AddRepo", "SetRepoDefaultRevision"))),
}
UNLISTED = Access(Role.ADMIN, True)  # a method added to a service but not to the table


@dataclass(frozen=True)
class Identity:
    user: str
    role: Role


_CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("caller", default=None)


def caller() -> Identity | None:
    """The authenticated caller of the call being served; None without security settings."""
    return _CALLER.get()


def requester(requested: str) -> str:
    """The user a call acts for: the authenticated caller, else the name the request gave."""
    caller = _CALLER.get()
    return caller.user if caller is not None else requested


async def require_role(context: grpc.aio.ServicerContext, needed: Role, what: str) -> None:
    """For what the method table cannot tell: a request that asks more of the core than
    its method usually does (reading a path on the core's machine). No security: allowed."""
    caller = _CALLER.get()
    if caller is not None and not caller.role.allows(needed):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{what}: needs role {needed}; user {caller.user} is {caller.role}")


def _method_name(method: str) -> str:
    return method.lstrip("/")


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == AUTHORIZATION:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _certificate_name(context: grpc.aio.ServicerContext) -> str:
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode(errors="replace") if names else ""


def target_of(request: Message, reply: Message | None = None) -> dict[str, Any]:
    """What a call acted on, for its audit line: the request's naming fields, and the
    environment a create made when the request could not name it."""
    names = {"id": "environment", "envId": "environment", "environmentId": "environment",
             "workflowTemplate": "workflow", "event": "event", "type": "event",
             "taskIds": "tasks", "taskId": "task", "index": "repo", "identifier": "repo",
             "name": "repo", "revision": "revision"}
    if request.DESCRIPTOR.name == "NewAutoEnvironmentRequest":
        names["id"] = "request"  # the id Subscribe reads its events by
    target: dict[str, Any] = {}
    for descriptor in request.DESCRIPTOR.fields:
        label = names.get(descriptor.name)
        if label is None:
            continue
        value = getattr(request, descriptor.name)
        if descriptor.enum_type is not None:
            known = descriptor.enum_type.values_by_number.get(value)
            value = known.name if known is not None else str(value)  # proto3: any int32
        elif descriptor.is_repeated:
            value = list(value)
        if value or value == 0 and label == "repo":
            target[label] = value
    if reply is not None and "environment" not in target:
        made = getattr(reply, "environment", None)
        made_id = getattr(made, "id", "") if made is not None else getattr(reply, "id", "")
        if isinstance(made_id, str) and made_id:
            target["environment"] = made_id
    return target


@dataclass
class SecurityInForce:
    """The security settings calls are checked against now (None: the loopback default,
    no checks); the one place a reload swaps them. A call reads them once, at its start."""

    settings: SecuritySettings | None


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Checks every call of the control services against METHOD_ACCESS and the settings
    in force, and audits the ones that change something."""

    def __init__(self, security: SecurityInForce, audit: AuditLog | None) -> None:
        self.security = security
        self.audit = audit

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        access = METHOD_ACCESS.get(method, UNLISTED)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, access, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, access, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        raise TypeError(f"{_method_name(method)}: streaming requests are not access-checked")

    async def _identify(self, method: str, access: Access, request: Message,
                        context: grpc.aio.ServicerContext) -> Identity | None:
        """The caller, or the call aborted (UNAUTHENTICATED / PERMISSION_DENIED) with a
        line naming the method and the role it needs; None without security settings."""
        settings = self.security.settings
        if settings is None:
            return None
        name = _method_name(method)
        token = _bearer(context)
        user = None
        if token:
            user = settings.user_of_token(token)
            if user is None:
                await self._refuse(context, request, method, access, "", "",
                                   grpc.StatusCode.UNAUTHENTICATED,
                                   f"{name}: the bearer token is not one this core knows")
        elif common_name := _certificate_name(context):
            user = settings.user_of_certificate(common_name)
        if user is None:
            await self._refuse(context, request, method, access, "", "",
                               grpc.StatusCode.UNAUTHENTICATED,
                               f"{name}: needs credentials: a bearer token (authorization: "
                               "Bearer …; $NUTSHELL_TOKEN or client.token_file) or a client "
                               "certificate of a known user")
        if not user.role.allows(access.role):
            await self._refuse(context, request, method, access, user.name, str(user.role),
                               grpc.StatusCode.PERMISSION_DENIED,
                               f"{name}: needs role {access.role}; user {user.name} is "
                               f"{user.role}")
        return Identity(user.name, user.role)

    async def _refuse(self, context: grpc.aio.ServicerContext, request: Message, method: str,
                      access: Access, user: str, role: str, code: grpc.StatusCode,
                      message: str) -> NoReturn:
        if access.audited:
            await self._record(AuditRecord(user=user, role=role, method=_method_name(method),
                                           outcome=code.name, target=target_of(request),
                                           detail=message))
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # it raises; this keeps NoReturn honest

    async def _record(self, record: AuditRecord) -> None:
        if self.audit is None:
            return
        try:
            await self.audit.record(record)
        except OSError as error:
            log.error("cannot write the audit log %s: %s", self.audit.path, error)

    def _unary(self, method: str, access: Access,
               behaviour: Callable[[Any, Any], Awaitable[Any]]
               ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def checked(request: Message, context: grpc.aio.ServicerContext) -> Any:
            caller = await self._identify(method, access, request, context)
            token = _CALLER.set(caller)
            reply = None
            outcome, detail = "OK", ""
            try:
                reply = await behaviour(request, context)
                return reply
            except BaseException as error:
                code = context.code()
                outcome = (code.name if isinstance(code, grpc.StatusCode) else
                           "CANCELLED" if isinstance(error, asyncio.CancelledError) else
                           "UNKNOWN")
                detail = context.details() or str(error)
                raise
            finally:
                _CALLER.reset(token)
                if access.audited:
                    await self._record(AuditRecord(
                        user=caller.user if caller else _requested_user(request),
                        role=str(caller.role) if caller else LOCAL_ROLE,
                        method=_method_name(method), outcome=outcome,
                        target=target_of(request, reply), detail=detail))
        return checked

    def _stream(self, method: str, access: Access,
                behaviour: Callable[[Any, Any], AsyncIterator[Any]]
                ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def checked(request: Message, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[Any]:
            # Each call runs in a task of its own, so the caller set here is seen by this
            # call only (and by the jobs it starts); no reset, which a generator closed
            # from elsewhere could not do.
            _CALLER.set(await self._identify(method, access, request, context))
            async for reply in behaviour(request, context):
                yield reply
        return checked


def _requested_user(request: Message) -> str:
    """The user name a request carries (o2control's requestUser, our `user`)."""
    fields = request.DESCRIPTOR.fields_by_name
    if "requestUser" in fields and request.HasField("requestUser"):
        return str(request.requestUser.name)
    return str(getattr(request, "user", "")) if "user" in fields else ""
