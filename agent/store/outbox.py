"""The outbox: an ordered, durable queue of messages for the back office, read one message at a time.

It is never loaded whole: memory stays flat with 100,000 queued messages. With max_bytes set, intermediate
meter samples are thinned when the bound is hit. Failed messages become dead letters after a retry budget.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.errors import StoreError
from agent.store.db import Db, _dumps, _load_payload

LOGGER = logging.getLogger(__name__)

ROW_OVERHEAD_BYTES = 64  # rough on-disk cost of an outbox row beyond its payload: columns, index entry, slack
# Acknowledged intermediate samples are deleted in batches: one commit per message costs at least one WAL page
# (4 KB) and, with synchronous=FULL, one fsync; on an SD card both matter (docs/bench.md).
ACK_BATCH = 64  # at most this many acknowledged samples wait for their delete
ACK_BATCH_S = 1.0  # nor longer than this (checked at the next acknowledgement, peek or write)
# peek() reads the head of the queue a page at a time: one query per page instead of one per message (and the
# acknowledgement of the message at the head finds its row there). Any write of this store drops the page. The
# store is the only writer of its file (evsectl goes through the daemon; the byte counts and the batched
# acknowledgements assume the same): a check for other connections' commits per peek (PRAGMA data_version)
# cost as much as the query it saves.
PEEK_PAGE = 32

DEFAULT_PROTOCOL = "1.6"  # the protocol of messages that name none, and of every row queued before schema 3


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
    protocol: str = DEFAULT_PROTOCOL  # the protocol version the payload is written in
    # the payload names the back office's transaction id, which is not known yet (its placeholder is still in
    # the payload): such a message must not be sent; it waits until the id is known
    tx_id_missing: bool = False


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
    protocol: str = DEFAULT_PROTOCOL



class OutboxMixin(Db):
    """The outbox of Store: enqueue, peek, ack, failures and dead letters, thinning."""

    _outbox_bytes = 0  # payload bytes + ROW_OVERHEAD_BYTES per row, recounted at open
    _thinned_total = 0
    _thinned_unreported = 0
    _over_limit_logged = False
    _acked: list[int]  # acknowledged thinnable messages whose delete is not committed yet (see ack())
    _acked_bytes = 0
    _acked_through = 0  # every queued row with an id <= this one is in _acked: peek() starts after it
    _acked_since = 0.0  # time.monotonic() of the oldest entry of _acked
    _page: list[tuple[Any, ...]] | None = None  # the next queued rows (_PAGE_COLUMNS), ids > _acked_through
    _page_conn: sqlite3.Connection | None = None  # the connection the page was read with
    _page_messages: dict[int, OutboxMessage]  # the page's rows built once: peek and peek_next hand out one object

    def _pending_acks(self) -> list[int]:
        """The batched acknowledgements (created on first use: the mixins have no __init__)."""
        try:
            return self._acked
        except AttributeError:
            self._acked = []
            return self._acked

    def _write_began(self, conn: sqlite3.Connection) -> None:
        """Every write transaction first commits the batched acknowledgements (they never wait behind one)."""
        super()._write_began(conn)
        self._page = None  # the write may change any row of it
        acked = self._pending_acks()
        if acked:
            conn.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(acked))})", acked)

    def _write_committed(self) -> None:
        super()._write_committed()
        acked = self._pending_acks()
        if acked:
            acked.clear()
            self._acked_bytes = 0

    def _flush_acks(self) -> None:
        """Commit the batched acknowledgements now (synchronous=NORMAL: a power cut may resend a sample)."""
        if self._pending_acks():
            with self._page_kept(), self._write(durable=False):
                pass  # _write_began deletes them

    def _unacked(self) -> tuple[str, list[int]]:
        """A WHERE condition leaving out the acknowledged rows a full disk kept from being deleted yet."""
        acked = list(self._pending_acks())
        if not acked:
            return "1", []
        return f"outbox.id NOT IN ({','.join('?' * len(acked))})", acked

    def _try_flush_acks(self) -> None:
        """_flush_acks where a failure (a full disk) must not stop the sender: they stay batched, peek skips
        them, the next write commits them."""
        try:
            self._flush_acks()
        except StoreError as err:
            LOGGER.warning("%d batched acknowledgements not committed yet: %s", len(self._pending_acks()), err)

    def close(self) -> None:
        """Commit the batched acknowledgements, then close."""
        if self._conn is not None:
            try:
                self._flush_acks()
            except Exception as err:  # the rows stay queued: resent after the restart, never lost
                LOGGER.warning("batched acknowledgements not committed at close: %s", err)
        super().close()

    def _reset_retry_waits(self) -> None:
        """At open: monotonic clocks restart at boot, a wait computed in the previous boot means nothing now."""
        with self._write() as wconn:
            wconn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE next_attempt_at != 0")

    def _refresh_bytes(self) -> None:
        """Recount the outbox size from disk (at open, and after a rollback)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(length(CAST(payload AS BLOB))), 0), COUNT(*) FROM outbox"
            ).fetchone()
        self._outbox_bytes = int(row[0]) + int(row[1]) * ROW_OVERHEAD_BYTES - self._acked_bytes
        self._bytes_stale = False

    @staticmethod
    def _set_transaction_id(conn: sqlite3.Connection, tx_local_id: int, transaction_id: int) -> None:
        """Record the back office id of a transaction; its queued messages get it when they are read to be
        sent (peek), so this is one small row however many messages wait (rewriting 100k rows stalled the
        event loop for a second)."""
        conn.execute(
            "UPDATE transactions SET transaction_id = ? WHERE tx_local_id = ?", (transaction_id, tx_local_id)
        )


    def enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        tx_local_id: int | None = None,
        wall_time: float,
        monotonic: float,
        clock_trusted: bool,
        protocol: str = DEFAULT_PROTOCOL,
        thinnable: bool = False,
        tx_id_field: str | None = None,
        seq_field: str | None = None,
    ) -> int:
        """Commit a message to the outbox and return its id (ids increase in send order, never reused).

        tx_local_id must come from reserve_tx_id(). protocol is the version the payload is written in (the
        store never reads the payload); thinnable: an intermediate sample that may be dropped when the disk
        bound is hit (thinned in the same commit, see take_thinned()); tx_id_field: the payload field that
        carries the back office's transaction id, written by the store once known (see ack()); seq_field: the
        payload field that gets the transaction's next sequence number (0, 1, 2... in the same commit).
        """
        with self._write() as conn:
            msg_id = self._insert_outbox(conn, action, payload, tx_local_id, wall_time, monotonic, clock_trusted,
                                         protocol=protocol, thinnable=thinnable, tx_id_field=tx_id_field,
                                         seq_field=seq_field)
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
        *,
        protocol: str = DEFAULT_PROTOCOL,
        thinnable: bool = False,
        tx_id_field: str | None = None,
        seq_field: str | None = None,
    ) -> int:
        """Insert one outbox row inside the caller's write transaction; thin when over the disk cap."""
        stored = payload
        if tx_local_id is not None and seq_field is not None:
            stored = {**stored, seq_field: self._take_seq_no(conn, tx_local_id)}
        if tx_local_id is not None and tx_id_field is not None:
            row = conn.execute(
                "SELECT transaction_id FROM transactions WHERE tx_local_id = ?", (tx_local_id,)
            ).fetchone()
            if row is not None and row[0] is not None:
                stored = {**stored, tx_id_field: int(row[0])}
        text = _dumps(stored)
        cursor = conn.execute(
            "INSERT INTO outbox (action, payload, tx_local_id, thinnable, boot_id, wall_time, monotonic, "
            "clock_trusted, protocol, tx_id_field) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                action,
                text,
                tx_local_id,
                int(thinnable),
                self.boot_id,
                wall_time,
                monotonic,
                int(clock_trusted),
                protocol,
                tx_id_field if tx_local_id is not None else None,
            ),
        )
        msg_id = int(cursor.lastrowid or 0)
        self._outbox_bytes += len(text.encode()) + ROW_OVERHEAD_BYTES
        if self.max_bytes is not None and self._outbox_bytes > self.max_bytes:
            self._thin(conn, msg_id)
        return msg_id

    def _take_seq_no(self, conn: sqlite3.Connection, tx_local_id: int) -> int:
        """The transaction's next sequence number, advanced inside the caller's write transaction."""
        row = conn.execute("SELECT next_seq_no FROM transactions WHERE tx_local_id = ?", (tx_local_id,)).fetchone()
        if row is None:
            raise StoreError(f"state database {self.path}: no transaction with local id {tx_local_id}")
        conn.execute("UPDATE transactions SET next_seq_no = ? WHERE tx_local_id = ?", (int(row[0]) + 1, tx_local_id))
        return int(row[0])

    def _thin(self, conn: sqlite3.Connection, newest_id: int) -> None:
        """Delete every other intermediate meter sample, oldest transactions first, until under max_bytes.

        Never Start/Stop (not thinnable), never the head of the queue (it may be in flight), never the
        message just enqueued.
        """
        assert self.max_bytes is not None
        head = int(conn.execute("SELECT MIN(id) FROM outbox").fetchone()[0])
        deleted = 0
        before = self._outbox_bytes
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
                "outbox over its bound (%d > %d bytes): thinned %d intermediate meter samples, %d bytes left",
                before,
                self.max_bytes,
                deleted,
                self._outbox_bytes,
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
        """The oldest pending message (the next to send), or None when the outbox is empty.

        Its payload carries the back office's transaction id when it has a field for it and the id is known;
        when not known yet, tx_id_missing says so (the payload still holds the placeholder: not to be sent).
        """
        acked = self._pending_acks()
        if acked and time.monotonic() - self._acked_since >= ACK_BATCH_S:
            self._try_flush_acks()
        row = self._head()
        if row is None and acked:
            self._try_flush_acks()  # the queue drained: nothing left to batch them with
        return None if row is None else self._page_message(row)

    def peek_next(self, after_id: int) -> OutboxMessage | None:
        """The message queued after `after_id` when the page peek() read holds both (no query), else None; the
        same object the next peek() returns unless a write changed the queue meanwhile (the sender prepares the
        next message while the current one is answered, and knows by the identity that it may use it)."""
        page = self._page
        if not page or self._page_conn is not self._conn:
            return None
        for n, row in enumerate(page[:-1]):
            if row[0] == after_id:
                return self._page_message(page[n + 1])
        return None

    @contextlib.contextmanager
    def _page_kept(self, gone: int | None = None) -> Iterator[None]:
        """Around a write that deletes only acknowledged rows (and `gone`, the head): the page read before it
        still holds what the file holds, less those rows, and its messages stay the same objects."""
        page, conn = self._page, self._page_conn
        messages = self._page_messages if page is not None else {}
        yield
        if page is not None and conn is self._conn:
            self._page, self._page_conn = [row for row in page if row[0] != gone], conn
            if gone is not None:
                messages.pop(gone, None)
            self._page_messages = messages

    def _page_message(self, row: tuple[Any, ...]) -> OutboxMessage:
        msg = self._page_messages.get(row[0])
        if msg is None:
            msg = self._page_messages[row[0]] = self._outbox_row(row)
        return msg

    # select from outbox LEFT JOIN transactions USING (tx_local_id)
    _OUTBOX_COLUMNS = (
        "outbox.id, outbox.action, outbox.payload, tx_local_id, outbox.boot_id, outbox.wall_time, "
        "outbox.monotonic, outbox.clock_trusted, outbox.attempts, outbox.next_attempt_at, outbox.last_error, "
        "outbox.timestamp_shift_s, outbox.protocol, outbox.tx_id_field, transactions.transaction_id"
    )
    _PAGE_COLUMNS = _OUTBOX_COLUMNS + ", length(CAST(outbox.payload AS BLOB)), outbox.thinnable"  # + what ack() needs

    def _head(self) -> tuple[Any, ...] | None:
        """The first queued row after the acknowledged ones (_PAGE_COLUMNS), from the page or a new one."""
        with self._read() as conn:
            page = self._page if self._page_conn is conn else None
            while page and page[0][0] <= self._acked_through:
                self._page_messages.pop(page.pop(0)[0], None)
            if not page:
                self._page_messages = {}
                page = conn.execute(
                    f"SELECT {self._PAGE_COLUMNS} FROM outbox LEFT JOIN transactions USING (tx_local_id) "
                    "WHERE outbox.id > ? ORDER BY outbox.id LIMIT ?",
                    (self._acked_through, PEEK_PAGE),
                ).fetchall()
                self._page, self._page_conn = page, conn
        return page[0] if page else None

    @staticmethod
    def _outbox_row(row: tuple[Any, ...]) -> OutboxMessage:
        """Build an OutboxMessage from a row selected with _OUTBOX_COLUMNS, the transaction id filled in."""
        payload = _load_payload(row[2], row[11])
        tx_id_field, transaction_id = row[13], row[14]
        missing = False
        if tx_id_field is not None and row[3] is not None:
            if transaction_id is None:
                missing = True
            else:
                payload[tx_id_field] = int(transaction_id)
        return OutboxMessage(
            id=row[0],
            action=row[1],
            payload=payload,
            tx_local_id=row[3],
            boot_id=row[4],
            wall_time=row[5],
            monotonic=row[6],
            clock_trusted=bool(row[7]),
            attempts=row[8],
            next_attempt_at=row[9],
            last_error=row[10],
            protocol=row[12],
            tx_id_missing=missing,
        )

    def pending(self, limit: int = 50, after_id: int = 0) -> list[OutboxMessage]:
        """Up to `limit` pending messages with id > after_id, in send order (a page, for evsectl queue)."""
        self._try_flush_acks()  # a read: a full disk must not make it fail
        unacked, acked = self._unacked()
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {self._OUTBOX_COLUMNS} FROM outbox LEFT JOIN transactions USING (tx_local_id) "
                f"WHERE outbox.id > ? AND {unacked} ORDER BY outbox.id LIMIT ?",
                (after_id, *acked, limit),
            ).fetchall()
        return [self._outbox_row(r) for r in rows]

    def ack(self, msg_id: int, *, backoffice_tx_id: int | None = None) -> None:
        """Delete a message on its CALLRESULT; with backoffice_tx_id (the answer named the back office's id of
        the message's transaction), record it in the same commit (its queued messages get it when sent).

        An intermediate sample (thinnable) at the head of the queue is deleted in a batch (ACK_BATCH,
        ACK_BATCH_S, or with the next write, whichever comes first): a crash or power cut before that resends
        it, an identical duplicate, as after a lost answer. Every other message is deleted in a commit of its
        own with synchronous=FULL before this returns (a resent start or stop would be a new transaction).
        """
        acked = self._pending_acks()
        if msg_id in acked:
            LOGGER.warning("ack of outbox message %d that is already acked", msg_id)
            return
        page = self._page
        if page and page[0][0] == msg_id and self._page_conn is self._conn:
            # the head of the queue as peek() read it: nothing queued before it but acknowledged rows
            head = page[0]
            row: tuple[Any, ...] | None = (head[1], head[3], head[15], head[16], 0)
        else:
            with self._read() as conn:
                row = conn.execute(
                    "SELECT action, tx_local_id, length(CAST(payload AS BLOB)), thinnable, "
                    "EXISTS (SELECT 1 FROM outbox WHERE id > ? AND id < ?) FROM outbox WHERE id = ?",
                    (self._acked_through, msg_id, msg_id),
                ).fetchone()
        if row is None:
            LOGGER.warning("ack of outbox message %d that is not queued (already acked or thinned)", msg_id)
            return
        action, tx_local_id, size, thinnable, behind = row
        # a batch that could not be committed (full disk) stops batching: this ack commits, or raises, at once
        if (backoffice_tx_id is None and thinnable and not behind and msg_id > self._acked_through
                and len(acked) < ACK_BATCH):
            if not acked:
                self._acked_since = time.monotonic()
            acked.append(msg_id)
            self._acked_bytes += int(size) + ROW_OVERHEAD_BYTES
            self._acked_through = msg_id
            self._outbox_bytes -= int(size) + ROW_OVERHEAD_BYTES
            if len(acked) >= ACK_BATCH or time.monotonic() - self._acked_since >= ACK_BATCH_S:
                self._try_flush_acks()
            return
        keep = self._page_kept(msg_id) if backoffice_tx_id is None else contextlib.nullcontext()
        with keep, self._write() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            self._outbox_bytes -= int(size) + ROW_OVERHEAD_BYTES
            if backoffice_tx_id is not None:
                if tx_local_id is None:
                    LOGGER.error("%s %d names a back office transaction id but belongs to no transaction",
                                 action, msg_id)
                else:
                    self._set_transaction_id(conn, tx_local_id, backoffice_tx_id)
                    LOGGER.info("transaction %d is back office transaction %d", tx_local_id, backoffice_tx_id)
        if self._bytes_stale:
            self._refresh_bytes()

    def record_failure(
        self, msg_id: int, error: str, *, max_attempts: int, retry_interval_s: float, now: float,
        dead_tx_id: int | None = None,
    ) -> bool:
        """Count a CALLERROR; after max_attempts move the message to dead letters and return True.

        next_attempt_at = now + retry_interval_s x attempts (linear, 1.6 TransactionMessageRetryInterval),
        in the clock of `now`. dead_tx_id: when this message dies, its transaction's later messages carry
        this id (the 1.6 errata: -1 for a StartTransaction that never succeeded), in the same commit.
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
                    "monotonic, clock_trusted, timestamp_shift_s, attempts, error, dead_at, protocol) "
                    "SELECT o.id, o.action, CASE WHEN o.tx_id_field IS NOT NULL AND t.transaction_id IS NOT NULL "
                    "THEN json_set(o.payload, '$.' || o.tx_id_field, t.transaction_id) ELSE o.payload END, "
                    "o.tx_local_id, o.boot_id, o.wall_time, o.monotonic, o.clock_trusted, o.timestamp_shift_s, "
                    "?, ?, ?, o.protocol FROM outbox AS o LEFT JOIN transactions AS t USING (tx_local_id) "
                    "WHERE o.id = ?",
                    (attempts, error, time.time(), msg_id),
                )
                conn.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
                self._outbox_bytes -= size + ROW_OVERHEAD_BYTES
                if dead_tx_id is not None and tx_local_id is not None:
                    self._set_transaction_id(conn, tx_local_id, dead_tx_id)
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

    def pending_protocols(self) -> dict[str, int]:
        """How many queued messages each OCPP version has (a charger switched version may hold both)."""
        self._try_flush_acks()
        unacked, acked = self._unacked()
        with self._read() as conn:
            rows = conn.execute(f"SELECT protocol, COUNT(*) FROM outbox WHERE {unacked} GROUP BY protocol",
                                acked).fetchall()
        return {str(protocol): int(count) for protocol, count in rows}

    def dead_letter_protocol(self, protocol: str, reason: str) -> int:
        """Move every queued message of one OCPP version to dead letters with the reason; how many moved."""
        self._flush_acks()
        with self._read() as conn:
            ids = [int(r[0]) for r in conn.execute("SELECT id FROM outbox WHERE protocol = ? ORDER BY id",
                                                   (protocol,))]
        # one message per commit, as any failure is recorded: a power cut in the middle leaves the rest queued
        return sum(self.record_failure(i, reason, max_attempts=1, retry_interval_s=0.0, now=0.0) for i in ids)

    def pending_count(self) -> int:
        """Messages waiting in the outbox (dead letters excluded)."""
        self._try_flush_acks()
        unacked, acked = self._unacked()
        with self._read() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {unacked}", acked).fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (all of them unless limit is given)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, action, payload, tx_local_id, boot_id, wall_time, monotonic, clock_trusted, "
                "attempts, error, dead_at, timestamp_shift_s, protocol FROM dead_letters ORDER BY id LIMIT ?",
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
                protocol=r[12],
            )
            for r in rows
        ]

    def outbox_stats(self, now: float | None = None) -> dict[str, Any]:
        """pending, dead, bytes, max_bytes, oldest_age_s (wall clock), thinned (this process), over_limit."""
        self._try_flush_acks()  # evsectl status on a full disk must still answer
        unacked, acked = self._unacked()
        with self._read() as conn:
            pending = int(conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {unacked}", acked).fetchone()[0])
            dead = int(conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
            oldest = conn.execute(f"SELECT wall_time FROM outbox WHERE {unacked} ORDER BY id LIMIT 1",
                                  acked).fetchone()
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

