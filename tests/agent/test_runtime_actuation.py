"""Runtime actuation rules: a superseded close never energizes, a stop is recorded before the next start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.core import events as ev
from agent.hardware import ConnectorDevices, Hardware
from agent.runtime import Agent
from agent.store import Store
from drivers.base import MeterCapabilities, MeterReading
from tests.agent.test_watchdog import CONFIG
from tests.agent.wiring import agent_for, patch_runtime

CARD = "0F00A1B2C3"


class RecordingContactor:
    """A contactor that records what it was told (the core's decisions as they reach the coil)."""

    name = "contactor1"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.closed = False

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True

    def open(self) -> None:
        self.calls.append("open")
        self.closed = False

    @property
    def commanded_closed(self) -> bool:
        return self.closed

    @property
    def feedback_closed(self) -> bool | None:
        return self.closed

    def check(self) -> None:
        return None


class CountingMeter:
    """Energy flows only while the contactor is closed, a little more after each read."""

    name = "meter1"
    capabilities = MeterCapabilities(phases=3, export_energy=False, per_phase_power=False)

    def __init__(self, contactor: RecordingContactor) -> None:
        self.contactor = contactor
        self.energy_wh = 10_000.0

    async def read(self) -> MeterReading:
        if self.contactor.closed:
            self.energy_wh += 7.0
        return MeterReading(energy_import_wh=self.energy_wh, power_w=0.0)

    def last_reading(self) -> MeterReading | None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    patch_runtime(monkeypatch, "STOP_METER_SETTLE_S", 0.05)
    text = CONFIG.format(state=tmp_path / "state") + '\n[ocpp]\nAllowOfflineTxForUnknownId = true\n'
    cfg = parse_config(text)
    store = Store(tmp_path / "agent.db")
    contactor = RecordingContactor()
    meter = CountingMeter(contactor)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=meter, contactor=contactor)})  # type: ignore[arg-type]
    agent = agent_for(cfg, store, hw)
    loop_task = asyncio.create_task(agent.actuator_loop(1))
    yield agent, store, contactor, meter
    loop_task.cancel()
    await asyncio.gather(loop_task, return_exceptions=True)
    store.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


async def observe(agent: Agent, meter: CountingMeter) -> None:
    reading = await meter.read()
    agent.connectors[1].reading = reading
    agent.feed(ev.MeterSample(1, reading.energy_import_wh, 0.0))


async def test_a_close_superseded_in_the_same_poll_never_reaches_the_coil(rig: Any) -> None:
    agent, _, contactor, meter = rig
    await observe(agent, meter)
    agent.feed(ev.PlugChanged(1, True))
    agent.feed(ev.IdPresented(1, CARD))
    await settle()
    assert agent.core.session(1) is not None and contactor.calls == []
    # one poll: the EV becomes ready (close) and the meter faults (open), before the actuator runs
    agent.feed(ev.EvReadyChanged(1, True))
    agent.feed(ev.FaultRaised(1, "meter1", "communication", True, ev.DeviceRole.METER))
    await settle()
    assert "close" not in contactor.calls and not contactor.closed


async def test_stop_is_recorded_before_the_next_start_and_the_meter_tiles(rig: Any) -> None:
    agent, store, contactor, meter = rig
    await observe(agent, meter)
    agent.feed(ev.PlugChanged(1, True))
    agent.feed(ev.EvReadyChanged(1, True))
    agent.feed(ev.IdPresented(1, CARD))
    await settle()
    assert contactor.closed
    await observe(agent, meter)  # energy flowed
    agent.feed(ev.IdPresented(1, CARD))  # stop (same card) ...
    await asyncio.sleep(0)
    agent.feed(ev.IdPresented(1, CARD))  # ... and at once a new start on the still-plugged connector
    for _ in range(100):
        starts = [m for m in store.pending(50) if m.action == "StartTransaction"]
        if len(starts) == 2:
            break
        await asyncio.sleep(0.05)
    actions = [(m.action, m.payload) for m in store.pending(50) if m.action != "MeterValues"]
    assert [a for a, _ in actions] == ["StartTransaction", "StopTransaction", "StartTransaction"], actions
    stop, start2 = actions[1][1], actions[2][1]
    assert stop["meterStop"] == start2["meterStart"]  # no energy counted twice, none lost


