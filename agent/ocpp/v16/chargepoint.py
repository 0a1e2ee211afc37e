"""OCPP 1.6J handlers: the `ocpp` library's ChargePoint with the agent's `@on`/`@after` handlers.

The session (agent/ocpp/session.py) runs the connection; agent/ocpp/v16/connection.py is its 1.6 adapter.
Handlers translate and ask the core; they never decide. Calls to the back office are never awaited
inside an `@on` handler (the library's receive loop would deadlock): they run as tasks or `@after`.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action

from agent.clock import parse_iso
from agent.core import events as ev
from agent.ocpp.frames import V16_CODES
from agent.ocpp.routing import FrameGuard
from agent.ocpp.schedules import schedule_periods
from agent.ocpp.v16.keys import ChangeResult
from agent.ocpp.v16.metering import iso
from agent.ocpp.v16.profiles import parse_profile
from agent.ocpp.v16.security import SecurityHandlers
from agent.store import AuthEntry as StoreAuthEntry

if TYPE_CHECKING:
    from agent.ocpp.session import Session
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

RESET_SOFT_WAIT_S = 12.0  # longest a reset waits for the stops to be recorded and sent
RESET_HARD_WAIT_S = 8.0
VENDOR_ID = "evse-agent"


def _floats(value: Any) -> Any:
    """The library parses JSON numbers with a fraction as Decimal; the core takes int and float."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


