"""DC power-path discipline: the contactor opens only after the current has fallen (the real DC driver against
the simulated controller over Modbus TCP), also when the controller stops answering in the middle of a stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from agent.hardware import ConnectorDevices
from agent.runtime.actuators import ActuatorsMixin
from agent.runtime.base import OPEN_SAFE_CURRENT_A
from drivers.base import EvState, Isolation, PlugState
from drivers.dc.modbus_dc import ModbusDcController
from drivers.errors import DriverError
from drivers.transport import ModbusBus, parse_endpoint
from simulator.devices.dc_controller import SimDcController
from simulator.devices.modbus_server import Faults, ModbusDeviceServer

HEARTBEAT_TIMEOUT_S = 0.5


class PowerPathContactor:
    """A contactor that notes the current flowing through it at the moment it opens."""

    name = "contactor1"

    def __init__(self, sim: SimDcController) -> None:
        self.sim = sim
        self.closed = True
        self.opened_at_a: list[float] = []

    def close(self) -> None:
        self.closed = True

    def open(self) -> None:
        self.opened_at_a.append(self.sim.present_a if self.closed else 0.0)
        self.closed = False

    @property
    def commanded_closed(self) -> bool:
        return self.closed

    @property
    def feedback_closed(self) -> bool | None:
        return self.closed

    def check(self) -> None:
        return None


@dataclass
class Rig:
    sim: SimDcController
    server: ModbusDeviceServer
    driver: ModbusDcController
    contactor: PowerPathContactor
    devices: ConnectorDevices


async def _physics(rig: Rig) -> None:
    """SimHardware's coupling: current flows only through a closed contactor."""
    while True:
        now = time.monotonic()
        rig.sim.step(now)
        if not rig.contactor.closed:
            rig.sim.present_a = 0.0
        await asyncio.sleep(0.01)


async def _heartbeats(driver: ModbusDcController) -> None:
    """What the agent's poll loop does: heartbeat the controller, whatever the bus does."""
    while True:
        with contextlib.suppress(DriverError):
            await driver.heartbeat()
        await asyncio.sleep(0.1)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = SimDcController(1)
    server = ModbusDeviceServer({1: sim.bank}, Faults())
    url = f"tcp://127.0.0.1:{await server.start_tcp()}"
    bus = ModbusBus(parse_endpoint(url), timeout_s=0.2)
    driver = ModbusDcController("controller1", bus, 1, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    contactor = PowerPathContactor(sim)
    devices = ConnectorDevices(1, "dc", meter=None, contactor=contactor, dc=driver)  # type: ignore[arg-type]
    rig = Rig(sim, server, driver, contactor, devices)
    sim.plug, sim.ev_state, sim.ev_ready, sim.isolation = PlugState.PLUGGED, EvState.C, True, Isolation.VALID
    sim.ev_target_v, sim.ev_target_a, sim.ev_max_v, sim.ev_max_a = 400.0, 100.0, 500.0, 200.0
    tasks = [asyncio.create_task(_physics(rig)), asyncio.create_task(_heartbeats(driver))]
    await driver.set_limits(80.0, 50_000.0)
    await driver.allow_charging(True)
    deadline = time.monotonic() + 5
    while sim.present_a < 70.0:
        assert time.monotonic() < deadline, "the simulated controller never delivered current"
        await asyncio.sleep(0.02)
    yield rig
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await driver.close()
    await bus.close()
    await server.stop()


async def test_stop_ramps_the_current_down_before_the_contactor_opens(rig: Rig) -> None:
    outcome = await ActuatorsMixin()._ramp_down(1, rig.devices)
    rig.contactor.open()
    assert outcome == "down"
    assert rig.contactor.opened_at_a == [pytest.approx(0.0, abs=OPEN_SAFE_CURRENT_A)]


async def test_controller_silent_during_the_stop_waits_for_its_watchdog(rig: Rig) -> None:
    """The stop command is lost and the current cannot be read: the contactor still breaks no current, because
    the wait covers the controller's own watchdog stop (heartbeats no longer reach it)."""
    rig.server.faults.silent = True
    outcome = await ActuatorsMixin()._ramp_down(1, rig.devices)
    rig.contactor.open()
    assert outcome == "unreachable"
    assert rig.contactor.opened_at_a == [pytest.approx(0.0, abs=OPEN_SAFE_CURRENT_A)]


async def test_a_read_blip_during_the_ramp_does_not_open_under_load(rig: Rig) -> None:
    """The command got through, then one read fails: keep waiting for the current, do not open at once."""
    await rig.driver.allow_charging(False)
    rig.server.faults.garbage = True
    reads = 0
    real_read = rig.driver.read

    async def flaky_read() -> object:
        nonlocal reads
        reads += 1
        if reads == 3:
            rig.server.faults.garbage = False
        return await real_read()

    rig.driver.read = flaky_read  # type: ignore[method-assign, assignment]
    outcome = await ActuatorsMixin()._ramp_down(1, rig.devices)
    rig.contactor.open()
    assert outcome == "down" and reads > 3
    assert rig.contactor.opened_at_a == [pytest.approx(0.0, abs=OPEN_SAFE_CURRENT_A)]


async def test_no_dc_controller_is_nothing_to_wait_for() -> None:
    devices = ConnectorDevices(1, "ac", meter=None, contactor=None)  # type: ignore[arg-type]
    assert await ActuatorsMixin()._ramp_down(1, devices) == "no_dc"


class StillMeter:
    """A meter that always answers the same register (the poll reads it first)."""

    name = "meter1"

    async def read(self) -> object:
        from drivers.base import MeterReading

        return MeterReading(energy_import_wh=1000.0)


async def test_controller_contactor_fault_after_a_stop_is_a_weld(rig: Rig) -> None:
    """The controller's contactor error bit while charging is stopped can only mean its contactor did not
    open: the agent reports it as contactor_welded (which keeps the cable locked), not as a plain fault."""
    from agent.hardware import Hardware
    from drivers.base import DcError

    devices = ConnectorDevices(1, "dc", meter=StillMeter(), contactor=rig.contactor, dc=rig.driver)  # type: ignore[arg-type]
    hw = Hardware(connectors={1: devices})
    rig.sim.set_error(DcError.CONTACTOR, True)
    obs = await hw.poll_connector(devices)  # still allowed: a contactor fault while charging
    assert {code for _, code in obs.faults} == {"dc_contactor"}
    await ActuatorsMixin()._ramp_down(1, devices)
    obs = await hw.poll_connector(devices)
    assert ("controller1", "contactor_welded") in obs.faults
