"""OCPP 2.0.1 handlers: the `ocpp` library's ChargePoint with the agent's `@on`/`@after` handlers.

The session (agent/ocpp/session.py) runs the connection; agent/ocpp/v201/connection.py is its 2.0.1 adapter.
Handlers translate between 2.0.1's EVSE numbering and the agent's connectors and ask the core; they never
decide. Calls to the back office are never awaited inside an `@on` handler (the library's receive loop would
deadlock): they run as tasks or `@after`. The device model (GetVariables, SetVariables, GetBaseReport) is
another object behind `DeviceModelPort`, passed in by the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from agent.core import events as ev
from agent.ocpp.frames import V201_CODES
from agent.ocpp.routing import FrameGuard
from agent.ocpp.v201.handler_base import DeviceModelPort, HandlerBase
from agent.ocpp.v201.journal import V201Journal
from agent.ocpp.v201.monitoring import MonitoringHandlers
from agent.ocpp.v201.profiles import ProfileError
from agent.ocpp.v201.reservations import ReservationHandlers
from agent.ocpp.v201.security import SecurityHandlers
from agent.ocpp.v201.services import ServiceHandlers
from agent.ocpp.v201.smart_charging import SmartChargingHandlers
from agent.store import AuthEntry

if TYPE_CHECKING:
    from agent.ocpp.session import Session
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

RESET_WAIT_S = 8.0  # longest a reset waits for the Ended events to be recorded and sent
IDLE_POLL_S = 1.0  # how often an OnIdle reset looks for the last transaction's end
VENDOR_ID = "evse-agent"
SERVICE_TRIGGERS = ("FirmwareStatusNotification", "LogStatusNotification")  # services.py answers these
TRIGGERABLE = ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification", "TransactionEvent",
               *SERVICE_TRIGGERS, "SignChargingStationCertificate")
# 1.6 words of the core's unlock answer -> UnlockStatusEnumType
UNLOCK_STATUS = {ev.UnlockResult.UNLOCKED: "Unlocked", ev.UnlockResult.UNLOCK_FAILED: "UnlockFailed",
                 ev.UnlockResult.NOT_SUPPORTED: "UnlockFailed"}


REPORT_BASES = ("ConfigurationInventory", "FullInventory", "SummaryInventory")


def _combined(results: list[str]) -> str:
    """One answer for a change on several connectors: any Rejected wins, then Scheduled."""
    for status in ("Rejected", "Scheduled"):
        if status in results:
            return status
    return "Accepted" if results else "Rejected"


class V201ChargePoint(SmartChargingHandlers, ServiceHandlers, SecurityHandlers, MonitoringHandlers,
                      ReservationHandlers, HandlerBase, FrameGuard, ChargePoint):
    """The `ocpp` library's 2.0.1 ChargePoint with this agent's handlers, its frames checked by FrameGuard."""

    FRAME_CODES = V201_CODES
    ACTIONS = frozenset(a.value for a in Action)

    def __init__(self, cp_id: str, connection: Any, agent: Agent, conn: Session, response_timeout: float,
                 device_model: DeviceModelPort | None = None,
                 evses: Mapping[int, tuple[int, int]] | None = None) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout)
        self.agent = agent
        self.conn = conn
        self.device_model = device_model
        # agent connector id -> (evseId, connectorId); each connector its own EVSE unless told otherwise
        self.evses = dict(evses) if evses is not None else {cid: (cid, 1) for cid in agent.connectors}
        self.boot_pending = False  # B02: configuration only, no transaction starts

    def _open_transaction(self, transaction_id: str) -> int | None:
        """The local id of the running transaction with this station transactionId."""
        for row in self.agent.store.unfinished_transactions():
            if row.station_tx_id == transaction_id:
                return row.tx_local_id
        return None

    # ---- F: remote control ----------------------------------------------------------------------------

    @on(Action.request_start_transaction)
    def on_request_start_transaction(self, id_token: dict[str, Any], remote_start_id: int,
                                     evse_id: int | None = None, charging_profile: dict[str, Any] | None = None,
                                     **_: Any) -> Any:
        if self.boot_pending:
            return call_result.RequestStartTransaction(status="Rejected")
        if evse_id is not None:
            ids = self.connectors_of(evse_id)
            if not ids or evse_id == 0:
                return call_result.RequestStartTransaction(status="Rejected")
            connector_id: int | None = ids[0]
        else:
            connector_id = None
        try:  # K05: a TxProfile for the transaction this start makes
            tx_profile, raw_profile = self.remote_start_profile(charging_profile, connector_id)
        except ProfileError as err:
            LOGGER.warning("RequestStartTransaction %d rejected, chargingProfile: %s", remote_start_id, err)
            return call_result.RequestStartTransaction(status="Rejected", status_info=err.status_info())
        result, outs = self.agent.core.remote_start(
            ev.RemoteStart(connector_id, str(id_token["id_token"]), tx_profile), self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        transaction_id = None
        if connector_id is not None and (session := self.agent.core.session(connector_id)) is not None:
            row = self.agent.store.transaction(session.local_tx_id)
            transaction_id = row.station_tx_id if row is not None else None  # cable first: it already runs
        journal = self.agent.journal
        if result is ev.RemoteStartResult.ACCEPTED and transaction_id is None and isinstance(journal, V201Journal):
            journal.remote_start(connector_id, remote_start_id, str(id_token.get("type") or "") or None)
        if result is ev.RemoteStartResult.ACCEPTED:
            self.remember_remote_start_profile(connector_id, raw_profile)
        LOGGER.info("RequestStartTransaction %d for evse %s: %s", remote_start_id, evse_id, result.value)
        return call_result.RequestStartTransaction(status=result.value, transaction_id=transaction_id)

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str, **_: Any) -> Any:
        local = self._open_transaction(transaction_id)
        if local is None:
            return call_result.RequestStopTransaction(status="Rejected")
        result, outs = self.agent.core.remote_stop(ev.RemoteStop(0, local_tx_id=local), self.agent.now(),
                                                   time.monotonic())
        self.agent.execute(outs)
        return call_result.RequestStopTransaction(status=result.value)

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        ids = self.connectors_of(evse_id, connector_id) if evse_id > 0 else []
        if not ids:
            return call_result.UnlockConnector(status="UnknownConnector")
        if self.agent.core.session(ids[0]) is not None:
            return call_result.UnlockConnector(status="OngoingAuthorizedTransaction")  # F05.FR.02
        result = await self.agent.unlock(ids[0])
        return call_result.UnlockConnector(status=UNLOCK_STATUS.get(result, "UnlockFailed"))

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any) -> Any:
        if requested_message not in TRIGGERABLE:
            return call_result.TriggerMessage(status="NotImplemented")
        if evse is not None and evse.get("id", 0) != 0 and not self.connectors_of(evse["id"],
                                                                                 evse.get("connector_id")):
            return call_result.TriggerMessage(status="Rejected")
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    async def after_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None,
                                    **_: Any) -> None:
        if requested_message not in TRIGGERABLE:
            return
        if requested_message in SERVICE_TRIGGERS:
            await self.send_service_status(requested_message)
            return
        if requested_message == "SignChargingStationCertificate":
            await self.send_sign_certificate()  # security.py (A02)
            return
        ids = self.connectors_of(evse["id"], evse.get("connector_id")) if evse and evse.get("id") else [None]
        for cid in ids or [None]:
            await self.conn.triggered(requested_message, cid)

    # ---- B: reset -------------------------------------------------------------------------------------

    @on(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        if evse_id is not None:
            return call_result.Reset(status="Rejected")  # an EVSE alone cannot be reset here
        if type == "OnIdle" and any(self.agent.core.session(cid) is not None for cid in self.agent.connectors):
            return call_result.Reset(status="Scheduled")  # B12: after the last transaction ends
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    async def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        if evse_id is not None:
            return
        self.agent.security_manager().reset_requested(type)
        if type == "OnIdle":
            while any(self.agent.core.session(cid) is not None for cid in self.agent.connectors):
                await asyncio.sleep(IDLE_POLL_S)
        await self.agent_reset(ev.ResetKind.HARD)  # transactions still running end with ImmediateReset

    async def agent_reset(self, kind: ev.ResetKind) -> None:
        """Stop every transaction, let the Ended events reach the back office, then restart the process."""
        _, outs = self.agent.core.reset(ev.ResetRequested(kind), self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        await self.agent.settle(RESET_WAIT_S)
        LOGGER.warning("reset: restarting")
        if self.agent.exit_requested is not None and not self.agent.exit_requested.done():
            self.agent.exit_requested.set_result(0)

    # ---- G: availability ------------------------------------------------------------------------------

    @on(Action.change_availability)
    def on_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None,
                               **_: Any) -> Any:
        operative = operational_status == "Operative"
        if evse is None or evse.get("id", 0) == 0:
            targets = [0]
        else:
            targets = self.connectors_of(evse["id"], evse.get("connector_id"))
            if not targets:
                return call_result.ChangeAvailability(status="Rejected")
        results = []
        for cid in targets:
            result, outs = self.agent.core.change_availability(ev.ChangeAvailability(cid, operative),
                                                               self.agent.now(), time.monotonic())
            self.agent.execute(outs)
            results.append(result.value)
        for cid, state in self.agent.core.availability().items():  # persisted across reboot (G03.FR.06)
            self.agent.store.availability_set(cid, state)
        return call_result.ChangeAvailability(status=_combined(results))

    # ---- C, D: authorization cache and local list ---------------------------------------------------

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        self.agent.store.cache_clear()
        return call_result.ClearCache(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> Any:
        if not self.agent.settings.local_auth_list_enabled:
            return call_result.GetLocalListVersion(version_number=0)
        return call_result.GetLocalListVersion(version_number=self.agent.store.local_list_version())

    @on(Action.send_local_list)
    def on_send_local_list(self, version_number: int, update_type: str,
                           local_authorization_list: list[dict[str, Any]] | None = None, **_: Any) -> Any:
        store = self.agent.store
        if not self.agent.settings.local_auth_list_enabled:
            return call_result.SendLocalList(status="Failed")
        entries = []
        for item in local_authorization_list or []:
            info = item.get("id_token_info") or {}
            group = info.get("group_id_token") or {}
            entries.append(AuthEntry(str(item["id_token"]["id_token"]), info.get("status"),
                                     info.get("cache_expiry_date_time"), group.get("id_token")))
        try:
            if update_type == "Full":
                store.replace_local_list(version_number, entries)
            else:
                if version_number <= store.local_list_version():
                    return call_result.SendLocalList(status="VersionMismatch")
                store.update_local_list(version_number, entries)
        except Exception as err:
            LOGGER.error("SendLocalList failed: %s", err)
            return call_result.SendLocalList(status="Failed")
        return call_result.SendLocalList(status="Accepted")

    # ---- B: device model --------------------------------------------------------------------------------

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        if self.device_model is None:
            return call_result.GetVariables(get_variable_result=[
                {"attribute_status": "UnknownComponent", "component": d["component"], "variable": d["variable"]}
                for d in get_variable_data])
        # the library hands snake_case keys; the device model speaks the wire's camelCase (values untouched)
        results = self.device_model.get_variables(snake_to_camel_case(get_variable_data))
        return call_result.GetVariables(get_variable_result=camel_to_snake_case(results))

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        if self.device_model is None:
            return call_result.SetVariables(set_variable_result=[
                {"attribute_status": "UnknownComponent", "component": d["component"], "variable": d["variable"]}
                for d in set_variable_data])
        results = self.device_model.set_variables(snake_to_camel_case(set_variable_data))
        return call_result.SetVariables(set_variable_result=camel_to_snake_case(results))

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        if self.device_model is None or report_base not in REPORT_BASES:
            return call_result.GetBaseReport(status="NotSupported")
        if not self.device_model.base_report(report_base):
            return call_result.GetBaseReport(status="EmptyResultSet")
        return call_result.GetBaseReport(status="Accepted")

    @after(Action.get_base_report)
    async def after_get_base_report(self, request_id: int, report_base: str, **_: Any) -> None:
        if self.device_model is None or report_base not in REPORT_BASES:
            return
        # B07: the report follows the answer, in NotifyReport parts of at most ItemsPerMessage items
        for part in self.device_model.report_parts(request_id, self.device_model.base_report(report_base)):
            await self.conn.send_plain("NotifyReport", part)

    # ---- P: data transfer -----------------------------------------------------------------------------

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any) -> Any:
        if vendor_id != VENDOR_ID:
            return call_result.DataTransfer(status="UnknownVendorId")
        if message_id == "ping":
            return call_result.DataTransfer(status="Accepted", data=data)
        return call_result.DataTransfer(status="UnknownMessageId")
