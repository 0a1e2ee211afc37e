"""OCPP 2.0.1 H01-H04 reservations, N09-N10 customer information, B08 GetReport.

Reservations are the core's (the same ones 1.6 makes, `ChargePointCore.reserve_now`), on the connector of the
EVSE; the groupIdToken is the core's parent id, so a token of the same group may use the reservation. The
core ends a reservation (used, expired, cancelled) with `ReservationEnded`; an expiry becomes a
ReservationStatusUpdate queued in the outbox (`reservation_reporter`), so one that expires offline still
reaches the back office.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from agent.clock import parse_iso
from agent.core import events as ev
from agent.ocpp.v201.customer import clear_token, notify_parts, token_report
from agent.ocpp.v201.handler_base import HandlerBase
from agent.ports import Stamp
from agent.store import Store

LOGGER = logging.getLogger(__name__)

PROTOCOL = "2.0.1"
CRITERIA = ("Active", "Available", "Enabled", "Problem")  # ComponentCriterionEnumType: the model knows them all
# ReservationEndReason -> reservationUpdateStatus; a used reservation shows in the TransactionEvent's
# reservationId, a cancelled one was the back office's own request: neither is reported again
UPDATE_STATUS = {ev.ReservationEndReason.EXPIRED: "Expired"}


def reservation_reporter(store: Store, outbox_changed: Callable[[], None]
                         ) -> Callable[[ev.ReservationEnded, Stamp], None]:
    """The runtime's `reservation_ended` for 2.0.1: an expiry queues ReservationStatusUpdate in the outbox."""

    def ended(event: ev.ReservationEnded, stamp: Stamp) -> None:
        status = UPDATE_STATUS.get(event.reason)
        if status is None:
            return
        store.enqueue("ReservationStatusUpdate", {"reservationId": event.reservation_id,
                                                  "reservationUpdateStatus": status},
                      wall_time=stamp.wall, monotonic=stamp.monotonic, clock_trusted=stamp.clock_trusted,
                      protocol=PROTOCOL)
        outbox_changed()

    return ended


