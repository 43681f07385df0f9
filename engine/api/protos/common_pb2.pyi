from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpecialUserId(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVALID: _ClassVar[SpecialUserId]
    LHC: _ClassVar[SpecialUserId]
    TIMER: _ClassVar[SpecialUserId]

class BeamMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[BeamMode]
    SETUP: _ClassVar[BeamMode]
    ABORT: _ClassVar[BeamMode]
    INJECTION_PROBE_BEAM: _ClassVar[BeamMode]
    INJECTION_SETUP_BEAM: _ClassVar[BeamMode]
    INJECTION_PHYSICS_BEAM: _ClassVar[BeamMode]
    PREPARE_RAMP: _ClassVar[BeamMode]
    RAMP: _ClassVar[BeamMode]
    FLAT_TOP: _ClassVar[BeamMode]
    SQUEEZE: _ClassVar[BeamMode]
    ADJUST: _ClassVar[BeamMode]
    STABLE_BEAMS: _ClassVar[BeamMode]
    LOST_BEAMS: _ClassVar[BeamMode]
    UNSTABLE_BEAMS: _ClassVar[BeamMode]
    BEAM_DUMP_WARNING: _ClassVar[BeamMode]
    BEAM_DUMP: _ClassVar[BeamMode]
    RAMP_DOWN: _ClassVar[BeamMode]
    CYCLING: _ClassVar[BeamMode]
    RECOVERY: _ClassVar[BeamMode]
    INJECT_AND_DUMP: _ClassVar[BeamMode]
    CIRCULATE_AND_DUMP: _ClassVar[BeamMode]
    NO_BEAM: _ClassVar[BeamMode]
INVALID: SpecialUserId
LHC: SpecialUserId
TIMER: SpecialUserId
UNKNOWN: BeamMode
SETUP: BeamMode
ABORT: BeamMode
INJECTION_PROBE_BEAM: BeamMode
INJECTION_SETUP_BEAM: BeamMode
INJECTION_PHYSICS_BEAM: BeamMode
PREPARE_RAMP: BeamMode
RAMP: BeamMode
FLAT_TOP: BeamMode
SQUEEZE: BeamMode
ADJUST: BeamMode
STABLE_BEAMS: BeamMode
LOST_BEAMS: BeamMode
UNSTABLE_BEAMS: BeamMode
BEAM_DUMP_WARNING: BeamMode
BEAM_DUMP: BeamMode
RAMP_DOWN: BeamMode
CYCLING: BeamMode
RECOVERY: BeamMode
INJECT_AND_DUMP: BeamMode
CIRCULATE_AND_DUMP: BeamMode
NO_BEAM: BeamMode

class User(_message.Message):
    __slots__ = ("externalId", "id", "name")
    EXTERNALID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    externalId: int
    id: int
    name: str
    def __init__(self, externalId: _Optional[int] = ..., id: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class WorkflowTemplateInfo(_message.Message):
    __slots__ = ("name", "description", "path", "public")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    path: str
    public: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., path: _Optional[str] = ..., public: _Optional[bool] = ...) -> None: ...

class BeamInfo(_message.Message):
    __slots__ = ("stableBeamsStart", "stableBeamsEnd", "fillNumber", "fillingSchemeName", "beamType", "beamMode")
    STABLEBEAMSSTART_FIELD_NUMBER: _ClassVar[int]
    STABLEBEAMSEND_FIELD_NUMBER: _ClassVar[int]
    FILLNUMBER_FIELD_NUMBER: _ClassVar[int]
    FILLINGSCHEMENAME_FIELD_NUMBER: _ClassVar[int]
    BEAMTYPE_FIELD_NUMBER: _ClassVar[int]
    BEAMMODE_FIELD_NUMBER: _ClassVar[int]
    stableBeamsStart: int
    stableBeamsEnd: int
    fillNumber: int
    fillingSchemeName: str
    beamType: str
    beamMode: BeamMode
    def __init__(self, stableBeamsStart: _Optional[int] = ..., stableBeamsEnd: _Optional[int] = ..., fillNumber: _Optional[int] = ..., fillingSchemeName: _Optional[str] = ..., beamType: _Optional[str] = ..., beamMode: _Optional[_Union[BeamMode, str]] = ...) -> None: ...
