"""One fsync per meter pass while charging, even when the operations ledger's minute commit falls due in it: the
real runtime, journal and store with a simulated clock (the figure `make bench` measures per sample)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.core import events as ev
from agent.daemon import _build_v16
from agent.hardware import ConnectorDevices, Hardware
from agent.store import Store
from drivers.gpio import GpioContactor
from tests.agent.wiring import patch_runtime
from tests.integration.test_week_offline import FakeClock, StepMeter, config_text

PASSES = 5


async def test_the_ledgers_minute_commit_shares_the_samples_fsync(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    patch_runtime(monkeypatch, "time", clock)
    Device.pin_factory = MockFactory()
    cfg = parse_config(config_text(tmp_path / "state", "1.6"))
    store = Store(tmp_path / "agent.db")
    meter = StepMeter("meter1")
    contactor = GpioContactor("contactor1", 21)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=meter, contactor=contactor)})  # type: ignore[arg-type]
    agent, _keys, _ = _build_v16(cfg, store, hw)
    actuator = asyncio.create_task(agent.actuator_loop(1))
    try:
        agent.connectors[1].reading = meter.reading()
        agent.feed(ev.MeterSample(1, meter.energy_wh, 7000.0))
        agent.feed(ev.PlugChanged(1, True))
        agent.feed(ev.EvReadyChanged(1, True))
        agent.feed(ev.IdPresented(1, "CARD0001"))
        for _ in range(100):
            if agent.core.session(1) is not None and store.recent_transactions(1):
                break
            await asyncio.sleep(0.02)
        assert agent.core.session(1) is not None
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
            clock.offset += 61.0  # every pass: a sample is due and so is the ledger's minute commit
            meter.energy_wh += 7000.0 / 60.0
            agent.connectors[1].reading = meter.reading()
            before = len(syncs)
            agent._sample_meters()
            agent.feed(ev.Tick())  # what poll_once does next: the Tick must find the ledger committed
            committed.append(len(syncs) - before)
        assert committed == [1] * PASSES, committed
        hourly = store.ops_rows("hourly", 0.0, clock.time() + 3600)
        assert any(key.startswith("x.") for _p, _c, key, _v in hourly), hourly  # the ledger did commit
    finally:
        tasks = [actuator, *agent._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5.0)
        contactor.release()
        store.close()
        Device.pin_factory.reset()
