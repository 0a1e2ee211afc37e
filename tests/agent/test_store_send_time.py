"""The back office's transactionId filled in when a message is read to be sent (not rewritten into queued rows),
batched acknowledgements of intermediate samples, and one fsync for several records of one instant.

Real SQLite files; a second connection to the same file stands for the state after a crash of the process.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.errors import DiskFull
from agent.store import Store
from agent.store.outbox import ACK_BATCH
from tests.agent.test_session import Rig
from tests.agent.test_store import begin_tx, meter_values, put


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store(tmp_path / "agent.db")
    yield opened
    opened.close()


def raw_rows(path: Path) -> dict[int, str]:
    """The stored payload texts as another process would read them from the file."""
    conn = sqlite3.connect(str(path))
    try:
        return {int(i): str(p) for i, p in conn.execute("SELECT id, payload FROM outbox")}
    finally:
        conn.close()


def stop_payload() -> dict[str, Any]:
    return {"transactionId": 0, "meterStop": 1500, "timestamp": "2023-11-14T22:13:20Z", "reason": "Local"}


def test_the_start_ack_does_not_touch_the_queued_rows_and_peek_fills_the_id_in(store: Store) -> None:
    tx, start = begin_tx(store)
    samples = [put(store, "MeterValues", meter_values(0, i), tx) for i in range(5)]
    stop = put(store, "StopTransaction", stop_payload(), tx)
    before = raw_rows(store.path)
    changes = store._conn.total_changes  # type: ignore[union-attr]
    store.ack(start, backoffice_tx_id=4242)
    # one DELETE and one transactions row: however many messages wait
    assert store._conn.total_changes - changes == 2  # type: ignore[union-attr]
    after = raw_rows(store.path)
    assert after == {i: text for i, text in before.items() if i != start}  # queued texts byte for byte
    for expected in [*samples, stop]:
        msg = store.peek()
        assert msg is not None and msg.id == expected and not msg.tx_id_missing
        assert msg.payload["transactionId"] == 4242
        store.ack(msg.id)
    assert store.peek() is None and store.pending_count() == 0


def test_a_message_whose_id_is_not_known_is_marked_and_a_dead_start_gives_minus_one(store: Store) -> None:
    tx, start = begin_tx(store)
    mv = put(store, "MeterValues", meter_values(0, 1), tx)
    store.ack(start)  # answered without an id (the journal found none): the id is still unknown
    head = store.peek()
    assert head is not None and head.id == mv and head.tx_id_missing and head.payload["transactionId"] == 0
    assert store.pending()[0].tx_id_missing  # evsectl queue says so too
    tx2, start2 = begin_tx(store)
    mv2 = put(store, "MeterValues", meter_values(0, 2), tx2)
    store.record_failure(start2, "x", max_attempts=1, retry_interval_s=0.0, now=0.0, dead_tx_id=-1)
    later = store.pending(after_id=mv2 - 1)[0]
    assert later.id == mv2 and not later.tx_id_missing and later.payload["transactionId"] == -1


def test_a_dead_letter_keeps_the_id_filled_in(store: Store) -> None:
    tx, start = begin_tx(store)
    stop = put(store, "StopTransaction", stop_payload(), tx)
    store.ack(start, backoffice_tx_id=99)
    store.record_failure(stop, "FormationViolation: no", max_attempts=1, retry_interval_s=0.0, now=0.0)
    assert store.dead_letters()[0].payload["transactionId"] == 99


def test_a_message_without_an_id_field_is_sent_as_stored(store: Store) -> None:
    tx, start = begin_tx(store)
    event = {"eventType": "Updated", "transactionInfo": {"transactionId": "abc"}, "seqNo": 3}
    msg_id = store.enqueue("TransactionEvent", event, tx_local_id=tx, wall_time=1.0, monotonic=1.0,
                           clock_trusted=True, protocol="2.0.1")
    store.ack(start, backoffice_tx_id=5)
    msg = store.peek()
    assert msg is not None and msg.id == msg_id and msg.payload == event and not msg.tx_id_missing


async def test_the_sender_waits_for_a_missing_id_and_sends_it_once_known(store: Store) -> None:
    tx, start = begin_tx(store)
    store.ack(start)  # no id yet
    put(store, "MeterValues", meter_values(0, 7), tx)
    rig = Rig(store, lambda frame: [3, frame[1], {}])
    rig.start()
    try:
        await asyncio.sleep(0.3)
        assert rig.peer.calls == []  # never sent with the placeholder
        with store._write() as conn:  # the id arrives (as the answer to a start would record it)
            store._set_transaction_id(conn, tx, 31)
        rig.session.outbox_changed()
        await rig.until(lambda: store.pending_count() == 0)
    finally:
        await rig.stop()
    assert [f[3]["transactionId"] for f in rig.peer.calls] == [31]


def test_acks_of_samples_are_batched_and_a_crash_resends_them(store: Store) -> None:
    tx, start = begin_tx(store)
    store.ack(start, backoffice_tx_id=1)
    ids = [put(store, "MeterValues", meter_values(0, i), tx) for i in range(ACK_BATCH + 3)]
    for expected in ids[:3]:
        msg = store.peek()
        assert msg is not None and msg.id == expected
        store.ack(msg.id)
    # this process goes on with the 4th; a crash now would resend the 3 (identical duplicates, never a loss)
    assert store.peek().id == ids[3]  # type: ignore[union-attr]
    assert set(ids) <= set(raw_rows(store.path))
    assert store.pending_count() == len(ids) - 3  # a count commits them first
    assert set(raw_rows(store.path)) == set(ids[3:])
    for expected in ids[3:3 + ACK_BATCH]:
        msg = store.peek()
        assert msg is not None and msg.id == expected
        store.ack(msg.id)
    assert set(raw_rows(store.path)) == set(ids[3 + ACK_BATCH:])  # a full batch commits by itself


def test_a_start_or_stop_ack_commits_at_once_with_the_batched_ones(store: Store) -> None:
    tx, start = begin_tx(store)
    store.ack(start, backoffice_tx_id=1)
    assert start not in raw_rows(store.path)
    mv = put(store, "MeterValues", meter_values(0, 1), tx)
    stop = put(store, "StopTransaction", stop_payload(), tx)
    store.ack(mv)
    assert mv in raw_rows(store.path)
    store.ack(stop)
    assert raw_rows(store.path) == {}


def test_a_write_commits_the_batched_acks_and_close_commits_the_rest(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    tx, start = begin_tx(store)
    store.ack(start, backoffice_tx_id=1)
    first, second = (put(store, "MeterValues", meter_values(0, i), tx) for i in range(2))
    store.ack(first)
    third = put(store, "MeterValues", meter_values(0, 3), tx)
    assert set(raw_rows(store.path)) == {second, third}
    store.ack(second)
    store.close()
    assert set(raw_rows(tmp_path / "agent.db")) == {third}


def test_thinning_never_takes_the_message_in_flight_behind_batched_acks(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db", max_bytes=20_000)
    try:
        tx, start = begin_tx(store)
        store.ack(start, backoffice_tx_id=1)
        ids = [put(store, "MeterValues", meter_values(0, i), tx) for i in range(10)]
        store.ack(ids[0])
        head = store.peek()
        assert head is not None and head.id == ids[1]
        for i in range(200):  # over the bound: thinning runs in these commits
            put(store, "MeterValues", {**meter_values(0, i), "padding": "x" * 500}, tx)
        assert store.peek().id == ids[1]  # type: ignore[union-attr]
    finally:
        store.close()


def test_one_sync_groups_the_fsyncs_of_several_writes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[str] = []
    real = store._fsync_wal
    monkeypatch.setattr(store, "_fsync_wal", lambda: (syncs.append("wal"), real())[1])
    tx, _ = begin_tx(store)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)  # type: ignore[union-attr]
    with store.one_sync():
        put(store, "MeterValues", meter_values(0, 1), tx)
        store.update_transaction_meter(tx, 1234.0, 5.0)
        assert syncs == []
    store._conn.set_trace_callback(None)  # type: ignore[union-attr]
    assert syncs == ["wal"]
    # each of the two commits ran with synchronous=NORMAL (no fsync of its own)
    begins = [i for i, text in enumerate(statements) if text == "BEGIN IMMEDIATE"]
    assert len(begins) == 2 and all(statements[i - 1] == "PRAGMA synchronous=NORMAL" for i in begins)
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # type: ignore[union-attr]
    row = store.transaction(tx)
    assert row is not None and row.last_energy_wh == 1234.0
    with store.one_sync():
        pass  # nothing written, nothing to sync
    assert syncs == ["wal"]



def test_a_failed_batch_commit_does_not_stop_the_sender(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    tx, start = begin_tx(store)
    store.ack(start, backoffice_tx_id=1)
    first, second = (put(store, "MeterValues", meter_values(0, i), tx) for i in range(2))
    store.ack(first)
    store.ack(second)

    def full() -> None:
        raise DiskFull(str(store.path), "database or disk is full")

    monkeypatch.setattr(store, "_flush_acks", full)
    assert store.peek() is None  # the queue drained; the commit failed: no exception for the sender
    monkeypatch.undo()
    assert set(raw_rows(store.path)) == {first, second}
    assert store.pending_count() == 0 and raw_rows(store.path) == {}


def test_counts_and_stats_answer_on_a_full_disk_without_the_acknowledged_rows(store: Store,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """evsectl status on a full disk: the batch cannot be committed, the reads still answer (and do not count
    the acknowledged rows that wait to be deleted)."""
    tx, start = begin_tx(store)
    store.ack(start, backoffice_tx_id=1)
    first, second, third = (put(store, "MeterValues", meter_values(0, i), tx) for i in range(3))
    store.ack(first)
    store.ack(second)

    def full() -> None:
        raise DiskFull(str(store.path), "database or disk is full")

    monkeypatch.setattr(store, "_flush_acks", full)
    assert store.pending_count() == 1
    assert store.outbox_stats()["pending"] == 1
    assert [m.id for m in store.pending()] == [third]
    assert store.pending_protocols() == {"1.6": 1}
    monkeypatch.undo()
    assert store.pending_count() == 1 and set(raw_rows(store.path)) == {third}
