"""The OCPP 1.6J session of the local back office: the `ocpp` library's central-system side for one charge point.

It records every frame, validates it independently, answers the rejections it is told to send, and sends raw
text for tests of malformed frames. Its handlers translate; the BackOffice decides.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.typing import Subprotocol

from simulator.backoffice.schemas import CALL, CALLERROR, CALLRESULT

if TYPE_CHECKING:
    from simulator.backoffice.server import BackOffice

LOGGER = logging.getLogger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
CALL_TIMEOUT_S = 10.0  # long enough for a busy 2-core CI machine, short enough to fail a test quickly


def utc_now_iso() -> str:
    """The current UTC time as OCPP wants it (RFC 3339, millisecond precision, Z)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Session(ChargePoint):
    """One connected charge point: the library's central-system side, with recording and raw calls."""

    def __init__(self, cp_id: str, ws: ServerConnection, office: BackOffice) -> None:
        super().__init__(cp_id, ws, response_timeout=CALL_TIMEOUT_S, logger=LOGGER)
        self.ws = ws
        self._office = office
        self._pending: dict[str, tuple[str, asyncio.Future[list[Any]]]] = {}
        self._own_errors: set[str] = set()  # CALLERRORs the back office meant to send (reject_next)
        self._calls = asyncio.Lock()  # one CALL of ours in flight per connection (OCPP-J)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Record, validate independently, then let the library route the frame."""
        frame = self._office._record(self.id, "in", raw_msg)
        if frame is None:
            return
        kind = frame[0]
        if kind == CALL:
            if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[1], str):
                if isinstance(frame[1] if len(frame) > 1 else None, str):
                    await self._send_error(frame[1], "FormationViolation", "malformed CALL frame")
                return
            action, payload = frame[2], frame[3]
            self._office._check_incoming_call(self.id, action, payload, frame)
            code = self._office._take_rejection(action)
            if code is not None:
                await self._send_error(frame[1], code, f"back office told to reject {action}")
                return
            await super().route_message(raw_msg)
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
            for error in self._office.validator.errors(action, frame[2], response=True):
                self._office._violation(self.id, "in", "schema", action, frame, error)
        if not future.done():
            future.set_result(frame)

    async def _send_error(self, uid: str, code: str, description: str) -> None:
        self._own_errors.add(uid)
        await self._send(json.dumps([CALLERROR, uid, code, description, {}]))

    async def _send(self, message: str) -> None:
        """Record every outgoing frame; a CALLERROR the library produced is a violation by the peer."""
        frame = self._office._record(self.id, "out", message)
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
                self._office._record(self.id, "out", text)
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

    # Handlers: they translate, the BackOffice decides.

    @on(Action.boot_notification)
    def on_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        status, interval = self._office._boot_decision(self.id)
        return call_result.BootNotification(current_time=utc_now_iso(), interval=interval, status=status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now_iso())

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        self._office.connector_status[(self.id, connector_id)] = {"status": status, "errorCode": error_code}
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._office.id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> call_result.StartTransaction:
        info = self._office.id_tag_info(id_tag)
        tx_id = self._office._new_transaction(self.id, connector_id, id_tag, meter_start, timestamp, info)
        return call_result.StartTransaction(transaction_id=tx_id, id_tag_info=info)

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self, transaction_id: int, meter_stop: int, timestamp: str, **kwargs: Any
    ) -> call_result.StopTransaction:
        self._office._stop_transaction(self.id, transaction_id, meter_stop, timestamp, kwargs.get("reason"))
        id_tag = kwargs.get("id_tag")
        return call_result.StopTransaction(id_tag_info=self._office.id_tag_info(id_tag) if id_tag else None)

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        status = "Accepted" if vendor_id in self._office.vendor_ids else "UnknownVendorId"
        return call_result.DataTransfer(status=status)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, **kwargs: Any) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **kwargs: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **kwargs: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **kwargs: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.SignedFirmwareStatusNotification:
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **kwargs: Any) -> call_result.SignCertificate:
        # Accepted means "will be processed": a test sends CertificateSigned itself through call().
        return call_result.SignCertificate(status="Accepted")
