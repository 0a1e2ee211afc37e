"""The OCPP 2.0.1 session of the local back office: the `ocpp` library's CSMS side for one charging station.

Chosen when the station's websocket speaks subprotocol `ocpp2.0.1`. Recording, independent validation against
the official 2.0.1 schemas, rejections and raw text come from `session.RecordingSession`, as in 1.6. Its
handlers translate; the BackOffice decides (boot status, id tokens from the same list as 1.6's id tags, the
transaction records).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.typing import Subprotocol

from simulator.backoffice.schemas import V201
from simulator.backoffice.session import CALL_TIMEOUT_S, RecordingSession, utc_now_iso

if TYPE_CHECKING:
    from simulator.backoffice.server import BackOffice

LOGGER = logging.getLogger(__name__)

SUBPROTOCOL_201 = Subprotocol("ocpp2.0.1")


class V201Session(RecordingSession, ChargePoint):
    """One connected 2.0.1 charging station: the library's CSMS side, with recording and raw calls."""

    version = V201

    def __init__(self, cp_id: str, ws: ServerConnection, office: BackOffice) -> None:
        super().__init__(cp_id, ws, response_timeout=CALL_TIMEOUT_S, logger=LOGGER)
        self._setup_recording(ws, office)

    # Handlers: they translate, the BackOffice decides. The library passes snake_case keyword arguments.

    @on(Action.boot_notification)
    def on_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        status, interval = self._office._boot_decision(self.id)
        return call_result.BootNotification(current_time=utc_now_iso(), interval=interval, status=status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now_iso())

    @on(Action.status_notification)
    def on_status_notification(
        self, connector_status: str, evse_id: int, connector_id: int, **kwargs: Any
    ) -> call_result.StatusNotification:
        self._office.evse_status[(self.id, evse_id, connector_id)] = connector_status
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_token_info=self._office.id_token_info(id_token["id_token"]))

    @on(Action.transaction_event)
    def on_transaction_event(self, **kwargs: Any) -> call_result.TransactionEvent:
        self._office._transaction_event(self.id, kwargs)
        id_token = kwargs.get("id_token")
        # E01/C01: idTokenInfo answers an event that carries an idToken, and only such an event
        info = self._office.id_token_info(id_token["id_token"]) if id_token else None
        return call_result.TransactionEvent(id_token_info=info)

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.notify_report)
    def on_notify_report(self, **kwargs: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on(Action.notify_event)
    def on_notify_event(self, **kwargs: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @on(Action.notify_monitoring_report)
    def on_notify_monitoring_report(self, **kwargs: Any) -> call_result.NotifyMonitoringReport:
        return call_result.NotifyMonitoringReport()

    @on(Action.notify_customer_information)
    def on_notify_customer_information(self, **kwargs: Any) -> call_result.NotifyCustomerInformation:
        return call_result.NotifyCustomerInformation()

    @on(Action.report_charging_profiles)
    def on_report_charging_profiles(self, **kwargs: Any) -> call_result.ReportChargingProfiles:
        return call_result.ReportChargingProfiles()

    @on(Action.reservation_status_update)
    def on_reservation_status_update(self, **kwargs: Any) -> call_result.ReservationStatusUpdate:
        return call_result.ReservationStatusUpdate()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **kwargs: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **kwargs: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **kwargs: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        status = "Accepted" if vendor_id in self._office.vendor_ids else "UnknownVendorId"
        return call_result.DataTransfer(status=status)

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **kwargs: Any) -> call_result.SignCertificate:
        # Accepted means "will be processed": a test sends CertificateSigned itself through call().
        return call_result.SignCertificate(status="Accepted")
