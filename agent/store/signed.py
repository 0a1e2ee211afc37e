"""Signed meter data per transaction: the legal transaction asked of a signing meter, and its data sets.

Each data set is committed here before any message that carries it is queued, so a power cut between the
meter's answer and the queued message loses nothing: the begin data set is read back for the start, the end
data set for the stop (also the one a meter closed by itself, fetched at boot).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.metering import SignedValue
from agent.store.db import Db

KINDS = ("begin", "end")


@dataclass(frozen=True)
class LegalRecord:
    """A legal transaction the agent asked a connector's signing meter to begin (under the meter's id for it)."""

    tx_local_id: int
    connector_id: int
    meter_tx_id: str
    begun: bool  # the local transaction was recorded as started (False: its start never was)
    ended: bool  # the end data set is stored


class SignedValuesMixin(Db):
    """The signed meter data of Store."""

    def signed_legal_begin(self, tx_local_id: int, connector_id: int, meter_tx_id: str, wall: float) -> None:
        """Record, before the meter is asked, that a legal transaction is begun on it under meter_tx_id."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO signed_values (tx_local_id, kind, connector_id, meter_tx_id, "
                         "wall_time) VALUES (?, 'legal', ?, ?, ?)", (tx_local_id, connector_id, meter_tx_id, wall))

    def signed_put(self, tx_local_id: int, kind: str, value: SignedValue, wall: float) -> None:
        """Store a data set of a transaction ("begin" or "end"); the first one of each kind stays."""
        if kind not in KINDS:
            raise ValueError(f"unknown signed data kind {kind!r}")
        with self._write() as conn:
            legal = conn.execute("SELECT connector_id, meter_tx_id FROM signed_values WHERE tx_local_id = ? "
                                 "AND kind = 'legal'", (tx_local_id,)).fetchone()
            connector_id, meter_tx_id = legal if legal is not None else (0, "")
            conn.execute(
                "INSERT OR IGNORE INTO signed_values (tx_local_id, kind, connector_id, meter_tx_id, data, encoding, "
                "signing_method, public_key, begin_wh, end_wh, wall_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tx_local_id, kind, connector_id, meter_tx_id, value.data, value.encoding, value.signing_method,
                 value.public_key, value.begin_wh, value.end_wh, wall))

    def signed_get(self, tx_local_id: int, kind: str) -> SignedValue | None:
        """A stored data set of a transaction, exactly as the meter produced it."""
        with self._read() as conn:
            row = conn.execute("SELECT data, encoding, signing_method, public_key, begin_wh, end_wh FROM "
                               "signed_values WHERE tx_local_id = ? AND kind = ?", (tx_local_id, kind)).fetchone()
        if row is None or row[0] is None:
            return None
        return SignedValue(row[0], row[1], row[2], row[3], row[4], row[5])

    def signed_legal(self, tx_local_id: int) -> LegalRecord | None:
        """The legal transaction of a local transaction, if one was asked of its meter."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT s.connector_id, s.meter_tx_id, COALESCE(t.connector_id, 0), EXISTS (SELECT 1 FROM "
                "signed_values e WHERE e.tx_local_id = s.tx_local_id AND e.kind = 'end') FROM signed_values s "
                "LEFT JOIN transactions t ON t.tx_local_id = s.tx_local_id WHERE s.tx_local_id = ? AND "
                "s.kind = 'legal'", (tx_local_id,)).fetchone()
        return None if row is None else LegalRecord(tx_local_id, row[0], row[1], row[2] != 0, bool(row[3]))

    def signed_legal_open(self) -> list[LegalRecord]:
        """Legal transactions whose end data set is not stored (at boot: to end or fetch from the meter)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT s.tx_local_id, s.connector_id, s.meter_tx_id, COALESCE(t.connector_id, 0) FROM signed_values s "
                "LEFT JOIN transactions t ON t.tx_local_id = s.tx_local_id WHERE s.kind = 'legal' AND NOT EXISTS "
                "(SELECT 1 FROM signed_values e WHERE e.tx_local_id = s.tx_local_id AND e.kind = 'end') "
                "ORDER BY s.tx_local_id").fetchall()
        return [LegalRecord(r[0], r[1], r[2], r[3] != 0, False) for r in rows]

    def signed_forget(self, tx_local_id: int) -> None:
        """Drop the signed records of a transaction that was never started (its legal transaction was ended)."""
        with self._write() as conn:
            conn.execute("DELETE FROM signed_values WHERE tx_local_id = ?", (tx_local_id,))
