"""2.0.1 TxEndedInterval: the values kept for the Ended event follow their own interval, not TxUpdatedInterval;
the real runtime, journal and store with a simulated clock (as the week-offline test)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.core import events as ev
from agent.daemon import _build_v201, wire_services
from agent.hardware import ConnectorDevices, Hardware
from agent.store import Store
from drivers.gpio import GpioContactor
from tests.agent.wiring import patch_runtime
from tests.integration.test_week_offline import FakeClock, StepMeter, config_text

ENERGY = "Energy.Active.Import.Register"
TEST_TIMEOUT_S = 60.0  # a hang fails the test instead of the whole run


async def ended_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
                      minutes: int) -> dict[str, Any]:
    """Charge for `minutes` simulated minutes with these variables set, stop with the card: the Ended event."""
    clock = FakeClock()
    patch_runtime(monkeypatch, "time", clock)
    Device.pin_factory = MockFactory()
    cfg = parse_config(config_text(tmp_path / "state", "2.0.1"))
    store = Store(tmp_path / "agent.db")
    meter = StepMeter("meter1")
    contactor = GpioContactor("contactor1", 21)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=meter, contactor=contactor)})  # type: ignore[arg-type]
    agent, model, _ = _build_v201(cfg, store, hw)
    wire_services(agent, model)
    actuator = asyncio.create_task(agent.actuator_loop(1))
    try:
        for key, value in {"AuthCtrlr.OfflineTxForUnknownIdEnabled": "true", **variables}.items():
            assert model.change(key, value) == "Accepted", key
        agent.connectors[1].reading = meter.reading()
        agent.feed(ev.MeterSample(1, meter.energy_wh, 7000.0))
        agent.feed(ev.PlugChanged(1, True))
        agent.feed(ev.EvReadyChanged(1, True))
        agent.feed(ev.IdPresented(1, "CARD0001"))
        for _ in range(50):
            if agent.core.session(1) is not None and store.recent_transactions(1):
                break
            await asyncio.sleep(0.02)
        assert agent.core.session(1) is not None
        for _ in range(minutes):
            clock.offset += 60.0
            meter.energy_wh += 7000.0 / 60.0
            agent.connectors[1].reading = meter.reading()
            agent._sample_meters()
        agent.feed(ev.IdPresented(1, "CARD0001"))
        for _ in range(100):
            if store.recent_transactions(1)[0].stop_wall is not None:
                break
            await asyncio.sleep(0.05)
        (ended,) = [m.payload for m in store.pending() if m.payload.get("eventType") == "Ended"]
        return ended
    finally:
        # the agent's own tasks too (the monitor engine the 2.0.1 build starts, authorizations, stops)
        tasks = [actuator, *agent._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5.0)
        contactor.release()
        store.close()
        Device.pin_factory.reset()


async def test_j02_tx_ended_interval_keeps_values_at_its_own_interval(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ended = await asyncio.wait_for(ended_event(tmp_path, monkeypatch, {
        "SampledDataCtrlr.TxUpdatedInterval": "60", "SampledDataCtrlr.TxEndedMeasurands": ENERGY,
        "SampledDataCtrlr.TxEndedInterval": "300"}, minutes=20), TEST_TIMEOUT_S)
    values = ended["meterValue"]
    periodic = [v for v in values if v["sampledValue"][0].get("context") == "Sample.Periodic"]
    assert len(periodic) == 4  # minutes 5, 10, 15, 20 of a 20-minute session, not one a minute
    assert values[-1]["sampledValue"][0]["context"] == "Transaction.End"


async def test_j02_tx_ended_interval_zero_keeps_only_the_end(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ended = await asyncio.wait_for(ended_event(tmp_path, monkeypatch, {
        "SampledDataCtrlr.TxUpdatedInterval": "60", "SampledDataCtrlr.TxEndedMeasurands": ENERGY,
        "SampledDataCtrlr.TxEndedInterval": "0"}, minutes=10), TEST_TIMEOUT_S)
    assert [v["sampledValue"][0]["context"] for v in ended["meterValue"]] == ["Transaction.End"]
