"""The operations ledger on disk: hourly and daily counters, wear since service, events, a little state, and the
power curve of each session.

Bounded: hourly rows for HOURLY_KEEP_S, daily rows for DAILY_KEEP_S, OPS_EVENTS_CAPACITY events; a session's
power curve is thinned to about POWER_MAX_POINTS points and kept for the latest POWER_KEEP_SESSIONS sessions and
POWER_KEEP_S. A commit is one transaction with the store's durability (synchronous=FULL): what was committed
survives a power cut.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.core.operations import Pending
from agent.store.db import Db, _dumps

HOURLY_KEEP_S = 15 * 86400  # at least 14 days of hourly rows (the day being written counts as one)
DAILY_KEEP_S = 450 * 86400  # at least 400 days of daily rows
OPS_EVENTS_CAPACITY = 10_000  # gaps, replacements, maintenance, problem reports; the oldest are dropped
SNAPSHOT_LOGS_KEPT = 50  # events of a kind keep their "log" snapshot (up to ~60 KB) only for the newest 50
POWER_MAX_POINTS = 300  # a session's curve keeps at most this many evenly spaced points (and its newest one)
POWER_KEEP_SESSIONS = 500  # curves of the latest transaction ids kept: at most 500 x 301 rows, about 10 MB
POWER_KEEP_S = 90 * 86400  # and none older than this (pruned when a session's first point is written)


def power_stride(seq: int) -> int:
    """The spacing of the points kept once a curve has its seq-th sample: the smallest power of two that keeps
    at most POWER_MAX_POINTS multiples of itself in 0..seq (so a long session is thinned evenly, never its end)."""
    stride = 1
    while seq // stride + 1 > POWER_MAX_POINTS:
        stride *= 2
    return stride


@dataclass(frozen=True)
class PowerPoint:
    """One point of a session's power curve (power_w None: the meter has no power register)."""

    seq: int
    wall_time: float
    power_w: float | None
    energy_wh: float


@dataclass(frozen=True)
class OpsEvent:
    """One row of the operations event log (a gap, a replacement, maintenance due, a service, a problem)."""

    id: int
    kind: str
    connector_id: int
    wall_time: float
    clock_trusted: bool
    detail: dict[str, Any]


def _upsert(conn: sqlite3.Connection, table: str, rows: dict[tuple[int, int, str], float]) -> None:
    # table is one of two constants below, never from outside
    conn.executemany(
        f"INSERT INTO {table} (period, connector_id, key, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (period, connector_id, key) DO UPDATE SET value = "
        "CASE WHEN excluded.key LIKE 'max.%' THEN max(value, excluded.value) ELSE value + excluded.value END",
        [(period, cid, key, value) for (period, cid, key), value in rows.items()],
    )


