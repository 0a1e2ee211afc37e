"""The operations ledger's reports in OCPP 1.6: DataTransfer with the configured vendorId, through the outbox.

Not transaction messages, but never dropped: queued like them (committed before the first attempt, sent in
order, dead-lettered after TransactionMessageAttempts CALLERRORs). docs/operations.md has the messageIds and
the JSON schema of each `data` (a JSON text: 1.6 DataTransfer.data is a string).
"""

from __future__ import annotations

import json
import time
from typing import Any

from agent.store import Store

# messageId of each report (docs/operations.md)
MESSAGE_IDS = {
    "DailyUsageReport": "DailyUsageReport",
    "MaintenanceDue": "MaintenanceDue",
    "Replacement": "Replacement",
    "ProblemReport": "ProblemReport",
}
VENDOR_ID_MAX = 255  # CiString255Type
MESSAGE_ID_MAX = 50  # CiString50Type


def data_transfer(vendor_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The DataTransfer.req payload of a report."""
    return {"vendorId": vendor_id[:VENDOR_ID_MAX], "messageId": MESSAGE_IDS[kind][:MESSAGE_ID_MAX],
            "data": json.dumps(payload, separators=(",", ":"), sort_keys=True)}


class V16OperationsReporter:
    """Queues each report as a DataTransfer in the outbox."""

    def __init__(self, store: Store, vendor_id: str) -> None:
        self.store = store
        self.vendor_id = vendor_id

    def report(self, kind: str, payload: dict[str, Any], wall: float, clock_trusted: bool) -> None:
        """Commit the DataTransfer to the outbox (sent in order by the session's sender)."""
        self.store.enqueue("DataTransfer", data_transfer(self.vendor_id, kind, payload), wall_time=wall,
                           monotonic=time.monotonic(), clock_trusted=clock_trusted, protocol="1.6")
