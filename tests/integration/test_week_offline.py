"""A week offline (make soak; a day in make test) with a simulated clock: 4 connectors charging, a MeterValues
sample every minute, then the back office comes back and everything is delivered, in order, with the agent's
memory flat throughout.

The agent code is the real one (runtime sampling, core, SQLite outbox, OCPP adapter over a real websocket
to the back office in its own process); only the clock is simulated, and the meters are in-process fakes
because 10,080 minutes cannot be waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time as real_time
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from websockets.asyncio.client import connect

from agent.config import parse_config
from agent.core import events as ev
from agent.hardware import ConnectorDevices, Hardware
from agent.ocpp.library import inline_schema_validation
from agent.ocpp.v16.connection import V16Connection
from agent.store import Store
from drivers.base import MeterCapabilities, MeterReading
from drivers.gpio import GpioContactor
from simulator.backoffice_client import BackOfficeClient
from tests.agent.wiring import agent_for, patch_runtime

CONNECTORS = 4
MINUTES = 7 * 24 * 60  # make soak: the whole week (about 3 minutes)
CI_MINUTES = 24 * 60  # make test: one day, the same proof on a seventh of the messages
RSS_GROWTH_LIMIT_KB = 10_000  # flat: the queue lives on disk, never in memory
CARD = "0F00A1B2C3"


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class FakeClock:
    """Stands in for the `time` module inside agent.runtime: wall and monotonic advance together."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return real_time.time() + self.offset

    def monotonic(self) -> float:
        return real_time.monotonic() + self.offset


class StepMeter:
    """A meter whose register grows by a fixed step per simulated minute."""

    capabilities = MeterCapabilities(phases=3, export_energy=False, per_phase_power=False)

    def __init__(self, name: str) -> None:
        self.name = name
        self.energy_wh = 1_000_000.0

    def reading(self) -> MeterReading:
        return MeterReading(energy_import_wh=self.energy_wh, power_w=7000.0, voltage_v=(230.0, 230.0, 230.0),
                            current_a=(10.1, 10.1, 10.1), read_monotonic=real_time.monotonic(),
                            read_wall=real_time.time())

    async def read(self) -> MeterReading:
        return self.reading()

    def last_reading(self) -> MeterReading | None:
        return None

    async def close(self) -> None:
        return None


def config_text(state: Path) -> str:
    connectors = "".join(f"""
[[connectors]]
id = {i}
kind = "ac"
max_current_a = 32.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:{5000 + i}"
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:{5100 + i}"
[connectors.contactor]
driver = "gpio_contactor"
pin = {20 + i}
""" for i in range(1, CONNECTORS + 1))
    return f"""
[charge_point]
id = "CP-WEEK"
vendor = "Test"
model = "Week"

[backoffice]
url = "ws://127.0.0.1:9/ocpp"

[state]
directory = "{state}"

[ocpp]
MeterValueSampleInterval = 60
ClockAlignedDataInterval = 0
AllowOfflineTxForUnknownId = true
MeterValuesSampledData = "Energy.Active.Import.Register,Power.Active.Import"
""" + connectors


async def test_a_day_offline_then_drain_in_order_memory_flat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await _offline_then_drain(tmp_path, monkeypatch, CI_MINUTES)


@pytest.mark.soak
async def test_week_offline_then_drain_in_order_memory_flat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await _offline_then_drain(tmp_path, monkeypatch, int(os.environ.get("EVSE_WEEK_MINUTES", MINUTES)))