class OperationsMixin(Db):
    """The operations ledger of Store."""

    def ops_commit(self, pending: Pending, *, wall: float, state: dict[str, str] | None = None) -> None:
        """Add the pending counters and record the commit time (with other state) in one commit."""
        with self._write() as conn:
            _upsert(conn, "ops_hourly", pending.hourly)
            _upsert(conn, "ops_daily", pending.daily)
            conn.executemany(
                "INSERT INTO ops_wear (connector_id, key, value, since_wall) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (connector_id, key) DO UPDATE SET value = value + excluded.value",
                [(cid, key, value, wall) for (cid, key), value in pending.wear.items()],
            )
            for key, value in {"last_commit_wall": repr(wall), **(state or {})}.items():
                conn.execute("INSERT OR REPLACE INTO ops_state (key, value) VALUES (?, ?)", (key, value))
            conn.execute("DELETE FROM ops_hourly WHERE period < ?", (int(wall) - HOURLY_KEEP_S,))
            conn.execute("DELETE FROM ops_daily WHERE period < ?", (int(wall) - DAILY_KEEP_S,))

    def ops_power_point(self, tx_local_id: int, connector_id: int, wall: float, power_w: float | None,
                        energy_wh: float) -> int:
        """Add a point to a session's power curve and thin it (one write, no fsync inside Store.one_sync).

        Every sample is written as the newest point; the points before it are kept only at the stride of
        power_stride, so the curve stays evenly spaced and at most POWER_MAX_POINTS + 1 rows. Returns its seq.
        """
        with self._write() as conn:
            last = conn.execute("SELECT MAX(seq) FROM ops_power WHERE tx_local_id = ?", (tx_local_id,)).fetchone()[0]
            seq = 0 if last is None else int(last) + 1
            conn.execute("INSERT INTO ops_power (tx_local_id, seq, connector_id, wall_time, power_w, energy_wh) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (tx_local_id, seq, connector_id, wall, power_w, energy_wh))
            stride = power_stride(seq)
            if stride > 1:
                conn.execute("DELETE FROM ops_power WHERE tx_local_id = ? AND seq < ? AND seq % ? != 0",
                             (tx_local_id, seq, stride))
            if last is None:  # a new session: the pruning, once per session rather than at every sample
                conn.execute("DELETE FROM ops_power WHERE tx_local_id <= ? OR wall_time < ?",
                             (tx_local_id - POWER_KEEP_SESSIONS, wall - POWER_KEEP_S))
        return seq

    def ops_power_curve(self, tx_local_id: int) -> list[PowerPoint]:
        """The kept points of a session's power curve, oldest first ([] when none was kept)."""
        with self._read() as conn:
            return [PowerPoint(int(r[0]), float(r[1]), None if r[2] is None else float(r[2]), float(r[3]))
                    for r in conn.execute("SELECT seq, wall_time, power_w, energy_wh FROM ops_power "
                                          "WHERE tx_local_id = ? ORDER BY seq", (tx_local_id,))]

    def ops_state(self) -> dict[str, str]:
        """The ledger's own state (last commit time, identities, maintenance flags)."""
        with self._read() as conn:
            return dict(conn.execute("SELECT key, value FROM ops_state").fetchall())

    def ops_set_state(self, values: dict[str, str | None]) -> None:
        """Set (or with None, delete) entries of the ledger's state."""
        with self._write() as conn:
            for key, value in values.items():
                if value is None:
                    conn.execute("DELETE FROM ops_state WHERE key = ?", (key,))
                else:
                    conn.execute("INSERT OR REPLACE INTO ops_state (key, value) VALUES (?, ?)", (key, value))

    def previous_run_state(self) -> dict[str, str]:
        """How the previous run ended, read without starting a new run (see begin_run)."""
        with self._read() as conn:
            return dict(conn.execute("SELECT key, value FROM run_state").fetchall())

    def ops_rows(self, table: str, since: float, until: float) -> list[tuple[int, int, str, float]]:
        """(period, connector, key, value) of "hourly" or "daily" rows with since <= period < until."""
        name = {"hourly": "ops_hourly", "daily": "ops_daily"}[table]
        with self._read() as conn:
            return [(int(r[0]), int(r[1]), str(r[2]), float(r[3])) for r in conn.execute(
                f"SELECT period, connector_id, key, value FROM {name} WHERE period >= ? AND period < ? "
                "ORDER BY period, connector_id, key", (int(since), int(until)))]

    def ops_wear(self) -> dict[tuple[int, str], tuple[float, float]]:
        """(connector, key) -> (value since the last service or replacement, since when)."""
        with self._read() as conn:
            return {(int(r[0]), str(r[1])): (float(r[2]), float(r[3])) for r in conn.execute(
                "SELECT connector_id, key, value, since_wall FROM ops_wear")}

    def ops_reset_wear(self, connector_id: int, keys: Iterable[str], wall: float) -> None:
        """A part was serviced or replaced: its counters restart at 0 from now."""
        with self._write() as conn:
            for key in keys:
                conn.execute("INSERT OR REPLACE INTO ops_wear (connector_id, key, value, since_wall) "
                             "VALUES (?, ?, 0, ?)", (connector_id, key, wall))

    def ops_event(self, kind: str, connector_id: int, detail: dict[str, Any], *, wall_time: float,
                  clock_trusted: bool) -> int:
        """Append to the operations event log (capped at OPS_EVENTS_CAPACITY rows); returns the row id."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO ops_events (kind, connector_id, wall_time, boot_id, clock_trusted, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, connector_id, wall_time, self.boot_id, int(clock_trusted), _dumps(detail)))
            row_id = int(cursor.lastrowid or 0)
            conn.execute("DELETE FROM ops_events WHERE id <= ?", (row_id - OPS_EVENTS_CAPACITY,))
            if "log" in detail:
                # the count cap alone would let 10,000 snapshots fill an SD card (a button pressed every 10 s)
                cutoff = conn.execute("SELECT id FROM ops_events WHERE kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                                      (kind, SNAPSHOT_LOGS_KEPT)).fetchone()
                if cutoff is not None:
                    conn.execute("UPDATE ops_events SET detail = json_remove(detail, '$.log') WHERE kind = ? AND "
                                 "id <= ? AND json_type(detail, '$.log') IS NOT NULL", (kind, cutoff[0]))
        return row_id

    def ops_events(self, limit: int = 100, kind: str | None = None) -> list[OpsEvent]:
        """The latest operations events, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, kind, connector_id, wall_time, clock_trusted, detail FROM ops_events "
                "WHERE ? IS NULL OR kind = ? ORDER BY id DESC LIMIT ?", (kind, kind, limit)).fetchall()
        return [OpsEvent(int(r[0]), str(r[1]), int(r[2]), float(r[3]), bool(r[4]), json.loads(r[5])) for r in rows]
