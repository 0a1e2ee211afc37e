"""The connection to the agent's SQLite file: location checks, pragmas, migrations, write/read plumbing, salvage.

Every write that matters for durability commits with ``synchronous=FULL`` before the call returns, so a power
cut after a return loses nothing. Payloads are stored as JSON text in their wire form.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from agent.errors import DamagedDatabase, DiskFull, StoreError

LOGGER = logging.getLogger(__name__)

DEFAULT_CACHE_CAPACITY = 1000  # authorization cache entries; least recently used are evicted
LOW_SPACE_BYTES = 256 * 1024  # below this an I/O error of SQLite is a full disk
BUSY_TIMEOUT_S = 5.0  # only our own process opens the file; a lock held longer than this is a bug

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
    (
        # the protocol version a queued message is written in; every row from before is OCPP 1.6
        "ALTER TABLE outbox ADD COLUMN protocol TEXT NOT NULL DEFAULT '1.6'",
        "ALTER TABLE dead_letters ADD COLUMN protocol TEXT NOT NULL DEFAULT '1.6'",
    ),
    (
        # the payload field that carries the back office's transaction id, filled in by the store once known
        # (set by the protocol journal that queued the message; before, the store knew it by action name)
        "ALTER TABLE outbox ADD COLUMN tx_id_field TEXT",
        "UPDATE outbox SET tx_id_field = 'transactionId' WHERE protocol = '1.6' AND tx_local_id IS NOT NULL "
        "AND json_type(payload, '$.transactionId') IS NOT NULL",
    ),
    (
        # the station's own id of a transaction: a string, unique beyond this database (a replaced database
        # restarts tx_local_id at 1; a back office must never see the same id twice). OCPP 2.0.1 sends it.
        "ALTER TABLE transactions ADD COLUMN station_tx_id TEXT",
        "UPDATE transactions SET station_tx_id = lower(hex(randomblob(16))) WHERE station_tx_id IS NULL",
        "CREATE UNIQUE INDEX transactions_station_tx_id ON transactions(station_tx_id)",
    ),
    (
        # the next sequence number of a transaction's messages (OCPP 2.0.1 seqNo): taken and advanced in the
        # commit that queues the message, so a restart neither repeats nor skips one
        "ALTER TABLE transactions ADD COLUMN next_seq_no INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # the operations ledger (agent/store/operations.py): counters per hour and per day, wear since the
        # last service, its event log and state
        """CREATE TABLE ops_hourly (period INTEGER NOT NULL, connector_id INTEGER NOT NULL, key TEXT NOT NULL,
            value REAL NOT NULL, PRIMARY KEY (period, connector_id, key)) WITHOUT ROWID""",
        """CREATE TABLE ops_daily (period INTEGER NOT NULL, connector_id INTEGER NOT NULL, key TEXT NOT NULL,
            value REAL NOT NULL, PRIMARY KEY (period, connector_id, key)) WITHOUT ROWID""",
        """CREATE TABLE ops_wear (connector_id INTEGER NOT NULL, key TEXT NOT NULL, value REAL NOT NULL,
            since_wall REAL NOT NULL, PRIMARY KEY (connector_id, key))""",
        """CREATE TABLE ops_events (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            connector_id INTEGER NOT NULL, wall_time REAL NOT NULL, boot_id TEXT NOT NULL,
            clock_trusted INTEGER NOT NULL, detail TEXT NOT NULL)""",
        "CREATE TABLE ops_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # a signing meter's legal transaction ('legal': asked of the meter, before it answers) and its signed
        # data sets ('begin', 'end'), kept byte for byte before a message carries them (agent/store/signed.py)
        """CREATE TABLE signed_values (
            tx_local_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            connector_id INTEGER NOT NULL,
            meter_tx_id TEXT NOT NULL,
            data TEXT,
            encoding TEXT,
            signing_method TEXT,
            public_key TEXT,
            begin_wh REAL,
            end_wh REAL,
            wall_time REAL NOT NULL,
            PRIMARY KEY (tx_local_id, kind))""",
    ),
    (
        # the power curve of each session (agent/store/operations.py): points thinned to a few hundred per
        # session, kept for the latest sessions only (`evsectl sessions --plot N`)
        """CREATE TABLE ops_power (tx_local_id INTEGER NOT NULL, seq INTEGER NOT NULL,
            connector_id INTEGER NOT NULL, wall_time REAL NOT NULL, power_w REAL, energy_wh REAL NOT NULL,
            PRIMARY KEY (tx_local_id, seq)) WITHOUT ROWID""",
    ),
    (
        # the previous boot's retry waits, cleared at every start, from an index of the few waiting rows instead
        # of a scan of the whole outbox (100k queued messages are 100 MB: seconds of SD card on a Pi)
        "CREATE INDEX outbox_waiting ON outbox(next_attempt_at) WHERE next_attempt_at != 0",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)


def _dumps(payload: dict[str, Any]) -> str:
    """Serialise a payload compactly (the stored form is what counts against max_bytes)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)



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


