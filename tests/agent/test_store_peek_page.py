"""peek() reads the head of the outbox a page at a time (agent/store/outbox.py PEEK_PAGE): one query per page
during a replay, and never an answer that differs from the file (any write of the store drops the page)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.store import Store
from agent.store.outbox import PEEK_PAGE
from tests.agent.test_store import begin_tx, drain, meter_values, put


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "agent.db")
    yield opened
    opened.close()


def outbox_queries(store: Store) -> list[str]:
    """Record the statements that read the outbox table from now on."""
    seen: list[str] = []
    store._connection().set_trace_callback(lambda sql: seen.append(sql) if "FROM outbox" in sql else None)
    return seen


def test_a_replay_reads_the_queue_a_page_at_a_time(store: Store) -> None:
    count = 160
    assert count >= 5 * PEEK_PAGE
    ids = [put(store, "MeterValues", meter_values(7, n)) for n in range(count)]
    queries = outbox_queries(store)
    drained = drain(store)
    assert [m.id for m in drained] == ids  # in order, each once
    assert [m.payload["meterValue"][0]["sampledValue"][0]["value"] for m in drained] == [
        str(n) for n in range(count)]
    selects = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    # the acks of samples are batched (64) and each batch's commit drops the page: a few pages more than 5
    # a page per PEEK_PAGE messages, and again after each batch of acknowledgements is committed (64): the
    # acknowledgements find their rows in the page (no query of their own)
    assert len(selects) <= count // 8, f"{len(selects)} queries for {count} messages: {selects[:3]}"
    assert store.peek() is None and store.pending_count() == 0


def test_a_write_drops_the_page(store: Store) -> None:
    tx, start = begin_tx(store)
    samples = [put(store, "MeterValues", meter_values(0, n), tx) for n in range(3)]
    head = store.peek()
    assert head is not None and head.id == start
    store.ack(start, backoffice_tx_id=4711)  # a write: the queued samples now carry the back office's id
    sample = store.peek()
    assert sample is not None and sample.id == samples[0]
    assert not sample.tx_id_missing and sample.payload["transactionId"] == 4711
    late = put(store, "MeterValues", meter_values(0, 99), tx)  # an enqueue behind the page
    assert [m.id for m in drain(store)] == [*samples, late]


@pytest.mark.parametrize("action", ["MeterValues", "DataTransfer"])  # acked in a batch / in a commit of its own
def test_peek_next_is_what_the_next_peek_hands_out(store: Store, action: str) -> None:
    payload = meter_values(1, 1) if action == "MeterValues" else {"vendorId": "v"}
    ids = [put(store, action, payload) for _ in range(3)]
    head = store.peek()
    assert head is not None and head.id == ids[0]
    following = store.peek_next(head.id)
    assert following is not None and following.id == ids[1]
    assert store.peek_next(ids[2]) is None  # nothing after the last
    store.ack(head.id)
    assert store.peek() is following  # the same object: the sender may use what it prepared for it


def test_after_a_change_to_the_queue_peek_hands_out_a_new_message(store: Store) -> None:
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "2020-01-01T00:00:00Z", "sampledValue": [
        {"value": "1"}]}]}
    ids = [put(store, "MeterValues", payload, trusted=False) for _ in range(2)]
    head = store.peek()
    assert head is not None
    following = store.peek_next(head.id)
    store.correct_untrusted_times(store.boot_id, 60.0)  # a write changing the queued rows
    store.ack(head.id)
    fresh = store.peek()
    assert fresh is not None and fresh.id == ids[1] and fresh is not following
    assert fresh.payload["meterValue"][0]["timestamp"] == "2020-01-01T00:01:00.000Z"


def test_a_reopened_store_reads_a_new_page(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with Store(path) as store:
        first, second = put(store, "MeterValues", meter_values(1, 1)), put(store, "MeterValues", meter_values(1, 2))
        head = store.peek()
        assert head is not None and head.id == first
    with Store(path) as other:  # another process deleted the head meanwhile (the daemon is the only writer)
        other.ack(first)
    with Store(path) as store:
        head = store.peek()
        assert head is not None and head.id == second


def test_the_page_cache_is_bounded_to_one_mib(store: Store) -> None:
    """A long queue must not grow the process by SQLite's default 2 MB cache (RSS with 100k queued)."""
    assert store._connection().execute("PRAGMA cache_size").fetchone()[0] == -1024
