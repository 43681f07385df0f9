"""The executor's OCC clients against real processes over real gRPC.

Protobuf OCC against the dummy (occlib.examples.dummy), OCClite JSON against
the FairMQ device emulator (occlib.examples.fairmq).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from executor.occ_client import (JsonOccClient, OccCallError, OccClient, ProtobufOccClient,
                                 TransitionReply, connect)
from occlib.states import DeviceEventType, StateType, Trigger
from tests.conftest import free_port

DUMMY = "occlib.examples.dummy"
FAIRMQ = "occlib.examples.fairmq"
# Time for a just-opened stream to be subscribed on the server before the test
# makes something happen that the stream must see.
SUBSCRIBE_SECONDS = 0.3


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., OccClient]]:
    """client(address, json=False): a connected-lazily OccClient, closed at teardown."""
    made: list[OccClient] = []

    def make(address: str, json: bool = False) -> OccClient:
        made.append(connect(address, json=json))
        return made[-1]

    yield make
    for c in made:
        await c.close()


def ok_reply(event: str, state: str) -> TransitionReply:
    return TransitionReply(trigger=Trigger.EXECUTOR, state=state, event=event, ok=True)


async def collect(stream: AsyncIterator, into: list) -> None:
    async for item in stream:
        into.append(item)


# --- protobuf OCC: the dummy ---------------------------------------------------------------

async def test_connect_picks_the_transport() -> None:
    proto, json = connect("127.0.0.1:1"), connect("127.0.0.1:1", json=True)
    try:
        assert isinstance(proto, ProtobufOccClient) and not proto.json
        assert isinstance(json, JsonOccClient) and json.json
        assert proto.address == "127.0.0.1:1"
    finally:
        await proto.close()
        await json.close()


async def test_get_state_reports_state_and_pid(spawn, client) -> None:
    dummy = spawn(DUMMY)
    c = client(dummy.address)
    await c.wait_connected(10)
    assert await c.get_state() == ("STANDBY", dummy.proc.pid)


async def test_wait_connected_waits_for_a_late_process(spawn, client) -> None:
    dummy = spawn(DUMMY, "--startup-delay", "1", wait=False)
    c = client(dummy.address)
    await c.wait_connected(15)
    assert (await c.get_state())[0] == "STANDBY"


async def test_wait_connected_times_out_on_a_dead_address(client) -> None:
    c = client(f"127.0.0.1:{free_port()}")
    with pytest.raises(TimeoutError, match="no OCC endpoint reachable at 127.0.0.1"):
        await c.wait_connected(0.5)


@pytest.mark.parametrize("json", [False, True], ids=["protobuf", "json"])
async def test_every_call_to_a_dead_address_is_unavailable(client, json: bool) -> None:
    c = client(f"127.0.0.1:{free_port()}", json=json)
    calls = [c.get_state(), c.transition("STANDBY", "CONFIGURE"), collect(c.event_stream(), [])]
    for call in calls:
        with pytest.raises(OccCallError) as caught:
            await call
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert str(caught.value).startswith("occplugin returned UNAVAILABLE: ")
    assert c.active_streams == 0


async def test_lifecycle_replies_and_arguments(spawn, client) -> None:
    dummy = spawn(DUMMY, "--o2-role", "r1")
    c = client(dummy.address)
    assert await c.transition("STANDBY", "CONFIGURE", {"chans.x.0.address": "tcp://h:1"}) \
        == ok_reply("CONFIGURE", "CONFIGURED")
    assert await c.transition("CONFIGURED", "START", {"runNumber": "42"}, timeout=10) \
        == ok_reply("START", "RUNNING")
    assert await c.transition("RUNNING", "STOP") == ok_reply("STOP", "CONFIGURED")
    assert await c.transition("CONFIGURED", "RESET") == ok_reply("RESET", "STANDBY")
    assert await c.transition("STANDBY", "EXIT") == ok_reply("EXIT", "DONE")
    assert dummy.proc.wait(timeout=10) == 0
    log = dummy.output()
    assert "CONFIGURE run=0 events=0 arguments: chans.x.0.address=tcp://h:1" in log
    assert "START run=42 events=0 arguments: runNumber=42" in log
    assert "STOP run=0" in log and "RESET run=0" in log and "EXIT run=0" in log


async def test_replies_that_are_not_successes_come_back_as_they_are(spawn, client) -> None:
    dummy = spawn(DUMMY, "--fail-on", "START")
    c = client(dummy.address)
    # Not valid in STANDBY: status OK, state unchanged.
    assert await c.transition("STANDBY", "START") == TransitionReply(
        Trigger.DEVICE_INTENTIONAL, "STANDBY", "START", False)
    await c.transition("STANDBY", "CONFIGURE")
    assert await c.transition("CONFIGURED", "START") == TransitionReply(
        Trigger.DEVICE_ERROR, "ERROR", "START", False)
    assert await c.get_state() == ("ERROR", dummy.proc.pid)


async def test_wrong_source_state_is_invalid_argument(spawn, client) -> None:
    dummy = spawn(DUMMY)
    c = client(dummy.address)
    with pytest.raises(OccCallError) as caught:
        await c.transition("RUNNING", "STOP")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value) == ("occplugin returned INVALID_ARGUMENT: transition not possible: "
                                 "state mismatch: source: RUNNING current: STANDBY")


async def test_unknown_event_name_is_unknown(spawn, client) -> None:
    dummy = spawn(DUMMY)
    c = client(dummy.address)
    with pytest.raises(OccCallError) as caught:
        await c.transition("STANDBY", "configure")
    assert caught.value.code == grpc.StatusCode.UNKNOWN
    assert (await c.get_state())[0] == "STANDBY"


async def test_end_of_stream_on_the_event_stream(spawn, client) -> None:
    dummy = spawn(DUMMY, "--eos-after", "5")
    c = client(dummy.address)
    events = c.event_stream()
    await asyncio.sleep(SUBSCRIBE_SECONDS)
    await c.transition("STANDBY", "CONFIGURE")
    await c.transition("CONFIGURED", "START")
    assert await anext(events) == DeviceEventType.END_OF_STREAM
    assert (await c.get_state())[0] == "RUNNING"
    await events.aclose()
    assert c.active_streams == 0


async def test_task_internal_error_on_the_event_stream(spawn, client) -> None:
    dummy = spawn(DUMMY, "--internal-error-after", "5")
    c = client(dummy.address)
    seen: list[DeviceEventType] = []
    async with c.event_stream() as events:
        await asyncio.sleep(SUBSCRIBE_SECONDS)
        await c.transition("STANDBY", "CONFIGURE")
        await c.transition("CONFIGURED", "START")
        async for event in events:
            seen.append(event)
            break
    assert seen == [DeviceEventType.TASK_INTERNAL_ERROR]
    assert (await c.get_state())[0] == "ERROR"
    assert c.active_streams == 0


async def test_streams_end_when_the_process_is_done(spawn, client) -> None:
    dummy = spawn(DUMMY)
    c = client(dummy.address)
    states: list[tuple[StateType, str]] = []
    events: list[DeviceEventType] = []
    readers = [asyncio.create_task(collect(c.state_stream(), states)),
               asyncio.create_task(collect(c.event_stream(), events))]
    await asyncio.sleep(SUBSCRIBE_SECONDS)
    for src, event in [("STANDBY", "CONFIGURE"), ("CONFIGURED", "START"), ("RUNNING", "STOP"),
                       ("CONFIGURED", "RESET"), ("STANDBY", "EXIT")]:
        assert (await c.transition(src, event)).ok
    await asyncio.wait_for(asyncio.gather(*readers), 10)
    assert states == [(StateType.STATE_STABLE, s)
                      for s in ("CONFIGURED", "RUNNING", "CONFIGURED", "STANDBY", "DONE")]
    assert events == []
    assert c.active_streams == 0
    assert dummy.proc.wait(timeout=10) == 0


async def test_breaking_out_or_cancelling_cancels_the_stream_call(spawn, client) -> None:
    dummy = spawn(DUMMY, "--eos-after", "1")
    c = client(dummy.address)
    waiting = asyncio.create_task(collect(c.state_stream(), []))
    events = c.event_stream()
    assert c.active_streams == 2
    await asyncio.sleep(SUBSCRIBE_SECONDS)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert c.active_streams == 1
    await c.transition("STANDBY", "CONFIGURE")
    await c.transition("CONFIGURED", "START")
    async for event in events:
        assert event == DeviceEventType.END_OF_STREAM
        break
    del events
    assert c.active_streams == 0
    # The process is unharmed and still serves.
    assert await c.get_state() == ("RUNNING", dummy.proc.pid)


async def test_close_ends_open_streams(spawn) -> None:
    dummy = spawn(DUMMY)
    c = connect(dummy.address)
    seen: list[DeviceEventType] = []
    reader = asyncio.create_task(collect(c.event_stream(), seen))
    await asyncio.sleep(SUBSCRIBE_SECONDS)
    await c.close()
    await asyncio.wait_for(reader, 5)
    assert seen == [] and c.active_streams == 0


# --- OCClite (JSON, bare paths): the FairMQ emulator -------------------------------------------

async def test_json_get_state_and_raw_fairmq_transitions(spawn, client) -> None:
    device = spawn(FAIRMQ, "--id", "dev-1")
    c = client(device.address, json=True)
    await c.wait_connected(10)
    assert await c.get_state() == ("IDLE", device.proc.pid)
    assert await c.transition("IDLE", "INIT DEVICE", {"chans.data.0.rateLogging": "0"}) \
        == ok_reply("INIT DEVICE", "INITIALIZING DEVICE")
    assert await c.transition("INITIALIZING DEVICE", "COMPLETE INIT") \
        == ok_reply("COMPLETE INIT", "INITIALIZED")
    # Not valid here: OCClite replies, state unchanged, not ok.
    assert await c.transition("INITIALIZED", "RUN") == TransitionReply(
        Trigger.DEVICE_INTENTIONAL, "INITIALIZED", "RUN", False)
    assert await c.get_state() == ("INITIALIZED", device.proc.pid)
    assert "SetProperty chans.data.0.rateLogging = 0" in device.output()


async def test_json_wrong_source_state_is_invalid_argument(spawn, client) -> None:
    device = spawn(FAIRMQ)
    c = client(device.address, json=True)
    with pytest.raises(OccCallError) as caught:
        await c.transition("READY", "RUN")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value) == ("occplugin returned INVALID_ARGUMENT: transition not possible: "
                                 "state mismatch: source: READY current: IDLE")


async def test_json_event_stream_ends_with_the_null_event_at_exiting(spawn, client) -> None:
    device = spawn(FAIRMQ)
    c = client(device.address, json=True)
    seen: list[DeviceEventType] = []
    reader = asyncio.create_task(collect(c.event_stream(), seen))
    await asyncio.sleep(SUBSCRIBE_SECONDS)
    assert (await c.transition("IDLE", "END")).ok
    await asyncio.wait_for(reader, 10)
    assert seen == [DeviceEventType.NULL_DEVICE_EVENT]
    assert c.active_streams == 0
    assert device.proc.wait(timeout=10) == 0


async def test_json_has_no_state_stream(spawn, client) -> None:
    device = spawn(FAIRMQ)
    c = client(device.address, json=True)
    with pytest.raises(OccCallError) as caught:
        async for _ in c.state_stream():
            pass
    assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert str(caught.value) == "occplugin returned UNIMPLEMENTED: OCClite has no StateStream"
    assert c.active_streams == 0


async def test_the_wrong_transport_is_unimplemented(spawn, client) -> None:
    dummy, device = spawn(DUMMY), spawn(FAIRMQ)
    for c in (client(dummy.address, json=True), client(device.address)):
        with pytest.raises(OccCallError) as caught:
            await c.get_state()
        assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED
