"""A damaged state database at start: moved aside, salvaged, replaced; the agent says what it did."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.core.operations import OperationsLedger
from agent.errors import DamagedDatabase, DiskFull
from agent.metering import SignedValue
from agent.store import Store, open_or_recover

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def fill(path: Path, n: int) -> None:
    store = Store(path)
    tx = store.reserve_tx_id(time.time(), time.monotonic())
    ledger(store, tx)  # written first: the damage below lands on the outbox rows written after it
    signed(store, tx)
    for i in range(n):
        store.enqueue("MeterValues", {"connectorId": 1, "transactionId": 0, "meterValue": [{"i": i}]},
                      tx_local_id=tx, wall_time=time.time(), monotonic=time.monotonic(), clock_trusted=True)
    store.config_set("ocpp16.HeartbeatInterval", "120")
    store.close()


SIGNED_END = SignedValue("OCMF|{\"FV\":\"1.0\"}|{\"SD\":\"30\"}", "OCMF", "ECDSA-secp256r1-SHA256", "3059", 1000.0,
                         1250.0)


def signed(store: Store, tx: int) -> None:
    """A signing meter's legal transaction and its end data set: legal evidence that exists nowhere else."""
    store.signed_legal_begin(tx, 1, "st-1", T0)
    store.signed_put(tx, "end", SIGNED_END, T0 + 60)


def ledger(store: Store, tx: int) -> None:
    """A row in each table of the operations ledger (uptime, wear, events, state, a session's power curve)."""
    ledger = OperationsLedger([1], T0)
    ledger.contactor(1, True, T0)
    store.ops_commit(ledger.take(T0 + 60), wall=T0 + 60, state={"id.1.meter": "SN-1"})
    store.ops_event("replacement", 1, {"part": "meter"}, wall_time=T0, clock_trusted=True)
    store.ops_power_point(tx, 1, T0, 7400.0, 1000.0)


def test_garbage_header_is_moved_aside_and_a_new_database_starts(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, 10)
    with open(path, "r+b") as fh:
        fh.write(b"this is not sqlite" * 8)
    with pytest.raises(DamagedDatabase) as err:
        Store(path)
    assert "damaged" in str(err.value) and str(path) in str(err.value)
    store, report = open_or_recover(path)
    assert report is not None and "moved to" in report and "salvaged nothing" in report
    assert store.pending_count() == 0
    assert len(list(tmp_path.glob("agent.db.damaged-*"))) == 1
    store.close()


def test_damaged_pages_salvage_what_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, 2000)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # wreck pages near the end of the file (outbox rows), keep the header
        fh.seek(size - 8 * 4096)
        fh.write(b"\xde\xad" * 8192)
    store, report = open_or_recover(path)
    assert report is not None, "the damage must be detected"
    salvaged = store.pending_count()
    assert 0 < salvaged < 2000, report
    assert store.config_get("ocpp16.HeartbeatInterval") == "120"
    # the operations ledger is salvaged too: an operator's uptime and wear history exist nowhere else
    daily = {(c, k): v for _p, c, k, v in store.ops_rows("daily", T0, T0 + 86_400)}
    hourly = {(c, k): v for _p, c, k, v in store.ops_rows("hourly", T0, T0 + 3600)}
    assert daily[(1, "x.operating")] == 60 and hourly[(1, "x.operating")] == 60
    assert store.ops_wear()[(1, "n.contactor_ops")][0] == 1
    assert store.ops_state()["id.1.meter"] == "SN-1"
    assert [e.kind for e in store.ops_events()] == ["replacement"]
    assert [(p.power_w, p.energy_wh) for p in store.ops_power_curve(1)] == [(7400.0, 1000.0)]
    # a signed data set is kept byte for byte: the meter cannot sign a finished transaction again
    assert store.signed_get(1, "end") == SIGNED_END and store.signed_legal(1) is not None
    store.close()


def test_healthy_database_is_opened_untouched(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    fill(path, 5)
    store, report = open_or_recover(path)
    assert report is None and store.pending_count() == 5
    store.close()


def test_full_disk_is_not_recovered_but_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> Store:
        raise DiskFull(str(tmp_path / "agent.db"), "database or disk is full")

    monkeypatch.setattr("agent.store.Store", full)
    with pytest.raises(DiskFull):
        open_or_recover(tmp_path / "agent.db")
