"""Tests of the agent/store package against real SQLite files: ordering, ack rewrite, retries, durability, bounds."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from agent.errors import AgentError, DamagedDatabase, DiskFull, StoreError
from agent.store import SCHEMA_VERSION, AuthEntry, OutboxMessage, Store

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh database path in a temporary directory."""
    return tmp_path / "agent.db"


@pytest.fixture
def store(db_path: Path) -> Any:
    """An open store, closed after the test."""
    opened = Store(db_path)
    yield opened
    opened.close()


def put(
    store: Store, action: str, payload: dict[str, Any], tx: int | None = None, trusted: bool = True
) -> int:
    """Enqueue with fixed clocks, flagged as the journals flag their messages (the store reads no action)."""
    return store.enqueue(action, payload, tx_local_id=tx, wall_time=T0, monotonic=10.0, clock_trusted=trusted,
                         thinnable=thinnable_as_journals_say(action, payload),
                         tx_id_field="transactionId" if action in ("MeterValues", "StopTransaction") else None)


def thinnable_as_journals_say(action: str, payload: dict[str, Any]) -> bool:
    """1.6: every MeterValues; 2.0.1: periodic and clock-aligned Updated events, no other."""
    if action == "TransactionEvent":
        return payload.get("eventType") == "Updated" and payload.get("triggerReason") in (
            "MeterValuePeriodic", "MeterValueClock")
    return action == "MeterValues"


def meter_values(tx_id: int, value: int, timestamp: str = "2023-11-14T22:13:20Z") -> dict[str, Any]:
    """A 1.6 MeterValues payload (wire form)."""
    return {
        "connectorId": 1,
        "transactionId": tx_id,
        "meterValue": [{"timestamp": timestamp, "sampledValue": [{"value": str(value)}]}],
    }


def drain(store: Store) -> list[OutboxMessage]:
    """Ack every pending message, returning them in send order."""
    out = []
    while (msg := store.peek()) is not None:
        out.append(msg)
        store.ack(msg.id)
    return out


def open_tx(store: Store, connector_id: int = 1, trusted: bool = True) -> int:
    """A transaction id as the core gets it before the start (the outbox tests queue the start themselves)."""
    return store.reserve_tx_id(T0, 10.0)


def begin_tx(store: Store, connector_id: int = 1, trusted: bool = True, *, id_tag: str = "TAG1",
             meter_wh: float = 1000.0, reservation_id: int | None = None) -> tuple[int, int]:
    """Start a transaction the way the runtime does (reserve, then begin with its start message): (tx, msg id)."""
    tx = store.reserve_tx_id(T0, 10.0)
    start = store.begin_transaction(
        tx, connector_id, id_tag, meter_wh, T0, 10.0, reservation_id, "StartTransaction",
        {"connectorId": connector_id, "idTag": id_tag, "meterStart": int(meter_wh), "timestamp": "t"},
        clock_trusted=trusted)
    return tx, start


# ---------------------------------------------------------------- outbox


def test_order_preserved_and_ids_increase(store: Store) -> None:
    ids = [put(store, "MeterValues", meter_values(7, i)) for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert store.pending_count() == 50
    drained = drain(store)
    assert [m.id for m in drained] == ids
    assert [m.payload["meterValue"][0]["sampledValue"][0]["value"] for m in drained] == [
        str(i) for i in range(50)
    ]
    assert store.peek() is None
    # AUTOINCREMENT: an id is never reused, even once the queue emptied.
    assert put(store, "MeterValues", meter_values(7, 99)) > ids[-1]


def test_peek_returns_head_without_removing_and_ack_deletes(store: Store) -> None:
    first = put(
        store, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "x"}
    )
    second = put(store, "MeterValues", meter_values(1, 1))
    head = store.peek()
    assert head is not None and head.id == first and head.attempts == 0 and head.next_attempt_at == 0
    assert store.peek() == head
    store.ack(first, backoffice_tx_id=1)
    assert store.pending_count() == 1
    assert store.peek() is not None and store.peek().id == second  # type: ignore[union-attr]
    store.ack(first)  # a second ack of the same id is harmless
    assert store.pending_count() == 1