class Db:
    """The open database and its plumbing; the job mixins of Store build on it (calls are serialised)."""

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
        self._bytes_stale = True  # counters kept in memory (outbox bytes) need a recount from disk
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
            self._after_open()
        except BaseException:
            self.close()
            raise

    def _after_open(self) -> None:
        """Hook run once the schema is current (Store restores its in-memory state here)."""

    def _refresh_bytes(self) -> None:
        """Hook: recount the in-memory counters from disk (the outbox keeps its size)."""
        self._bytes_stale = False

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
            # 1 MiB of page cache (SQLite's default is 2 MB): the agent reads the queue's head and a few rows,
            # a larger cache only fills up with pages of a long queue (RSS with 100k queued, docs/bench.md)
            conn.execute("PRAGMA cache_size=-1024")
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
        if (name.startswith("SQLITE_IOERR") or "disk I/O error" in text) and self._no_space_left():
            # SQLite reports ENOSPC on a WAL or journal write as a plain I/O error
            return DiskFull(str(self.path), text)
        return StoreError(f"state database {self.path}: {text}")

    def _no_space_left(self) -> bool:
        """True when the file system of the database has (almost) no free space."""
        try:
            return shutil.disk_usage(self.path.parent).free < LOW_SPACE_BYTES
        except OSError:
            return False

    def _connection(self) -> sqlite3.Connection:
        """The open connection, or a clear error after close()."""
        if self._conn is None:
            raise StoreError(f"state database {self.path} is closed")
        return self._conn

    _sync_group_depth = 0  # > 0 inside one_sync(): commits skip their fsync, the group's end does one
    _sync_group_dirty = False

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (fsync, synchronous=FULL) before the block's caller returns.

        durable=False commits with synchronous=NORMAL: in WAL mode that survives a crash of the process but a
        power cut may undo it (until the next FULL commit or checkpoint, which makes it durable too).
        """
        with self._lock:
            conn = self._connection()
            grouped = self._sync_group_depth > 0
            relaxed = grouped or not durable
            try:
                if relaxed:
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._write_began(conn)
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._bytes_stale = True  # in-memory counters may have moved with the rolled-back rows
                    raise
                conn.execute("COMMIT")
                if grouped and durable:
                    self._sync_group_dirty = True
                self._write_committed()
            except sqlite3.Error as err:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        LOGGER.debug("rollback after %s failed", err)
                self._bytes_stale = True
                raise self._translate(err) from err
            finally:
                if relaxed:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous=FULL")

    def _write_began(self, conn: sqlite3.Connection) -> None:
        """Hook run first in every write transaction (the outbox commits its batched acknowledgements here)."""

    def _write_committed(self) -> None:
        """Hook run after every successful commit."""

    @contextmanager
    def one_sync(self) -> Iterator[None]:
        """Writes inside the block commit one by one (each atomic, as always) but share one fsync at its end.

        For several records of one instant (a meter sample, its transaction row): durable when the block
        exits, which is before the caller can yield to the event loop, so nothing is sent before it is on disk.
        """
        with self._lock:
            self._sync_group_depth += 1
            try:
                yield
            finally:
                self._sync_group_depth -= 1
                if self._sync_group_depth == 0 and self._sync_group_dirty:
                    self._sync_group_dirty = False
                    self._fsync_wal()

    def _fsync_wal(self) -> None:
        """Make every commit so far durable: what a synchronous=FULL commit does, the fsync of the WAL file."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise StoreError(f"state database {self.path}: fsync of the write-ahead log failed: {err}") from err

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read outside any explicit transaction, with sqlite errors translated."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as err:
                raise self._translate(err) from err

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

# Tables salvaged from a damaged database, in an order that keeps the foreign keys valid.
_SALVAGE_TABLES = ("transactions", "outbox", "dead_letters", "local_list", "auth_cache", "config",
                   "charging_profiles", "availability", "security_log", "meta", "tx_data",
                   # the operations ledger: uptime and wear are what an operator cannot get back elsewhere
                   "ops_hourly", "ops_daily", "ops_wear", "ops_events", "ops_state", "ops_power",
                   # a signing meter's data sets: legal evidence the meter cannot sign again once it is ended
                   "signed_values")


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
