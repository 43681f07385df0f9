"""The JSON codec of OCClite: occ.proto messages as JSON with the proto field names.

OCClite (the FairMQ plugin) serves GetState, Transition and EventStream with
this codec under bare method paths (no "/occ_pb.Occ/" prefix).
"""
from __future__ import annotations

from typing import Callable, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

# Bare method paths, exactly as OCClite registers them.
GET_STATE = "GetState"
TRANSITION = "Transition"
EVENT_STREAM = "EventStream"


def encode(message: Message) -> bytes:
    """Every field printed, enums as numbers, as Go's encoding/json writes them."""
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        use_integers_for_enums=True,
        always_print_fields_with_no_presence=True,
        indent=None,
    ).encode()


def decoder(cls: type[M]) -> Callable[[bytes], M]:
    def decode(data: bytes) -> M:
        return json_format.Parse(data or b"{}", cls(), ignore_unknown_fields=True)
    return decode
