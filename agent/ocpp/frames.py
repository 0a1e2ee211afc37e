"""OCPP-J frame checks made before the `ocpp` library sees a frame (OCPP-J 1.6 section 4.2.3, 2.0.1 section 4.3).

The library drops any frame it cannot unpack, even when its unique id is readable. Here every incoming
frame gets a verdict: a well-formed CALL or response goes on to the library; a malformed frame whose
unique id can be read, and that is not a response, is answered with a CALLERROR; anything else is dropped
(and logged by the caller). Frame layouts:

    CALL        [2, "<UniqueId>", "<Action>", {<Payload>}]
    CALLRESULT  [3, "<UniqueId>", {<Payload>}]
    CALLERROR   [4, "<UniqueId>", "<errorCode>", "<errorDescription>", {<errorDetails>}]

A response is never answered (two peers could answer each other's errors for ever). The same rules hold in
both versions; only the codes differ, one `ErrorCodes` table per version (`V16_CODES`, `V201_CODES`):

| what is wrong                                   | 1.6                     | 2.0.1                   |
|-------------------------------------------------|-------------------------|-------------------------|
| not JSON, an element missing or extra           | FormationViolation      | RpcFrameworkError       |
| a CALL without its payload                      | ProtocolError           | ProtocolError           |
| a message type id that is no known type         | NotImplemented          | MessageTypeNotSupported |
| the CALL type id given as a string or a float   | TypeConstraintViolation | RpcFrameworkError       |
| an action that is not a string                  | TypeConstraintViolation | RpcFrameworkError       |
| a payload that is not a JSON object             | TypeConstraintViolation | FormatViolation         |
| a payload against the action's schema (library) | FormationViolation      | FormatViolation         |
| an action the version does not define          | NotImplemented          | NotImplemented          |
| an action of the version with no handler here   | NotSupported            | NotSupported            |

1.6 has no code for a broken RPC frame: FormationViolation covers "syntactically incorrect or not conform
the PDU structure". 2.0.1 splits it: RpcFrameworkError is "not a valid RPC request", FormatViolation
"payload syntactically incorrect", ProtocolError "payload not conform the PDU structure".
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

CALL, CALLRESULT, CALLERROR = 2, 3, 4
_WHITESPACE = " \t\n\r"  # JSON's insignificant whitespace
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class ErrorCodes:
    """The CALLERROR codes of one OCPP version for each kind of malformed or unanswerable CALL."""

    version: str  # named in descriptions ("is not an OCPP 1.6 action")
    frame: str  # not JSON, an element missing or extra
    no_payload: str
    message_type: str  # a message type id that is no known type
    type_id: str  # the CALL type id not given as a JSON integer
    action_type: str
    payload_type: str
    schema_format: str  # what the library's schema error "FormatViolation" is called in this version
    unknown_action: str  # the action is not known by the receiver
    unsupported_action: str  # recognized, not supported
    internal: str = "InternalError"


V16_CODES = ErrorCodes(version="1.6", frame="FormationViolation", no_payload="ProtocolError",
                       message_type="NotImplemented", type_id="TypeConstraintViolation",
                       action_type="TypeConstraintViolation", payload_type="TypeConstraintViolation",
                       schema_format="FormationViolation", unknown_action="NotImplemented",
                       unsupported_action="NotSupported")
V201_CODES = ErrorCodes(version="2.0.1", frame="RpcFrameworkError", no_payload="ProtocolError",
                        message_type="MessageTypeNotSupported", type_id="RpcFrameworkError",
                        action_type="RpcFrameworkError", payload_type="FormatViolation",
                        schema_format="FormatViolation", unknown_action="NotImplemented",
                        unsupported_action="NotSupported")


class Verdict(enum.Enum):
    """What to do with an incoming frame."""

    CALL = "call"  # well formed: route it to its handler
    RESPONSE = "response"  # a well-formed CALLRESULT or CALLERROR: match it with the call in flight
    ANSWER = "answer"  # malformed with a readable unique id: answer CALLERROR code/description
    DROP = "drop"  # nothing to answer: log the description and drop it


@dataclass(frozen=True, slots=True)
class FrameCheck:
    """The verdict on one frame, with its unique id when readable."""

    verdict: Verdict
    unique_id: str | None = None
    code: str = ""
    description: str = ""
    action: str = ""
    payload: dict[str, Any] | None = None
    frame: list[Any] | None = None  # a RESPONSE's parsed frame (its reader need not parse it again)


def _drop(description: str, unique_id: str | None = None) -> FrameCheck:
    return FrameCheck(Verdict.DROP, unique_id, description=description)


def _answer(unique_id: str, code: str, description: str) -> FrameCheck:
    return FrameCheck(Verdict.ANSWER, unique_id, code=code, description=description)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def read_head(text: str) -> tuple[Any, str] | None:
    """The message type id and unique id at the start of a frame, even when the rest is not valid JSON."""
    try:
        pos = _skip_ws(text, 0)
        if not text.startswith("[", pos):
            return None
        type_id, pos = _DECODER.raw_decode(text, _skip_ws(text, pos + 1))
        pos = _skip_ws(text, pos)
        if not text.startswith(",", pos):
            return None
        unique_id, _ = _DECODER.raw_decode(text, _skip_ws(text, pos + 1))
    except (ValueError, RecursionError):
        return None
    return (type_id, unique_id) if isinstance(unique_id, str) else None


def _message_type(type_id: Any) -> tuple[int | None, bool]:
    """The message type a type id stands for and whether it was given as a JSON integer."""
    if isinstance(type_id, int) and not isinstance(type_id, bool):
        return type_id, True
    if isinstance(type_id, float) and type_id.is_integer():
        return int(type_id), False
    if isinstance(type_id, str) and type_id.strip().isascii() and type_id.strip().isdigit():
        return int(type_id.strip()), False
    return None, False


def _by_type(type_id: Any, unique_id: str, codes: ErrorCodes) -> FrameCheck | None:
    """The verdict for a frame that is not a proper CALL by its type id; None for a CALL."""
    kind, exact = _message_type(type_id)
    if kind in (CALLRESULT, CALLERROR):
        return None if exact else _drop(f"response with message type id {type_id!r} (not a number)", unique_id)
    if kind == CALL:
        if exact:
            return None
        return _answer(unique_id, codes.type_id, f"MessageTypeId must be the number 2, not {type_id!r}")
    return _answer(unique_id, codes.message_type, f"unknown MessageTypeId {_short(type_id)}")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_frame(raw: str | bytes, codes: ErrorCodes = V16_CODES) -> FrameCheck:
    """The verdict on one incoming websocket message."""
    if isinstance(raw, bytes):  # OCPP-J uses text frames; take a binary one if it is UTF-8 text
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _drop(f"binary frame of {len(raw)} bytes that is not UTF-8 text")
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        head = read_head(raw)
        if head is None:
            return _drop(f"frame of {len(raw)} chars that is not JSON and has no readable unique id")
        type_id, unique_id = head
        return _by_type(type_id, unique_id, codes) or _answer(unique_id, codes.frame, "frame is not valid JSON")
    if not isinstance(frame, list):
        return _drop(f"frame is a JSON {type(frame).__name__}, not an array")
    if len(frame) < 2 or not isinstance(frame[1], str):
        return _drop("frame has no readable unique id")
    type_id, unique_id = frame[0], frame[1]
    verdict = _by_type(type_id, unique_id, codes)
    if verdict is not None:
        return verdict
    if type_id == CALLRESULT:
        if len(frame) != 3:
            return _drop(f"CALLRESULT with {len(frame)} elements instead of 3", unique_id)
        return FrameCheck(Verdict.RESPONSE, unique_id, frame=frame)
    if type_id == CALLERROR:
        if len(frame) not in (4, 5):
            return _drop(f"CALLERROR with {len(frame)} elements instead of 5", unique_id)
        return FrameCheck(Verdict.RESPONSE, unique_id, frame=frame)
    return _check_call(frame, unique_id, codes)


def _check_call(frame: list[Any], unique_id: str, codes: ErrorCodes) -> FrameCheck:
    """The verdict on a frame whose type id is CALL."""
    if len(frame) == 2:
        return _answer(unique_id, codes.frame, "CALL without Action and payload")
    if len(frame) == 3:
        if isinstance(frame[2], str):
            return _answer(unique_id, codes.no_payload, f"CALL {_short(frame[2])} without a payload")
        return _answer(unique_id, codes.frame, "CALL without an Action")
    if len(frame) > 4:
        return _answer(unique_id, codes.frame, f"CALL with {len(frame)} elements instead of 4")
    action, payload = frame[2], frame[3]
    if not isinstance(action, str):
        return _answer(unique_id, codes.action_type, f"Action must be a string, not {type(action).__name__}")
    if not isinstance(payload, dict):
        return _answer(unique_id, codes.payload_type,
                       f"payload of {_short(action)} must be a JSON object, not {type(payload).__name__}")
    return FrameCheck(Verdict.CALL, unique_id, action=action, payload=payload)
