"""The Bender isoCHA425HV driver against SimIsoCha served over real Modbus TCP and RTU on a pty."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from drivers.base import ImdState, ImdThresholds
from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout, ImplausibleReading
from drivers.imd import isocha_registers as reg
from drivers.imd.bender_isocha import BenderIsoCha
from drivers.registry import resolve
from drivers.transport import BusPool, ModbusBus, parse_endpoint
from simulator.devices.imd import SimIsoCha
from simulator.devices.modbus_server import Faults, ModbusDeviceServer

TIMEOUT_S = 0.3
THRESHOLDS = ImdThresholds(warning_ohm=500_000.0, fault_ohm=100_000.0)


@dataclass
class Rig:
    """A simulated IMD stepping on the real clock, its server, and the real driver talking to it."""

    sim: SimIsoCha
    server: ModbusDeviceServer
    bus: ModbusBus
    driver: BenderIsoCha


RigFactory = Callable[..., Awaitable[Rig]]


async def _physics(sim: SimIsoCha) -> None:
    while True:
        sim.step(time.monotonic())
        await asyncio.sleep(0.02)


@pytest.fixture(params=["tcp", "rtu"])
async def make_rig(request: pytest.FixtureRequest) -> AsyncIterator[RigFactory]:
    """Build rigs over the parametrised transport and tear them all down."""
    rigs: list[Rig] = []
    tasks: list[asyncio.Task[None]] = []

    async def factory(device_id: int = 3, self_test_s: float = 0.3, self_test_timeout_s: float = 5.0) -> Rig:
        sim = SimIsoCha(device_id, self_test_s=self_test_s)
        server = ModbusDeviceServer({device_id: sim.bank}, Faults())
        url = f"tcp://127.0.0.1:{await server.start_tcp()}" if request.param == "tcp" else await server.start_rtu()
        bus = ModbusBus(parse_endpoint(url), timeout_s=TIMEOUT_S)
        driver = BenderIsoCha("imd1", bus, device_id, THRESHOLDS, self_test_timeout_s=self_test_timeout_s)
        tasks.append(asyncio.create_task(_physics(sim)))
        rig = Rig(sim, server, bus, driver)
        rigs.append(rig)
        return rig

    yield factory
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for rig in rigs:
        await rig.driver.close()
        await rig.bus.close()
        await rig.server.stop()


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    """An isoCHA at its factory address."""
    return await make_rig()


async def settled(rig: Rig, state: ImdState, deadline_s: float = 5.0, resistance: float | None = None) -> None:
    """Read until the driver reports `state` (the simulated device refreshes its registers every step)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            reading = await rig.driver.read()
            if reading.state is state and (resistance is None or reading.resistance_ohm == resistance):
                return
        except CommunicationFault:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"IMD never reported {state}")
        await asyncio.sleep(0.05)


async def test_first_read_writes_thresholds_and_enables(rig: Rig) -> None:
    rig.sim.bank.set_holding(reg.DEVICE_ENABLE, [0])
    reading = await rig.driver.read()
    assert rig.sim.warning_ohm == 500_000.0 and rig.sim.fault_ohm == 100_000.0
    assert rig.sim.enabled
    assert rig.driver.device_name == "isoCHA425HV" and rig.driver.firmware_version == 510
    assert reading.thresholds == THRESHOLDS
    await settled(rig, ImdState.OK)
    healthy = await rig.driver.read()
    assert healthy.resistance_ohm == pytest.approx(20e6) and not healthy.stale


@pytest.mark.parametrize(("resistance", "state"), [
    (20e6, ImdState.OK),
    (400_000.0, ImdState.WARNING),  # below R1 (pre-alarm)
    (50_000.0, ImdState.FAULT),  # below R2 (alarm)
    (80e6, ImdState.OK),  # beyond the measuring range: "true value is bigger"
])
async def test_resistance_levels(rig: Rig, resistance: float, state: ImdState) -> None:
    rig.sim.resistance_ohm = resistance
    await settled(rig, state, resistance=min(resistance, 50e6))


async def test_falls_to_warning_then_fault_then_recovers(rig: Rig) -> None:
    await settled(rig, ImdState.OK)
    for resistance, state in ((300_000.0, ImdState.WARNING), (90_000.0, ImdState.FAULT),
                              (10e6, ImdState.OK)):
        rig.sim.resistance_ohm = resistance
        await settled(rig, state)


async def test_own_thresholds_win_over_a_device_set_behind_our_back(rig: Rig) -> None:
    """Someone lowers R1/R2 on the display: the driver still reports by the agent's thresholds."""
    await settled(rig, ImdState.OK)
    rig.sim.bank.set_holding(reg.R1_PREALARM_KOHM, [20])
    rig.sim.bank.set_holding(reg.R2_ALARM_KOHM, [15])
    rig.sim.resistance_ohm = 80_000.0  # above the device's R2 now, below ours
    await settled(rig, ImdState.FAULT)


async def test_device_error(rig: Rig) -> None:
    rig.sim.device_error = True
    await settled(rig, ImdState.DEVICE_ERROR)
    rig.sim.device_error = False
    await settled(rig, ImdState.OK)


async def test_self_test_passes(rig: Rig) -> None:
    await rig.driver.read()
    result = await rig.driver.self_test()
    assert result.ok, result.detail
    assert rig.sim.self_tests == 1
    await settled(rig, ImdState.OK)


