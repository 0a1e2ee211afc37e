"""A clock without RTC: records of this boot made before the clock was set are corrected before sending."""

from __future__ import annotations

import asyncio
import time as real_time
from datetime import datetime
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.core import events as ev
from agent.hardware import ConnectorDevices, Hardware
from agent.ocpp.v16.metering import iso
from agent.runtime import Agent
from agent.store import Store
from drivers.base import MeterCapabilities, MeterReading
from drivers.gpio import GpioContactor
from tests.agent.test_watchdog import CONFIG
from tests.agent.wiring import agent_for, patch_runtime

DAYS_OFF = 3 * 86400.0  # the Pi booted believing it is three days earlier


class WrongClock:
    """The time module as agent.runtime sees it: wall time off by DAYS_OFF until the system clock is set."""

    def __init__(self) -> None:
        self.error = -DAYS_OFF

    def time(self) -> float:
        return real_time.time() + self.error

    def monotonic(self) -> float:
        return real_time.monotonic()


class Meter:
    name = "meter1"
    capabilities = MeterCapabilities(phases=3, export_energy=False, per_phase_power=False)

    async def read(self) -> MeterReading:
        return MeterReading(energy_import_wh=5000.0, power_w=0.0)

    def last_reading(self) -> MeterReading | None:
        return None

    async def close(self) -> None:
        return None


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    clock = WrongClock()
    patch_runtime(monkeypatch, "time", clock)
    patch_runtime(monkeypatch, "system_clock_synchronized", lambda: False)
    Device.pin_factory = MockFactory()
    text = CONFIG.format(state=tmp_path / "state") + '\n[ocpp]\nAllowOfflineTxForUnknownId = true\n'
    cfg = parse_config(text)
    store = Store(tmp_path / "agent.db")
    contactor = GpioContactor("contactor1", 22)
    hw = Hardware(connectors={1: ConnectorDevices(1, "ac", meter=Meter(), contactor=contactor)})  # type: ignore[arg-type]
    agent = agent_for(cfg, store, hw)
    yield agent, store, clock
    contactor.release()
    store.close()
    Device.pin_factory.reset()


async def start_offline_session(agent: Agent) -> None:
    agent.connectors[1].reading = MeterReading(energy_import_wh=5000.0, power_w=0.0)
    agent.feed(ev.MeterSample(1, 5000.0, 0.0))
    agent.feed(ev.PlugChanged(1, True))
    agent.feed(ev.EvReadyChanged(1, True))
    agent.feed(ev.IdPresented(1, "0F00A1B2C3"))
    await asyncio.sleep(0.05)
    assert agent.core.session(1) is not None


async def test_back_office_time_corrects_queued_timestamps(setup) -> None:  # type: ignore[no-untyped-def]
    agent, store, _clock = setup
    assert not agent.clock_trusted
    await start_offline_session(agent)
    queued = store.peek()
    assert queued is not None and queued.action == "StartTransaction" and not queued.clock_trusted
    assert abs(stamp(queued.payload["timestamp"]) - (real_time.time() - DAYS_OFF)) < 60
    agent.set_clock(iso(real_time.time()))  # BootNotification.conf currentTime
    assert agent.clock_trusted and agent.clock_source == "backoffice"
    corrected = store.peek()
    assert corrected is not None and corrected.clock_trusted
    assert abs(stamp(corrected.payload["timestamp"]) - real_time.time()) < 60
    for msg in store.pending(10):
        for value in msg.payload.get("meterValue", []):
            assert abs(stamp(value["timestamp"]) - real_time.time()) < 60
    assert abs(agent.now() - real_time.time()) < 5  # new records carry the right time too


async def test_ntp_step_corrects_queued_timestamps(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    agent, store, clock = setup
    await start_offline_session(agent)
    clock.error = 0.0  # NTP steps the system clock to the right time
    patch_runtime(monkeypatch, "system_clock_synchronized", lambda: True)
    agent.check_system_clock()
    assert agent.clock_trusted and agent.clock_source == "ntp"
    msg = store.peek()
    assert msg is not None and abs(stamp(msg.payload["timestamp"]) - real_time.time()) < 60
    agent.set_clock(iso(real_time.time() + 3600))  # a back office an hour off does not override NTP
    assert abs(agent.now() - real_time.time()) < 5


def test_iso_never_shows_a_later_second_than_the_instant_and_parses_back() -> None:
    from agent.clock import iso, parse_iso

    assert iso(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    # half a microsecond below the next second: the old formatter printed 22:13:21.999 (a second ahead)
    edge = iso(1_700_000_000.9999996)
    assert edge in ("2023-11-14T22:13:20.999Z", "2023-11-14T22:13:21.000Z"), edge
    assert parse_iso("2023-11-14T22:13:20.250Z") == 1_700_000_000.25
    assert parse_iso("2023-11-14T23:13:20.250+01:00") == 1_700_000_000.25
    assert parse_iso(None) is None and parse_iso("") is None
