"""The agent's one SQLite database: the durable outbox, transactions, auth list and cache, config, profiles.

Every call is short and synchronous (the adapter calls it from asyncio); every write that matters for
durability commits with ``synchronous=FULL`` before the call returns, so a power cut after a return
loses nothing. The outbox is read one message at a time and is never loaded whole: memory stays flat with
100,000 queued messages. Payloads are stored as JSON text in their wire form (camelCase OCPP keys).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.errors import DamagedDatabase, DiskFull, StoreError

LOGGER = logging.getLogger(__name__)

ROW_OVERHEAD_BYTES = 64  # rough on-disk cost of an outbox row beyond its payload: columns, index entry, slack
DEFAULT_CACHE_CAPACITY = 1000  # authorization cache entries; least recently used are evicted
SECURITY_LOG_CAPACITY = 10_000  # local security log rows; the oldest are dropped
BUSY_TIMEOUT_S = 5.0  # only our own process opens the file; a lock held longer than this is a bug

# 1.6: the back office's transactionId is rewritten into these queued messages once StartTransaction succeeds.
_TX_ID_ACTIONS = ("MeterValues", "StopTransaction")
_TX_ID_UNKNOWN = -1  # 1.6 errata: transactionId of messages whose StartTransaction never succeeded
_THINNABLE_TRIGGERS = frozenset({"MeterValuePeriodic", "MeterValueClock"})

# Each entry migrates the schema from version i to i + 1; never edit a released entry, append a new one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE transactions (
            tx_local_id INTEGER PRIMARY KEY AUTOINCREMENT,
            connector_id INTEGER NOT NULL,
            id_tag TEXT NOT NULL,
            reservation_id INTEGER,
            boot_id TEXT NOT NULL,
            clock_trusted INTEGER NOT NULL,
            meter_start_wh REAL NOT NULL,
            start_wall REAL NOT NULL,
            start_monotonic REAL NOT NULL,
            last_energy_wh REAL NOT NULL,
            last_wall REAL NOT NULL,
            meter_stop_wh REAL,
            stop_wall REAL,
            stop_reason TEXT,
            transaction_id INTEGER)""",
        "CREATE INDEX transactions_open ON transactions(tx_local_id) WHERE stop_wall IS NULL",
        "CREATE INDEX transactions_untrusted ON transactions(boot_id) WHERE clock_trusted = 0",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            tx_local_id INTEGER REFERENCES transactions(tx_local_id),
            thinnable INTEGER NOT NULL,
            boot_id TEXT NOT NULL,
            wall_time REAL NOT NULL,
            monotonic REAL NOT NULL,
            clock_trusted INTEGER NOT NULL,
            timestamp_shift_s REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT)""",
        "CREATE INDEX outbox_tx ON outbox(tx_local_id)",
        "CREATE INDEX outbox_untrusted ON outbox(boot_id) WHERE clock_trusted = 0",
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY,
            action TEXT NOT NULL,
            payload TEXT NOT NULL,
            tx_local_id INTEGER,
            boot_id TEXT NOT NULL,
            wall_time REAL NOT NULL,
            monotonic REAL NOT NULL,
            clock_trusted INTEGER NOT NULL,
            timestamp_shift_s REAL NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT NOT NULL,
            dead_at REAL NOT NULL)""",
        """CREATE TABLE local_list (
            id_tag TEXT PRIMARY KEY, status TEXT NOT NULL, expiry_date TEXT, parent_id_tag TEXT)""",
        """CREATE TABLE auth_cache (
            id_tag TEXT PRIMARY KEY, status TEXT NOT NULL, expiry_date TEXT, parent_id_tag TEXT,
            last_used INTEGER NOT NULL)""",
        "CREATE INDEX auth_cache_lru ON auth_cache(last_used)",
        "CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE charging_profiles (
            profile_id INTEGER PRIMARY KEY, connector_id INTEGER NOT NULL, profile TEXT NOT NULL)""",
        "CREATE TABLE availability (connector_id INTEGER PRIMARY KEY, operative INTEGER NOT NULL)",
        """CREATE TABLE security_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_type TEXT NOT NULL,
            tech_info TEXT,
            boot_id TEXT NOT NULL,
            wall_time REAL NOT NULL,
            clock_trusted INTEGER NOT NULL)""",
    ),
    (
        # The stop decision (reason, time) is durable the moment it is taken; meterStop follows later.
        "ALTER TABLE transactions ADD COLUMN decided_reason TEXT",
        "ALTER TABLE transactions ADD COLUMN decided_wall REAL",
        # transactionData of StopTransaction, collected during the transaction (on disk, not in memory)
        """CREATE TABLE tx_data (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tx_local_id INTEGER NOT NULL REFERENCES transactions(tx_local_id),
            boot_id TEXT NOT NULL,
            wall_time REAL NOT NULL,
            clock_trusted INTEGER NOT NULL,
            timestamp_shift_s REAL NOT NULL DEFAULT 0,
            value TEXT NOT NULL)""",
        "CREATE INDEX tx_data_untrusted ON tx_data(boot_id) WHERE clock_trusted = 0",
        "CREATE INDEX tx_data_tx ON tx_data(tx_local_id, id)",
        # how the previous run of the agent ended: kernel boot id and a clean-shutdown record
        "CREATE TABLE run_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class OutboxMessage:
    """A queued transaction-related message; `id` is its place in the send order."""

    id: int
    action: str
    payload: dict[str, Any]
    tx_local_id: int | None
    boot_id: str
    wall_time: float
    monotonic: float
    clock_trusted: bool
    attempts: int  # CALLERRORs so far; timeouts and lost connections do not count
    next_attempt_at: float  # in the caller's clock (the `now` of record_failure); 0 = at once
    last_error: str | None


@dataclass(frozen=True)
class DeadLetter:
    """A message the back office rejected TransactionMessageAttempts times; kept forever, never resent."""

    id: int
    action: str
    payload: dict[str, Any]
    tx_local_id: int | None
    boot_id: str
    wall_time: float
    monotonic: float
    clock_trusted: bool
    attempts: int
    error: str
    dead_at: float


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


@dataclass(frozen=True)
class PreviousRun:
    """How the agent's previous run ended, as recorded in the state database."""

    kernel_boot_id: str | None  # None: no previous run recorded (a new database)
    clean_shutdown: bool
    shutdown_wall: float | None