class SlowPilot:
    """A pilot board whose limit writes take a Modbus round trip on a busy bus."""

    def __init__(self, name: str, events: list[str], delay_s: float) -> None:
        self.name = name
        self.events = events
        self.delay_s = delay_s

    async def set_limits(self, current_a: float, power_w: float) -> None:
        await asyncio.sleep(self.delay_s)
        self.events.append(f"{self.name} limit {current_a}")

    async def allow_charging(self, allowed: bool) -> None:
        self.events.append(f"{self.name} allow {allowed}")


class LoggingContactor(RecordingContactor):
    """Records its switching in the shared event list."""

    def __init__(self, name: str, events: list[str]) -> None:
        super().__init__()
        self.name = name
        self.events = events

    def close(self) -> None:
        super().close()
        self.events.append(f"{self.name} close")


async def test_a_closing_waits_for_the_other_connectors_lower_limits_of_the_same_decision(tmp_path: Path) -> None:
    second = (CONFIG.split("[[connectors]]")[1].replace("id = 1", "id = 2").replace("pin = 22", "pin = 23")
              .replace("tcp://127.0.0.1:9", "tcp://127.0.0.1:10"))
    cfg = parse_config(CONFIG.format(state=tmp_path / "state") + "[[connectors]]" + second)
    store = Store(tmp_path / "agent.db")
    events: list[str] = []
    devices = {}
    for cid, delay in ((1, 0.3), (2, 0.0)):
        contactor = LoggingContactor(f"contactor{cid}", events)
        devices[cid] = ConnectorDevices(cid, "ac", meter=CountingMeter(contactor),  # type: ignore[arg-type]
                                        contactor=contactor, dc=SlowPilot(f"pilot{cid}", events, delay))  # type: ignore[arg-type]
    agent = agent_for(cfg, store, Hardware(connectors=devices))
    loops = [asyncio.create_task(agent.actuator_loop(cid)) for cid in (1, 2)]
    try:
        agent.core.connectors[2].contactor_closed = True  # what the core decided with these outputs
        # a shared cap re-split as connector 2 starts: connector 1 goes down, then connector 2 closes
        agent.execute([ev.SetLimit(1, 10.0), ev.SetLimit(2, 10.0), ev.SetContactor(2, True)])
        for _ in range(40):
            await asyncio.sleep(0.02)
        assert events.index("pilot1 limit 10.0") < events.index("contactor2 close"), events
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        store.close()


@pytest.mark.parametrize(("kind", "limit", "expected_w"), [
    ("dc", ev.SetLimit(1, 120.0, 50000.0), 50000.0),  # W to the power register as W
    ("dc", ev.SetLimit(1, 120.0, None), float("inf")),  # no power limit: the register maximum (clamped there)
    ("ac", ev.SetLimit(1, 15.9, None), 15.9 * 230.0 * 3),  # the pilot board: the offered current on 3 phases
])
def test_the_power_register_gets_the_cores_watts_on_dc_and_the_offered_current_on_ac(
        tmp_path: Path, kind: str, limit: ev.SetLimit, expected_w: float) -> None:
    text = CONFIG.format(state=tmp_path / "state")
    if kind == "dc":
        text = text.replace('kind = "ac"', 'kind = "dc"')
    cfg = parse_config(text)
    assert Agent._power_limit_w(limit, cfg.connector(1)) == pytest.approx(expected_w)


async def test_session_events_reach_the_journal(rig: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    agent, store, _, meter = rig
    seen: list[Any] = []
    monkeypatch.setattr(agent.journal, "session_event", lambda event, stamp: seen.append(event))
    await observe(agent, meter)
    agent.feed(ev.PlugChanged(1, True))
    agent.feed(ev.IdPresented(1, CARD))
    agent.feed(ev.EvReadyChanged(1, True))
    await settle()
    assert [type(e).__name__ for e in seen] == ["EvConnected", "Authorized", "EnergyTransferStarted"]
    assert [m.action for m in store.pending(50)] == ["StartTransaction", "MeterValues"]  # 1.6 writes no more
