"""Transactions: reserved local ids, start and stop recorded with their queued message, meter, stop data, run state."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from agent.errors import StoreError
from agent.store.db import _dumps, _load_payload
from agent.store.outbox import DEFAULT_PROTOCOL, OutboxMixin

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransactionRow:
    """The local view of one transaction; meter_stop_wh/stop_wall are None while it runs."""

    tx_local_id: int
    connector_id: int
    id_tag: str
    reservation_id: int | None
    boot_id: str
    clock_trusted: bool
    meter_start_wh: float
    start_wall: float
    start_monotonic: float
    last_energy_wh: float  # the last persisted sample: the power-loss fallback for meterStop
    last_wall: float
    meter_stop_wh: float | None
    stop_wall: float | None
    stop_reason: str | None
    transaction_id: int | None  # the back office's id once known; -1 when StartTransaction never succeeded
    decided_reason: str | None = None  # the stop reason, recorded when the stop was decided
    decided_wall: float | None = None  # the time of that decision
    station_tx_id: str = ""  # the station's own id of the transaction (a UUID in hex; OCPP 2.0.1's transactionId)


@dataclass(frozen=True)
class PreviousRun:
    """How the agent's previous run ended, as recorded in the state database."""

    kernel_boot_id: str | None  # None: no previous run recorded (a new database)
    clean_shutdown: bool
    shutdown_wall: float | None



