"""What a start writes in the outbox: the previous boot's retry waits cleared from an index, not a scan of every
queued row (issue 16, start to READY with 100k queued)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.daemon import version_to_drain
from agent.store import Store

T0 = 1_700_000_000.0


class TracedStore(Store):
    """A Store that records every SQL statement its connection runs, from the first one."""

    statements: list[str]

    def _configure(self, conn: sqlite3.Connection) -> None:
        self.statements = []
        conn.set_trace_callback(self.statements.append)
        super()._configure(conn)


def _queue(path: Path) -> None:
    """A queue as a start finds it: samples of a transaction, one message waiting for its retry, 1.6 and 2.0.1."""
    with Store(path) as store:
        for n in range(40):
            store.enqueue("MeterValues", {"n": n, "blob": "x" * 500}, wall_time=T0, monotonic=10.0,
                          clock_trusted=True, thinnable=True)
        store.enqueue("Heartbeat", {}, wall_time=T0, monotonic=10.0, clock_trusted=True, protocol="2.0.1")
        head = store.peek()
        assert head is not None
        assert not store.record_failure(head.id, "InternalError", max_attempts=5, retry_interval_s=3600.0, now=100.0)


def _full_scans(store: TracedStore, statements: list[str]) -> list[tuple[str, str]]:
    """(statement, plan line) for every plan step that reads the outbox table row by row without an index."""
    scans = []
    with store._read() as conn:
        for sql in statements:
            if "outbox" not in sql or not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
                if str(row[3]).strip() == "SCAN outbox":
                    scans.append((sql, str(row[3])))
    return scans


def test_a_start_clears_the_old_retry_waits_without_reading_the_whole_queue(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    _queue(path)
    store = TracedStore(path)
    try:
        assert version_to_drain(store, "1.6") == "2.0.1"  # the daemon's first question, before anything runs
        assert store.pending_count() == 41
        head = store.peek()
        assert head is not None and head.attempts == 1 and head.next_attempt_at == 0  # the old boot's wait is gone
        resets = [s for s in store.statements if s.lstrip().upper().startswith("UPDATE OUTBOX")]
        assert resets and all("next_attempt_at" in s for s in resets)
        assert _full_scans(store, resets) == []
    finally:
        store.close()
