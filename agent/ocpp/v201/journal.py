"""The OCPP 2.0.1 transaction journal: transaction facts and session events become TransactionEvent
Started/Updated/Ended in the outbox.

The station owns the transactionId (the store's `station_tx_id`), so nothing is rewritten when an answer
arrives. Each event carries the transaction's next `seqNo`, taken by the store in the commit that queues it
(0, 1, 2... with no gap and no repeat across restarts). `offline` is the Stamp's: the event was recorded while
no connection was accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from agent.clock import iso
from agent.core import events as ev
from agent.core.events import SessionEvent, StopReason
from agent.metering import Sample, SignedValue
from agent.ocpp.signed import signed_meter_value
from agent.ocpp.v201.metering import CONTEXTS, ENERGY, energy_value, meter_value
from agent.ports import SampleTrigger, Stamp, TxStarted, TxStopped
from agent.settings import Settings, SettingsSource
from agent.store import OutboxMessage, Store

LOGGER = logging.getLogger(__name__)

PROTOCOL = "2.0.1"
ACTION = "TransactionEvent"
SEQ_FIELD = "seqNo"  # filled in by the store in the commit that queues the event
TX_DATA_MAX_VALUES = 200  # values kept for the Ended event: the first and the latest 199

# StopReason -> (triggerReason, stoppedReason) of the Ended event
ENDED: dict[StopReason, tuple[str, str]] = {
    StopReason.LOCAL: ("StopAuthorized", "Local"),
    StopReason.REMOTE: ("RemoteStop", "Remote"),
    StopReason.EV_DISCONNECTED: ("EVCommunicationLost", "EVDisconnected"),
    StopReason.EMERGENCY_STOP: ("AbnormalCondition", "EmergencyStop"),
    StopReason.POWER_LOSS: ("AbnormalCondition", "PowerLoss"),
    StopReason.REBOOT: ("AbnormalCondition", "Reboot"),
    StopReason.DEAUTHORIZED: ("Deauthorized", "DeAuthorized"),
    StopReason.HARD_RESET: ("ResetCommand", "ImmediateReset"),
    StopReason.SOFT_RESET: ("ResetCommand", "ImmediateReset"),  # 2.0.1 has one reset that ends transactions
    StopReason.UNLOCK_COMMAND: ("UnlockCommand", "Other"),  # 2.0.1 names no stoppedReason for an unlock
    StopReason.OTHER: ("AbnormalCondition", "Other"),
    StopReason.MASTER_PASS: ("StopAuthorized", "MasterPass"),
    StopReason.GROUND_FAULT: ("AbnormalCondition", "GroundFault"),
    StopReason.STOPPED_BY_EV: ("AbnormalCondition", "StoppedByEV"),  # a vehicle fault (docs/dc-controller.md)
}

SAMPLE_TRIGGERS = {
    SampleTrigger.PERIODIC: "MeterValuePeriodic",
    SampleTrigger.CLOCK: "MeterValueClock",
    SampleTrigger.TRIGGER: "Trigger",
}
THINNABLE = frozenset({SampleTrigger.PERIODIC, SampleTrigger.CLOCK})  # intermediate values (E04.FR.08)

# how an id was granted -> IdTokenEnumType
TOKEN_TYPES = {ev.AuthSource.CARD: "ISO14443", ev.AuthSource.REMOTE: "Central",
               ev.AuthSource.FREE_VEND: "Local"}
DEFAULT_TOKEN_TYPE = "ISO14443"
TOKEN_TYPES_KEPT = 64  # ids whose type is remembered for their stop event


def token_type_of(event: ev.Authorized) -> str:
    """The idToken type of an authorization: the card's own (reader or config) when it carries one."""
    if event.source is ev.AuthSource.CARD and event.token_type:
        return event.token_type
    return TOKEN_TYPES.get(event.source, DEFAULT_TOKEN_TYPE)

EvseOf = Callable[[int], tuple[int, int]]  # agent connector id -> (evseId, connectorId within the EVSE)


def own_evse(connector_id: int) -> tuple[int, int]:
    """Each connector its own EVSE, numbered like it (the core's default)."""
    return connector_id, 1


def measurands_for(settings: Settings, trigger: SampleTrigger) -> Sequence[str]:
    """AlignedDataCtrlr.Measurands for clock-aligned values, SampledDataCtrlr.TxUpdatedMeasurands otherwise."""
    return settings.aligned_measurands if trigger is SampleTrigger.CLOCK else settings.sampled_measurands


