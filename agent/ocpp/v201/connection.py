"""The OCPP 2.0.1 adapter of the session: 2.0.1 payloads and answers, the EVSE numbering, the triggered
messages. `V201Connection` builds a Session speaking 2.0.1 on a websocket.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import OCPPError
from ocpp.v201 import call

from agent.clock import iso, parse_iso
from agent.core import events as ev
from agent.core.connector import Evse
from agent.metering import Sample
from agent.ocpp.session import BootAnswer, Session
from agent.ocpp.v201.chargepoint import DeviceModelPort, V201ChargePoint
from agent.ocpp.v201.journal import measurands_for
from agent.ocpp.v201.metering import CONTEXTS, meter_value
from agent.ocpp.v201.monitors import engine_for
from agent.ocpp.v201.statuses import connector_status
from agent.ports import SampleTrigger
from agent.store import OutboxMessage

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

DEFAULT_TOKEN_TYPE = "ISO14443"  # an id presented at the charger is a card UID


def evse_numbering(evses: Mapping[int, Evse]) -> dict[int, tuple[int, int]]:
    """Agent connector id -> (evseId, connectorId counted from 1 within its EVSE)."""
    return {cid: (evse.evse_id, n) for evse in evses.values() for n, cid in enumerate(evse.connector_ids, start=1)}


def auth_result(id_tag: str, info: Mapping[str, Any], default_status: str = "Invalid") -> ev.AuthResult:
    """A 2.0.1 idTokenInfo as the runtime takes it: statuses the core has no word for count as Invalid."""
    try:
        status = ev.AuthStatus(info.get("status", default_status))
    except ValueError:
        status = ev.AuthStatus.INVALID
    group = info.get("groupIdToken") or info.get("group_id_token") or {}
    expiry = info.get("cacheExpiryDateTime") or info.get("cache_expiry_date_time")
    return ev.AuthResult(id_tag, status, group.get("idToken") or group.get("id_token"), parse_iso(expiry))


class V201Adapter:
    """The session's `VersionAdapter` for OCPP 2.0.1."""

    def __init__(self, agent: Agent, ws: Any, session: Session, device_model: DeviceModelPort | None = None, *,
                 boot_reason: str = "PowerUp", keep_interval: Callable[[int], None] | None = None) -> None:
        self.agent = agent
        self.session = session
        self.boot_reason = boot_reason
        self.keep_interval = keep_interval
        self.evses = evse_numbering(agent.core.evses)
        self._cp = V201ChargePoint(agent.config.charge_point.id, ws, agent, session,
                                   agent.settings.message_timeout_s or agent.config.backoffice.response_timeout_s,
                                   device_model, self.evses)

    @property
    def cp(self) -> V201ChargePoint:
        """The library ChargePoint with the 2.0.1 handlers."""
        return self._cp

    def boot_request(self) -> Any:
        """BootNotification with its reason and the configured identity."""
        cp = self.agent.config.charge_point
        station: dict[str, Any] = {"model": cp.model, "vendor_name": cp.vendor}
        if cp.serial_number:
            station["serial_number"] = cp.serial_number
        if cp.firmware_version:
            station["firmware_version"] = cp.firmware_version
        return call.BootNotification(charging_station=station, reason=self.boot_reason)

    def boot_answer(self, result: Any) -> BootAnswer:
        """The answer; while it is Rejected the handlers answer nothing (B03). Later boots are Triggered or
        follow a reset: the first reason is reported once."""
        self._cp.boot_rejected = result.status == "Rejected"
        self._cp.boot_pending = result.status == "Pending"
        return BootAnswer(str(result.status), int(result.interval or 0), str(result.current_time))

    def heartbeat_request(self) -> Any:
        """A Heartbeat."""
        return call.Heartbeat()

    def heartbeat_time(self, result: Any) -> str:
        """currentTime of a Heartbeat answer."""
        return str(result.current_time)

    def status_request(self, status: ev.StatusChanged) -> Any:
        """StatusNotification of one connector (its fault goes in NotifyEvent, not here)."""
        if (monitors := engine_for(self.agent)) is not None:
            monitors.wake()  # G05: its fault (or its end) goes out as NotifyEvent now, not at the next tick
        evse_id, connector_id = self.evses.get(status.connector_id, (status.connector_id, 1))
        return call.StatusNotification(timestamp=iso(status.timestamp or self.agent.now()),
                                       connector_status=connector_status(status.status), evse_id=evse_id,
                                       connector_id=connector_id)

    def request(self, action: str, payload: dict[str, Any]) -> Any:
        """The 2.0.1 call dataclass of an action, from its wire-form payload."""
        cls = getattr(call, action)
        return cls(**camel_to_snake_case(payload))

    def authorize_request(self, id_tag: str) -> Any:
        """Authorize with the id as a card token of the type it was read with."""
        # the type the card came with (reader or [card_id]), as its TransactionEvent will name it
        token_type = self.agent.cards.token_type_for(id_tag) or DEFAULT_TOKEN_TYPE
        return call.Authorize(id_token={"id_token": id_tag, "type": token_type})

    def authorize_answer(self, id_tag: str, result: Any) -> ev.AuthResult:
        """idTokenInfo as the runtime takes it."""
        return self.agent.authorization_answered(auth_result(id_tag, result.id_token_info))

    def sample_request(self, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> Any | None:
        """MeterValues outside a transaction (clock-aligned: AlignedDataCtrlr.Measurands)."""
        value = meter_value(sample, measurands_for(self.agent.settings, trigger), CONTEXTS[trigger], at)
        if not value["sampledValue"]:
            return None
        evse_id, _ = self.evses.get(connector_id, (connector_id, 1))
        return self.request("MeterValues", {"evseId": evse_id, "meterValue": [value]})

    def keep_heartbeat_interval(self, seconds: int) -> None:
        """The boot answer's interval goes to the device model when one is wired (its variable, its name)."""
        if self.keep_interval is not None:
            self.keep_interval(seconds)

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        """A TransactionEvent answer may carry idTokenInfo: the cache learns it."""
        info = answer.get("idTokenInfo")
        token = msg.payload.get("idToken")
        if msg.action == "TransactionEvent" and isinstance(info, dict) and isinstance(token, dict):
            self.agent.remember_authorization(auth_result(str(token.get("idToken", "")), info))

    async def triggered(self, message: str, connector_id: int | None) -> None:
        """Send a message the back office asked for with TriggerMessage (connector_id: the agent's)."""
        agent, session = self.agent, self.session
        ids = [connector_id] if connector_id else list(agent.connectors)
        if message == "BootNotification":
            with contextlib.suppress(TimeoutError, OCPPError):
                await self._cp.call(call.BootNotification(charging_station=self.boot_request().charging_station,
                                                          reason="Triggered"), suppress=False)
        elif message == "Heartbeat":
            await session.send_plain("Heartbeat", {})
        elif message == "StatusNotification":
            for status in agent.core.current_statuses(agent.now(), time.monotonic()):
                if status.connector_id in ids:
                    await session.send_status(status)
        elif message in ("MeterValues", "TransactionEvent"):
            for cid in ids:
                tx = agent.core.session(cid)
                if message == "TransactionEvent" and tx is None:
                    continue
                # a triggered value is read now: the last poll may be up to a poll interval old, or missing
                sample = await agent.read_meter_now(cid)
                if sample is None:
                    continue
                if tx is not None:
                    # through the outbox (TransactionEvent Updated, triggerReason Trigger), behind what is queued
                    agent.queue_triggered(cid, tx.local_tx_id, sample)
                    continue
                value = meter_value(sample, agent.settings.sampled_measurands, "Trigger", agent.now())
                await session.send_plain("MeterValues", {"evseId": self.evses.get(cid, (cid, 1))[0],
                                                         "meterValue": [value]})


class V201Connection(Session):
    """A Session speaking OCPP 2.0.1 on one websocket (the daemon's and the tests' entry point)."""

    def __init__(self, agent: Agent, ws: Any, on_accepted: Callable[[], None] | None = None,
                 device_model: DeviceModelPort | None = None, *, boot_reason: str = "PowerUp",
                 keep_interval: Callable[[int], None] | None = None) -> None:
        super().__init__(agent, lambda session: V201Adapter(agent, ws, session, device_model,
                                                            boot_reason=boot_reason, keep_interval=keep_interval),
                         on_accepted)
