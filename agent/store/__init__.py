"""The agent's one SQLite database: the durable outbox, transactions, auth list and cache, config, profiles.

Every call is short and synchronous (the adapter calls it from asyncio); every write that matters for
durability commits with ``synchronous=FULL`` before the call returns, so a power cut after a return
loses nothing. One module per job: db (connection, migrations, salvage), outbox, transactions, auth,
settings, security_log; `Store` combines them and is the one public face.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from agent.errors import DamagedDatabase
from agent.store.auth import AuthEntry, AuthMixin
from agent.store.db import (
    BUSY_TIMEOUT_S,
    DEFAULT_CACHE_CAPACITY,
    SCHEMA_VERSION,
    Db,
)
from agent.store.operations import OperationsMixin, OpsEvent
from agent.store.outbox import DEFAULT_PROTOCOL, ROW_OVERHEAD_BYTES, DeadLetter, OutboxMessage, OutboxMixin
from agent.store.security_log import SECURITY_LOG_CAPACITY, SecurityEvent, SecurityLogMixin
from agent.store.settings import SettingsMixin
from agent.store.signed import LegalRecord, SignedValuesMixin
from agent.store.transactions import PreviousRun, TransactionRow, TransactionsMixin

__all__ = [
    "BUSY_TIMEOUT_S",
    "DEFAULT_CACHE_CAPACITY",
    "DEFAULT_PROTOCOL",
    "ROW_OVERHEAD_BYTES",
    "SCHEMA_VERSION",
    "SECURITY_LOG_CAPACITY",
    "AuthEntry",
    "DeadLetter",
    "LegalRecord",
    "OpsEvent",
    "OutboxMessage",
    "PreviousRun",
    "SecurityEvent",
    "Store",
    "TransactionRow",
    "open_or_recover",
]

LOGGER = logging.getLogger(__name__)


class Store(TransactionsMixin, OutboxMixin, AuthMixin, SettingsMixin, SecurityLogMixin, OperationsMixin,
            SignedValuesMixin, Db):
    """The agent's SQLite state: open once per process, call from one event loop (calls are serialised)."""

    def _after_open(self) -> None:
        """Once the schema is current: forget the previous boot's retry waits, restore the in-memory counters."""
        self._reset_retry_waits()
        self._restore_lru_counter()
        self._refresh_bytes()
        LOGGER.info(
            "state database %s open (schema %d, boot %s, %d queued)",
            self.path,
            SCHEMA_VERSION,
            self.boot_id,
            self.pending_count(),
        )

    # ------------------------------------------------------------------ clock correction

    def correct_untrusted_times(self, boot_id: str, offset_s: float) -> int:
        """Shift the wall times of that boot's untrusted records by offset_s and mark them trusted.

        Covers outbox and dead-letter rows (their payload "timestamp" fields, meterValue[].timestamp
        included, are shifted as they are read), transactions and the security log. Call it once, when
        the clock becomes trusted. Returns how many records were corrected.
        """
        corrected = 0
        with self._write() as conn:
            for table in ("outbox", "dead_letters", "tx_data"):
                # Payload timestamps are shifted when read (see _load_payload): one SQL statement instead
                # of a Python rewrite per row keeps this call short with 100,000 queued messages.
                corrected += conn.execute(
                    f"UPDATE {table} SET wall_time = wall_time + ?, "
                    "timestamp_shift_s = timestamp_shift_s + ?, clock_trusted = 1 "
                    "WHERE boot_id = ? AND clock_trusted = 0",
                    (offset_s, offset_s, boot_id),
                ).rowcount
            corrected += conn.execute(
                "UPDATE transactions SET start_wall = start_wall + ?, last_wall = last_wall + ?, "
                "stop_wall = stop_wall + ?, decided_wall = decided_wall + ?, clock_trusted = 1 "
                "WHERE boot_id = ? AND clock_trusted = 0",
                (offset_s, offset_s, offset_s, offset_s, boot_id),
            ).rowcount
            corrected += conn.execute(
                "UPDATE security_log SET wall_time = wall_time + ?, clock_trusted = 1 "
                "WHERE boot_id = ? AND clock_trusted = 0",
                (offset_s, boot_id),
            ).rowcount
        LOGGER.info("clock trusted: shifted %d records of boot %s by %.3f s", corrected, boot_id, offset_s)
        return corrected



def open_or_recover(path: str | Path, **kwargs: Any) -> tuple[Store, str | None]:
    """Open the state database; a damaged one is moved aside, salvaged row by row, and replaced.

    Returns the store and, when a recovery happened, a sentence saying what was done (for the log and the
    operator). DiskFull and other errors are not recoverable here and propagate.
    """
    path = Path(path)
    try:
        return Store(path, **kwargs), None
    except DamagedDatabase as err:
        damaged = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.replace(Path(f"{damaged}{suffix}"))
        store = Store(path, **kwargs)
        counts = store.salvage(damaged)
        saved = ", ".join(f"{n} {table}" for table, n in counts.items() if n) or "nothing"
        report = (f"state database was damaged ({err.detail}); moved to {damaged}, started a new one and "
                  f"salvaged {saved}")
        LOGGER.critical("%s", report)
        return store, report

