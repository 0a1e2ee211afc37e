"""What every back-office session does whatever its OCPP version: record, validate, route, send raw frames.

A version's session is `class X(RecordingSession, ocpp.vNN.ChargePoint)`: this mixin comes first so that its
`route_message` and `_send` wrap the library's. The BackOffice decides; the session records and translates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection

from simulator.backoffice.schemas import CALL, CALLERROR, CALLRESULT, V16, SchemaValidator

if TYPE_CHECKING:
    from simulator.backoffice.server import BackOffice

CALL_TIMEOUT_S = 10.0  # long enough for a busy 2-core CI machine, short enough to fail a test quickly
# The CALLERROR code for a malformed CALL (1.6 spells it FormationViolation, 2.0.1 FormatViolation).
FORMAT_ERROR_CODES = {"1.6": "FormationViolation", "2.0.1": "FormatViolation"}


def utc_now_iso() -> str:
    """The current UTC time as OCPP wants it (RFC 3339, millisecond precision, Z)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecordingSession:
    """Recording, independent validation and raw calls for one connected charge point (a mixin)."""

    version: str = V16
    id: str

    def _setup_recording(self, ws: ServerConnection, office: BackOffice) -> None:
        self.ws = ws
        self._office = office
        self.validator: SchemaValidator = office.validator_for(self.version)
        self._pending: dict[str, tuple[str, asyncio.Future[list[Any]]]] = {}
        self._own_errors: set[str] = set()  # CALLERRORs the back office meant to send (reject_next)
        self._calls = asyncio.Lock()  # one CALL of ours in flight per connection (OCPP-J)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Record, validate independently, then let the library route the frame."""
        frame = self._office._record(self.id, "in", raw_msg, version=self.version)
        if frame is None:
            return
        kind = frame[0]
        if kind == CALL:
            if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[1], str):
                if isinstance(frame[1] if len(frame) > 1 else None, str):
                    await self._send_error(frame[1], FORMAT_ERROR_CODES[self.version], "malformed CALL frame")
                return
            action, payload = frame[2], frame[3]
            self._office._check_incoming_call(self.id, action, payload, frame, validator=self.validator)
            code = self._office._take_rejection(action)
            if code is not None:
                await self._send_error(frame[1], code, f"back office told to reject {action}")
                return
            await super().route_message(raw_msg)  # type: ignore[misc]
            return
        uid = frame[1] if len(frame) > 1 else None
        entry = self._pending.get(uid) if isinstance(uid, str) else None
        if entry is None:
            self._office._violation(
                self.id, "in", "unknown_response", None, frame, "answer to no pending call"
            )
            return
        action, future = entry
        if kind == CALLRESULT and len(frame) == 3:
            for error in self.validator.errors(action, frame[2], response=True):
                self._office._violation(self.id, "in", "schema", action, frame, error)
        if not future.done():
            future.set_result(frame)

    async def _send_error(self, uid: str, code: str, description: str) -> None:
        self._own_errors.add(uid)
        await self._send(json.dumps([CALLERROR, uid, code, description, {}]))

    async def _send(self, message: str) -> None:
        """Record every outgoing frame; a CALLERROR the library produced is a violation by the peer."""
        frame = self._office._record(self.id, "out", message, version=self.version)
        if frame is not None and frame[0] == CALLERROR:
            uid = frame[1]
            if uid in self._own_errors:
                self._own_errors.discard(uid)
            else:
                call = self._office._log.find_call(self.id, "in", uid)
                action = call["action"] if call else None
                self._office._violation(
                    self.id,
                    "in",
                    "callerror_sent",
                    action,
                    frame,
                    f"ocpp library answered {frame[2]}: {frame[3]}",
                )
        await self.ws.send(message)

    async def send_call(self, action: str, payload: dict[str, Any], timeout: float) -> list[Any]:
        """Send one CALL (one in flight per connection, as OCPP-J requires) and return the answer frame."""
        async with self._calls:
            uid = str(uuid.uuid4())
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._pending[uid] = (action, future)
            try:
                await self._send(json.dumps([CALL, uid, action, payload], separators=(",", ":")))
                return await asyncio.wait_for(future, timeout)
            finally:
                self._pending.pop(uid, None)

    async def send_raw(self, text: str, unique_id: str | None, action: str, timeout: float) -> list[Any] | None:
        """Send any text as it is (malformed or oversized frames); the answer to unique_id, None if none asked."""
        async with self._calls:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            if unique_id is not None:
                self._pending[unique_id] = (action, future)
            try:
                self._office._record(self.id, "out", text, version=self.version)
                await self.ws.send(text)  # not self._send: a CALLERROR sent on purpose is no violation
                return None if unique_id is None else await asyncio.wait_for(future, timeout)
            finally:
                if unique_id is not None:
                    self._pending.pop(unique_id, None)

    def fail_pending(self) -> None:
        """The connection is gone: every waiting call fails now rather than at its timeout."""
        for _action, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.id} disconnected"))
