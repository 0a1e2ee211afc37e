"""The OCPP 1.6J session of the local back office: the `ocpp` library's central-system side for one charge point.

Recording, independent validation, rejections and raw text come from `session.RecordingSession`. Its handlers
translate; the BackOffice decides.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.typing import Subprotocol

from simulator.backoffice.schemas import V16
from simulator.backoffice.session import CALL_TIMEOUT_S, RecordingSession, utc_now_iso

if TYPE_CHECKING:
    from simulator.backoffice.server import BackOffice

LOGGER = logging.getLogger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")


class _Session(RecordingSession, ChargePoint):
    """One connected 1.6 charge point: the library's central-system side, with recording and raw calls."""

    version = V16

    def __init__(self, cp_id: str, ws: ServerConnection, office: BackOffice) -> None:
        super().__init__(cp_id, ws, response_timeout=CALL_TIMEOUT_S, logger=LOGGER)
        self._setup_recording(ws, office)

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