class ReservationHandlers(HandlerBase):
    """ReserveNow, CancelReservation, GetReport and CustomerInformation of `V201ChargePoint`."""

    # ---- H: reservations ------------------------------------------------------------------------------

    def _reservable_connector(self, evse_id: int, connector_type: str | None) -> int | None:
        """The agent connector of an EVSE to reserve (with the requested connectorType), None: no such one."""
        if evse_id <= 0:
            return None
        for cid in self.connectors_of(evse_id):
            evse, connector = self.evse_of(cid)
            if connector_type is None or self.agent.keys.get_str(
                    f"Connector[{evse},{connector}].ConnectorType") == connector_type:
                return cid
        return None

    @on(Action.reserve_now)
    def on_reserve_now(self, id: int, expiry_date_time: str, id_token: dict[str, Any],
                       connector_type: str | None = None, evse_id: int | None = None,
                       group_id_token: dict[str, Any] | None = None, **_: Any) -> Any:
        keys = self.agent.keys
        if not keys.get_bool("ReservationCtrlr.Enabled", True):
            return call_result.ReserveNow(status="Rejected")
        if evse_id is None and not keys.get_bool("ReservationCtrlr.NonEvseSpecific", False):
            return call_result.ReserveNow(status="Rejected")  # a reservation of no particular EVSE: not offered
        try:
            expiry = parse_iso(expiry_date_time)
        except ValueError:
            expiry = None
        cid = self._reservable_connector(evse_id or 0, connector_type)
        if expiry is None or cid is None:
            return call_result.ReserveNow(status="Rejected")
        parent = str(group_id_token["id_token"]) if group_id_token else None
        result, outs = self.agent.core.reserve_now(ev.ReserveNow(cid, expiry, str(id_token["id_token"]), id, parent),
                                                   self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        LOGGER.info("ReserveNow %d on evse %s: %s", id, evse_id, result.value)
        return call_result.ReserveNow(status=result.value)  # the core's answers are 2.0.1's words too

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        result, outs = self.agent.core.cancel_reservation(ev.CancelReservation(reservation_id), self.agent.now(),
                                                          time.monotonic())
        self.agent.execute(outs)
        return call_result.CancelReservation(status=result.value)

    # ---- B08: GetReport -----------------------------------------------------------------------------------

    def _report(self, component_variable: list[dict[str, Any]] | None,
                component_criteria: list[str] | None) -> list[dict[str, Any]] | str:
        """The reportData of a GetReport, or the refusal to answer with."""
        if self.device_model is None:
            return "NotSupported"
        if component_criteria and any(c not in CRITERIA for c in component_criteria):
            return "NotSupported"
        limit = self.agent.keys.get_int("DeviceDataCtrlr.ItemsPerMessage[GetReport]", 50)
        if component_variable is not None and len(component_variable) > limit:
            return "Rejected"  # more than one request may name: ItemsPerMessage bounds it
        wire = [_camel(cv) for cv in component_variable or []]
        return self.device_model.report(wire or None, component_criteria or None)

    @on(Action.get_report)
    def on_get_report(self, request_id: int, component_variable: list[dict[str, Any]] | None = None,
                      component_criteria: list[str] | None = None, **_: Any) -> Any:
        report = self._report(component_variable, component_criteria)
        if isinstance(report, str):
            return call_result.GetReport(status=report)
        return call_result.GetReport(status="Accepted" if report else "EmptyResultSet")

    @after(Action.get_report)
    async def after_get_report(self, request_id: int, component_variable: list[dict[str, Any]] | None = None,
                               component_criteria: list[str] | None = None, **_: Any) -> None:
        report = self._report(component_variable, component_criteria)
        if isinstance(report, str) or not report or self.device_model is None:
            return
        # the report follows the answer, in NotifyReport parts of at most ItemsPerMessage items (as B07)
        for part in self.device_model.report_parts(request_id, report):
            await self.conn.send_plain("NotifyReport", part)

    # ---- N09/N10: customer information ------------------------------------------------------------------

    @on(Action.customer_information)
    def on_customer_information(self, request_id: int, report: bool, clear: bool,
                                id_token: dict[str, Any] | None = None, customer_identifier: str | None = None,
                                customer_certificate: dict[str, Any] | None = None, **_: Any) -> Any:
        valid = _customer_request_valid(report, clear, id_token, customer_identifier, customer_certificate)
        return call_result.CustomerInformation(status="Accepted" if valid else "Invalid")

    @after(Action.customer_information)
    async def after_customer_information(self, request_id: int, report: bool, clear: bool,
                                         id_token: dict[str, Any] | None = None,
                                         customer_identifier: str | None = None,
                                         customer_certificate: dict[str, Any] | None = None, **_: Any) -> None:
        if not _customer_request_valid(report, clear, id_token, customer_identifier, customer_certificate):
            return
        lines: list[str] = []
        token = str(id_token["id_token"]) if id_token else None
        settings = self.agent.settings
        if token is not None and report:
            # reported before a clear of the same request erases it: the report says what was held
            lines += token_report(self.agent.store, token, list_enabled=settings.local_auth_list_enabled,
                                  cache_enabled=settings.auth_cache_enabled)
        if token is not None and clear:
            lines += clear_token(self.agent.store, token)
            LOGGER.info("CustomerInformation %d: customer data of a token cleared", request_id)
        # no customer identifiers or certificates are kept: a request naming only those finds nothing
        for part in notify_parts(request_id, lines, self.agent.now()):
            await self.conn.send_plain("NotifyCustomerInformation", part)


def _customer_request_valid(report: bool, clear: bool, id_token: dict[str, Any] | None,
                            customer_identifier: str | None, customer_certificate: dict[str, Any] | None) -> bool:
    """A request that names a customer and asks for a report or a clear (anything else answers Invalid)."""
    names_one = id_token is not None or customer_identifier is not None or customer_certificate is not None
    return names_one and (report or clear)


def _camel(cv: dict[str, Any]) -> dict[str, Any]:
    """A componentVariable as the library hands it (snake_case keys) in the wire's camelCase."""
    return dict(snake_to_camel_case(cv))
