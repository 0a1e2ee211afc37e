"""The simulated charger serves a LEM DCBM on a DC connector: the real driver reads it, faults switch by name."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from importlib import resources

import pytest

from drivers.base import LegalTransaction
from drivers.http import HttpFault
from drivers.meters.lem_dcbm import LemDcbm
from simulator.agentconfig import agent_config_text
from simulator.devices.lem_dcbm import SimLemDcbm
from simulator.hardware import SimHardware, load_sim_config
from simulator.httpjson import HttpError


@pytest.fixture
async def hardware() -> AsyncIterator[SimHardware]:
    scenario = resources.files("simulator") / "scenarios" / "dc_signed.toml"
    hw = SimHardware(load_sim_config(str(scenario)))
    await hw.start()
    yield hw
    await hw.stop()


async def test_dc_connector_serves_the_dcbm_to_the_real_driver(hardware: SimHardware) -> None:
    conn = hardware.connectors[1]
    assert isinstance(conn.meter, SimLemDcbm) and conn.meter_server is None
    assert conn.meter_url.startswith("http://127.0.0.1:")
    text = agent_config_text(hardware, "ws://127.0.0.1:9/ocpp", "/tmp/unused")
    section = text.split("[connectors.meter]")[1].split("[")[0]
    assert 'driver = "lem_dcbm400600"' in section and "device_id" not in section

    meter = LemDcbm.from_config("meter1", {"driver": "lem_dcbm400600", "url": conn.meter_url, "timeout_s": 0.5})
    conn.meter.set_dc(400.0, 100.0)
    reading = await meter.read()
    assert reading.power_w == pytest.approx(40_000.0)
    hardware.step(0.1, time.monotonic())  # contactor open: no current flows, the meter sees 0 A
    assert (await meter.read()).current_a == (0.0,)

    await meter.begin_transaction(LegalTransaction("tx-1", "DE*SIM*E1", "AABBCCDD"))
    hardware.set_fault(1, "meter", "power_cut", True)
    record = await meter.transaction_record("tx-1")
    assert record is not None and record.end_wh is not None

    hardware.set_fault(1, "meter", "http_500", True)
    with pytest.raises(HttpFault):
        await meter.read()
    hardware.set_fault(1, "meter", "http_500", False)
    await meter.read()
    with pytest.raises(HttpError):
        hardware.set_fault(1, "meter", "crc_error", True)  # a Modbus fault means nothing to an HTTP meter