async def test_self_test_failure_is_a_result_and_recovers(rig: Rig) -> None:
    rig.sim.fail_self_test = True
    result = await rig.driver.self_test()
    assert not result.ok and "error" in result.detail
    await settled(rig, ImdState.DEVICE_ERROR)  # the device shows its error until a test passes
    rig.sim.fail_self_test = False
    assert (await rig.driver.self_test()).ok
    await settled(rig, ImdState.OK)


async def test_self_test_that_never_ends_times_out(make_rig: RigFactory) -> None:
    rig = await make_rig(self_test_s=60.0, self_test_timeout_s=1.0)
    result = await rig.driver.self_test()
    assert not result.ok and "within" in result.detail
    assert (await rig.driver.read()).state is ImdState.SELF_TEST


async def test_silent_device_times_out_then_resyncs(rig: Rig) -> None:
    await settled(rig, ImdState.OK)
    rig.server.faults.silent = True
    with pytest.raises(DeviceTimeout):
        await rig.driver.read()
    stale = rig.driver.last_reading()
    assert stale is not None and stale.stale
    # the device was reset meanwhile: factory thresholds; the driver writes its own again when it is back
    rig.sim.bank.set_holding(reg.R1_PREALARM_KOHM, [600])
    rig.sim.bank.set_holding(reg.R2_ALARM_KOHM, [590])
    rig.server.faults.silent = False
    await settled(rig, ImdState.OK)
    assert rig.sim.warning_ohm == 500_000.0 and rig.sim.fault_ohm == 100_000.0
    assert rig.driver.error_counts()["timeout"] >= 1


@pytest.mark.parametrize("fault", ["garbage", "crc_error", "wrong_unit", "truncate"])
async def test_garbage_is_refused_and_counted(rig: Rig, fault: str) -> None:
    await settled(rig, ImdState.OK)
    setattr(rig.server.faults, fault, True)
    with pytest.raises(CommunicationFault):
        await rig.driver.read()
    setattr(rig.server.faults, fault, False)
    await settled(rig, ImdState.OK)
    assert sum(rig.driver.error_counts().values()) >= 1


@pytest.mark.parametrize("regs", [
    reg.encode_channel(1e6, unit=reg.Unit.VOLT),  # wrong unit on the resistance channel
    reg.encode_channel(float("nan")),
    reg.encode_channel(-5.0),
    [0x4974, 0x2400, 0x0B02, 71],  # alarm code 3 (reserved)
])
async def test_impossible_channel_is_implausible(rig: Rig, regs: list[int]) -> None:
    await settled(rig, ImdState.OK)
    rig.sim.bank.on_write = None
    step = rig.sim.step
    rig.sim.step = lambda now: None  # type: ignore[method-assign]  # freeze the registers
    try:
        rig.sim.bank.set_holding(reg.RESISTANCE_RF, regs)
        with pytest.raises(ImplausibleReading):
            await rig.driver.read()
        assert rig.driver.error_counts()["implausible"] == 1
    finally:
        rig.sim.step = step  # type: ignore[method-assign]
    await settled(rig, ImdState.OK)


async def test_wrong_device_is_refused(rig: Rig) -> None:
    rig.sim.bank.set_holding(reg.DEVICE_NAME, reg.encode_name("SDM630"))
    with pytest.raises(ConfigError, match="not a Bender ISOMETER"):
        await rig.driver.read()


async def test_set_thresholds_checks_and_writes(rig: Rig) -> None:
    await rig.driver.read()
    await rig.driver.set_thresholds(300_000.0, 50_000.0)
    assert rig.sim.warning_ohm == 300_000.0 and rig.sim.fault_ohm == 50_000.0
    with pytest.raises(ConfigError):
        await rig.driver.set_thresholds(50_000.0, 300_000.0)  # fault above warning


def test_channel_codec_round_trip() -> None:
    regs = reg.encode_channel(123456.0, reg.Alarm.PRE_WARNING, reg.TestType.NONE, reg.Unit.OHM,
                              reg.Validity.TRUE_VALUE, reg.DESCRIPTION_INSULATION)
    channel = reg.decode_channel(regs, reg.Unit.OHM)
    assert channel.value == 123456.0 and channel.alarm is reg.Alarm.PRE_WARNING
    assert channel.description == 71 and regs[2] == 0x0102


@pytest.mark.parametrize("options", [
    {"url": "tcp://127.0.0.1:1", "warning_kohm": 100, "fault_kohm": 200},
    {"url": "tcp://127.0.0.1:1", "warning_kohm": 700},
    {"url": "tcp://127.0.0.1:1", "bogus": 1},
    {"url": "tcp://127.0.0.1:1", "device_id": 0},
    {},
])
def test_config_is_checked(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        resolve("bender_isocha425hv").from_config("imd1", {"driver": "bender_isocha425hv", **options}, BusPool())


def test_config_defaults() -> None:
    driver = resolve("bender_isocha425hv").from_config(
        "imd1", {"driver": "bender_isocha425hv", "url": "/dev/ttyUSB9"}, BusPool())
    assert driver.device_id == 3 and driver.bus.endpoint.baudrate == 19200 and driver.bus.endpoint.parity == "E"
    assert driver.thresholds == ImdThresholds(500_000.0, 100_000.0)
