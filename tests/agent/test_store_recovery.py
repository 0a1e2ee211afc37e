"""A damaged state database at start: moved aside, salvaged, replaced; the agent says what it did."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.errors import DamagedDatabase, DiskFull
from agent.store import Store, open_or_recover


def fill(path: Path, n: int) -> None:
    store = Store(path)
    tx = store.reserve_tx_id(time.time(), time.monotonic())
    for i in range(n):
        store.enqueue("MeterValues", {"connectorId": 1, "transactionId": 0, "meterValue": [{"i": i}]},
                      tx_local_id=tx, wall_time=time.time(), monotonic=time.monotonic(), clock_trusted=True)
    store.config_set("ocpp16.HeartbeatInterval", "120")
    store.close()


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