def test_start_transaction_ack_rewrites_queued_messages(store: Store) -> None:
    tx = open_tx(store)
    other = open_tx(store, connector_id=2)
    start = put(store, "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000}, tx)
    mv = put(store, "MeterValues", meter_values(tx, 1), tx)
    other_mv = put(store, "MeterValues", meter_values(other, 2), other)
    stop = put(store, "StopTransaction", {"transactionId": tx, "meterStop": 1500, "timestamp": "t"}, tx)
    assert store.transaction_id_for(tx) is None

    store.ack(start, backoffice_tx_id=4242)

    assert store.transaction_id_for(tx) == 4242
    messages = {m.id: m for m in store.pending()}
    assert messages[mv].payload["transactionId"] == 4242
    assert messages[stop].payload["transactionId"] == 4242
    assert messages[stop].payload["meterStop"] == 1500
    assert messages[other_mv].payload["transactionId"] == other  # another transaction is untouched
    # Enqueued after the mapping is known: the store fills in the real id itself.
    late = put(store, "MeterValues", meter_values(tx, 3), tx)
    assert store.pending(after_id=late - 1)[0].payload["transactionId"] == 4242
    assert store.transaction(tx).transaction_id == 4242  # type: ignore[union-attr]


def test_failures_retry_linearly_then_dead_letter(store: Store) -> None:
    msg = put(store, "StopTransaction", {"transactionId": 5, "meterStop": 10, "timestamp": "t"})
    after = put(store, "MeterValues", meter_values(5, 1))
    assert store.record_failure(msg, "InternalError", max_attempts=3, retry_interval_s=10, now=100.0) is False
    head = store.peek()
    assert head is not None and head.id == msg and head.attempts == 1 and head.next_attempt_at == 110.0
    assert head.last_error == "InternalError"
    assert store.record_failure(msg, "InternalError", max_attempts=3, retry_interval_s=10, now=200.0) is False
    head = store.peek()
    assert head is not None and head.attempts == 2 and head.next_attempt_at == 220.0  # interval x attempts
    assert (
        store.record_failure(msg, "FormationViolation", max_attempts=3, retry_interval_s=10, now=300.0)
        is True
    )

    assert store.peek() is not None and store.peek().id == after  # type: ignore[union-attr]
    dead = store.dead_letters()
    assert [d.id for d in dead] == [msg]
    assert dead[0].attempts == 3 and dead[0].error == "FormationViolation"
    assert dead[0].payload == {"transactionId": 5, "meterStop": 10, "timestamp": "t"}
    stats = store.outbox_stats()
    assert stats["pending"] == 1 and stats["dead"] == 1


def test_dead_start_transaction_gives_later_messages_minus_one(store: Store) -> None:
    tx = open_tx(store)
    start = put(store, "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000}, tx)
    mv = put(store, "MeterValues", meter_values(tx, 1), tx)
    assert store.record_failure(
        start, "PropertyConstraintViolation", max_attempts=1, retry_interval_s=5, now=0, dead_tx_id=-1
    )
    assert store.transaction_id_for(tx) == -1
    head = store.peek()
    assert head is not None and head.id == mv and head.payload["transactionId"] == -1
    stop = put(store, "StopTransaction", {"transactionId": tx, "meterStop": 2000, "timestamp": "t"}, tx)
    assert store.pending(after_id=stop - 1)[0].payload["transactionId"] == -1
    assert store.dead_letters()[0].action == "StartTransaction"


def test_reopen_keeps_everything_with_a_new_boot_id(db_path: Path) -> None:
    first = Store(db_path)
    tx, start = begin_tx(first)
    ids = [start, *(put(first, "MeterValues", meter_values(tx, i), tx) for i in range(4))]
    first.record_failure(ids[0], "InternalError", max_attempts=5, retry_interval_s=30, now=1e6)
    dead = put(first, "StopTransaction", {"transactionId": 1, "meterStop": 1, "timestamp": "t"})
    first.record_failure(dead, "InternalError", max_attempts=1, retry_interval_s=30, now=0)
    first.config_set("HeartbeatInterval", "300")
    first_boot = first.boot_id
    first.close()
    with pytest.raises(StoreError, match="closed"):
        first.peek()

    second = Store(db_path)
    try:
        assert second.boot_id != first_boot
        assert [m.id for m in second.pending()] == ids
        head = second.peek()
        # Attempts survive; the wait does not (it was in the previous boot's monotonic clock).
        assert head is not None and head.attempts == 1 and head.next_attempt_at == 0
        assert [d.id for d in second.dead_letters()] == [dead]
        assert [t.tx_local_id for t in second.unfinished_transactions()] == [tx]
        assert open_tx(second) > tx  # local transaction ids are never reused
        assert second.config_get("HeartbeatInterval") == "300"
        assert second.outbox_stats()["bytes"] > 0
    finally:
        second.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from agent.store import Store
    store = Store(sys.argv[1])
    i = 0
    while True:
        i += 1
        msg_id = store.enqueue(
            "MeterValues", {"connectorId": 1, "transactionId": 1, "seq": i},
            wall_time=time.time(), monotonic=time.monotonic(), clock_trusted=True,
        )
        print(msg_id, i, flush=True)
    """
)


def test_sigkill_loses_no_committed_message(db_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert child.stdout is not None
    committed: dict[int, int] = {}
    try:
        while len(committed) < 300:
            line = child.stdout.readline()
            assert line, "child died before committing 300 messages"
            msg_id, seq = map(int, line.split())
            committed[msg_id] = seq
        os.kill(child.pid, signal.SIGKILL)  # in the middle of the loop, most likely inside a commit
        child.wait(timeout=10)
        for line in child.stdout:  # lines printed before the kill, still in the pipe
            msg_id, seq = map(int, line.split())
            committed[msg_id] = seq
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    reopened = Store(db_path)
    try:
        present = {m.id: m.payload["seq"] for m in reopened.pending(limit=100_000)}
    finally:
        reopened.close()
    missing = set(committed) - set(present)
    assert not missing, f"committed messages lost: {sorted(missing)[:10]}"
    assert all(present[msg_id] == seq for msg_id, seq in committed.items())
    # At most the one in flight when killed was committed without being printed.
    assert len(present) - len(committed) in (0, 1)
    assert sorted(present) == list(range(1, len(present) + 1))


# ---------------------------------------------------------------- opening


def test_damaged_file_raises_damaged_database(db_path: Path) -> None:
    with Store(db_path) as healthy:
        put(healthy, "MeterValues", meter_values(1, 1))
    with db_path.open("r+b") as handle:
        handle.write(b"\xde\xad\xbe\xef garbage over the header" * 8)
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(DamagedDatabase) as caught:
        Store(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert "not a database" in message  # what sqlite said
    assert "move the file aside" in message  # what to do
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, AgentError)


def test_missing_directory_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nowhere" / "agent.db")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="does not exist"):
        Store(blocker / "agent.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_unwritable_directory_is_refused_clearly(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="not writable"):
            Store(locked / "agent.db")
    finally:
        locked.chmod(0o755)


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db_path)


def test_opens_in_wal_with_full_sync(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


# ---------------------------------------------------------------- transactions


def test_transaction_lifecycle(store: Store) -> None:
    tx, _ = begin_tx(store, 2, id_tag="CARD", meter_wh=500.0, reservation_id=9)
    store.update_transaction_meter(tx, 750.0, T0 + 60)
    row = store.unfinished_transactions()[0]
    assert (row.tx_local_id, row.connector_id, row.id_tag, row.reservation_id) == (tx, 2, "CARD", 9)
    assert (row.meter_start_wh, row.last_energy_wh, row.last_wall, row.stop_wall) == (
        500.0,
        750.0,
        T0 + 60,
        None,
    )
    stop = {"transactionId": 0, "meterStop": 900, "timestamp": "t", "reason": "Local"}
    assert store.end_transaction(tx, 900.0, T0 + 120, 20.0, "Local", "StopTransaction", stop,
                                 clock_trusted=True) is not None
    assert store.end_transaction(tx, 999.0, T0 + 999, 30.0, "PowerLoss", "StopTransaction", stop,
                                 clock_trusted=True) is None  # the first stop wins, queued once
    assert store.unfinished_transactions() == []
    done = store.recent_transactions()[0]
    assert (done.meter_stop_wh, done.stop_wall, done.stop_reason) == (900.0, T0 + 120, "Local")
    with pytest.raises(StoreError, match="no transaction"):
        store.update_transaction_meter(12345, 1.0, T0)
    newer = open_tx(store)
    assert [t.tx_local_id for t in store.recent_transactions(limit=1)] == [newer]


# ---------------------------------------------------------------- authorization


def test_local_list_full_differential_and_version(db_path: Path) -> None:
    with Store(db_path) as store:
        assert store.local_list_version() == 0
        store.replace_local_list(
            3,
            [
                AuthEntry("A", "Accepted", "2030-01-01T00:00:00Z"),
                AuthEntry("B", "Blocked"),
                AuthEntry("C", "Accepted", parent_id_tag="GROUP"),
            ],
        )
        store.update_local_list(
            4, [AuthEntry("B", None), AuthEntry("A", "Expired"), AuthEntry("D", "Accepted")]
        )
    with Store(db_path) as store:
        assert store.local_list_version() == 4
        assert store.local_list_get("B") is None
        assert store.local_list_get("A") == AuthEntry("A", "Expired", None, None)
        assert store.local_list_get("C") == AuthEntry("C", "Accepted", None, "GROUP")
        assert store.local_list_count() == 3
        store.replace_local_list(5, [AuthEntry("Z", "Accepted")])
        assert store.local_list_get("A") is None and store.local_list_count() == 1
        store.replace_local_list(6, [])
        assert store.local_list_count() == 0 and store.local_list_version() == 6


def test_cache_get_put_clear_and_lru_cap(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db", cache_capacity=3) as store:
        for tag in ("A", "B", "C"):
            store.cache_put(AuthEntry(tag, "Accepted"))
        assert store.cache_get("A") == AuthEntry("A", "Accepted")  # A is now the most recently used
        store.cache_put(AuthEntry("D", "Accepted"))  # evicts B, the least recently used
        assert store.cache_get("B") is None
        assert store.cache_count() == 3
        store.cache_put(AuthEntry("C", "Blocked", "2024-01-01T00:00:00Z"))  # update in place
        assert store.cache_get("C") == AuthEntry("C", "Blocked", "2024-01-01T00:00:00Z")
        store.replace_local_list(1, [AuthEntry("A", "Blocked")])
        assert store.local_list_get("A") == AuthEntry("A", "Blocked")  # the two tables are independent
        with pytest.raises(ValueError):
            store.cache_put(AuthEntry("E", None))
    with Store(tmp_path / "a.db", cache_capacity=3) as store:
        # LRU order survives a restart: A was last used before D and C, so E evicts A.
        store.cache_put(AuthEntry("E", "Accepted"))
        assert store.cache_get("A") is None and store.cache_get("D") is not None
        store.cache_clear()
        assert store.cache_count() == 0 and store.cache_get("A") is None


# ---------------------------------------------------------------- config, profiles, availability


def test_config_persists(db_path: Path) -> None:
    with Store(db_path) as store:
        assert store.config_get("HeartbeatInterval") is None
        store.config_set("HeartbeatInterval", "60")
        store.config_set("HeartbeatInterval", "300")
        store.config_set("MeterValueSampleInterval", "15")
        store.config_set("Obsolete", "1")
        store.config_delete("Obsolete")
    with Store(db_path) as store:
        assert store.config_all() == {"HeartbeatInterval": "300", "MeterValueSampleInterval": "15"}


def test_profiles_and_availability_persist(db_path: Path) -> None:
    profile_1 = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        },
    }
    with Store(db_path) as store:
        store.profile_put(0, profile_1)
        store.profile_put(1, {**profile_1, "chargingProfileId": 7, "stackLevel": 2})
        store.profile_put(2, {**profile_1, "stackLevel": 5})  # same id replaces, connector moves too
        store.profile_put(1, {"id": 9, "stackLevel": 0})  # 2.0.1 key
        assert store.profile_delete(7) is True and store.profile_delete(7) is False
        with pytest.raises(ValueError):
            store.profile_put(1, {"stackLevel": 0})
        store.availability_set(2, False)
        store.availability_set(0, True)
    with Store(db_path) as store:
        assert store.profiles() == [(2, {**profile_1, "stackLevel": 5}), (1, {"id": 9, "stackLevel": 0})]
        assert store.availability_get(2) is False
        assert store.availability_get(0) is True and store.availability_get(1) is True  # default Operative


# ---------------------------------------------------------------- disk bound


def test_thinning_keeps_start_stop_and_drops_every_other_sample(db_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with Store(db_path) as filler:
        tx1, tx2 = open_tx(filler), open_tx(filler, connector_id=2)
        start1 = put(filler, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0}, tx1)
        samples1 = [put(filler, "MeterValues", meter_values(tx1, i), tx1) for i in range(10)]
        stop1 = put(filler, "StopTransaction", {"transactionId": tx1, "meterStop": 9, "timestamp": "t"}, tx1)
        start2 = put(filler, "StartTransaction", {"connectorId": 2, "idTag": "B", "meterStart": 0}, tx2)
        samples2 = [put(filler, "MeterValues", meter_values(tx2, i), tx2) for i in range(4)]
        size = filler.outbox_stats()["bytes"]

    with Store(db_path, max_bytes=size) as store:
        assert store.outbox_stats()["bytes"] == size  # recounted from disk at open
        newest = put(store, "MeterValues", meter_values(tx2, 99), tx2)  # one sample too many
        remaining = [m.id for m in store.pending(limit=1000)]
        # The oldest transaction lost every other sample, which was enough; nothing else was touched.
        assert remaining == [start1, *samples1[0::2], stop1, start2, *samples2, newest]
        stats = store.outbox_stats()
        assert stats["thinned"] == 5 and stats["bytes"] <= size and stats["over_limit"] is False
        # the log says how far over the bound it was, then what is left (not the size after as if it were over)
        (line,) = [r.getMessage() for r in caplog.records if "thinned" in r.getMessage()]
        over = int(line.split("(")[1].split(" ")[0])
        assert over > size and line.endswith(f"{stats['bytes']} bytes left"), line
        assert store.take_thinned() == 5
        assert store.take_thinned() == 0


def test_thinning_never_drops_start_stop_or_the_head(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db", max_bytes=300) as store:
        tx = open_tx(store)
        ids = [put(store, "MeterValues", meter_values(tx, 0), tx)]  # the head: may be in flight
        ids.append(put(store, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0}, tx))
        for _ in range(10):
            ids.append(
                put(store, "StopTransaction", {"transactionId": tx, "meterStop": 1, "timestamp": "t"}, tx)
            )
            ids.append(
                put(store, "TransactionEvent", {"eventType": "Ended", "triggerReason": "StopAuthorized"}, tx)
            )
            ids.append(
                put(
                    store,
                    "TransactionEvent",
                    {"eventType": "Updated", "triggerReason": "ChargingStateChanged"},
                    tx,
                )
            )
        assert [m.id for m in store.pending(limit=1000)] == ids  # nothing thinnable: everything kept
        assert store.over_limit and store.outbox_stats()["over_limit"]
        assert store.take_thinned() == 0
        periodic = {"eventType": "Updated", "triggerReason": "MeterValuePeriodic", "seqNo": 0}
        updates = [put(store, "TransactionEvent", {**periodic, "seqNo": i}, tx) for i in range(3)]
        # The 2.0.1 periodic updates are thinnable: the second of them goes (the last one is protected).
        assert [m.id for m in store.pending(limit=1000)] == [*ids, updates[0], updates[2]]
        assert store.take_thinned() == 1


# ---------------------------------------------------------------- clock


def test_correct_untrusted_times(store: Store) -> None:
    tx = open_tx(store, trusted=False)
    untrusted = put(store, "MeterValues", meter_values(tx, 1, "1970-01-01T00:10:00Z"), tx, trusted=False)
    start = store.enqueue(
        "StartTransaction",
        {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "1970-01-01T00:09:00+00:00"},
        tx_local_id=tx,
        wall_time=540.0,
        monotonic=1.0,
        clock_trusted=False,
    )
    trusted = put(store, "MeterValues", meter_values(tx, 2, "2023-11-14T22:13:20Z"), tx, trusted=True)
    dead = put(store, "MeterValues", meter_values(tx, 3, "1970-01-01T00:11:00Z"), tx, trusted=False)
    store.record_failure(dead, "x", max_attempts=1, retry_interval_s=1, now=0)
    store.security_log_append("StartupOfTheDevice", None, wall_time=5.0, clock_trusted=False)

    other_boot = Store(store.path)  # a later boot must not touch this boot's records
    assert other_boot.correct_untrusted_times(other_boot.boot_id, 99.0) == 0
    other_boot.close()

    offset = T0 - 600.0
    # outbox x2, dead letter, transaction, security log
    assert store.correct_untrusted_times(store.boot_id, offset) == 5
    messages = {m.id: m for m in store.pending()}
    assert messages[untrusted].payload["meterValue"][0]["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert messages[untrusted].wall_time == T0 + offset and messages[untrusted].clock_trusted
    assert messages[start].payload["timestamp"] == "2023-11-14T22:12:20.000Z"
    assert messages[start].wall_time == 540.0 + offset
    assert messages[trusted].payload["meterValue"][0]["timestamp"] == "2023-11-14T22:13:20Z"  # untouched
    assert messages[trusted].wall_time == T0
    assert store.dead_letters()[0].payload["meterValue"][0]["timestamp"] == "2023-11-14T22:14:20.000Z"
    row = store.transaction(tx)
    assert row is not None and row.clock_trusted and row.start_wall == T0 + offset
    event = store.security_log()[0]
    assert event.clock_trusted and event.wall_time == 5.0 + offset
    assert store.correct_untrusted_times(store.boot_id, offset) == 0  # already trusted


# ---------------------------------------------------------------- memory


def test_memory_stays_flat_with_100k_queued(db_path: Path) -> None:
    store = Store(db_path)
    try:
        tx = open_tx(store, trusted=False)
        start = put(store, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0}, tx, False)
        assert store._conn is not None
        # Fill fast: the durability of the filler is not what this test measures.
        store._conn.execute("PRAGMA synchronous=OFF")
        for i in range(100_000):
            put(store, "MeterValues", meter_values(tx, i), tx, trusted=False)
        store._conn.execute("PRAGMA synchronous=FULL")

        tracemalloc.start()
        try:
            store.ack(start, backoffice_tx_id=77)  # records the id; the 100,000 queued rows stay as they are
            assert store.pending_count() == 100_000
            stats = store.outbox_stats()
            assert stats["pending"] == 100_000 and stats["bytes"] > 100_000 * 64
            for _ in range(200):
                msg = store.peek()
                assert msg is not None and msg.payload["transactionId"] == 77
                store.ack(msg.id)
            assert store.correct_untrusted_times(store.boot_id, 10.0) == 100_000 - 200 + 1
            put(store, "MeterValues", meter_values(tx, 0), tx)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while working a 100k queue"
        assert store.pending_count() == 100_000 - 200 + 1
    finally:
        store.close()


def test_full_disk_raises_disk_full_and_keeps_the_queue(store: Store) -> None:
    kept = put(store, "MeterValues", meter_values(1, 1))
    assert store._conn is not None
    used = store._conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite answers SQLITE_FULL at max_page_count exactly as on a full file system.
    store._conn.execute(f"PRAGMA max_page_count = {used + 2}")
    with pytest.raises(DiskFull, match="no space left"):
        for i in range(50):
            put(store, "MeterValues", {**meter_values(1, i), "padding": "x" * 20_000})
    store._conn.execute("PRAGMA max_page_count = 1000000")
    assert store.peek() is not None and store.peek().id == kept  # type: ignore[union-attr]
    with Store(store.path) as recount:  # the in-memory size counter survived the rollback
        assert store.outbox_stats()["bytes"] == recount.outbox_stats()["bytes"]


# ------------------------------------------------- stop decisions, transactionData, how the last run ended


def test_stop_decision_is_recorded_once_and_survives_reopening(db_path: Path) -> None:
    store = Store(db_path)
    tx, _ = begin_tx(store, id_tag="CARD", meter_wh=500.0)
    assert store.decide_stop(tx, "Remote", T0 + 10)
    assert not store.decide_stop(tx, "Local", T0 + 20)  # the first decision wins
    store.close()
    reopened = Store(db_path)
    row = reopened.unfinished_transactions()[0]
    assert (row.decided_reason, row.decided_wall, row.stop_wall) == ("Remote", T0 + 10, None)
    reopened.close()


def test_transaction_data_is_bounded_keeping_the_first_and_the_latest(store: Store) -> None:
    tx, _ = begin_tx(store, id_tag="CARD", meter_wh=500.0)
    for i in range(25):
        store.tx_data_append(tx, {"timestamp": f"2026-01-01T00:00:{i:02d}.000Z", "sampledValue": [{"value": str(i)}]},
                             T0 + i, cap=10)
    kept = [int(v["sampledValue"][0]["value"]) for v in store.tx_data(tx)]
    assert kept == [0, *range(16, 25)]
    store.end_transaction(tx, 900.0, T0 + 30, 33.0, "Local", "StopTransaction", {"transactionId": 0},
                          clock_trusted=True)
    assert store.tx_data(tx) == []  # moved into the stop message in the same commit


def test_transaction_data_times_are_corrected_with_the_clock(store: Store) -> None:
    tx, _ = begin_tx(store, trusted=False, id_tag="CARD", meter_wh=500.0)
    store.tx_data_append(tx, {"timestamp": "2026-01-01T00:00:00.000Z", "sampledValue": []}, T0, cap=10,
                         clock_trusted=False)
    store.correct_untrusted_times(store.boot_id, 3600.0)
    assert store.tx_data(tx)[0]["timestamp"] == "2026-01-01T01:00:00.000Z"


def test_begin_run_tells_how_the_previous_run_ended(db_path: Path) -> None:
    store = Store(db_path)
    first = store.begin_run("boot-a")
    assert (first.kernel_boot_id, first.clean_shutdown) == (None, False)
    store.mark_clean_shutdown(T0)
    assert store.begin_run("boot-a") == type(first)("boot-a", True, T0)
    store.close()
    again = Store(db_path)
    crashed = again.begin_run("boot-a")  # no clean shutdown recorded this time
    again.close()
    assert (crashed.kernel_boot_id, crashed.clean_shutdown) == ("boot-a", False)


def test_a_reserved_transaction_that_never_began_cannot_be_stopped(store: Store) -> None:
    tx = store.reserve_tx_id(T0, 1.0)
    assert not store.decide_stop(tx, "Other", T0)
    with pytest.raises(StoreError, match="never started"):
        store.end_transaction(tx, 0.0, T0, 1.0, "Other", "StopTransaction", {"transactionId": 0},
                              clock_trusted=True)
    assert store.pending_count() == 0


# ---------------------------------------------------------------- schema 3: protocol, thinnable flag


def test_a_schema_2_queue_migrates_and_its_messages_read_back_as_1_6(db_path: Path) -> None:
    from agent.store.db import _MIGRATIONS

    conn = sqlite3.connect(db_path)  # the file an agent with schema 2 left behind, built with its own SQL
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in (s for migration in _MIGRATIONS[:2] for s in migration):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (2)")
    for seq in (1, 2):
        conn.execute(
            "INSERT INTO outbox (action, payload, thinnable, boot_id, wall_time, monotonic, clock_trusted) "
            "VALUES ('Heartbeat', ?, 0, 'old-boot', ?, 1.0, 1)",
            (f'{{"seq":{seq}}}', T0),
        )
    conn.commit()
    conn.close()

    with Store(db_path) as store:
        # 6: next_seq_no (2.0.1 seqNo); 7: operations ledger; 8: signed_values; 9: ops_power; 10: the index of
        # the retry waits a start clears
        assert SCHEMA_VERSION == 10
        with store._read() as rconn:
            assert rconn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        head = store.peek()
        assert head is not None and head.protocol == "1.6" and head.payload == {"seq": 1}
        assert store.record_failure(head.id, "InternalError", max_attempts=1, retry_interval_s=1, now=0)
        assert [(d.payload, d.protocol) for d in store.dead_letters()] == [({"seq": 1}, "1.6")]
        second = store.peek()
        assert second is not None and second.protocol == "1.6"
        store.ack(second.id)
        assert store.pending_count() == 0


def test_the_protocol_is_stored_with_the_message_and_kept_in_dead_letters(store: Store) -> None:
    put(store, "Heartbeat", {})
    store.enqueue("Heartbeat", {}, wall_time=T0, monotonic=10.0, clock_trusted=True, protocol="2.0.1")
    tx = store.reserve_tx_id(T0, 10.0)
    store.begin_transaction(tx, 1, "TAG1", 0.0, T0, 10.0, None, "TransactionEvent",
                            {"eventType": "Started"}, clock_trusted=True, protocol="2.0.1")
    assert [m.protocol for m in store.pending()] == ["1.6", "2.0.1", "2.0.1"]
    first = store.pending()[1]
    assert store.record_failure(first.id, "FormationViolation", max_attempts=1, retry_interval_s=1, now=0)
    assert [d.protocol for d in store.dead_letters()] == ["2.0.1"]


def test_only_the_enqueuers_thinnable_flag_decides_never_the_action_name(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db", max_bytes=400) as store:
        tx = open_tx(store)

        def queue(action: str, thinnable: bool) -> int:
            return store.enqueue(action, meter_values(tx, 0), tx_local_id=tx, wall_time=T0, monotonic=10.0,
                                 clock_trusted=True, thinnable=thinnable)

        kept = [queue("MeterValues", False) for _ in range(6)]  # meter samples by name, but marked to keep
        assert [m.id for m in store.pending(limit=1000)] == kept and store.over_limit
        assert store.take_thinned() == 0
        extra = [queue("DataTransfer", True) for _ in range(3)]  # not thinnable by name, but marked so
        assert [m.id for m in store.pending(limit=1000)] == [*kept, extra[0], extra[2]]
        assert store.take_thinned() == 1


def test_an_io_error_on_a_full_file_system_is_a_full_disk(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    error = sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(1 << 20, 1 << 20, 4096))
    assert isinstance(store._translate(error), DiskFull)  # SQLite says ENOSPC on a WAL write this way
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(1 << 30, 1 << 20, 1 << 29))
    translated = store._translate(error)
    assert type(translated) is StoreError and "disk I/O error" in str(translated)


def test_a_schema_3_queue_keeps_its_transaction_id_rewrite_after_the_migration(db_path: Path) -> None:
    """Before schema 4 the store knew by action name which 1.6 messages carry transactionId; the migration
    marks the queued ones, so a StartTransaction answered after the upgrade still reaches them."""
    from agent.store.db import _MIGRATIONS

    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in (s for migration in _MIGRATIONS[:3] for s in migration):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (3)")
    conn.execute("INSERT INTO transactions (connector_id, id_tag, boot_id, clock_trusted, meter_start_wh, "
                 "start_wall, start_monotonic, last_energy_wh, last_wall) VALUES (1, 'A', 'b', 1, 0, ?, 1, 0, ?)",
                 (T0, T0))
    rows = [("StartTransaction", '{"connectorId":1,"idTag":"A","meterStart":0,"timestamp":"t"}', 1),
            ("MeterValues", '{"connectorId":1,"transactionId":0,"meterValue":[]}', 1),
            ("StopTransaction", '{"transactionId":0,"meterStop":5,"timestamp":"t","reason":"Local"}', 1),
            ("DataTransfer", '{"vendorId":"v","transactionId":0}', None)]
    for action, payload, tx in rows:
        conn.execute("INSERT INTO outbox (action, payload, tx_local_id, thinnable, boot_id, wall_time, monotonic, "
                     "clock_trusted) VALUES (?, ?, ?, 0, 'b', ?, 1.0, 1)", (action, payload, tx, T0))
    conn.commit()
    conn.close()

    with Store(db_path) as store:
        start = store.peek()
        assert start is not None and start.action == "StartTransaction"
        store.ack(start.id, backoffice_tx_id=4711)
        assert [(m.action, m.payload.get("transactionId")) for m in store.pending()] == [
            ("MeterValues", 4711), ("StopTransaction", 4711), ("DataTransfer", 0)]


def test_every_transaction_has_a_station_id_that_a_new_database_never_repeats(tmp_path: Path) -> None:
    """The station's own transaction id (2.0.1 sends it) is a string unique beyond the database: a salvaged
    database restarts tx_local_id at 1, the station id never repeats; rows from before schema 5 get one too."""
    from agent.store.db import _MIGRATIONS

    with Store(tmp_path / "a.db") as first:
        tx, _ = begin_tx(first)
        row = first.transaction(tx)
        assert row is not None and len(row.station_tx_id) == 32 and int(row.station_tx_id, 16) >= 0
        assert first.transaction(tx) == row  # stable
        kept = row.station_tx_id
    with Store(tmp_path / "b.db") as replaced:  # a new database after a salvage
        tx2, _ = begin_tx(replaced)
        assert tx2 == tx and replaced.transaction(tx2).station_tx_id != kept  # type: ignore[union-attr]

    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in (s for migration in _MIGRATIONS[:4] for s in migration):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (4)")
    for _ in range(2):
        conn.execute("INSERT INTO transactions (connector_id, id_tag, boot_id, clock_trusted, meter_start_wh, "
                     "start_wall, start_monotonic, last_energy_wh, last_wall) VALUES (1, 'A', 'b', 1, 0, 1, 1, 0, 1)")
    conn.commit()
    conn.close()
    with Store(old) as migrated:
        ids = [t.station_tx_id for t in migrated.unfinished_transactions()]
        assert len(ids) == 2 and len(set(ids)) == 2 and all(len(i) == 32 for i in ids)


def test_queued_messages_per_protocol_and_one_version_moved_to_dead_letters(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    try:
        for protocol in ("1.6", "1.6", "2.0.1"):
            store.enqueue("DataTransfer", {"vendorId": "x"}, wall_time=1.0, monotonic=1.0, clock_trusted=True,
                          protocol=protocol)
        assert store.pending_protocols() == {"1.6": 2, "2.0.1": 1}
        assert store.dead_letter_protocol("1.6", "the back office does not speak it") == 2
        assert store.pending_protocols() == {"2.0.1": 1}
        reason = "the back office does not speak it"
        assert [(d.protocol, d.error) for d in store.dead_letters()] == [("1.6", reason)] * 2
        assert store.protocol_in_use() is None
        store.set_protocol_in_use("2.0.1")
        assert store.protocol_in_use() == "2.0.1"
    finally:
        store.close()
