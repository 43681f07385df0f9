"""Clients of a controlled process's OCC endpoint, in both AliECS transports.

Protobuf OCC (OCClib processes, the legacy FairMQ plugin) is the generated
occ_pb.Occ service; OCClite (the default FairMQ plugin) is the same messages as
JSON under bare method paths, without StateStream. Every gRPC failure surfaces
as OccCallError, worded as the AliECS executor reports it.

Python gRPC always sends content-type `application/grpc` (it drops a
user-supplied `application/grpc+json`); OCClite servers dispatch on the path,
not on the content type, so the JSON client still reaches them.
"""
from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from occlib import jsoncodec
from occlib.protos import occ_pb2 as pb
from occlib.owner import token_metadata
from occlib.protos import occ_pb2_grpc
from occlib.states import DeviceEventType, StateType, Trigger

T = TypeVar("T")

# Reconnect quickly while a freshly started process opens its port (AliECS dials
# with a 200 ms base backoff); cap the wait between attempts so a late start is
# noticed within a couple of seconds.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    # Despite its name, gRPC core reads this as the minimum *connect timeout* of one
    # attempt (AliECS: 5 s), not as a backoff; it may exceed the max backoff below.
    ("grpc.min_reconnect_backoff_ms", 5000),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


@dataclass(frozen=True)
class TransitionReply:
    """occ_pb.TransitionReply as received; `event` is the reply's transitionEvent."""

    trigger: Trigger
    state: str
    event: str
    ok: bool


class OccCallError(Exception):
    """A gRPC call to the OCC endpoint failed (or answered something unreadable)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"occplugin returned {self.code.name}: {self.details}"


def _call_error(error: grpc.aio.AioRpcError) -> OccCallError:
    return OccCallError(error.code(), error.details() or "")


def _enum_value(enum: Callable[[int], T], value: int, what: str) -> T:
    try:
        return enum(value)
    except ValueError:
        raise OccCallError(grpc.StatusCode.UNKNOWN, f"reply carries unknown {what} {value}") from None


def _task_cancelling() -> bool:
    """Whether the running task is being cancelled (as opposed to its gRPC call)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(frozen=True)
class _Methods:
    get_state: grpc.aio.UnaryUnaryMultiCallable
    transition: grpc.aio.UnaryUnaryMultiCallable
    event_stream: grpc.aio.UnaryStreamMultiCallable


class OccClient(ABC):
    """One channel to one OCC endpoint; every call is async (grpc.aio)."""

    json: bool = False

    def __init__(self, address: str, token: str = "") -> None:
        """`token`: the task's OCC_CONTROL_TOKEN, sent with every call ("" sends none)."""
        self.address = address
        self._metadata = token_metadata(token)
        self._channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._methods = self._bind(self._channel)
        self._streams: set[grpc.aio.Call] = set()
        self._closed = False

    @abstractmethod
    def _bind(self, channel: grpc.aio.Channel) -> _Methods:
        """The transport's GetState, Transition and EventStream callables."""

    @abstractmethod
    def state_stream(self) -> AsyncIterator[tuple[StateType, str]]:
        """Every state change the process publishes; ends when it closes the stream (DONE)."""

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active_streams(self) -> int:
        """Stream calls still open on this client: 0 once every consumer has let go."""
        return len(self._streams)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the channel is connected; TimeoutError if it is not within `timeout` s."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no OCC endpoint reachable at {self.address} within {timeout:g} s") from None

    async def get_state(self, timeout: float | None = 5.0) -> tuple[str, int]:
        """(state as the process names it, pid)."""
        reply = await self._unary(self._methods.get_state, pb.GetStateRequest(), timeout)
        return reply.state, reply.pid

    async def transition(self, src: str, event: str, arguments: Mapping[str, str] | None = None,
                         timeout: float | None = None) -> TransitionReply:
        """One Transition call. No deadline unless `timeout`: a RUNNING process may be slow."""
        request = pb.TransitionRequest(
            srcState=src, transitionEvent=event,
            arguments=[pb.ConfigEntry(key=k, value=v) for k, v in (arguments or {}).items()])
        reply = await self._unary(self._methods.transition, request, timeout)
        return TransitionReply(trigger=_enum_value(Trigger, reply.trigger, "trigger"),
                               state=reply.state, event=reply.transitionEvent, ok=reply.ok)

    def event_stream(self) -> "OccStream[DeviceEventType]":
        """Device events until the stream closes; a NULL_DEVICE_EVENT is yielded and ends it.

        The AliECS executor stops reading at NULL_DEVICE_EVENT (OCClite sends one
        when the device reaches EXITING or ERROR), so this does too. The call is
        opened at once, so events from then on are not missed.
        """
        return self._stream(
            self._methods.event_stream, pb.EventStreamRequest(),
            lambda reply: _enum_value(DeviceEventType, reply.event.type, "device event type"),
            lambda event: event == DeviceEventType.NULL_DEVICE_EVENT)

    async def close(self) -> None:
        """Close the channel; open streams end, pending calls are cancelled."""
        self._closed = True
        await self._channel.close()

    async def __aenter__(self) -> "OccClient":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"

    async def _unary(self, method: grpc.aio.UnaryUnaryMultiCallable, request: Message,
                     timeout: float | None) -> Any:
        self._check_open()
        call = method(request, timeout=timeout, metadata=self._metadata)
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise _call_error(error) from None
        except asyncio.CancelledError:
            call.cancel()
            if self._closed and not _task_cancelling():
                raise OccCallError(grpc.StatusCode.CANCELLED,
                                   f"client of {self.address} closed during the call") from None
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the OCC client of {self.address} is closed")

    def _stream(self, method: grpc.aio.UnaryStreamMultiCallable, request: Message,
                convert: Callable[[Any], T], last: Callable[[T], bool] = lambda _: False
                ) -> "OccStream[T]":
        self._check_open()
        call = method(request, metadata=self._metadata)
        self._streams.add(call)
        return OccStream(call, convert, last, self)

    def _stream_finished(self, call: grpc.aio.UnaryStreamCall) -> None:
        self._streams.discard(call)