@dataclass(frozen=True)
class AuthEntry:
    """An idTag with its idTagInfo; status None in a differential SendLocalList means "remove"."""

    id_tag: str
    status: str | None
    expiry_date: str | None = None  # ISO 8601, as the back office sent it
    parent_id_tag: str | None = None


@dataclass(frozen=True)
class SecurityEvent:
    """One row of the local security log."""

    id: int
    event_type: str
    tech_info: str | None
    boot_id: str
    wall_time: float
    clock_trusted: bool


def _dumps(payload: dict[str, Any]) -> str:
    """Serialise a payload compactly (the stored form is what counts against max_bytes)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _is_thinnable(action: str, payload: dict[str, Any]) -> bool:
    """Whether a message is an intermediate meter sample that may be dropped when the disk bound is hit."""
    if action == "MeterValues":
        return True
    if action == "TransactionEvent":
        # Only periodic samples: other Updated events carry state changes the back office needs.
        return payload.get("eventType") == "Updated" and payload.get("triggerReason") in _THINNABLE_TRIGGERS
    return False


def _shift_iso(text: str, offset_s: float) -> str:
    """Shift one ISO 8601 timestamp by offset_s; a naive timestamp is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        LOGGER.warning("not correcting unparsable timestamp %r", text)
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    shifted = (parsed + timedelta(seconds=offset_s)).astimezone(UTC)
    return shifted.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shift_timestamps(value: Any, offset_s: float) -> Any:
    """Return a copy of a JSON value with every "timestamp" field shifted (meterValue[].timestamp too)."""
    if isinstance(value, dict):
        return {
            key: _shift_iso(item, offset_s)
            if key == "timestamp" and isinstance(item, str)
            else _shift_timestamps(item, offset_s)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_shift_timestamps(item, offset_s) for item in value]
    return value


def _load_payload(text: str, timestamp_shift_s: float) -> dict[str, Any]:
    """Decode a stored payload, applying the clock correction recorded for its row."""
    payload: dict[str, Any] = json.loads(text)
    return _shift_timestamps(payload, timestamp_shift_s) if timestamp_shift_s else payload


