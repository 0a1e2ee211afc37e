"""The OCPP 1.6J adapter of the session: 1.6 payloads and answers, what an answered queued message confirms,
the triggered messages. `V16Connection` builds a Session speaking 1.6 on a websocket.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from agent.clock import parse_iso
from agent.core import events as ev
from agent.metering import Sample
from agent.ocpp.session import BootAnswer, Session
from agent.ocpp.v16.chargepoint import V16ChargePoint
from agent.ocpp.v16.journal import CONTEXTS, measurands_for
from agent.ocpp.v16.metering import iso, meter_value
from agent.ocpp.v16.statuses import error_fields
from agent.ports import SampleTrigger
from agent.store import OutboxMessage

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)


def auth_result(id_tag: str, info: dict[str, Any], default_status: str = "Invalid") -> ev.AuthResult:
    """A 1.6 idTagInfo as the runtime takes it (an unknown status counts as Invalid)."""
    try:
        status = ev.AuthStatus(info.get("status", default_status))
    except ValueError:
        status = ev.AuthStatus.INVALID
    return ev.AuthResult(id_tag, status, info.get("parentIdTag"), parse_iso(info.get("expiryDate")))


class V16Adapter:
    """The session's `VersionAdapter` for OCPP 1.6J."""

    def __init__(self, agent: Agent, ws: Any, session: Session) -> None:
        self.agent = agent
        self.session = session
        self._cp = V16ChargePoint(agent.config.charge_point.id, ws, agent, session,
                                  agent.config.backoffice.response_timeout_s)

    @property
    def cp(self) -> V16ChargePoint:
        """The library ChargePoint with the 1.6 handlers."""
        return self._cp

    def boot_request(self) -> Any:
        """BootNotification from the configured identity."""
        cp = self.agent.config.charge_point
        return call.BootNotification(charge_point_vendor=cp.vendor, charge_point_model=cp.model,
                                     charge_point_serial_number=cp.serial_number,
                                     firmware_version=cp.firmware_version)

    def boot_answer(self, result: Any) -> BootAnswer:
        """The answer; while it is Rejected the handlers answer nothing (OCPP 1.6 4.2)."""
        self._cp.boot_rejected = result.status == "Rejected"
        return BootAnswer(str(result.status), int(result.interval or 0), result.current_time)

    def heartbeat_request(self) -> Any:
        """A Heartbeat."""
        return call.Heartbeat()

    def heartbeat_time(self, result: Any) -> str:
        """currentTime of a Heartbeat answer."""
        return str(result.current_time)

    def status_request(self, status: ev.StatusChanged) -> Any:
        """StatusNotification, the fault named in 1.6 words (info and vendorErrorCode cut to the 50 characters
        1.6 allows)."""
        fields = error_fields(status.fault)
        return call.StatusNotification(
            connector_id=status.connector_id, error_code=fields.error_code.value, status=status.status.value,
            info=fields.info[:50] if fields.info else None, timestamp=iso(status.timestamp or self.agent.now()),
            vendor_error_code=fields.vendor_error_code[:50] if fields.vendor_error_code else None)

    def request(self, action: str, payload: dict[str, Any]) -> Any:
        """The 1.6 call dataclass of an action, from its wire-form payload."""
        cls = getattr(call, action)
        return cls(**camel_to_snake_case(payload))

    def authorize_request(self, id_tag: str) -> Any:
        """Authorize."""
        return call.Authorize(id_tag=id_tag)

    def authorize_answer(self, id_tag: str, result: Any) -> ev.AuthResult:
        """idTagInfo as the runtime takes it."""
        return self.agent.authorization_answered(auth_result(id_tag, snake_to_camel_case(result.id_tag_info)))

    def sample_request(self, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float) -> Any | None:
        """MeterValues outside a transaction (clock-aligned, MeterValuesAlignedData)."""
        value = meter_value(sample, measurands_for(self.agent.settings, trigger), CONTEXTS[trigger], at)
        if not value["sampledValue"]:
            return None
        return self.request("MeterValues", {"connectorId": connector_id, "meterValue": [value]})

    def keep_heartbeat_interval(self, seconds: int) -> None:
        """HeartbeatInterval takes the boot answer's interval (persisted like a local change)."""
        self.agent.keys.set_local("HeartbeatInterval", seconds)

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        """StartTransaction gives the transactionId; StopTransaction's idTagInfo updates the cache."""
        if msg.action == "StartTransaction" and msg.tx_local_id is not None:
            info = answer.get("idTagInfo", {})
            self.agent.transaction_confirmed(msg.tx_local_id, int(answer["transactionId"]),
                                             auth_result(str(msg.payload.get("idTag", "")), info, "Accepted"))
        elif msg.action == "StopTransaction" and "idTagInfo" in answer and "idTag" in msg.payload:
            self.agent.remember_authorization(auth_result(msg.payload["idTag"], answer["idTagInfo"]))

    async def triggered(self, message: str, connector_id: int | None) -> None:
        """Send a message the back office asked for with TriggerMessage."""
        agent, session = self.agent, self.session
        if message == "BootNotification":
            with contextlib.suppress(TimeoutError, OCPPError):
                await self._cp.call(self.boot_request(), suppress=False)
        elif message == "Heartbeat":
            await session.send_plain("Heartbeat", {})
        elif message == "StatusNotification":
            for status in agent.core.current_statuses(agent.now(), time.monotonic()):
                if connector_id is None or status.connector_id == connector_id:
                    await session.send_status(status)
        elif message == "MeterValues":
            ids = [connector_id] if connector_id else list(agent.connectors)
            for cid in ids:
                # a triggered value is read now: the last poll may be up to a poll interval old, or missing
                sample = await agent.read_meter_now(cid)
                if sample is None:
                    continue
                tx = agent.core.session(cid)
                if tx is not None:
                    # a transaction's values go through its outbox, behind the samples still queued there and
                    # behind a clock-aligned instant already passed, so they reach the back office in time order
                    agent.queue_triggered(cid, tx.local_tx_id, sample)
                    continue
                value = meter_value(sample, agent.settings.sampled_measurands, "Trigger", agent.now())
                await session.send_plain("MeterValues", {"connectorId": cid, "meterValue": [value]})
        elif message == "DiagnosticsStatusNotification":
            await session.send_plain("DiagnosticsStatusNotification", {"status": agent.firmware.diagnostics_status})
        elif message == "FirmwareStatusNotification":
            await session.send_plain("FirmwareStatusNotification", {"status": agent.firmware.firmware_status})


class V16Connection(Session):
    """A Session speaking OCPP 1.6J on one websocket (the daemon's and the tests' entry point)."""

    def __init__(self, agent: Agent, ws: Any, on_accepted: Callable[[], None] | None = None) -> None:
        super().__init__(agent, lambda session: V16Adapter(agent, ws, session), on_accepted)
