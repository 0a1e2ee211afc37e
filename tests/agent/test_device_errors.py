"""Modbus errors per device per hour in the operations ledger count every failed exchange the driver saw
(timeouts, CRC errors, exception answers, each request tried again), not the failed polls.

The meter is the real ModbusMeter built from the config the way the daemon builds it, talking Modbus RTU over a
pseudo-terminal to the simulator's meter, whose fault switches inject the errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.daemon import build_hardware
from agent.store import Store
from drivers import transport
from drivers.base import CountsCommunicationErrors
from drivers.errors import DriverError
from drivers.transport import BusPool
from simulator.devices.meter import SimMeter
from simulator.devices.modbus_server import Faults, ModbusDeviceServer
from tests.agent.wiring import agent_for

TIMEOUT_S = 0.2  # the meter's request timeout: short, so the silent meter's timeouts are quick


def config_text(state: Path, url: str) -> str:
    return f"""
[charge_point]
id = "CP-ERRORS"
vendor = "Test"
model = "Errors"

[backoffice]
url = "ws://127.0.0.1:9/ocpp"

[state]
directory = "{state}"

[gpio]
pin_factory = "mock"

[[connectors]]
id = 1
kind = "ac"
max_current_a = 32.0
[connectors.meter]
driver = "eastron_sdm630"
url = "{url}"
device_id = 1
timeout_s = {TIMEOUT_S}
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:9"
device_id = 1
[connectors.contactor]
driver = "gpio_contactor"
pin = 21
"""


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = previous


async def test_every_failed_exchange_of_the_meter_is_counted_per_hour(
        tmp_path: Path, factory: MockFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "RECONNECT_MIN_S", 0.05)  # the reconnect after a refused frame is quick
    sim = SimMeter("eastron_sdm630", device_id=1)
    server = ModbusDeviceServer({1: sim.bank})
    url = await server.start_rtu()
    (tmp_path / "state").mkdir()
    cfg = parse_config(config_text(tmp_path / "state", url))
    pool = BusPool()
    hw = build_hardware(cfg, pool)
    store = Store(tmp_path / "agent.db")
    agent = agent_for(cfg, store, hw)
    meter = hw.connectors[1].meter
    assert isinstance(meter, CountsCommunicationErrors)
    try:
        await hw.poll()
        assert hw.connectors[1].meter.last_reading() is not None and meter.communication_errors() == 0
        injected = 0
        for switches, polls in (({"crc_error": True}, 3), ({"silent": True}, 2), ({"exception_code": 4}, 2)):
            server.faults = Faults(**switches)
            for _ in range(polls):
                await hw.poll()
            # a read outside the poll (a triggered sample, a stop's final reading) tried twice: two more errors
            for _ in range(2):
                with contextlib.suppress(DriverError):
                    await agent.read_meter_now(1)
            injected += polls + 2
            server.faults = Faults()
            await hw.poll()  # answers again between the faults
        counts = meter.error_counts()
        assert (counts["crc"], counts["timeout"], counts["exception_code"]) == (5, 4, 4)
        assert meter.communication_errors() == injected == 13
        assert hw.health["meter1"].failures == 7  # the failed polls: what the ledger counted before

        agent.operations.commit()
        hourly = {(c, k): v for _p, c, k, v in store.ops_rows("hourly", 0, 4e9)}
        assert hourly[(0, "err.meter1")] == 13
        # the next hour's rows get only the errors that came after this commit
        server.faults = Faults(silent=True)
        await hw.poll()
        server.faults = Faults()
        agent.operations.commit()
        hourly = {(c, k): v for _p, c, k, v in store.ops_rows("hourly", 0, 4e9)}
        assert hourly[(0, "err.meter1")] == 14
        report = agent.operations.report(0, 4e9)
        assert report["station"]["device_errors"]["meter1"] == 14.0  # (the pilot board is not there at all)
    finally:
        for devices in hw.connectors.values():
            devices.contactor.release()  # type: ignore[attr-defined]
        await pool.close()
        await server.stop()
        store.close()