class TransactionsMixin(OutboxMixin):
    """The transactions of Store; their start and stop messages are queued in the same commit."""

    def reserve_tx_id(self, wall: float, monotonic: float) -> int:
        """Allocate a tx_local_id (never reused) for the core before its start (filled by begin_transaction),
        with the station's own string id of the transaction (`station_tx_id`)."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO transactions (connector_id, id_tag, boot_id, clock_trusted, meter_start_wh, "
                "start_wall, start_monotonic, last_energy_wh, last_wall, station_tx_id) "
                "VALUES (0, '', ?, 0, 0, ?, ?, 0, ?, ?)",
                (self.boot_id, wall, monotonic, wall, uuid.uuid4().hex),
            )
            return int(cursor.lastrowid or 0)

    def begin_transaction(
        self,
        tx_local_id: int,
        connector_id: int,
        id_tag: str,
        meter_start_wh: float,
        start_wall: float,
        start_monotonic: float,
        reservation_id: int | None,
        start_action: str,
        start_payload: dict[str, Any],
        *,
        clock_trusted: bool,
        protocol: str = DEFAULT_PROTOCOL,
        seq_field: str | None = None,
    ) -> int:
        """Record the start of a reserved transaction and queue its start message in ONE commit (seq_field: as in
        enqueue)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET connector_id = ?, id_tag = ?, reservation_id = ?, clock_trusted = ?, "
                "meter_start_wh = ?, start_wall = ?, start_monotonic = ?, last_energy_wh = ?, last_wall = ? "
                "WHERE tx_local_id = ?",
                (connector_id, id_tag, reservation_id, int(clock_trusted), meter_start_wh, start_wall,
                 start_monotonic, meter_start_wh, start_wall, tx_local_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"state database {self.path}: no transaction with local id {tx_local_id}")
            msg_id = self._insert_outbox(conn, start_action, start_payload, tx_local_id, start_wall,
                                         start_monotonic, clock_trusted, protocol=protocol, seq_field=seq_field)
        if self._bytes_stale:
            self._refresh_bytes()
        return msg_id

    def end_transaction(
        self,
        tx_local_id: int,
        meter_stop_wh: float,
        stop_wall: float,
        stop_monotonic: float,
        reason: str,
        stop_action: str,
        stop_payload: dict[str, Any],
        *,
        clock_trusted: bool,
        protocol: str = DEFAULT_PROTOCOL,
        tx_id_field: str | None = None,
        seq_field: str | None = None,
    ) -> int | None:
        """Record the stop and queue the stop message in ONE commit; None if it was already stopped (seq_field: as
        in enqueue)."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT stop_wall, connector_id FROM transactions WHERE tx_local_id = ?", (tx_local_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"state database {self.path}: no transaction with local id {tx_local_id}")
            if row[1] == 0:  # reserved, never begun: its start was never queued, a stop would name nothing
                raise StoreError(f"state database {self.path}: transaction {tx_local_id} was never started")
            if row[0] is not None:
                LOGGER.warning("transaction %d stopped twice; keeping the first stop", tx_local_id)
                return None
            conn.execute(
                "UPDATE transactions SET meter_stop_wh = ?, stop_wall = ?, stop_reason = ?, "
                "last_energy_wh = ?, last_wall = ? WHERE tx_local_id = ?",
                (meter_stop_wh, stop_wall, reason, meter_stop_wh, stop_wall, tx_local_id),
            )
            msg_id = self._insert_outbox(conn, stop_action, stop_payload, tx_local_id, stop_wall,
                                         stop_monotonic, clock_trusted, protocol=protocol, tx_id_field=tx_id_field,
                                         seq_field=seq_field)
            # the stop message carries the transaction data now: one commit moves it there
            conn.execute("DELETE FROM tx_data WHERE tx_local_id = ?", (tx_local_id,))
        if self._bytes_stale:
            self._refresh_bytes()
        return msg_id

    def decide_stop(self, tx_local_id: int, reason: str, wall: float) -> bool:
        """Record the stop decision (reason, time) before anything else happens; the first decision wins.

        False when the transaction was already stopped or decided (a second decision changes nothing).
        """
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET decided_reason = ?, decided_wall = ? "
                "WHERE tx_local_id = ? AND connector_id != 0 AND stop_wall IS NULL AND decided_reason IS NULL",
                (reason, wall, tx_local_id),
            )
            return cursor.rowcount > 0

    def tx_data_append(self, tx_local_id: int, value: dict[str, Any], wall: float, *, cap: int,
                       clock_trusted: bool = True) -> None:
        """Keep one meterValue for the transaction's StopTransaction; over cap, the oldest but the first go."""
        with self._write() as conn:
            conn.execute("INSERT INTO tx_data (tx_local_id, boot_id, wall_time, clock_trusted, value) "
                         "VALUES (?, ?, ?, ?, ?)", (tx_local_id, self.boot_id, wall, int(clock_trusted),
                                                    _dumps(value)))
            count = conn.execute("SELECT COUNT(*) FROM tx_data WHERE tx_local_id = ?", (tx_local_id,)).fetchone()[0]
            if count > cap:
                conn.execute(
                    "DELETE FROM tx_data WHERE id IN (SELECT id FROM tx_data WHERE tx_local_id = ? "
                    "ORDER BY id LIMIT ? OFFSET 1)", (tx_local_id, count - cap))

    def tx_data(self, tx_local_id: int) -> list[dict[str, Any]]:
        """The meterValues kept for a transaction's StopTransaction, in the order they were taken."""
        with self._read() as conn:
            rows = conn.execute("SELECT value, timestamp_shift_s FROM tx_data WHERE tx_local_id = ? ORDER BY id",
                                (tx_local_id,)).fetchall()
        return [_load_payload(r[0], r[1]) for r in rows]

    def begin_run(self, kernel_boot_id: str) -> PreviousRun:
        """At start: how the previous run ended; from now on this run counts as not cleanly stopped."""
        with self._write() as conn:
            state = dict(conn.execute("SELECT key, value FROM run_state").fetchall())
            conn.execute("INSERT OR REPLACE INTO run_state (key, value) VALUES ('kernel_boot_id', ?)",
                         (kernel_boot_id,))
            conn.execute("INSERT OR REPLACE INTO run_state (key, value) VALUES ('clean_shutdown', '0')")
        shutdown = state.get("shutdown_wall")
        return PreviousRun(state.get("kernel_boot_id"), state.get("clean_shutdown") == "1",
                           float(shutdown) if shutdown else None)

    def mark_clean_shutdown(self, wall: float) -> None:
        """The process is stopping on request (SIGTERM, reset): the next start can tell it from a crash."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO run_state (key, value) VALUES ('clean_shutdown', '1')")
            conn.execute("INSERT OR REPLACE INTO run_state (key, value) VALUES ('shutdown_wall', ?)", (str(wall),))

    def discard_reserved(self) -> int:
        """At boot: delete reserved ids that never started (the process died between the two calls)."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM transactions WHERE connector_id = 0 AND tx_local_id NOT IN "
                "(SELECT tx_local_id FROM outbox WHERE tx_local_id IS NOT NULL)"
            )
            return int(cursor.rowcount)

    def update_transaction_meter(self, tx_local_id: int, energy_wh: float, wall: float) -> None:
        """Persist the energy register of a running transaction (every sample, every contactor opening)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET last_energy_wh = ?, last_wall = ? WHERE tx_local_id = ?",
                (energy_wh, wall, tx_local_id),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"state database {self.path}: no transaction with local id {tx_local_id}")

    _TX_COLUMNS = (
        "tx_local_id, connector_id, id_tag, reservation_id, boot_id, clock_trusted, meter_start_wh, "
        "start_wall, start_monotonic, last_energy_wh, last_wall, meter_stop_wh, stop_wall, stop_reason, "
        "transaction_id, decided_reason, decided_wall, station_tx_id"
    )

    @staticmethod
    def _tx_row(r: tuple[Any, ...]) -> TransactionRow:
        """Build a TransactionRow from a row selected with _TX_COLUMNS."""
        return TransactionRow(
            tx_local_id=r[0],
            connector_id=r[1],
            id_tag=r[2],
            reservation_id=r[3],
            boot_id=r[4],
            clock_trusted=bool(r[5]),
            meter_start_wh=r[6],
            start_wall=r[7],
            start_monotonic=r[8],
            last_energy_wh=r[9],
            last_wall=r[10],
            meter_stop_wh=r[11],
            stop_wall=r[12],
            stop_reason=r[13],
            transaction_id=r[14],
            decided_reason=r[15],
            decided_wall=r[16],
            station_tx_id=r[17] or "",
        )

    def unfinished_transactions(self) -> list[TransactionRow]:
        """Transactions without a stop: at boot, these were cut by a power loss or a crash."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._TX_COLUMNS} FROM transactions WHERE stop_wall IS NULL ORDER BY tx_local_id"
            ).fetchall()
        return [self._tx_row(r) for r in rows]

    def transaction(self, tx_local_id: int) -> TransactionRow | None:
        """One transaction by its local id."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {self._TX_COLUMNS} FROM transactions WHERE tx_local_id = ?", (tx_local_id,)
            ).fetchone()
        return None if row is None else self._tx_row(row)

    def transaction_id_for(self, tx_local_id: int) -> int | None:
        """The back office transactionId when known (-1 if StartTransaction never succeeded), else None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT transaction_id FROM transactions WHERE tx_local_id = ?", (tx_local_id,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def recent_transactions(self, limit: int = 20) -> list[TransactionRow]:
        """The latest transactions, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._TX_COLUMNS} FROM transactions ORDER BY tx_local_id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [self._tx_row(r) for r in rows]


    def transactions_of_id(self, id_tag: str, limit: int) -> list[TransactionRow]:
        """The latest transactions started by an id, newest first (a customer's data, for a report)."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._TX_COLUMNS} FROM transactions WHERE id_tag = ? ORDER BY tx_local_id DESC LIMIT ?",
                (id_tag, limit),
            ).fetchall()
        return [self._tx_row(r) for r in rows]

    def forget_id_tag(self, id_tag: str) -> int:
        """Erase an id from finished transactions whose messages all left the outbox; the count erased.

        A running transaction, or one with a message still queued, keeps it: the back office must still get
        it (nothing is lost); a later request can erase it then.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE transactions SET id_tag = '' WHERE id_tag = ? AND stop_wall IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM outbox WHERE outbox.tx_local_id = transactions.tx_local_id)",
                (id_tag,),
            )
            return cursor.rowcount
