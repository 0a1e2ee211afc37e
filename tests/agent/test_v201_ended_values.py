"""2.0.1 TxEndedInterval: the values kept for the Ended event follow their own interval, not TxUpdatedInterval;
the real runtime, journal and store with a simulated clock (as the week-offline test)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.core import events as ev
from tests.agent.wiring import charging_agent

ENERGY = "Energy.Active.Import.Register"
TEST_TIMEOUT_S = 60.0  # a hang fails the test instead of the whole run


async def ended_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str],
                      minutes: int) -> dict[str, Any]:
    """Charge for `minutes` simulated minutes with these variables set, stop with the card: the Ended event."""
    variables = {"AuthCtrlr.OfflineTxForUnknownIdEnabled": "true", **variables}
    async with charging_agent(tmp_path, monkeypatch, "2.0.1", variables) as run:
        for _ in range(minutes):
            run.sample()
        run.agent.feed(ev.IdPresented(1, "CARD0001"))
        for _ in range(100):
            if run.store.recent_transactions(1)[0].stop_wall is not None:
                break
            await asyncio.sleep(0.05)
        (ended,) = [m.payload for m in run.store.pending() if m.payload.get("eventType") == "Ended"]
        return ended


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
