"""Version-neutral frame routing in front of the `ocpp` library: each CALL with a readable id gets one answer.

`FrameGuard` is a `HookedChargePoint` that checks each incoming frame (agent/ocpp/frames.py) before the
library sees it, in the codes of its version's `ErrorCodes` table, and keeps the rules OCPP-J states the
same way in 1.6 and 2.0.1:

- a malformed CALL whose unique id is readable is answered with one CALLERROR (the library would drop it);
- a CALL for an action with no handler is answered NotImplemented (unknown to the version) or NotSupported
  (known, not handled here): the library swaps the two;
- a CALL the library fails on before answering is still answered, InternalError;
- a CALLRESULT or CALLERROR is handed on only when it answers our call in flight (one in flight; a late
  answer to a call that timed out is not queued for the next one);
- while our BootNotification is answered Rejected, no back office CALL is answered (1.6 section 4.2, 2.0.1 B03).

A version puts it before its library ChargePoint and names its table and actions:
`class V16ChargePoint(FrameGuard, ocpp.v16.ChargePoint)` with `FRAME_CODES = V16_CODES` and
`ACTIONS = frozenset(a.value for a in ocpp.v16.enums.Action)`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from ocpp.exceptions import OCPPError
from ocpp.messages import Call
from websockets.exceptions import ConnectionClosed

from agent.framelog import flush_frames, log_frame
from agent.ocpp.frames import CALLRESULT, ErrorCodes, FrameCheck, Verdict, check_frame, read_head
from agent.ocpp.library import HookedChargePoint

LOGGER = logging.getLogger(__name__)
LIBRARY_SCHEMA_CODE = '"FormatViolation"'  # what the library answers a payload against its schema with


def _boot_status(raw_msg: str | bytes) -> str | None:
    """The status of a CALLRESULT frame whose payload has one (a BootNotification's; None otherwise)."""
    try:
        frame = json.loads(raw_msg)
        return str(frame[2]["status"]) if frame[0] == CALLRESULT else None
    except (ValueError, TypeError, KeyError, IndexError):
        return None


class FrameGuard(HookedChargePoint):
    """A library ChargePoint whose incoming frames are checked and answered by the rules of OCPP-J."""

    FRAME_CODES: ClassVar[ErrorCodes]  # the version's CALLERROR codes
    ACTIONS: ClassVar[frozenset[str]]  # every action the version defines (the rest are unknown: NotImplemented)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaited: str | None = None  # unique id of our CALL in flight: only its answer is routed
        self._answers = 0  # CALLRESULTs and CALLERRORs sent: each incoming CALL gets exactly one
        # while our BootNotification is Rejected, no back office initiated message is answered
        self.boot_rejected = False
        self._boot_call: str | None = None  # unique id of our BootNotification in flight

    async def send_frame(self, message: str) -> None:
        codes = self.FRAME_CODES
        # The library answers schema errors with 2.0.1's "FormatViolation"; a version may call it otherwise.
        if message.startswith("[4,") and codes.schema_format != "FormatViolation" and LIBRARY_SCHEMA_CODE in message:
            message = message.replace(LIBRARY_SCHEMA_CODE, json.dumps(codes.schema_format), 1)
        if message.startswith("[2,"):  # before sending: the answer may arrive before send() returns
            head = read_head(message)
            self._awaited = head[1] if head else None
            if '"BootNotification"' in message[:120]:
                self._boot_call = self._awaited
        elif message.startswith(("[3,", "[4,")):
            self._answers += 1
        log_frame("out", message)
        await super().send_frame(message)
        flush_frames()  # the log handlers run while the peer works on this frame

    def response_waited(self, unique_id: str) -> None:
        # a late answer to a call that timed out is ignored, not queued for the next call
        if self._awaited == unique_id:
            self._awaited = None

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Check the frame (agent/ocpp/frames.py), then answer, drop, or hand it to the library."""
        log_frame("in", raw_msg)
        try:
            check = check_frame(raw_msg, self.FRAME_CODES)
            if self.boot_rejected and check.verdict in (Verdict.ANSWER, Verdict.CALL):
                LOGGER.warning("BootNotification was Rejected: not answering the back office's call %r",
                               check.unique_id)
                return
            if check.verdict is Verdict.DROP:
                LOGGER.warning("dropped an incoming frame: %s (unique id %r)", check.description, check.unique_id)
            elif check.verdict is Verdict.ANSWER:
                assert check.unique_id is not None
                LOGGER.warning("malformed frame %r answered %s: %s", check.unique_id, check.code, check.description)
                await self._send_call_error(check.unique_id, check.code, check.description)
            elif check.verdict is Verdict.RESPONSE:
                if check.unique_id != self._awaited:
                    LOGGER.warning("ignored an answer to no call in flight (unique id %r)", check.unique_id)
                    return
                self._awaited = None
                if check.unique_id == self._boot_call:
                    # decided here, before any next frame is routed: a call right behind a Rejected answer
                    # must already go unanswered
                    self.boot_rejected = _boot_status(raw_msg) == "Rejected"
                assert check.frame is not None and check.unique_id is not None
                if not self.answered(check.unique_id, check.frame):  # call_raw's, parsed once; else call()'s
                    await super().route_message(raw_msg)
            else:
                await self._answer_call(check)
        except ConnectionClosed:
            raise
        except Exception:  # a bad frame must never stop the receive loop
            LOGGER.exception("handling a frame failed")

    async def _answer_call(self, check: FrameCheck) -> None:
        """Run a well-formed CALL through the library; exactly one answer, whatever happens."""
        assert check.unique_id is not None and check.payload is not None
        answers = self._answers
        try:
            if not await self._refuse_unhandled(check.unique_id, check.action):
                message = Call(unique_id=check.unique_id, action=check.action, payload=check.payload)
                try:
                    await self.handle_call(message)
                except OCPPError as error:
                    await self.send_frame(message.create_call_error(error).to_json())
        except ConnectionClosed:
            raise
        except Exception:
            LOGGER.exception("handling %s %r failed", check.action[:40], check.unique_id)
        if self._answers == answers:  # the library failed before it answered: still answer once
            LOGGER.error("no answer was sent to %s %r: answering %s", check.action[:40], check.unique_id,
                         self.FRAME_CODES.internal)
            await self._send_call_error(check.unique_id, self.FRAME_CODES.internal, "the call could not be handled")

    async def _send_call_error(self, unique_id: str, code: str, description: str) -> None:
        """Answer a CALL with a CALLERROR with empty details."""
        await self.send_frame(json.dumps([4, unique_id, code, description, {}], separators=(",", ":")))

    async def _refuse_unhandled(self, unique_id: str, action: str) -> bool:
        """Answer a CALL whose action has no handler; True when answered.

        The library swaps the two codes; OCPP-J (1.6 section 4.2.3, 2.0.1 section 4.3): NotImplemented = the
        action is not known by the receiver, NotSupported = recognized but not supported.
        """
        if self.handles(action):
            return False
        codes = self.FRAME_CODES
        if action in self.ACTIONS:
            code, text = codes.unsupported_action, f"{action} is not supported by this charge point"
        else:
            code, text = codes.unknown_action, f"{action[:40]} is not an OCPP {codes.version} action"
        await self._send_call_error(unique_id, code, text)
        return True
