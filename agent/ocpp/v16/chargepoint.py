"""OCPP 1.6J adapter: one `V16Connection` per websocket, translating between OCPP and the core.

Handlers translate and ask the core; they never decide. Calls to the back office are never awaited
inside an `@on` handler (the library's receive loop would deadlock): they run as tasks or `@after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ocpp.messages
from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.exceptions import ConnectionClosed

from agent.core import events as ev
from agent.errors import CallRefused
from agent.keys import ChangeResult
from agent.ocpp.frames import V16_CODES, FrameCheck, Verdict, check_frame, read_head
from agent.ocpp.v16.metering import iso, meter_value, parse_csl
from agent.ocpp.v16.security import SecurityHandlers
from agent.security.events import SecurityEventType
from agent.store import AuthEntry as StoreAuthEntry
from agent.store import OutboxMessage
from drivers.errors import DriverError

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)
FRAMES = logging.getLogger("agent.ocpp.frames")  # every frame, for `evsectl log` and the diagnostics bundle

# Validate schemas in the event loop: a thread-pool hop per message costs more than the validation itself
# (about 3x the throughput when the queue drains after an outage; see docs/bench.md).
ocpp.messages.ASYNC_VALIDATION = False

BOOT_RETRY_DEFAULT_S = 10
ACK_GRACE_S = 0.5  # after the socket closed, how long an answered exchange may still commit its ack
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


def _boot_status(raw_msg: str | bytes) -> str | None:
    """The status of a BootNotification CALLRESULT frame (None for anything else)."""
    try:
        frame = json.loads(raw_msg)
        return str(frame[2]["status"]) if frame[0] == 3 else None
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def _plain(result: Any) -> dict[str, Any]:
    """A call_result dataclass as the camelCase dict that came over the wire."""
    data = dataclasses.asdict(result)
    return {k: v for k, v in snake_to_camel_case(data).items() if v is not None}


class V16ChargePoint(SecurityHandlers, ChargePoint):
    """The `ocpp` library's ChargePoint with this agent's handlers."""

    def __init__(self, cp_id: str, connection: Any, agent: Agent, conn: V16Connection,
                 response_timeout: float) -> None:
        super().__init__(cp_id, connection, response_timeout=response_timeout)
        self.agent = agent
        self.conn = conn
        self._awaited: str | None = None  # unique id of our CALL in flight: only its answer is routed
        self._answers = 0  # CALLRESULTs and CALLERRORs sent: each incoming CALL gets exactly one
        # OCPP 1.6 4.2: while the BootNotification is Rejected, no Central System initiated message is answered
        self.boot_rejected = False
        self._boot_call: str | None = None  # unique id of our BootNotification in flight

    async def _send(self, message: str) -> None:
        # The library answers schema errors with 2.0.1's "FormatViolation"; 1.6 calls it "FormationViolation".
        if message.startswith("[4,") and '"FormatViolation"' in message:
            message = message.replace('"FormatViolation"', '"FormationViolation"', 1)
        if message.startswith("[2,"):  # before sending: the answer may arrive before send() returns
            head = read_head(message)
            self._awaited = head[1] if head else None
            if '"BootNotification"' in message[:120]:
                self._boot_call = self._awaited
        elif message.startswith(("[3,", "[4,")):
            self._answers += 1
        FRAMES.debug("out %s", message)
        await self._connection.send(message)

    async def _get_specific_response(self, unique_id: str, timeout: float) -> Any:
        try:
            return await super()._get_specific_response(unique_id, timeout)
        finally:  # a late answer to a call that timed out is ignored, not queued for the next call
            if self._awaited == unique_id:
                self._awaited = None

    async def call_raw(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a stored wire-form payload as a CALL and return the CALLRESULT payload (camelCase).

        The same contract as the library's call(suppress=False) (one call in flight, schema validation both
        ways, OCPPError for a CALLERROR, TimeoutError without an answer) without the dataclass round trip:
        the outbox already holds the exact JSON to send.
        """
        message = Call(unique_id=str(self._unique_id_generator()), action=action, payload=payload)
        await validate_payload(message, self._ocpp_version)
        async with self._call_lock:
            await self._send(message.to_json())
            response = await self._get_specific_response(message.unique_id, self._response_timeout)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = action
        await validate_payload(response, self._ocpp_version)
        return dict(response.payload)

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Check the frame (agent/ocpp/frames.py), then answer, drop, or hand it to the library."""
        FRAMES.debug("in %s", raw_msg)
        try:
            check = check_frame(raw_msg, V16_CODES)
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
                    await self._handle_call(message)
                except OCPPError as error:
                    await self._send(message.create_call_error(error).to_json())
        except ConnectionClosed:
            raise
        except Exception:
            LOGGER.exception("handling %s %r failed", check.action[:40], check.unique_id)
        if self._answers == answers:  # the library failed before it answered: still answer once
            LOGGER.error("no answer was sent to %s %r: answering InternalError", check.action[:40], check.unique_id)
            await self._send_call_error(check.unique_id, "InternalError", "the call could not be handled")

    async def _send_call_error(self, unique_id: str, code: str, description: str) -> None:
        await self._send(json.dumps([4, unique_id, code, description, {}], separators=(",", ":")))

    async def _refuse_unhandled(self, unique_id: str, action: str) -> bool:
        """Answer a CALL whose action has no handler; True when answered.

        The library swaps the two codes; OCPP-J 1.6 section 4.2.3: NotImplemented = the action is not
        known by the receiver, NotSupported = recognized but not supported.
        """
        if action in self.route_map:
            return False
        if action in {a.value for a in Action}:
            code, text = "NotSupported", f"{action} is not supported by this charge point"
        else:
            code, text = "NotImplemented", f"{action[:40]} is not an OCPP 1.6 action"
        await self._send_call_error(unique_id, code, text)
        return True

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
        profile = _floats(charging_profile) if charging_profile is not None else None
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
        result, outs = self.agent.core.unlock(ev.UnlockRequested(connector_id), self.agent.now(),
                                              time.monotonic())
        self.agent.execute(outs)
        if result is ev.UnlockResult.UNLOCKED:
            devices = self.agent.hw.connectors.get(connector_id)
            lock = devices.lock if devices else None
            if lock is not None:
                await asyncio.sleep(float(getattr(lock, "settle_s", 0.2)) + 0.05)
                try:
                    lock.check()
                except Exception as err:
                    LOGGER.warning("connector %d did not unlock: %s", connector_id, err)
                    result = ev.UnlockResult.UNLOCK_FAILED
        return call_result.UnlockConnector(status=result.value)

    # ---- FirmwareManagement ------------------------------------------------------------------------

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> Any:
        from agent.runtime import iso_to_epoch

        self.agent.firmware.start_update(location, iso_to_epoch(retrieve_date) or self.agent.now(),
                                         retries if retries is not None else 3,
                                         float(retry_interval if retry_interval is not None else 30))
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                           start_time: str | None = None, stop_time: str | None = None, **_: Any) -> Any:
        from agent.runtime import iso_to_epoch

        try:
            name = self.agent.firmware.start_diagnostics(
                location, retries if retries is not None else 3,
                float(retry_interval if retry_interval is not None else 30),
                iso_to_epoch(start_time), iso_to_epoch(stop_time), self.agent.log_lines())
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
        from agent.runtime import iso_to_epoch

        expiry = iso_to_epoch(expiry_date) or 0.0
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
        result, outs = self.agent.core.set_charging_profile(
            ev.SetChargingProfile(connector_id, cs_charging_profiles), self.agent.now(), time.monotonic())
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
        out_periods: list[dict[str, Any]] = []
        for p in periods:
            # Whole seconds from startSchedule (now, truncated); the first period always starts at 0.
            offset = 0 if not out_periods else max(0, int(p.start - start))
            if out_periods and offset <= out_periods[-1]["start_period"]:
                out_periods.pop()  # two boundaries within one second: the later one wins
                offset = 0 if not out_periods else offset
            out_periods.append({"start_period": offset, "limit": round(p.limit, 1),
                                **({"number_phases": p.number_phases} if p.number_phases else {})})
        schedule = {
            "duration": duration,
            "start_schedule": iso(start),
            "charging_rate_unit": unit,
            "charging_schedule_period": out_periods or [{"start_period": 0, "limit": 0.0}],
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


class V16Connection:
    """One websocket's session: boot, heartbeat, statuses, the outbox sender, back-office calls."""

    def __init__(self, agent: Agent, ws: Any, on_accepted: Callable[[], None] | None = None) -> None:
        self.agent = agent
        self.on_accepted = on_accepted  # the link resets its reconnect backoff only for a proven connection
        cfg = agent.config
        self.timeout_s = cfg.backoffice.response_timeout_s
        self.cp = V16ChargePoint(cfg.charge_point.id, ws, agent, self, self.timeout_s)
        self.accepted = False
        self.outbox_event = asyncio.Event()
        self.heartbeat_changed = asyncio.Event()
        self.statuses: asyncio.Queue[ev.StatusChanged] = asyncio.Queue()
        self.heartbeat_interval_s = float(agent.keys.get_int("HeartbeatInterval", 300))
        self._tasks: list[asyncio.Task[Any]] = []

    # ---- what the runtime calls -------------------------------------------------------------------

    def status_changed(self, status: ev.StatusChanged) -> None:
        self.statuses.put_nowait(status)

    def outbox_changed(self) -> None:
        self.outbox_event.set()

    async def authorize(self, id_tag: str) -> ev.AuthResult:
        try:
            result = await self.cp.call(call.Authorize(id_tag=id_tag), suppress=False)
        except ConnectionClosed as err:
            raise ConnectionError(f"connection closed during Authorize: {err}") from err
        except OCPPError as err:  # online but no usable answer: the list and the cache decide alone
            raise CallRefused(f"Authorize answered {err.code}") from err
        return self.agent.authorize_answered(id_tag, snake_to_camel_case(result.id_tag_info))

    async def notify(self, action: str, payload: dict[str, Any]) -> None:
        await self._send_plain(action, payload)

    def send_meter_values(self, connector_id: int, payload: dict[str, Any]) -> None:
        self._spawn(self._send_plain("MeterValues", payload), "aligned-meter-values")

    # ---- the session ----------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def run(self) -> None:
        """Serve the connection until it closes."""
        receiver = asyncio.create_task(self.cp.start(), name="ocpp-receive")
        booter = asyncio.create_task(self._boot_then_serve(), name="ocpp-session")
        try:
            done, _ = await asyncio.wait({receiver, booter}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), ConnectionClosed):
                    LOGGER.error("OCPP session ended: %r", task.exception())
        finally:
            for task in (receiver, booter, *self._tasks):
                task.cancel()
            for task in (receiver, booter, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.accepted:
                self.agent.offline()

    async def _boot_then_serve(self) -> None:
        await self._boot()
        self.accepted = True
        if self.on_accepted is not None:
            self.on_accepted()
        self.agent.online(self)
        await asyncio.gather(self._heartbeat_loop(), self._status_loop(), self._outbox_loop())

    def _boot_payload(self) -> Any:
        cp = self.agent.config.charge_point
        return call.BootNotification(charge_point_vendor=cp.vendor, charge_point_model=cp.model,
                                     charge_point_serial_number=cp.serial_number,
                                     firmware_version=cp.firmware_version)

    async def _boot(self) -> None:
        while True:
            try:
                result = await self.cp.call(self._boot_payload(), suppress=False)
            except TimeoutError:
                LOGGER.warning("BootNotification unanswered; retrying")
                await asyncio.sleep(BOOT_RETRY_DEFAULT_S)
                continue
            except OCPPError as err:
                LOGGER.warning("BootNotification refused with %s; retrying", err)
                await asyncio.sleep(BOOT_RETRY_DEFAULT_S)
                continue
            self.agent.set_clock(result.current_time)
            interval = int(result.interval or 0)
            self.cp.boot_rejected = result.status == "Rejected"
            if result.status == "Accepted":
                if interval > 0:
                    self.heartbeat_interval_s = float(interval)
                    self.agent.keys.set_local("HeartbeatInterval", interval)
                LOGGER.info("BootNotification accepted (heartbeat every %d s)", interval)
                return
            wait = interval if interval > 0 else BOOT_RETRY_DEFAULT_S
            LOGGER.warning("BootNotification %s; retrying in %d s", result.status, wait)
            await asyncio.sleep(wait)

    async def _heartbeat_loop(self) -> None:
        while True:
            interval = float(self.agent.keys.get_int("HeartbeatInterval", 300)) or 300.0
            self.heartbeat_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heartbeat_changed.wait(), timeout=interval)
                continue  # the interval changed: restart the wait with the new one
            try:
                result = await self.cp.call(call.Heartbeat(), suppress=False)
                self.agent.set_clock(result.current_time)
            except (TimeoutError, OCPPError) as err:
                LOGGER.warning("Heartbeat failed: %r", err)

    async def _status_loop(self) -> None:
        while True:
            status = await self.statuses.get()
            await self._send_status(status)

    async def _send_status(self, status: ev.StatusChanged) -> None:
        payload = call.StatusNotification(
            connector_id=status.connector_id, error_code=status.error_code.value, status=status.status.value,
            info=status.info[:50] if status.info else None, timestamp=iso(status.timestamp or self.agent.now()),
            vendor_error_code=status.vendor_error_code[:50] if status.vendor_error_code else None)
        try:
            await self.cp.call(payload, suppress=False)
        except (TimeoutError, OCPPError, ConnectionClosed) as err:
            LOGGER.warning("StatusNotification failed: %r", err)

    async def _send_plain(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Send a non-queued message; None when it failed."""
        try:
            cls = getattr(call, action)
            result = await self.cp.call(cls(**camel_to_snake_case(payload)), suppress=False)
            return _plain(result)
        except (TimeoutError, OCPPError, ConnectionClosed) as err:  # not queued: the next trigger asks again
            LOGGER.warning("%s failed: %r", action, err)
            return None

    async def _outbox_loop(self) -> None:
        """Drain the outbox strictly in order, one call in flight."""
        store = self.agent.store
        while True:
            msg = store.peek()
            if msg is None:
                self.outbox_event.clear()
                if store.peek() is None:
                    await self.outbox_event.wait()
                continue
            wait = msg.next_attempt_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, 5.0))
                continue
            # The exchange runs as its own task: if this loop is cancelled (the socket closed) right after
            # the answer arrived, the answer is still committed instead of the message being sent twice.
            exchange = asyncio.ensure_future(self._deliver(msg))
            try:
                await asyncio.shield(exchange)
            except asyncio.CancelledError:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(exchange), ACK_GRACE_S)
                if not exchange.done():
                    exchange.cancel()
                raise

    async def _deliver(self, msg: OutboxMessage) -> None:
        """One queued message: send it, then ack, count a CALLERROR, or leave it first (no answer)."""
        store = self.agent.store
        try:
            answer = await self.cp.call_raw(msg.action, msg.payload)
        except TimeoutError:
            LOGGER.warning("%s %d unanswered; it stays first in the queue", msg.action, msg.id)
            return  # not an attempt: retried for ever
        except OCPPError as err:
            dead = store.record_failure(
                msg.id, f"{err.code}: {err.description}",
                max_attempts=self.agent.keys.get_int("TransactionMessageAttempts", 3),
                retry_interval_s=float(self.agent.keys.get_int("TransactionMessageRetryInterval", 60)),
                now=time.monotonic())
            LOGGER.warning("%s %d answered %s%s", msg.action, msg.id, err.code,
                           " (moved to dead letters)" if dead else "")
            if dead:
                self.agent.security_manager().event(
                    SecurityEventType.INVALID_MESSAGES,
                    f"{msg.action} {msg.id} refused {err.code} every time: kept as a dead letter")
            return
        store.ack(msg.id, answer)
        if msg.action == "StartTransaction" and msg.tx_local_id is not None:
            self.agent.transaction_confirmed(msg.tx_local_id, int(answer["transactionId"]),
                                             answer.get("idTagInfo", {}))
        elif msg.action == "StopTransaction" and "idTagInfo" in answer and "idTag" in msg.payload:
            self.agent._remember_auth(msg.payload["idTag"], answer["idTagInfo"])

    async def triggered(self, message: str, connector_id: int | None) -> None:
        """Send a message the back office asked for with TriggerMessage."""
        agent = self.agent
        if message == "BootNotification":
            with contextlib.suppress(TimeoutError, OCPPError):
                await self.cp.call(self._boot_payload(), suppress=False)
        elif message == "Heartbeat":
            await self._send_plain("Heartbeat", {})
        elif message == "StatusNotification":
            for status in agent.core.current_statuses(agent.now(), time.monotonic()):
                if connector_id is None or status.connector_id == connector_id:
                    await self._send_status(status)
        elif message == "MeterValues":
            ids = [connector_id] if connector_id else list(agent.connectors)
            measurands = parse_csl(agent.keys.get_str("MeterValuesSampledData"))
            for cid in ids:
                # a triggered value is read now: the last poll may be up to a poll interval old, or missing
                try:
                    agent.connectors[cid].reading = await agent.hw.connectors[cid].meter.read()
                except DriverError as err:
                    LOGGER.warning("triggered MeterValues for connector %d: %s", cid, err)
                    last = agent.connectors[cid].reading
                    if last is None or last.stale:
                        continue
                value = meter_value(agent._sample(cid), measurands, "Trigger", agent.now())
                session = agent.core.session(cid)
                if session is not None:
                    # a transaction's values go through its outbox, behind the samples still queued there and
                    # behind a clock-aligned instant already passed, so they reach the back office in time order
                    agent.queue_triggered(cid, session.local_tx_id, value)
                    continue
                await self._send_plain("MeterValues", {"connectorId": cid, "meterValue": [value]})
        elif message == "DiagnosticsStatusNotification":
            await self._send_plain("DiagnosticsStatusNotification", {"status": agent.firmware.diagnostics_status})
        elif message == "FirmwareStatusNotification":
            await self._send_plain("FirmwareStatusNotification", {"status": agent.firmware.firmware_status})