async def _offline_then_drain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minutes: int) -> None:
    inline_schema_validation()  # as the daemon does
    clock = FakeClock()
    patch_runtime(monkeypatch, "time", clock)
    Device.pin_factory = MockFactory()
    cfg = parse_config(config_text(tmp_path / "state"))
    store = Store(tmp_path / "agent.db")
    meters = {i: StepMeter(f"meter{i}") for i in range(1, CONNECTORS + 1)}
    contactors = {i: GpioContactor(f"contactor{i}", 20 + i) for i in meters}
    devices = {i: ConnectorDevices(i, "ac", meter=meters[i], contactor=contactors[i])  # type: ignore[arg-type]
               for i in meters}
    hw = Hardware(connectors=devices)
    agent = agent_for(cfg, store, hw)
    actuators = [asyncio.create_task(agent.actuator_loop(i)) for i in meters]
    office: subprocess.Popen[bytes] | None = None
    try:
        # --- offline: start a session on every connector
        for i, meter in meters.items():
            agent.connectors[i].reading = meter.reading()
            agent.feed(ev.MeterSample(i, meter.energy_wh, 7000.0))
            agent.feed(ev.PlugChanged(i, True))
            agent.feed(ev.EvReadyChanged(i, True))
            agent.feed(ev.IdPresented(i, f"{CARD[:-1]}{i}"))
            await asyncio.sleep(0.05)  # the offline authorization runs as a task
        assert all(agent.core.session(i) is not None for i in meters)
        # --- a week of samples, one simulated minute at a time
        baseline = 0
        peak_queueing = 0
        for minute in range(minutes):
            clock.offset += 60.0
            for i, meter in meters.items():
                meter.energy_wh += 7000.0 / 60.0
                agent.connectors[i].reading = meter.reading()
            agent._sample_meters()
            if minute == 200:
                baseline = rss_kb()
            elif minute > 200 and minute % 100 == 0:
                peak_queueing = max(peak_queueing, rss_kb())
        queued = store.pending_count()
        assert queued >= CONNECTORS * (minutes + 2)  # Start + Transaction.Begin + one per minute
        # --- the drivers stop with their cards, still offline
        for i in meters:
            agent.feed(ev.IdPresented(i, f"{CARD[:-1]}{i}"))
        for _ in range(100):
            if all(r.stop_wall is not None for r in store.recent_transactions(CONNECTORS)):
                break
            await asyncio.sleep(0.1)
        # --- the back office comes back (its own process: its memory is not ours)
        log = open(tmp_path / "backoffice.log", "wb")  # noqa: SIM115
        tags = [f"--id-tag={CARD[:-1]}{i}=Accepted" for i in meters]
        office = subprocess.Popen([str(Path(sys.executable).parent / "evse-sim"), "backoffice", "--port", "0",
                                   "--control-port", "0", *tags], stdout=log, stderr=subprocess.STDOUT)
        info: dict[str, Any] = {}
        for _ in range(200):
            text = (tmp_path / "backoffice.log").read_text(errors="replace")
            lines = [ln for ln in text.splitlines() if ln.startswith("{") and "ocpp_url" in ln]
            if lines:
                info = json.loads(lines[0])
                break
            await asyncio.sleep(0.05)
        assert info, "back office did not start"
        client = BackOfficeClient(f"http://127.0.0.1:{info['control_port']}")
        peak_draining = 0
        url = info["ocpp_url"] + "/CP-WEEK"
        async with connect(url, subprotocols=["ocpp1.6"], proxy=None) as ws:  # type: ignore[list-item]
            session = asyncio.create_task(V16Connection(agent, ws).run())
            started = real_time.monotonic()
            while store.pending_count() and real_time.monotonic() - started < 600:
                await asyncio.sleep(0.5)
                peak_draining = max(peak_draining, rss_kb())
            assert store.pending_count() == 0, "the queue did not drain"
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
        # --- everything arrived, in order
        starts = client.messages(cp_id="CP-WEEK", action="StartTransaction")
        stops = client.messages(cp_id="CP-WEEK", action="StopTransaction")
        values = client.messages(cp_id="CP-WEEK", action="MeterValues")
        assert len(starts) == CONNECTORS and len(stops) == CONNECTORS
        for start in starts:
            tx = start["response"]["payload"]["transactionId"]
            stamps = [mv["timestamp"] for m in values if m["payload"]["transactionId"] == tx
                      for mv in m["payload"]["meterValue"]]
            assert len(stamps) == minutes + 1  # Transaction.Begin plus one per minute
            assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert client.violations() == []
        print(f"\n{minutes} minutes offline: {queued} queued, RSS baseline {baseline} kB, "
              f"peak queueing {peak_queueing} kB, peak draining {peak_draining} kB")
        assert peak_queueing - baseline < RSS_GROWTH_LIMIT_KB
        assert peak_draining - baseline < RSS_GROWTH_LIMIT_KB
    finally:
        for task in actuators:
            task.cancel()
        await asyncio.gather(*actuators, return_exceptions=True)
        if office is not None:
            office.terminate()
            office.wait(10)
        for contactor in contactors.values():
            contactor.release()
        store.close()
        Device.pin_factory.reset()