def ended_measurands_for(settings: Settings, trigger: SampleTrigger) -> Sequence[str]:
    """The TxEndedMeasurands of AlignedDataCtrlr for clock-aligned values, of SampledDataCtrlr otherwise."""
    if trigger is SampleTrigger.CLOCK:
        return settings.ended_aligned_measurands
    return settings.ended_sampled_measurands


def _sign(value: dict[str, Any], signed: SignedValue | None, local_tx_id: int) -> None:
    """Put a signed data set on the energy register of a Begin or End meterValue (its first sampledValue)."""
    if signed is None:
        return
    obj = signed_meter_value(signed, local_tx_id)
    if obj is None:
        return
    value["sampledValue"][0]["signedMeterValue"] = obj


class V201Journal:
    """TransactionJournal for OCPP 2.0.1."""

    protocol = PROTOCOL

    def __init__(self, store: Store, settings: SettingsSource, evse_of: EvseOf = own_evse) -> None:
        self.store = store
        self.settings = settings
        self.evse_of = evse_of
        # what led to the next start, per connector (None: the station's, before a plug-in): the Started
        # event's triggerReason and idToken type. Memory only: after a restart a start has its defaults.
        self._cause: dict[int | None, tuple[str, str] | None] = {}
        # F01/F02: the remoteStartId of an accepted RequestStartTransaction, per connector (None: any), until
        # its transaction starts (memory only, as the request itself would be answered again after a restart)
        self._remote_start_ids: dict[int | None, int] = {}
        # and the idToken type it named (eMAID, Central...), which the core does not keep
        self._remote_token_types: dict[int | None, str] = {}
        # the type each recently authorized id came with, for the idToken of a stop by the same id (bounded)
        self._token_types: dict[str, str] = {}

    def _remember_type(self, id_tag: str, token_type: str) -> None:
        self._token_types.pop(id_tag, None)
        self._token_types[id_tag] = token_type
        while len(self._token_types) > TOKEN_TYPES_KEPT:
            del self._token_types[next(iter(self._token_types))]

    def remote_start(self, connector_id: int | None, remote_start_id: int, token_type: str | None = None) -> None:
        """An accepted RequestStartTransaction: its id goes into the Started event of the transaction it opens."""
        self._remote_start_ids[connector_id] = remote_start_id
        if token_type is not None:
            self._remote_token_types[connector_id] = token_type

    # ---- building events -------------------------------------------------------------------------------

    def _event(self, event_type: str, local_tx_id: int, connector_id: int | None, trigger: str, at: float,
               stamp: Stamp, **info: Any) -> dict[str, Any]:
        row = self.store.transaction(local_tx_id)
        if row is None or not row.station_tx_id:
            raise LookupError(f"transaction {local_tx_id} is not in the store")
        payload: dict[str, Any] = {
            "eventType": event_type, "timestamp": iso(at), "triggerReason": trigger,
            SEQ_FIELD: 0,  # a placeholder for the schema's shape: the store writes the real one
            "transactionInfo": {"transactionId": row.station_tx_id,
                                **{k: v for k, v in info.items() if v is not None}},
        }
        if stamp.offline:
            payload["offline"] = True
        cid = connector_id if connector_id is not None else row.connector_id
        if cid:
            evse_id, evse_connector = self.evse_of(cid)
            payload["evse"] = {"id": evse_id, "connectorId": evse_connector}
        return payload

    def _queue(self, local_tx_id: int, payload: dict[str, Any], stamp: Stamp, *, thinnable: bool = False) -> None:
        self.store.enqueue(ACTION, payload, tx_local_id=local_tx_id, wall_time=stamp.wall,
                           monotonic=stamp.monotonic, clock_trusted=stamp.clock_trusted, protocol=PROTOCOL,
                           thinnable=thinnable, seq_field=SEQ_FIELD)

    def _stop_decided(self, local_tx_id: int) -> bool:
        """The transaction's end is decided or recorded: its Ended event reports what follows."""
        row = self.store.transaction(local_tx_id)
        return row is None or row.stop_wall is not None or row.decided_reason is not None

    # ---- TransactionJournal -----------------------------------------------------------------------------

    def started(self, tx: TxStarted, stamp: Stamp) -> None:
        """TransactionEvent Started (seqNo 0), queued in the commit that records the transaction."""
        cause = self._cause.pop(tx.connector_id, None) or self._cause.pop(None, None)
        trigger, token_type = cause or ("Authorized", DEFAULT_TOKEN_TYPE)
        remote_start_id = self._remote_start_ids.pop(tx.connector_id, None)
        remote_type = self._remote_token_types.pop(tx.connector_id, None)
        if remote_start_id is None:
            remote_start_id = self._remote_start_ids.pop(None, None)
            remote_type = self._remote_token_types.pop(None, None)
        if remote_type is not None and token_type == TOKEN_TYPES[ev.AuthSource.REMOTE]:
            token_type = remote_type  # granted by that request: the type it named, not the generic Central
        payload = self._event("Started", tx.local_tx_id, tx.connector_id, trigger, tx.timestamp, stamp,
                              chargingState="EVConnected", remoteStartId=remote_start_id)
        payload["idToken"] = {"idToken": tx.id_tag, "type": token_type}
        # the begin reading the bill starts from (Transaction.Begin), with the other TxStartedMeasurands
        begin = energy_value(tx.meter_start_wh, CONTEXTS[SampleTrigger.BEGIN], tx.timestamp)
        _sign(begin, tx.signed, tx.local_tx_id)
        measurands = [m for m in self.settings.current().started_measurands if m != ENERGY]
        if tx.begin is not None and measurands:
            begin["sampledValue"] += meter_value(tx.begin, measurands, CONTEXTS[SampleTrigger.BEGIN],
                                                 tx.timestamp)["sampledValue"]
        payload["meterValue"] = [begin]
        if tx.reservation_id is not None:
            payload["reservationId"] = tx.reservation_id
        self.store.begin_transaction(
            tx.local_tx_id, tx.connector_id, tx.id_tag, tx.meter_start_wh, tx.timestamp, stamp.monotonic,
            tx.reservation_id, ACTION, payload, clock_trusted=stamp.clock_trusted, protocol=PROTOCOL,
            seq_field=SEQ_FIELD)

    def sample(self, local_tx_id: int, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float,
               stamp: Stamp) -> bool:
        """TransactionEvent Updated with the sample (periodic and clock-aligned ones may be thinned)."""
        if trigger not in SAMPLE_TRIGGERS:
            return False  # Begin and End readings travel in the Started and Ended events
        value = meter_value(sample, measurands_for(self.settings.current(), trigger), CONTEXTS[trigger], at)
        if not value["sampledValue"]:
            return False
        payload = self._event("Updated", local_tx_id, connector_id, SAMPLE_TRIGGERS[trigger], at, stamp)
        payload["meterValue"] = [value]
        self._queue(local_tx_id, payload, stamp, thinnable=trigger in THINNABLE)
        return True

    def keep_for_end(self, local_tx_id: int, sample: Sample, trigger: SampleTrigger, at: float,
                     stamp: Stamp) -> None:
        """Values the Ended event reports (TxEndedMeasurands), kept on disk."""
        measurands = ended_measurands_for(self.settings.current(), trigger)
        if not measurands:
            return
        value = meter_value(sample, measurands, CONTEXTS[trigger], at)
        if value["sampledValue"]:
            self.store.tx_data_append(local_tx_id, value, stamp.wall, cap=TX_DATA_MAX_VALUES,
                                      clock_trusted=stamp.clock_trusted)

    def stopped(self, tx: TxStopped, stamp: Stamp) -> None:
        """TransactionEvent Ended with stoppedReason and the end values, queued in the commit that records the
        stop."""
        trigger, stopped_reason = ENDED.get(tx.reason, ("AbnormalCondition", "Other"))
        payload = self._event("Ended", tx.local_tx_id, tx.connector_id, trigger, tx.timestamp, stamp,
                              stoppedReason=stopped_reason)
        if tx.id_tag and tx.reason in (StopReason.LOCAL, StopReason.MASTER_PASS):
            token_type = self._token_types.get(tx.id_tag, DEFAULT_TOKEN_TYPE)  # the card's, as it started
            payload["idToken"] = {"idToken": tx.id_tag, "type": token_type}
        values = self._tx_data(tx.local_tx_id)
        end = energy_value(tx.meter_stop_wh, CONTEXTS[SampleTrigger.END], tx.timestamp)
        _sign(end, tx.signed, tx.local_tx_id)
        measurands = [m for m in self.settings.current().ended_sampled_measurands if m != ENERGY]
        if tx.end is not None and measurands:
            # the register is the stop reading itself (meterStop), whatever the sample says
            end["sampledValue"] += meter_value(tx.end, measurands, CONTEXTS[SampleTrigger.END],
                                               tx.timestamp)["sampledValue"]
        payload["meterValue"] = [*values, end]
        self.store.end_transaction(
            tx.local_tx_id, tx.meter_stop_wh, tx.timestamp, stamp.monotonic, tx.reason.value, ACTION, payload,
            clock_trusted=stamp.clock_trusted, protocol=PROTOCOL, seq_field=SEQ_FIELD)

    def session_event(self, event: SessionEvent, stamp: Stamp) -> None:
        """An Updated event for what changed during a transaction; before one, the cause of its start."""
        match event:
            case ev.Authorized():
                cause = ("RemoteStart" if event.source is ev.AuthSource.REMOTE else "Authorized",
                         token_type_of(event))
                if event.source is ev.AuthSource.CARD:
                    self._remember_type(event.id_tag, cause[1])
                tx = self._open_on(event.connector_id)
                if tx is None:
                    self._cause[event.connector_id] = cause
                else:  # started before the authorization (TxStartPoint EVConnected)
                    self._updated(tx, event.connector_id, cause[0], event.timestamp, stamp,
                                  id_token={"idToken": event.id_tag, "type": cause[1]})
            case ev.EvConnected():
                if event.local_tx_id is None:
                    previous = self._cause.get(event.connector_id) or self._cause.get(None)
                    self._cause[event.connector_id] = ("CablePluggedIn",
                                                       previous[1] if previous else DEFAULT_TOKEN_TYPE)
                else:  # plugged back in during a transaction
                    self._updated(event.local_tx_id, event.connector_id, "CablePluggedIn", event.timestamp, stamp,
                                  charging_state="EVConnected")
            case ev.EvDisconnected():
                self._cause.pop(event.connector_id, None)
                if event.local_tx_id is not None:
                    self._updated(event.local_tx_id, event.connector_id, "EVCommunicationLost", event.timestamp,
                                  stamp, charging_state="Idle")
            case ev.EnergyTransferStarted() | ev.EnergyTransferResumed():
                self._updated(event.local_tx_id, event.connector_id, "ChargingStateChanged", event.timestamp,
                              stamp, charging_state="Charging")
            case ev.EnergyTransferSuspended():
                state = "SuspendedEV" if event.by is ev.SuspendedBy.EV else "SuspendedEVSE"
                self._updated(event.local_tx_id, event.connector_id, "ChargingStateChanged", event.timestamp,
                              stamp, charging_state=state)
            case ev.Deauthorized():
                self._updated(event.local_tx_id, event.connector_id, "Deauthorized", event.timestamp, stamp,
                              charging_state="SuspendedEVSE")

    def _open_on(self, connector_id: int | None) -> int | None:
        """The running transaction of a connector, if any."""
        if connector_id is None:
            return None
        for row in self.store.unfinished_transactions():
            if row.connector_id == connector_id and row.decided_reason is None:
                return row.tx_local_id
        return None

    def _updated(self, local_tx_id: int, connector_id: int | None, trigger: str, at: float, stamp: Stamp, *,
                 charging_state: str | None = None, id_token: dict[str, str] | None = None) -> None:
        if self._stop_decided(local_tx_id):
            return  # the stop is under way (unplugged, deauthorized): its Ended event says it
        payload = self._event("Updated", local_tx_id, connector_id, trigger, at, stamp, chargingState=charging_state)
        if id_token is not None:
            payload["idToken"] = id_token
        self._queue(local_tx_id, payload, stamp)

    def _tx_data(self, tx_local_id: int) -> list[dict[str, Any]]:
        """The values kept for the Ended event, oldest first."""
        try:
            data = self.store.tx_data(tx_local_id)
        except Exception as err:  # the Ended event goes out without them rather than not at all
            LOGGER.error("transaction %d: end values not readable: %s", tx_local_id, err)
            return []
        return sorted(data, key=lambda v: str(v.get("timestamp", "")))  # ISO UTC strings sort in time order

    # ---- what the connection calls once the back office answered --------------------------------------

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        """Delete an answered event: the station owns the transactionId, nothing to learn or rewrite."""
        self.store.ack(msg.id)

    @staticmethod
    def id_when_dead(msg: OutboxMessage) -> int | None:
        """None: later events carry the station's own id, valid whatever became of this one."""
        return None
