"""The OCPP 1.6 transaction journal: transaction facts from the runtime become StartTransaction,
MeterValues and StopTransaction in the outbox.

The station's local transaction id rides along with every message; the back office's transactionId is not
known until StartTransaction is answered, so the queued MeterValues and StopTransaction carry a placeholder
in `transactionId`; the answer (`confirm`) records the id with the transaction, and the store fills it into
each message when it is sent (-1 if StartTransaction never succeeds: the 1.6 errata).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from agent.clock import iso
from agent.core.events import SessionEvent
from agent.metering import Sample, SignedValue, billed_wh
from agent.ocpp.signed import signed_data_text
from agent.ocpp.v16.metering import meter_value
from agent.ocpp.v16.statuses import stop_reason_16
from agent.ports import SampleTrigger, Stamp, TxStarted, TxStopped
from agent.settings import Settings, SettingsSource
from agent.store import OutboxMessage, Store

LOGGER = logging.getLogger(__name__)
# core stop reasons 1.6's Reason enumeration lacks, in its words (2.0.1 has them as its own)
PROTOCOL = "1.6"
TX_ID_FIELD = "transactionId"  # where the back office's id goes in MeterValues and StopTransaction
TX_ID_PLACEHOLDER = 0  # replaced by the store once StartTransaction is answered
TX_ID_UNKNOWN = -1  # 1.6 errata: the transactionId of messages whose StartTransaction never succeeded
TX_DATA_MAX_VALUES = 200  # transactionData per StopTransaction: the first and the latest 199 are kept

CONTEXTS = {
    SampleTrigger.BEGIN: "Transaction.Begin",
    SampleTrigger.PERIODIC: "Sample.Periodic",
    SampleTrigger.CLOCK: "Sample.Clock",
    SampleTrigger.TRIGGER: "Trigger",
    SampleTrigger.END: "Transaction.End",
}


def measurands_for(settings: Settings, trigger: SampleTrigger) -> Sequence[str]:
    """MeterValuesAlignedData for clock-aligned values, MeterValuesSampledData for the others."""
    if trigger is SampleTrigger.CLOCK:
        return settings.aligned_measurands
    if trigger is SampleTrigger.END:
        return settings.ended_sampled_measurands
    return settings.sampled_measurands


def ended_measurands_for(settings: Settings, trigger: SampleTrigger) -> Sequence[str]:
    """StopTxnAlignedData for clock-aligned values, StopTxnSampledData for the others."""
    if trigger is SampleTrigger.CLOCK:
        return settings.ended_aligned_measurands
    return settings.ended_sampled_measurands


def signed_values(value: SignedValue, context: str, local_tx_id: int) -> list[dict[str, str]]:
    """The sampledValue of format SignedData that carries a signed data set (none if it cannot be carried)."""
    text = signed_data_text(value, local_tx_id)
    if text is None:
        return []
    return [{"value": text, "context": context, "format": "SignedData", "measurand": "Energy.Active.Import.Register",
             "location": "Outlet", "unit": "Wh"}]


class V16Journal:
    """TransactionJournal for OCPP 1.6."""

    protocol = PROTOCOL

    def __init__(self, store: Store, settings: SettingsSource) -> None:
        self.store = store
        self.settings = settings

    def started(self, tx: TxStarted, stamp: Stamp) -> None:
        """StartTransaction, queued in the commit that records the transaction."""
        payload: dict[str, Any] = {
            "connectorId": tx.connector_id,
            "idTag": tx.id_tag,
            "meterStart": billed_wh(tx.meter_start_wh),
            "timestamp": iso(tx.timestamp),
        }
        if tx.reservation_id is not None:
            payload["reservationId"] = tx.reservation_id
        self.store.begin_transaction(
            tx.local_tx_id, tx.connector_id, tx.id_tag, tx.meter_start_wh, tx.timestamp, stamp.monotonic,
            tx.reservation_id, "StartTransaction", payload, clock_trusted=stamp.clock_trusted, protocol=PROTOCOL)

    def sample(self, local_tx_id: int, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float,
               stamp: Stamp) -> bool:
        """MeterValues of the transaction (an intermediate sample may be thinned when the disk bound is hit)."""
        value = meter_value(sample, measurands_for(self.settings.current(), trigger), CONTEXTS[trigger], at)
        if sample.signed is not None:
            # the application note: the meter's begin data set rides in the Transaction.Begin MeterValues
            value["sampledValue"] = [*cast(list[dict[str, str]], value["sampledValue"]),
                                     *signed_values(sample.signed, CONTEXTS[trigger], local_tx_id)]
        if not value["sampledValue"]:
            return False
        payload = {"connectorId": connector_id, TX_ID_FIELD: TX_ID_PLACEHOLDER, "meterValue": [value]}
        self.store.enqueue("MeterValues", payload, tx_local_id=local_tx_id, wall_time=stamp.wall,
                           monotonic=stamp.monotonic, clock_trusted=stamp.clock_trusted, protocol=PROTOCOL,
                           thinnable=True, tx_id_field=TX_ID_FIELD)
        return True

    def keep_for_end(self, local_tx_id: int, sample: Sample, trigger: SampleTrigger, at: float,
                     stamp: Stamp) -> None:
        """transactionData of the StopTransaction (StopTxnSampledData, StopTxnAlignedData), kept on disk."""
        measurands = ended_measurands_for(self.settings.current(), trigger)
        if not measurands:
            return
        value = meter_value(sample, measurands, CONTEXTS[trigger], at)
        if value["sampledValue"]:
            self.store.tx_data_append(local_tx_id, value, stamp.wall, cap=TX_DATA_MAX_VALUES,
                                      clock_trusted=stamp.clock_trusted)

    def stopped(self, tx: TxStopped, stamp: Stamp) -> None:
        """StopTransaction with its transactionData, queued in the commit that records the stop."""
        payload: dict[str, Any] = {
            TX_ID_FIELD: TX_ID_PLACEHOLDER,
            "meterStop": billed_wh(tx.meter_stop_wh),
            "timestamp": iso(tx.timestamp),
            "reason": stop_reason_16(tx.reason),
        }
        if tx.id_tag:
            payload["idTag"] = tx.id_tag
        data = self._tx_data(tx.local_tx_id)
        measurands = self.settings.current().ended_sampled_measurands
        if tx.end is not None and measurands:
            end = meter_value(tx.end, measurands, CONTEXTS[SampleTrigger.END], tx.timestamp)
            if end["sampledValue"]:
                data.append(end)
        if tx.signed is not None:
            # the end data set (it holds the begin reading too) in transactionData, context Transaction.End
            signed = signed_values(tx.signed, CONTEXTS[SampleTrigger.END], tx.local_tx_id)
            if signed:
                data.append({"timestamp": iso(tx.timestamp), "sampledValue": signed})
        if data:
            payload["transactionData"] = data
        self.store.end_transaction(
            tx.local_tx_id, tx.meter_stop_wh, tx.timestamp, stamp.monotonic, tx.reason.value, "StopTransaction",
            payload, clock_trusted=stamp.clock_trusted, protocol=PROTOCOL, tx_id_field=TX_ID_FIELD)

    def session_event(self, event: SessionEvent, stamp: Stamp) -> None:
        """Nothing: 1.6 reports a session by its statuses and its start and stop, not by events."""

    def _tx_data(self, tx_local_id: int) -> list[dict[str, Any]]:
        """The transactionData collected on disk, oldest first."""
        try:
            data = self.store.tx_data(tx_local_id)
        except Exception as err:  # the stop goes out without it rather than not at all
            LOGGER.error("transaction %d: transactionData not readable: %s", tx_local_id, err)
            return []
        return sorted(data, key=lambda v: str(v.get("timestamp", "")))  # ISO UTC strings sort in time order

    # ---- what the connection calls once the back office answered --------------------------------------

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        """Delete an answered message; a StartTransaction answer gives the transaction its back office id."""
        backoffice_id = None
        if msg.action == "StartTransaction" and msg.tx_local_id is not None:
            value = answer.get("transactionId")
            if isinstance(value, int) and not isinstance(value, bool):
                backoffice_id = value
            else:
                # schema-checked, so not expected; the later messages must not wait for an id for ever
                LOGGER.error("StartTransaction result without an integer transactionId: %r", answer)
                backoffice_id = TX_ID_UNKNOWN
        self.store.ack(msg.id, backoffice_tx_id=backoffice_id)

    @staticmethod
    def id_when_dead(msg: OutboxMessage) -> int | None:
        """The transactionId the later messages of a transaction get when this message becomes a dead letter."""
        return TX_ID_UNKNOWN if msg.action == "StartTransaction" else None
