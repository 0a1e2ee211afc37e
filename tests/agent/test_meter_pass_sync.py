"""One fsync per meter pass while charging, even when the operations ledger's minute commit falls due in it: the
real runtime, journal and store with a simulated clock (the figure `make bench` measures per sample)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.core import events as ev
from agent.errors import StoreError
from tests.agent.wiring import charging_agent

PASSES = 5


async def test_the_ledgers_minute_commit_shares_the_samples_fsync(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async with charging_agent(tmp_path, monkeypatch, "1.6") as run:
        store = run.store
        syncs: list[str] = []  # the group's fsync, and every synchronous=FULL commit outside a group (its own fsync)
        real_fsync, real_write = store._fsync_wal, store._write
        monkeypatch.setattr(store, "_fsync_wal", lambda: (syncs.append("group"), real_fsync())[1])

        def write(*, durable: bool = True) -> Any:
            if durable and store._sync_group_depth == 0:
                syncs.append("full commit")
            return real_write(durable=durable)

        monkeypatch.setattr(store, "_write", write)
        committed = []
        for _ in range(PASSES):
            before = len(syncs)
            run.sample(61.0 / 60.0)  # every pass: a sample is due and so is the ledger's minute commit
            run.agent.feed(ev.Tick())  # what poll_once does next: the Tick must find the ledger committed
            committed.append(len(syncs) - before)
        assert committed == [1] * PASSES, committed
        hourly = store.ops_rows("hourly", 0.0, run.clock.time() + 3600)
        assert any(key.startswith("x.") for _p, _c, key, _v in hourly), hourly  # the ledger did commit


async def test_a_failing_ledger_commit_never_stops_the_meter_pass(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    async with charging_agent(tmp_path, monkeypatch, "1.6") as run:
        def broken() -> bool:
            raise StoreError("disk gone")

        monkeypatch.setattr(run.agent.operations, "commit", broken)
        queued = len(run.store.pending())
        run.sample(61.0 / 60.0)  # the sample is queued although the ledger's commit raised
        assert len(run.store.pending()) > queued