class Store:
    """The agent's SQLite state: open once per process, call from one event loop (calls are serialised)."""

    def __init__(
        self,
        path: str | Path,
        *,
        boot_id: str | None = None,
        max_bytes: int | None = None,
        cache_capacity: int = DEFAULT_CACHE_CAPACITY,
    ) -> None:
        self.path = Path(path)
        self.boot_id: str = boot_id or uuid.uuid4().hex
        self.max_bytes = max_bytes
        self.cache_capacity = cache_capacity
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._outbox_bytes = 0
        self._bytes_stale = True
        self._thinned_total = 0
        self._thinned_unreported = 0
        self._over_limit_logged = False
        self._lru_counter = 0
        self._check_location()
        try:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
        except sqlite3.Error as err:
            raise self._translate(err) from err
        self._conn = conn
        try:
            self._configure(conn)
            self._migrate(conn)
            with self._write() as wconn:
                # Monotonic clocks restart at boot: a wait computed in the previous boot means nothing now.
                wconn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE next_attempt_at != 0")
            with self._read() as rconn:
                self._lru_counter = rconn.execute(
                    "SELECT COALESCE(MAX(last_used), 0) FROM auth_cache"
                ).fetchone()[0]
            self._refresh_bytes()
        except BaseException:
            self.close()
            raise
        LOGGER.info(
            "state database %s open (schema %d, boot %s, %d queued)",
            self.path,
            SCHEMA_VERSION,
            self.boot_id,
            self.pending_count(),
        )

    # ------------------------------------------------------------------ plumbing

    def _check_location(self) -> None:
        """Refuse to start with a clear message when the database cannot live where the config says."""
        directory = self.path.parent
        if not directory.is_dir():
            raise StoreError(
                f"cannot open state database {self.path}: directory {directory} does not exist; create it "
                f"(systemd StateDirectory= does) or fix the state path in the config"
            )
        # WAL creates <db>-wal and <db>-shm next to the file, so the directory itself must be writable.
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(
                f"cannot open state database {self.path}: directory {directory} is not writable by uid "
                f"{os.geteuid()}; fix its owner/permissions or the state path in the config"
            )
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise StoreError(
                f"cannot open state database {self.path}: the file is not readable and writable by uid "
                f"{os.geteuid()}; fix its owner/permissions"
            )

    def _configure(self, conn: sqlite3.Connection) -> None:
        """Set WAL, FULL sync and foreign keys; the first read also detects a file that is not a database."""
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as err:
            raise self._translate(err) from err
        if str(mode).lower() != "wal":
            raise StoreError(f"state database {self.path}: cannot enable WAL journal (got {mode!r})")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to SCHEMA_VERSION, one migration per transaction."""
        with self._write() as wconn:
            wconn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = wconn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0)
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"state database {self.path} has schema version {current}, newer than this agent's "
                f"{SCHEMA_VERSION}; install the newer agent again or move the file aside"
            )
        for version in range(current, SCHEMA_VERSION):
            with self._write() as wconn:
                for statement in _MIGRATIONS[version]:
                    wconn.execute(statement)
                wconn.execute("DELETE FROM schema_version")
                wconn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            LOGGER.info("state database %s migrated to schema %d", self.path, version + 1)

    def _translate(self, err: sqlite3.Error) -> StoreError:
        """Turn an sqlite3 error into the agent's error tree."""
        name = str(getattr(err, "sqlite_errorname", ""))
        text = str(err)
        if (
            name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
            or "not a database" in text
            or "malformed" in text
        ):
            return DamagedDatabase(str(self.path), text)
        if name.startswith("SQLITE_FULL") or "database or disk is full" in text:
            return DiskFull(str(self.path), text)
        return StoreError(f"state database {self.path}: {text}")

    def _connection(self) -> sqlite3.Connection:
        """The open connection, or a clear error after close()."""
        if self._conn is None:
            raise StoreError(f"state database {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (fsync, synchronous=FULL) before the block's caller returns."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._bytes_stale = True  # in-memory counters may have moved with the rolled-back rows
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        LOGGER.debug("rollback after %s failed", err)
                self._bytes_stale = True
                raise self._translate(err) from err

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read outside any explicit transaction, with sqlite errors translated."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as err:
                raise self._translate(err) from err

    def _refresh_bytes(self) -> None:
        """Recount the outbox size from disk (at open, and after a rollback)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(length(CAST(payload AS BLOB))), 0), COUNT(*) FROM outbox"
            ).fetchone()
        self._outbox_bytes = int(row[0]) + int(row[1]) * ROW_OVERHEAD_BYTES
        self._bytes_stale = False

    def _tx_payload_bytes(self, conn: sqlite3.Connection, tx_local_id: int) -> int:
        """Payload bytes of the queued messages whose transactionId the store rewrites."""
        row = conn.execute(
            "SELECT COALESCE(SUM(length(CAST(payload AS BLOB))), 0) FROM outbox "
            f"WHERE tx_local_id = ? AND action IN ({','.join('?' * len(_TX_ID_ACTIONS))})",
            (tx_local_id, *_TX_ID_ACTIONS),
        ).fetchone()
        return int(row[0])

    def _set_transaction_id(self, conn: sqlite3.Connection, tx_local_id: int, transaction_id: int) -> int:
        """Record the back office id and rewrite it into the queued messages of that transaction."""
        conn.execute(
            "UPDATE transactions SET transaction_id = ? WHERE tx_local_id = ?", (transaction_id, tx_local_id)
        )
        before = self._tx_payload_bytes(conn, tx_local_id)
        cursor = conn.execute(
            "UPDATE outbox SET payload = json_set(payload, '$.transactionId', ?) "
            f"WHERE tx_local_id = ? AND action IN ({','.join('?' * len(_TX_ID_ACTIONS))})",
            (transaction_id, tx_local_id, *_TX_ID_ACTIONS),
        )
        self._outbox_bytes += self._tx_payload_bytes(conn, tx_local_id) - before
        return cursor.rowcount

    def salvage(self, source: Path) -> dict[str, int]:
        """Copy every readable row of a damaged database file into this (new) one; rows per table."""
        counts: dict[str, int] = {}
        for table in _SALVAGE_TABLES:
            try:
                columns, rows = _salvage_rows(source, table)
            except sqlite3.DatabaseError as err:
                LOGGER.warning("table %s of %s cannot be read: %s", table, source, err)
                counts[table] = 0
                continue
            if table == "meta":
                continue  # the schema version of the new file is its own
            sql = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            inserted = 0
            with self._write() as conn:
                for row in rows:
                    try:
                        conn.execute(sql, row)
                        inserted += 1
                    except sqlite3.DatabaseError as err:
                        LOGGER.warning("a row of %s was not salvaged: %s", table, err)
            counts[table] = inserted
        self._refresh_bytes()
        return counts

    def close(self) -> None:
        """Close the database; further calls raise StoreError. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ outbox

    def enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        tx_local_id: int | None = None,
        wall_time: float,
        monotonic: float,
        clock_trusted: bool,
    ) -> int:
        """Commit a message to the outbox and return its id (ids increase in send order, never reused).

        tx_local_id must come from open_transaction(). For a 1.6 MeterValues/StopTransaction whose
        transactionId is already known (or -1), the store writes it into the stored payload itself.
        With max_bytes set, intermediate meter samples are thinned in the same commit (see take_thinned()).
        """
        with self._write() as conn:
            msg_id = self._insert_outbox(conn, action, payload, tx_local_id, wall_time, monotonic, clock_trusted)
        if self._bytes_stale:
            self._refresh_bytes()
        return msg_id

    def _insert_outbox(
        self,
        conn: sqlite3.Connection,
        action: str,
        payload: dict[str, Any],
        tx_local_id: int | None,
        wall_time: float,
        monotonic: float,
        clock_trusted: bool,
    ) -> int:
        """Insert one outbox row inside the caller's write transaction; thin when over the disk cap."""
        stored = payload
        if tx_local_id is not None and action in _TX_ID_ACTIONS:
            row = conn.execute(
                "SELECT transaction_id FROM transactions WHERE tx_local_id = ?", (tx_local_id,)
            ).fetchone()
            if row is not None and row[0] is not None:
                stored = {**payload, "transactionId": int(row[0])}
        text = _dumps(stored)
        cursor = conn.execute(
            "INSERT INTO outbox (action, payload, tx_local_id, thinnable, boot_id, wall_time, monotonic, "
            "clock_trusted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                action,
                text,
                tx_local_id,
                int(_is_thinnable(action, payload)),
                self.boot_id,
                wall_time,
                monotonic,
                int(clock_trusted),
            ),
        )
        msg_id = int(cursor.lastrowid or 0)
        self._outbox_bytes += len(text.encode()) + ROW_OVERHEAD_BYTES
        if self.max_bytes is not None and self._outbox_bytes > self.max_bytes:
            self._thin(conn, msg_id)
        return msg_id

    def _thin(self, conn: sqlite3.Connection, newest_id: int) -> None:
        """Delete every other intermediate meter sample, oldest transactions first, until under max_bytes.

        Never Start/Stop (not thinnable), never the head of the queue (it may be in flight), never the
        message just enqueued.
        """
        assert self.max_bytes is not None
        head = int(conn.execute("SELECT MIN(id) FROM outbox").fetchone()[0])
        deleted = 0
        while self._outbox_bytes > self.max_bytes:
            groups = conn.execute(
                "SELECT tx_local_id FROM outbox WHERE thinnable = 1 AND id > ? AND id < ? "
                "GROUP BY tx_local_id HAVING COUNT(*) >= 2 ORDER BY MIN(id)",
                (head, newest_id),
            ).fetchall()
            if not groups:
                break
            for (tx_local_id,) in groups:
                victims = (
                    "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS rn FROM outbox "
                    "WHERE thinnable = 1 AND tx_local_id IS ? AND id > ? AND id < ?) WHERE rn % 2 = 0"
                )
                params = (tx_local_id, head, newest_id)
                freed, count = conn.execute(
                    f"SELECT COALESCE(SUM(length(CAST(payload AS BLOB))), 0), COUNT(*) FROM outbox "
                    f"WHERE id IN ({victims})",
                    params,
                ).fetchone()
                conn.execute(f"DELETE FROM outbox WHERE id IN ({victims})", params)
                self._outbox_bytes -= int(freed) + int(count) * ROW_OVERHEAD_BYTES
                deleted += int(count)
                if self._outbox_bytes <= self.max_bytes:
                    break
        over = self._outbox_bytes > self.max_bytes
        if deleted:
            self._thinned_total += deleted
            self._thinned_unreported += deleted
            LOGGER.warning(
                "outbox over its bound (%d > %d bytes): thinned %d intermediate meter samples",
                self._outbox_bytes,
                self.max_bytes,
                deleted,
            )
        if over and not self._over_limit_logged:
            LOGGER.error(
                "outbox still over its bound (%d > %d bytes), nothing left to thin; keeping every message",
                self._outbox_bytes,
                self.max_bytes,
            )
        self._over_limit_logged = over

    def take_thinned(self) -> int:
        """Messages thinned since the last call; > 0 means the adapter raises MemoryExhaustion."""
        with self._lock:
            count, self._thinned_unreported = self._thinned_unreported, 0
        return count

    @property
    def over_limit(self) -> bool:
        """True while the outbox exceeds max_bytes even after thinning (only Start/Stop etc. remain)."""
        return self.max_bytes is not None and self._outbox_bytes > self.max_bytes

    def peek(self) -> OutboxMessage | None:
        """The oldest pending message (the next to send), or None when the outbox is empty."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {self._OUTBOX_COLUMNS} FROM outbox ORDER BY id LIMIT 1").fetchone()
        return None if row is None else self._outbox_row(row)

    _OUTBOX_COLUMNS = (
        "id, action, payload, tx_local_id, boot_id, wall_time, monotonic, clock_trusted, attempts, "
        "next_attempt_at, last_error, timestamp_shift_s"
    )

    @staticmethod
    def _outbox_row(row: tuple[Any, ...]) -> OutboxMessage:
        """Build an OutboxMessage from a row selected with _OUTBOX_COLUMNS."""
        return OutboxMessage(
            id=row[0],
            action=row[1],
            payload=_load_payload(row[2], row[11]),
            tx_local_id=row[3],
            boot_id=row[4],
            wall_time=row[5],
            monotonic=row[6],
            clock_trusted=bool(row[7]),
            attempts=row[8],
            next_attempt_at=row[9],
            last_error=row[10],
        )

    def pending(self, limit: int = 50, after_id: int = 0) -> list[OutboxMessage]:
        """Up to `limit` pending messages with id > after_id, in send order (a page, for evsectl queue)."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._OUTBOX_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [self._outbox_row(r) for r in rows]

    def ack(self, msg_id: int, result: dict[str, Any]) -> None:
        """Delete a message on its CALLRESULT; for StartTransaction, also map and rewrite transactionId.

        result is the CALLRESULT payload; transactionId is read from "transactionId" (or "transaction_id").
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT action, tx_local_id, length(CAST(payload AS BLOB)) FROM outbox WHERE id = ?",
                (msg_id,),
            ).fetchone()
            if row is None:
                LOGGER.warning(
                    "ack of outbox message %d that is not queued (already acked or thinned)", msg_id
                )
                return
            action, tx_local_id, size = row
            conn.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            self._outbox_bytes -= int(size) + ROW_OVERHEAD_BYTES
            if action == "StartTransaction" and tx_local_id is not None:
                transaction_id = result.get("transactionId", result.get("transaction_id"))
                if isinstance(transaction_id, int):
                    rewritten = self._set_transaction_id(conn, tx_local_id, transaction_id)
                    LOGGER.info(
                        "transaction %d is back office transaction %d (%d queued messages rewritten)",
                        tx_local_id,
                        transaction_id,
                        rewritten,
                    )
                else:
                    LOGGER.error("StartTransaction result without an integer transactionId: %r", result)
        if self._bytes_stale:
            self._refresh_bytes()

    def record_failure(
        self, msg_id: int, error: str, *, max_attempts: int, retry_interval_s: float, now: float
    ) -> bool:
        """Count a CALLERROR; after max_attempts move the message to dead letters and return True.

        next_attempt_at = now + retry_interval_s x attempts (linear, 1.6 TransactionMessageRetryInterval),
        in the clock of `now`. A dead StartTransaction gives the later messages of its transaction
        transactionId -1.
        """
        with self._write() as conn:
            row = conn.execute(
                "SELECT attempts, action, tx_local_id, length(CAST(payload AS BLOB)) "
                "FROM outbox WHERE id = ?",
                (msg_id,),
            ).fetchone()
            if row is None:
                LOGGER.warning("failure of outbox message %d that is not queued", msg_id)
                return False
            attempts, action, tx_local_id, size = int(row[0]) + 1, row[1], row[2], int(row[3])
            if attempts < max(1, max_attempts):
                conn.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                    (attempts, now + retry_interval_s * attempts, error, msg_id),
                )
                dead = False
            else:
                conn.execute(
                    "INSERT INTO dead_letters (id, action, payload, tx_local_id, boot_id, wall_time, "
                    "monotonic, clock_trusted, timestamp_shift_s, attempts, error, dead_at) "
                    "SELECT id, action, payload, tx_local_id, boot_id, wall_time, monotonic, clock_trusted, "
                    "timestamp_shift_s, ?, ?, ? FROM outbox WHERE id = ?",
                    (attempts, error, time.time(), msg_id),
                )
                conn.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
                self._outbox_bytes -= size + ROW_OVERHEAD_BYTES
                if action == "StartTransaction" and tx_local_id is not None:
                    self._set_transaction_id(conn, tx_local_id, _TX_ID_UNKNOWN)
                dead = True
        if self._bytes_stale:
            self._refresh_bytes()
        if dead:
            LOGGER.error(
                "outbox message %d (%s) moved to dead letters after %d attempts: %s",
                msg_id,
                action,
                attempts,
                error,
            )
        return dead

    def pending_count(self) -> int:
        """Messages waiting in the outbox (dead letters excluded)."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (all of them unless limit is given)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, action, payload, tx_local_id, boot_id, wall_time, monotonic, clock_trusted, "
                "attempts, error, dead_at, timestamp_shift_s FROM dead_letters ORDER BY id LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [
            DeadLetter(
                id=r[0],
                action=r[1],
                payload=_load_payload(r[2], r[11]),
                tx_local_id=r[3],
                boot_id=r[4],
                wall_time=r[5],
                monotonic=r[6],
                clock_trusted=bool(r[7]),
                attempts=r[8],
                error=r[9],
                dead_at=r[10],
            )
            for r in rows
        ]

    def outbox_stats(self, now: float | None = None) -> dict[str, Any]:
        """pending, dead, bytes, max_bytes, oldest_age_s (wall clock), thinned (this process), over_limit."""
        with self._read() as conn:
            pending = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            dead = int(conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
            oldest = conn.execute("SELECT wall_time FROM outbox ORDER BY id LIMIT 1").fetchone()
            if self._bytes_stale:
                self._refresh_bytes()
        current = time.time() if now is None else now
        return {
            "pending": pending,
            "dead": dead,
            "bytes": self._outbox_bytes,
            "max_bytes": self.max_bytes,
            "oldest_age_s": None if oldest is None else max(0.0, current - float(oldest[0])),
            "thinned": self._thinned_total,
            "over_limit": self.over_limit,
        }

    # ------------------------------------------------------------------ transactions

    def open_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start_wh: float,
        start_wall: float,
        start_monotonic: float,
        reservation_id: int | None = None,
        *,
        clock_trusted: bool = True,
    ) -> int:
        """Record a started transaction and return its tx_local_id (persistent, never reused)."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO transactions (connector_id, id_tag, reservation_id, boot_id, clock_trusted, "
                "meter_start_wh, start_wall, start_monotonic, last_energy_wh, last_wall) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    connector_id,
                    id_tag,
                    reservation_id,
                    self.boot_id,
                    int(clock_trusted),
                    meter_start_wh,
                    start_wall,
                    start_monotonic,
                    meter_start_wh,
                    start_wall,
                ),
            )
            return int(cursor.lastrowid or 0)

    def reserve_tx_id(self, wall: float, monotonic: float) -> int:
        """Allocate a tx_local_id for the core before its TransactionStarted (filled by begin_transaction)."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO transactions (connector_id, id_tag, boot_id, clock_trusted, meter_start_wh, "
                "start_wall, start_monotonic, last_energy_wh, last_wall) VALUES (0, '', ?, 0, 0, ?, ?, 0, ?)",
                (self.boot_id, wall, monotonic, wall),
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
    ) -> int:
        """Record the start of a reserved transaction and queue its start message in ONE commit."""
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
                                         start_monotonic, clock_trusted)
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
    ) -> int | None:
        """Record the stop and queue the stop message in ONE commit; None if it was already stopped."""
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
                                         stop_monotonic, clock_trusted)
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

    def close_transaction(
        self, tx_local_id: int, meter_stop_wh: float, stop_wall: float, reason: str
    ) -> None:
        """Record the stop of a transaction; closing twice keeps the first stop."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT stop_wall FROM transactions WHERE tx_local_id = ?", (tx_local_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"state database {self.path}: no transaction with local id {tx_local_id}")
            if row[0] is not None:
                LOGGER.warning("transaction %d closed twice; keeping the first stop", tx_local_id)
                return
            conn.execute(
                "UPDATE transactions SET meter_stop_wh = ?, stop_wall = ?, stop_reason = ?, "
                "last_energy_wh = ?, last_wall = ? WHERE tx_local_id = ?",
                (meter_stop_wh, stop_wall, reason, meter_stop_wh, stop_wall, tx_local_id),
            )

    _TX_COLUMNS = (
        "tx_local_id, connector_id, id_tag, reservation_id, boot_id, clock_trusted, meter_start_wh, "
        "start_wall, start_monotonic, last_energy_wh, last_wall, meter_stop_wh, stop_wall, stop_reason, "
        "transaction_id, decided_reason, decided_wall"
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

    # ------------------------------------------------------------------ authorization

    def local_list_version(self) -> int:
        """The local authorization list version (0 = no list received)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'local_list_version'").fetchone()
        return 0 if row is None else int(row[0])

    def _write_list_entries(self, conn: sqlite3.Connection, entries: list[AuthEntry]) -> None:
        """Upsert entries; an entry with status None is removed."""
        for entry in entries:
            if entry.status is None:
                conn.execute("DELETE FROM local_list WHERE id_tag = ?", (entry.id_tag,))
            else:
                conn.execute(
                    "INSERT INTO local_list (id_tag, status, expiry_date, parent_id_tag) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, "
                    "expiry_date = excluded.expiry_date, parent_id_tag = excluded.parent_id_tag",
                    (entry.id_tag, entry.status, entry.expiry_date, entry.parent_id_tag),
                )

    @staticmethod
    def _set_list_version(conn: sqlite3.Connection, version: int) -> None:
        """Store the list version in the same transaction as the entries."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('local_list_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )

    def replace_local_list(self, version: int, entries: list[AuthEntry]) -> None:
        """SendLocalList Full: the list becomes exactly `entries` (status None entries are skipped)."""
        with self._write() as conn:
            conn.execute("DELETE FROM local_list")
            self._write_list_entries(conn, entries)
            self._set_list_version(conn, version)

    def update_local_list(self, version: int, entries: list[AuthEntry]) -> None:
        """SendLocalList Differential: upsert entries, remove those with status None."""
        with self._write() as conn:
            self._write_list_entries(conn, entries)
            self._set_list_version(conn, version)

    def local_list_get(self, id_tag: str) -> AuthEntry | None:
        """The local list entry of an idTag."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT id_tag, status, expiry_date, parent_id_tag FROM local_list WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
        return None if row is None else AuthEntry(*row)

    def local_list_count(self) -> int:
        """Entries in the local list (for LocalAuthListMaxLength)."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM local_list").fetchone()[0])

    def cache_get(self, id_tag: str) -> AuthEntry | None:
        """The cached idTagInfo of an idTag; a hit counts as a use for the LRU eviction."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id_tag, status, expiry_date, parent_id_tag FROM auth_cache WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
            if row is None:
                return None
            self._lru_counter += 1
            conn.execute("UPDATE auth_cache SET last_used = ? WHERE id_tag = ?", (self._lru_counter, id_tag))
        return AuthEntry(*row)

    def cache_put(self, entry: AuthEntry) -> None:
        """Cache an idTagInfo, evicting the least recently used entries beyond cache_capacity."""
        if entry.status is None:
            raise ValueError("a cached idTagInfo needs a status")
        with self._write() as conn:
            self._lru_counter += 1
            conn.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry_date, parent_id_tag, last_used) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, "
                "expiry_date = excluded.expiry_date, parent_id_tag = excluded.parent_id_tag, "
                "last_used = excluded.last_used",
                (entry.id_tag, entry.status, entry.expiry_date, entry.parent_id_tag, self._lru_counter),
            )
            excess = int(conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0]) - self.cache_capacity
            if excess > 0:
                conn.execute(
                    "DELETE FROM auth_cache WHERE id_tag IN "
                    "(SELECT id_tag FROM auth_cache ORDER BY last_used LIMIT ?)",
                    (excess,),
                )

    def cache_clear(self) -> None:
        """ClearCache: forget every cached idTag."""
        with self._write() as conn:
            conn.execute("DELETE FROM auth_cache")

    def cache_count(self) -> int:
        """Entries in the authorization cache."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0])

    # ------------------------------------------------------------------ configuration

    def config_get(self, key: str) -> str | None:
        """A persisted configuration value, or None when never set."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def config_set(self, key: str, value: str) -> None:
        """Persist a configuration value."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO config (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def config_delete(self, key: str) -> None:
        """Forget a persisted configuration value (back to the default)."""
        with self._write() as conn:
            conn.execute("DELETE FROM config WHERE key = ?", (key,))

    def config_all(self) -> dict[str, str]:
        """Every persisted configuration value."""
        with self._read() as conn:
            return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM config ORDER BY key")}

    # ------------------------------------------------------------------ charging profiles

    def profile_put(self, connector_id: int, profile: dict[str, Any]) -> None:
        """Install or replace a charging profile (1.6 chargingProfileId or 2.0.1 id is the key)."""
        profile_id = profile.get("chargingProfileId", profile.get("id"))
        if not isinstance(profile_id, int):
            raise ValueError(f"charging profile without an integer chargingProfileId/id: {profile!r}")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO charging_profiles (profile_id, connector_id, profile) VALUES (?, ?, ?) "
                "ON CONFLICT(profile_id) DO UPDATE SET connector_id = excluded.connector_id, "
                "profile = excluded.profile",
                (profile_id, connector_id, _dumps(profile)),
            )

    def profile_delete(self, profile_id: int) -> bool:
        """Remove a charging profile; True when it existed."""
        with self._write() as conn:
            return (
                conn.execute("DELETE FROM charging_profiles WHERE profile_id = ?", (profile_id,)).rowcount > 0
            )

    def profiles(self) -> list[tuple[int, dict[str, Any]]]:
        """Every installed profile as (connector_id, profile), ordered by profile id."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT connector_id, profile FROM charging_profiles ORDER BY profile_id"
            ).fetchall()
        return [(int(c), json.loads(p)) for c, p in rows]

    # ------------------------------------------------------------------ availability

    def availability_get(self, connector_id: int) -> bool:
        """Whether a connector (0 = the whole charge point) is Operative; True when never set."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT operative FROM availability WHERE connector_id = ?", (connector_id,)
            ).fetchone()
        return True if row is None else bool(row[0])

    def availability_set(self, connector_id: int, operative: bool) -> None:
        """Persist ChangeAvailability so it survives a reboot."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO availability (connector_id, operative) VALUES (?, ?) "
                "ON CONFLICT(connector_id) DO UPDATE SET operative = excluded.operative",
                (connector_id, int(operative)),
            )

    # ------------------------------------------------------------------ security log

    def security_log_append(
        self, event_type: str, tech_info: str | None, *, wall_time: float, clock_trusted: bool
    ) -> int:
        """Append to the local security log (capped at SECURITY_LOG_CAPACITY rows); returns the row id."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO security_log (event_type, tech_info, boot_id, wall_time, clock_trusted) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_type, tech_info, self.boot_id, wall_time, int(clock_trusted)),
            )
            row_id = int(cursor.lastrowid or 0)
            conn.execute("DELETE FROM security_log WHERE id <= ?", (row_id - SECURITY_LOG_CAPACITY,))
        return row_id

    def security_log(self, limit: int = 100) -> list[SecurityEvent]:
        """The latest security events, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, event_type, tech_info, boot_id, wall_time, clock_trusted FROM security_log "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [SecurityEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

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


# Tables salvaged from a damaged database, in an order that keeps the foreign keys valid.
_SALVAGE_TABLES = ("transactions", "outbox", "dead_letters", "local_list", "auth_cache", "config",
                   "charging_profiles", "availability", "security_log", "meta", "tx_data")


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


def _salvage_rows(source: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every row of a table that can still be read, page errors skipped where SQLite allows."""
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        cursor = conn.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cursor.description]
        rows: list[tuple[Any, ...]] = []
        try:
            for row in cursor:
                rows.append(tuple(row))
        except sqlite3.DatabaseError as err:
            LOGGER.warning("salvage of %s stopped after %d rows: %s", table, len(rows), err)
        return columns, rows
    finally:
        conn.close()