class V16ChargePoint(SecurityHandlers, FrameGuard, ChargePoint):
    """The `ocpp` library's 1.6 ChargePoint with this agent's handlers, its frames checked by FrameGuard."""

    FRAME_CODES = V16_CODES
    ACTIONS = frozenset(a.value for a in Action)

    def __init__(self, cp_id: str, connection: Any, agent: Agent, conn: Session,
                 response_timeout: float) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout)
        self.agent = agent
        self.conn = conn

    # ---- Core ------------------------------------------------------------------------------------

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        result, outs = self.agent.core.change_availability(
            ev.ChangeAvailability(connector_id, type == "Operative"), self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        for cid, operative in self.agent.core.availability().items():
            self.agent.store.availability_set(cid, operative)
        return call_result.ChangeAvailability(status=result.value)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        status = self.agent.keys.change(key, value)
        if status in (ChangeResult.ACCEPTED, ChangeResult.REBOOT_REQUIRED):
            LOGGER.info("configuration %s changed", key)
        return call_result.ChangeConfiguration(status=status)

    @after(Action.change_configuration)
    def after_change_configuration(self, key: str, value: str, **_: Any) -> None:
        if key == "HeartbeatInterval":
            self.conn.heartbeat_changed.set()

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        self.agent.store.cache_clear()
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: str | None = None,
                         **_: Any) -> Any:
        if vendor_id != VENDOR_ID:
            return call_result.DataTransfer(status="UnknownVendorId")
        if message_id == "ping":
            return call_result.DataTransfer(status="Accepted", data=data)
        return call_result.DataTransfer(status="UnknownMessageId")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known, unknown = self.agent.keys.entries(key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(self, id_tag: str, connector_id: int | None = None,
                                    charging_profile: dict[str, Any] | None = None, **_: Any) -> Any:
        profile = None
        if charging_profile is not None:
            try:
                profile = parse_profile(_floats(charging_profile), connector_id or 0)
            except ValueError as err:
                LOGGER.warning("remote start rejected, bad chargingProfile: %s", err)
                return call_result.RemoteStartTransaction(status="Rejected")
        result, outs = self.agent.core.remote_start(ev.RemoteStart(connector_id, id_tag, profile),
                                                    self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        return call_result.RemoteStartTransaction(status=result.value)

    @on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id: int, **_: Any) -> Any:
        result, outs = self.agent.core.remote_stop(ev.RemoteStop(transaction_id), self.agent.now(),
                                                   time.monotonic())
        self.agent.execute(outs)
        return call_result.RemoteStopTransaction(status=result.value)

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> Any:
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    async def after_reset(self, type: str, **_: Any) -> None:
        self.agent.security_manager().reset_requested(type)
        await self.agent_reset(ev.ResetKind(type))

    async def agent_reset(self, kind: ev.ResetKind) -> None:
        """Stop every transaction, let the stops reach the back office, then restart the process."""
        _, outs = self.agent.core.reset(ev.ResetRequested(kind), self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        # The runtime records a stop only once the power path is open and the meter read again: wait for
        # the stops to be recorded, then for the outbox to reach the back office (bounded: a reset must
        # happen even offline; the queue survives the restart).
        await self.agent.settle(RESET_SOFT_WAIT_S if kind is ev.ResetKind.SOFT else RESET_HARD_WAIT_S)
        LOGGER.warning("%s reset: restarting", kind.value)
        if self.agent.exit_requested is not None and not self.agent.exit_requested.done():
            self.agent.exit_requested.set_result(0)

    @on(Action.unlock_connector)
    async def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        result = await self.agent.unlock(connector_id)
        return call_result.UnlockConnector(status=result.value)

    # ---- FirmwareManagement ------------------------------------------------------------------------

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> Any:

        self.agent.firmware.start_update(location, parse_iso(retrieve_date) or self.agent.now(),
                                         retries if retries is not None else 3,
                                         float(retry_interval if retry_interval is not None else 30))
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                           start_time: str | None = None, stop_time: str | None = None, **_: Any) -> Any:

        try:
            name = self.agent.firmware.start_diagnostics(
                location, retries if retries is not None else 3,
                float(retry_interval if retry_interval is not None else 30),
                parse_iso(start_time), parse_iso(stop_time), self.agent.log_lines())
        except OSError as err:
            LOGGER.error("diagnostics archive could not be written: %s", err)
            return call_result.GetDiagnostics()
        return call_result.GetDiagnostics(file_name=name)

    # ---- LocalAuthListManagement -------------------------------------------------------------------

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> Any:
        if not self.agent.keys.get_bool("LocalAuthListEnabled", True):
            return call_result.GetLocalListVersion(list_version=-1)
        return call_result.GetLocalListVersion(list_version=self.agent.store.local_list_version())

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str,
                           local_authorization_list: list[dict[str, Any]] | None = None, **_: Any) -> Any:
        store, keys = self.agent.store, self.agent.keys
        if not keys.get_bool("LocalAuthListEnabled", True):
            return call_result.SendLocalList(status="NotSupported")
        items = local_authorization_list or []
        if len(items) > keys.get_int("SendLocalListMaxLength", 100):
            return call_result.SendLocalList(status="Failed")
        entries = []
        for item in items:
            info = item.get("id_tag_info") or {}
            entries.append(StoreAuthEntry(item["id_tag"], info.get("status"), info.get("expiry_date"),
                                          info.get("parent_id_tag")))
        try:
            if update_type == "Full":
                if len(entries) > keys.get_int("LocalAuthListMaxLength", 1000):
                    return call_result.SendLocalList(status="Failed")
                store.replace_local_list(list_version, entries)
            else:
                if list_version <= store.local_list_version():
                    return call_result.SendLocalList(status="VersionMismatch")
                store.update_local_list(list_version, entries)
        except Exception as err:
            LOGGER.error("SendLocalList failed: %s", err)
            return call_result.SendLocalList(status="Failed")
        return call_result.SendLocalList(status="Accepted")

    # ---- Reservation ---------------------------------------------------------------------------------

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                       parent_id_tag: str | None = None, **_: Any) -> Any:

        expiry = parse_iso(expiry_date) or 0.0
        result, outs = self.agent.core.reserve_now(
            ev.ReserveNow(connector_id, expiry, id_tag, reservation_id, parent_id_tag),
            self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        return call_result.ReserveNow(status=result.value)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        result, outs = self.agent.core.cancel_reservation(ev.CancelReservation(reservation_id),
                                                          self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        return call_result.CancelReservation(status=result.value)

    # ---- SmartCharging -----------------------------------------------------------------------------

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any],
                                **_: Any) -> Any:
        cs_charging_profiles = _floats(cs_charging_profiles)
        try:
            profile = parse_profile(cs_charging_profiles, connector_id)
        except ValueError as err:
            LOGGER.warning("charging profile rejected: %s", err)
            return call_result.SetChargingProfile(status="Rejected")
        result, outs = self.agent.core.set_charging_profile(
            ev.SetChargingProfile(connector_id, profile), self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        if result is ev.ProfileResult.ACCEPTED:
            self._persist_profiles(connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(status=result.value)

    def _persist_profiles(self, connector_id: int | None = None, raw: dict[str, Any] | None = None) -> None:
        """Mirror the core's non-transaction profiles into the store (TxProfiles die with their transaction)."""
        store = self.agent.store
        live = {p.profile_id for p in self.agent.core.profiles if p.purpose.value != "TxProfile"}
        if raw is not None and connector_id is not None and raw.get("charging_profile_purpose") != "TxProfile":
            store.profile_put(connector_id, snake_to_camel_case(raw))
        for _, stored in store.profiles():
            pid = stored.get("chargingProfileId")
            if isinstance(pid, int) and pid not in live:
                store.profile_delete(pid)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any) -> Any:
        result, outs = self.agent.core.clear_charging_profile(
            ev.ClearChargingProfile(id, connector_id, charging_profile_purpose, stack_level),
            self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        self._persist_profiles()
        return call_result.ClearChargingProfile(status=result.value)

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int,
                                  charging_rate_unit: str | None = None, **_: Any) -> Any:
        now = self.agent.now()
        unit = charging_rate_unit or "A"
        periods = self.agent.core.composite_schedule(connector_id, float(duration), unit, now)
        if periods is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        start = int(now)
        schedule = {
            "duration": duration,
            "start_schedule": iso(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": schedule_periods(periods, start),
        }
        return call_result.GetCompositeSchedule(status="Accepted", connector_id=connector_id,
                                                schedule_start=iso(start), charging_schedule=schedule)

    # ---- RemoteTrigger -----------------------------------------------------------------------------

    TRIGGERABLE = ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
                   "Heartbeat", "MeterValues", "StatusNotification")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any) -> Any:
        if requested_message not in self.TRIGGERABLE:
            return call_result.TriggerMessage(status="NotImplemented")
        if connector_id is not None and connector_id not in self.agent.connectors and connector_id != 0:
            return call_result.TriggerMessage(status="Rejected")
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    async def after_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                    **_: Any) -> None:
        if requested_message in self.TRIGGERABLE:
            await self.conn.triggered(requested_message, connector_id)
