"""The 2.0.1 transaction ledger check: every transaction's TransactionEvents complete and in order.

E01-E15: seqNo is 0 for a transaction's first event and grows by one per event, so a CSMS sees a lost message;
a transaction is Started first and Ended last, once each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def transaction_ledger(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The TransactionEvent payloads per transactionId, in the order received (other actions skipped)."""
    ledger: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("action", "TransactionEvent") != "TransactionEvent":
            continue
        # a message-log record ({"action", "payload", "response", ...}) or a bare TransactionEvent payload
        payload = dict(record.get("payload", record))
        tx_id = str((payload.get("transactionInfo") or {}).get("transactionId"))
        ledger.setdefault(tx_id, []).append(payload)
    return ledger


def check_transaction_events(
    records: Iterable[Mapping[str, Any]], *, allow_resends: bool = True, require_ended: bool = True
) -> list[str]:
    """Every problem of the transactions in these records ([] when each one is complete and in order).

    records: message-log records (`BackOffice.messages(cp_id, "TransactionEvent")`) or bare payloads, in the
    order received, of one charging station (transactionIds are the station's own). Per transactionId: seqNo
    0, 1, 2... with no gap, repeat or step back; exactly one Started, first; exactly one Ended, last.
    allow_resends: an event identical to one already received (a retry after a lost answer) is not a problem.
    require_ended: False accepts a transaction still running (no Ended yet), for checks in the middle of a test.
    """
    problems: list[str] = []
    for tx_id, events in transaction_ledger(records).items():
        seen: list[dict[str, Any]] = []
        for event in events:
            if allow_resends and event in seen:
                continue
            seen.append(event)
        seq_nos = [e.get("seqNo") for e in seen]
        if seq_nos != list(range(len(seen))):
            problems.append(f"transaction {tx_id}: seqNo {seq_nos}, expected 0..{len(seen) - 1} in order")
        types = [e.get("eventType") for e in seen]
        if types.count("Started") != 1:
            problems.append(f"transaction {tx_id}: {types.count('Started')} Started events, expected 1")
        elif types[0] != "Started":
            problems.append(f"transaction {tx_id}: first event is {types[0]}, expected Started")
        if not require_ended and "Ended" not in types:
            continue
        if types.count("Ended") != 1:
            problems.append(f"transaction {tx_id}: {types.count('Ended')} Ended events, expected 1")
        elif types[-1] != "Ended":
            problems.append(f"transaction {tx_id}: last event is {types[-1]}, expected Ended")
    return problems
