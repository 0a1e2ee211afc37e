"""A week offline (make soak; a day in make test, half a day for 2.0.1) with a simulated clock: 4 connectors
charging, a MeterValues sample every minute (a TransactionEvent Updated under 2.0.1), then the back office comes
back and everything is delivered, in order (2.0.1: seqNo without gaps, every event `offline`), with the agent's
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
from agent.daemon import _build_v201, wire_services
from agent.hardware import ConnectorDevices, Hardware
from agent.ocpp.library import inline_schema_validation
from agent.ocpp.v16.connection import V16Connection
from agent.runtime import Agent
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


def config_text(state: Path, version: str = "1.6") -> str:
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
ocpp_version = "{version}"

[state]
directory = "{state}"

""" + ("" if version != "1.6" else """
[ocpp]
MeterValueSampleInterval = 60
ClockAlignedDataInterval = 0
AllowOfflineTxForUnknownId = true
MeterValuesSampledData = "Energy.Active.Import.Register,Power.Active.Import"
""") + connectors

# the same settings as 2.0.1 device model variables (set as a CSMS would, before the outage)
V201_VARIABLES = {"SampledDataCtrlr.TxUpdatedInterval": "60", "AlignedDataCtrlr.Interval": "0",
                  "AuthCtrlr.OfflineTxForUnknownIdEnabled": "true",
                  "SampledDataCtrlr.TxUpdatedMeasurands": "Energy.Active.Import.Register,Power.Active.Import"}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_day_offline_then_drain_in_order_memory_flat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             version: str) -> None:
    # 2.0.1 sends one event per sample instead of 1.6's batched MeterValues: half the day keeps make test short
    await _offline_then_drain(tmp_path, monkeypatch, CI_MINUTES if version == "1.6" else CI_MINUTES // 2, version)


@pytest.mark.soak
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_week_offline_then_drain_in_order_memory_flat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            version: str) -> None:
    await _offline_then_drain(tmp_path, monkeypatch, int(os.environ.get("EVSE_WEEK_MINUTES", MINUTES)), version)


def build(cfg: Any, store: Store, hw: Hardware) -> tuple[Agent, Any]:
    """The agent as the daemon builds it for the configured version, and a websocket -> session factory."""
    if str(cfg.backoffice.ocpp_version) == "1.6":
        agent = agent_for(cfg, store, hw)
        return agent, lambda ws: V16Connection(agent, ws)
    agent, model, connect = _build_v201(cfg, store, hw)
    wire_services(agent, model)
    for key, value in V201_VARIABLES.items():
        assert model.change(key, value) == "Accepted", key
    return agent, lambda ws: connect(agent, ws, lambda: None)


async def _offline_then_drain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minutes: int, version: str) -> None:
    inline_schema_validation()  # as the daemon does
    clock = FakeClock()
    patch_runtime(monkeypatch, "time", clock)
    Device.pin_factory = MockFactory()
    cfg = parse_config(config_text(tmp_path / "state", version))
    store = Store(tmp_path / "agent.db")
    meters = {i: StepMeter(f"meter{i}") for i in range(1, CONNECTORS + 1)}
    contactors = {i: GpioContactor(f"contactor{i}", 20 + i) for i in meters}
    devices = {i: ConnectorDevices(i, "ac", meter=meters[i], contactor=contactors[i])  # type: ignore[arg-type]
               for i in meters}
    hw = Hardware(connectors=devices)
    agent, session_for = build(cfg, store, hw)
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
        # 1.6: Start + Transaction.Begin + one per minute; 2.0.1: Started (with the begin value) + one Updated a minute
        assert queued >= CONNECTORS * (minutes + (2 if version == "1.6" else 1))
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
        async with connect(url, subprotocols=[f"ocpp{version}"], proxy=None) as ws:  # type: ignore[list-item]
            session = asyncio.create_task(session_for(ws).run())
            started = real_time.monotonic()
            while store.pending_count() and real_time.monotonic() - started < 600:
                await asyncio.sleep(0.5)
                peak_draining = max(peak_draining, rss_kb())
            assert store.pending_count() == 0, "the queue did not drain"
            session.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session
        # --- everything arrived, in order
        if version == "1.6":
            check_v16(client, minutes)
        else:
            check_v201(client, minutes)
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


def check_v16(client: BackOfficeClient, minutes: int) -> None:
    """Every StartTransaction, StopTransaction and MeterValues arrived, each transaction's values in order."""
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


def check_v201(client: BackOfficeClient, minutes: int) -> None:
    """Per transaction: Started, one Updated a minute in order, Ended; seqNo without gaps; all `offline`."""
    ledger = client.ledger("CP-WEEK")
    assert ledger["problems"] == [], ledger["problems"][:5]
    events = [m["payload"] for m in client.messages(cp_id="CP-WEEK", action="TransactionEvent")]
    by_tx: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_tx.setdefault(event["transactionInfo"]["transactionId"], []).append(event)
    assert len(by_tx) == CONNECTORS
    for tx_events in by_tx.values():
        types = [e["eventType"] for e in tx_events]
        assert types[0] == "Started" and types[-1] == "Ended" and types.count("Ended") == 1
        assert [e["seqNo"] for e in tx_events] == list(range(len(tx_events)))
        assert all(e.get("offline") is True for e in tx_events)  # all of it happened without a back office
        periodic = [e for e in tx_events if e["triggerReason"] == "MeterValuePeriodic"]
        assert len(periodic) == minutes
        stamps = [e["timestamp"] for e in tx_events]
        assert stamps == sorted(stamps)