class OccStream(Generic[T]):
    """The replies of one server stream, converted; its call is opened at once.

    The call is cancelled however the consumer leaves: end of stream, error,
    aclose() or `async with`, a cancelled consumer task, or simply dropping the
    iterator (a `break` out of `async for`).
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall, convert: Callable[[Any], T],
                 last: Callable[[T], bool], client: OccClient) -> None:
        self._client = client
        self._call: grpc.aio.UnaryStreamCall | None = call
        self._convert = convert
        self._last = last

    def __aiter__(self) -> "OccStream[T]":
        return self

    async def __anext__(self) -> T:
        if self._call is None:
            raise StopAsyncIteration
        try:
            reply = await self._call.read()
        except grpc.aio.AioRpcError as error:
            self._finish()
            raise _call_error(error) from None
        except asyncio.CancelledError:
            self._finish()
            # read() raises CancelledError also when close() cancelled the call;
            # that ends the stream, a cancelled consumer task does not.
            if self._client.closed and not _task_cancelling():
                raise StopAsyncIteration from None
            raise
        if reply is grpc.aio.EOF:
            self._finish()
            raise StopAsyncIteration
        try:
            value = self._convert(reply)
        except OccCallError:
            self._finish()
            raise
        if self._last(value):
            self._finish()
        return value

    async def aclose(self) -> None:
        self._finish()

    async def __aenter__(self) -> "OccStream[T]":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._finish()

    def __del__(self) -> None:
        if getattr(self, "_call", None) is not None:
            self._finish()

    def _finish(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
            self._client._stream_finished(call)


class ProtobufOccClient(OccClient):
    """Protobuf OCC: /occ_pb.Occ/* through the generated stub."""

    json = False

    def _bind(self, channel: grpc.aio.Channel) -> _Methods:
        self._stub = occ_pb2_grpc.OccStub(channel)
        return _Methods(get_state=self._stub.GetState, transition=self._stub.Transition,
                        event_stream=self._stub.EventStream)

    def state_stream(self) -> "OccStream[tuple[StateType, str]]":
        return self._stream(
            self._stub.StateStream, pb.StateStreamRequest(),
            lambda reply: (_enum_value(StateType, reply.type, "state type"), reply.state))


class JsonOccClient(OccClient):
    """OCClite: JSON bodies with the proto field names under bare method paths."""

    json = True

    def _bind(self, channel: grpc.aio.Channel) -> _Methods:
        return _Methods(
            get_state=channel.unary_unary(
                jsoncodec.GET_STATE, request_serializer=jsoncodec.encode,
                response_deserializer=jsoncodec.decoder(pb.GetStateReply)),
            transition=channel.unary_unary(
                jsoncodec.TRANSITION, request_serializer=jsoncodec.encode,
                response_deserializer=jsoncodec.decoder(pb.TransitionReply)),
            event_stream=channel.unary_stream(
                jsoncodec.EVENT_STREAM, request_serializer=jsoncodec.encode,
                response_deserializer=jsoncodec.decoder(pb.EventStreamReply)),
        )

    def state_stream(self) -> AsyncIterator[tuple[StateType, str]]:
        """Refused at once: OCClite serves no StateStream."""
        raise OccCallError(grpc.StatusCode.UNIMPLEMENTED, "OCClite has no StateStream")


def connect(address: str, *, json: bool = False, token: str = "") -> OccClient:
    """A client for `address` ("host:port"); json=True for OCClite; `token` the task's
    OCC_CONTROL_TOKEN. Connects lazily."""
    return JsonOccClient(address, token) if json else ProtobufOccClient(address, token)
