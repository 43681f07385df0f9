"""Only the task's owner may drive it: a per-task token on every OCC call.

The executor that starts a task makes a random token and hands it to the task
in its environment only (OCC_CONTROL_TOKEN, never on the command line). When
the variable is set, the OCC server refuses every call that does not carry
`authorization: Bearer <token>` with UNAUTHENTICATED. Without the variable (a
process started by hand) nothing is asked, as in OCClib; the control port is
bound to loopback either way, so only this machine can reach it.
"""
from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

TOKEN_ENV = "OCC_CONTROL_TOKEN"
AUTH_HEADER = "authorization"


def new_token() -> str:
    """A fresh random token for one task."""
    return secrets.token_urlsafe(32)


def control_token(environ: Mapping[str, str] | None = None) -> str:
    """The token this process must be driven with ("" when none was given)."""
    env = os.environ if environ is None else environ
    return env.get(TOKEN_ENV, "").strip()


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that proves a client holds `token` (none for an empty token)."""
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def _given(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == AUTH_HEADER:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def refusal_message(given: str, method: str, what: str) -> str:
    why = ("wrong token" if given else
           f"no '{AUTH_HEADER}: Bearer <token>' metadata (the token is in the task's ${TOKEN_ENV})")
    return f"{what}: {method} refused: {why}"


class OwnerCheck(grpc.ServerInterceptor):
    """Refuses every OCC call without the task's token, before any handler runs."""

    def __init__(self, token: str, what: str = "OCC endpoint") -> None:
        self._expected = f"Bearer {token}".encode()
        self._what = what

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        given = _given(details)
        if handler is None or hmac.compare_digest(given.encode(), self._expected):
            return handler
        return _refusing(handler, refusal_message(given, details.method, self._what))


def _refusing(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # a generator, as a streaming handler is

    options = {"request_deserializer": handler.request_deserializer,
               "response_serializer": handler.response_serializer}
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **options)
    return grpc.unary_unary_rpc_method_handler(refuse, **options)


def owner_interceptors(environ: Mapping[str, str] | None = None, what: str = "OCC endpoint"
                       ) -> list[grpc.ServerInterceptor]:
    """The interceptors an OCC server installs: an OwnerCheck when a token was given."""
    token = control_token(environ)
    return [OwnerCheck(token, what)] if token else []
