"""The simulated charger's DC controller of either map version, driven by the EV model and its injected vehicle
faults through the control API's `set_fault`, read by the real driver over Modbus TCP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from drivers.base import CcsPhase, ChademoFault, DcError
from drivers.dc.modbus_dc import ModbusDcController, fault_codes
from drivers.transport import ModbusBus, parse_endpoint
from simulator.hardware import SimConfigError, SimHardware, load_sim_config
from simulator.httpjson import HttpError

CONFIG = """
[charge_point]
id = "CP-SIM-VEHICLE"
[rfid]
enabled = false
[[connectors]]
id = 1
kind = "dc"
max_current_a = 200.0
[connectors.meter]
model = "eastron_sdm630"
transport = "tcp"
[connectors.dc_controller]
transport = "tcp"
device_id = 1
protocol = "{protocol}"
{version}
[connectors.contactor]
pin = 22
feedback_pin = 23
[connectors.ev]
handshake_s = 0.2
"""

Start = Callable[[str, int | None], Awaitable[tuple[SimHardware, ModbusDcController]]]


def write_config(tmp_path: Path, protocol: str, version: int | None) -> Path:
    path = tmp_path / f"sim-{protocol}-{version}.toml"
    path.write_text(CONFIG.format(protocol=protocol, version=f"map_version = {version}" if version else ""))
    return path


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Start]:
    running: list[tuple[SimHardware, ModbusBus]] = []

    async def start(protocol: str, version: int | None) -> tuple[SimHardware, ModbusDcController]:
        hw = SimHardware(load_sim_config(write_config(tmp_path, protocol, version)))
        await hw.start()
        bus = ModbusBus(parse_endpoint(hw.connectors[1].dc_url), timeout_s=0.5)
        running.append((hw, bus))
        return hw, ModbusDcController("dc1", bus, 1)

    yield start
    for hw, bus in running:
        await bus.close()
        await hw.stop()


def advance(hw: SimHardware, seconds: float) -> None:
    for _ in range(round(seconds / 0.05)):
        hw.step(0.05, time.monotonic())


async def test_a_ccs_vehicle_fault_through_the_control_api_version_2(started: Start) -> None:
    hw, driver = await started("ccs", None)
    dc = hw.connectors[1].dc
    assert dc is not None and dc.map_version == 2  # the default
    hw.connectors[1].ev.plug()
    advance(hw, 0.1)
    status = await driver.read()
    assert status.detail is not None and status.detail.ccs_phase in (CcsPhase.SESSION_SETUP,
                                                                      CcsPhase.CHARGE_PARAMETER_DISCOVERY)
    hw.set_fault(1, "ev", "ccs_ress_temperature_inhibit", True)
    advance(hw, 0.05)
    status = await driver.read()
    assert fault_codes(status) == ["ccs_ress_temperature_inhibit"] and status.errors & DcError.EV_ERROR
    assert hw.state()["connectors"]["1"]["ev"]["faults"] == ["ccs_ress_temperature_inhibit"]
    with pytest.raises(HttpError):
        hw.set_fault(1, "ev", "chademo_battery_over_voltage", True)  # not a CCS vehicle's fault
    hw.connectors[1].ev.unplug()
    advance(hw, 0.05)
    assert fault_codes(await driver.read()) == []


async def test_a_chademo_vehicle_fault_on_a_version_1_controller(started: Start) -> None:
    hw, driver = await started("chademo", 1)
    hw.connectors[1].ev.plug()
    advance(hw, 0.1)
    hw.set_fault(1, "ev", "chademo_high_battery_temperature", True)
    advance(hw, 0.05)
    status = await driver.read()
    assert (status.map_version, status.detail) == (1, None)
    assert fault_codes(status) == ["ev_error"]  # all a version 1 controller can say
    assert hw.connectors[1].ev.detail().chademo_faults == ChademoFault.HIGH_BATTERY_TEMPERATURE


def test_the_config_refuses_an_unknown_map_version(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match="map_version"):
        load_sim_config(write_config(tmp_path, "ccs", 3))
