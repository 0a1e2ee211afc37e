"""The Modbus DC controller driver against SimDcController served over real Modbus TCP and RTU on a pty."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from drivers.base import (
    ChargeProtocol,
    DcError,
    DcStatus,
    DcVehicleDetail,
    EstopReason,
    EvState,
    Isolation,
    PlugState,
)
from drivers.dc import registers as reg
from drivers.dc.modbus_dc import ALLOWED_OPTIONS, ModbusDcController, fault_codes
from drivers.errors import (
    CommunicationFault,
    ConfigError,
    DeviceTimeout,
    FrameError,
    HardwareFault,
    UnsupportedDriver,
)
from drivers.transport import BusPool, ModbusBus, parse_endpoint
from simulator.devices.dc_controller import SimDcController
from simulator.devices.modbus_server import Faults, ModbusDeviceServer

TIMEOUT_S = 0.3
HEARTBEAT_TIMEOUT_S = 0.5
T0 = 1000.0  # the controlled clock handed to SimDcController.step()
# | 0x0014-0x0015 | `limit_w` | u32 | W | meaning |
ROW = re.compile(
    r"\|\s*(0x[0-9A-Fa-f]{4})(?:-0x[0-9A-Fa-f]{4})?\s*\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|\s*([^|]*)\|"
)
DOC = Path(__file__).resolve().parents[2] / "docs" / "dc-controller.md"


@dataclass
class Rig:
    """A simulated controller, its server, and the real driver talking to it."""

    sim: SimDcController
    server: ModbusDeviceServer
    bus: ModbusBus
    driver: ModbusDcController
    url: str


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture(params=["tcp", "rtu"])
async def make_rig(request: pytest.FixtureRequest) -> AsyncIterator[RigFactory]:
    """Build rigs over the parametrised transport and tear them all down."""
    rigs: list[Rig] = []

    async def factory(protocol: ChargeProtocol = ChargeProtocol.CCS, device_id: int = 3) -> Rig:
        sim = SimDcController(device_id, protocol)
        server = ModbusDeviceServer({device_id: sim.bank}, Faults())
        if request.param == "tcp":
            url = f"tcp://127.0.0.1:{await server.start_tcp()}"
        else:
            url = await server.start_rtu()
        bus = ModbusBus(parse_endpoint(url), timeout_s=TIMEOUT_S)
        driver = ModbusDcController("dc1", bus, device_id, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        rig = Rig(sim, server, bus, driver, url)
        rigs.append(rig)
        return rig

    yield factory
    for rig in rigs:
        await rig.driver.close()
        await rig.bus.close()
        await rig.server.stop()


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    """A CCS controller."""
    return await make_rig()


def plug_ready_ev(sim: SimDcController) -> None:
    """What the EV model does when a CCS car is plugged in and ready: 400 V, asking 100 A."""
    sim.plug = PlugState.PLUGGED
    sim.ev_state = EvState.C
    sim.ev_ready = True
    sim.isolation = Isolation.VALID
    sim.soc_pct = 40.0
    sim.ev_target_v = 400.0
    sim.ev_target_a = 100.0
    sim.ev_max_v = 500.0
    sim.ev_max_a = 200.0


async def start_charging(rig: Rig, now: float = T0, limit_a: float = 80.0, limit_w: float = 50_000.0) -> None:
    """Heartbeat, limits and allow from the host, then one controller step."""
    plug_ready_ev(rig.sim)
    await rig.driver.heartbeat()
    await rig.driver.set_limits(limit_a, limit_w)
    await rig.driver.allow_charging(True)
    rig.sim.step(now)


async def recover(driver: ModbusDcController, deadline_s: float = 5.0) -> DcStatus:
    """Read until the bus is back (the TCP transport waits out its reconnect backoff)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await driver.read()
        except CommunicationFault:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("protocol", [ChargeProtocol.CCS, ChargeProtocol.CHADEMO])
async def test_reads_every_field(make_rig: RigFactory, protocol: ChargeProtocol) -> None:
    rig = await make_rig(protocol)
    sim = rig.sim
    sim.plug = PlugState.PLUGGED
    sim.ev_state = EvState.B
    sim.chademo_step = 7 if protocol is ChargeProtocol.CHADEMO else 0
    sim.ev_ready = True
    sim.soc_pct = 55.5
    sim.ev_target_v = 401.2
    sim.ev_target_a = 123.4
    sim.ev_max_v = 450.0
    sim.ev_max_a = 200.5
    sim.present_v = 399.9
    sim.present_a = 12.3
    sim.isolation = Isolation.WARNING
    sim.errors = DcError.OVER_TEMPERATURE | DcError.PILOT_FAULT
    sim.estop = EstopReason.OVER_TEMPERATURE
    sim.temperature_c = -12.5
    sim.refresh()
    before = time.monotonic()
    status = await rig.driver.read()
    assert before <= status.read_monotonic <= time.monotonic()
    assert abs(status.read_wall - time.time()) < 60
    assert not status.stale
    expected = sim.status()
    for f in fields(DcStatus):
        if f.name in ("read_monotonic", "read_wall", "stale", "detail"):
            continue
        got, want = getattr(status, f.name), getattr(expected, f.name)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=0.051), f.name
        else:
            assert got == want, f.name
    assert status.protocol is protocol
    assert status.chademo_step == sim.chademo_step
    assert status.errors == DcError.OVER_TEMPERATURE | DcError.PILOT_FAULT
    assert fault_codes(status) == ["over_temperature", "pilot_fault"]
    assert status.temperature_c == pytest.approx(-12.5)


async def test_not_available_markers_read_as_none(rig: Rig) -> None:
    rig.sim.soc_pct = None
    rig.sim.temperature_c = None
    rig.sim.refresh()
    status = await rig.driver.read()
    assert status.soc_pct is None
    assert status.temperature_c is None


async def test_impossible_value_is_a_hardware_fault(rig: Rig) -> None:
    await rig.driver.read()  # the first read writes the setpoints, which refreshes the block
    rig.sim.bank.set_input(reg.STATUS["protocol"].address, [7])
    with pytest.raises(HardwareFault) as info:
        await rig.driver.read()
    assert info.value.code == "invalid_register"


# ---------------------------------------------------------------------------------------------- commands


async def test_commands_round_trip(rig: Rig) -> None:
    await rig.driver.set_limits(125.5, 150_000.0)
    await rig.driver.allow_charging(True)
    assert rig.sim.charging_allowed
    assert rig.sim.limit_a == pytest.approx(125.5)
    assert rig.sim.limit_w == pytest.approx(150_000.0)  # above 65535: both words of the U32 arrive
    assert rig.sim.heartbeat_timeout_s == pytest.approx(HEARTBEAT_TIMEOUT_S)
    status = await rig.driver.read()
    assert status.charging_allowed
    assert status.limit_a == pytest.approx(125.5)
    assert status.limit_w == pytest.approx(150_000.0)
    await rig.driver.heartbeat()
    await rig.driver.heartbeat()
    assert rig.sim.bank.input[reg.STATUS["heartbeat_echo"].address] == 2
    await rig.driver.allow_charging(False)
    assert not rig.sim.charging_allowed
    assert rig.driver.setpoints.limit_a == pytest.approx(125.5)


async def test_first_exchange_writes_safe_setpoints(rig: Rig) -> None:
    # a previous host left the controller allowed; a restarted driver must not inherit that
    rig.sim.bank.set_holding(reg.COMMANDS["allow_charging"].address, [1])
    status = await rig.driver.read()
    assert not status.charging_allowed
    assert not rig.sim.charging_allowed


async def test_charging_delivers_the_smallest_limit_and_ramps_down(rig: Rig) -> None:
    await start_charging(rig, limit_a=80.0, limit_w=50_000.0)
    status = await rig.driver.read()
    assert status.present_a == pytest.approx(80.0)  # min(EV 100 A, limit 80 A, 50 kW / 400 V = 125 A)
    assert status.present_v == pytest.approx(400.0)
    await rig.driver.set_limits(200.0, 20_000.0)
    rig.sim.step(T0 + 0.1)
    assert (await rig.driver.read()).present_a == pytest.approx(50.0)  # 20 kW / 400 V
    await rig.driver.allow_charging(False)
    rig.sim.step(T0 + 0.2)
    ramping = (await rig.driver.read()).present_a
    assert 0.0 < ramping < 50.0
    rig.sim.step(T0 + 2.0)
    status = await rig.driver.read()
    assert status.present_a == 0.0
    assert status.present_v == 0.0


async def test_no_power_without_heartbeat(rig: Rig) -> None:
    plug_ready_ev(rig.sim)
    await rig.driver.set_limits(80.0, 50_000.0)
    await rig.driver.allow_charging(True)
    rig.sim.step(T0)
    assert rig.sim.delivered_current_a() == 0.0
    assert (await rig.driver.read()).present_a == 0.0
    await rig.driver.heartbeat()
    rig.sim.step(T0 + 0.1)
    assert (await rig.driver.read()).present_a == pytest.approx(80.0)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda s: setattr(s, "plug", PlugState.UNPLUGGED), id="unplugged"),
        pytest.param(lambda s: setattr(s, "ev_ready", False), id="ev-not-ready"),
        pytest.param(lambda s: setattr(s, "isolation", Isolation.INVALID), id="isolation-not-measured"),
        pytest.param(lambda s: s.set_error(DcError.OVER_CURRENT, True), id="error"),
        pytest.param(lambda s: setattr(s, "estop", EstopReason.BUTTON), id="estop-button"),
    ],
)
async def test_each_fall_safe_condition_stops_power(
    rig: Rig, spoil: Callable[[SimDcController], Any]
) -> None:
    await start_charging(rig)
    assert rig.sim.present_a > 0
    spoil(rig.sim)
    rig.sim.step(T0 + 0.1)
    rig.sim.step(T0 + 2.0)
    assert (await rig.driver.read()).present_a == 0.0


# ---------------------------------------------------------------------------------------------- watchdog


async def test_heartbeat_keeps_charging(rig: Rig) -> None:
    await start_charging(rig)
    for i in range(1, 6):
        rig.sim.step(T0 + 0.4 * i)
        await rig.driver.heartbeat()
    rig.sim.step(T0 + 2.2)
    status = await rig.driver.read()
    assert status.errors == DcError.NONE
    assert status.present_a == pytest.approx(80.0)


async def test_heartbeat_timeout_falls_safe_until_reset(rig: Rig) -> None:
    await start_charging(rig)
    rig.sim.step(T0 + 0.4)
    assert rig.sim.present_a == pytest.approx(80.0)
    rig.sim.step(T0 + 0.6)  # 0.6 s since the last heartbeat > 0.5 s
    status = await rig.driver.read()
    assert DcError.HOST_TIMEOUT in status.errors
    assert "host_timeout" in fault_codes(status)
    assert status.estop is EstopReason.NONE  # documented choice: an error bit, not an emergency stop
    assert not status.charging_allowed  # the controller dropped the host's allow
    assert status.present_a < 80.0  # ramping down, not cut
    rig.sim.step(T0 + 3.0)
    assert (await rig.driver.read()).present_a == 0.0
    # the host comes back: heartbeat and allow are not enough, the fault is latched
    await rig.driver.heartbeat()
    await rig.driver.allow_charging(True)
    rig.sim.step(T0 + 3.1)
    status = await rig.driver.read()
    assert DcError.HOST_TIMEOUT in status.errors
    assert status.present_a == 0.0
    await rig.driver.reset_faults()
    rig.sim.step(T0 + 3.2)
    status = await rig.driver.read()
    assert status.errors == DcError.NONE
    assert status.present_a == pytest.approx(80.0)


async def test_heartbeat_timeout_with_real_time(rig: Rig) -> None:
    await start_charging(rig, now=time.monotonic())
    await asyncio.sleep(HEARTBEAT_TIMEOUT_S + 0.2)
    rig.sim.step(time.monotonic())
    assert DcError.HOST_TIMEOUT in (await rig.driver.read()).errors


# ---------------------------------------------------------------------------------------------- e-stop, IMD


async def test_emergency_shutdown_latches_and_resets(rig: Rig) -> None:
    await start_charging(rig)
    assert rig.sim.present_a > 0
    await rig.driver.emergency_shutdown()
    assert rig.sim.present_a == 0.0  # cut at once, no ramp
    status = await rig.driver.read()
    assert status.estop is EstopReason.HOST_COMMAND
    assert not status.charging_allowed
    assert rig.sim.emergency
    assert not rig.driver.setpoints.allowed  # the driver will not re-apply "allowed" by itself
    # a host writing 0 or allowing again does not clear the latch
    await rig.bus.write("test", rig.sim.device_id, reg.COMMANDS["emergency_shutdown"].address, [0])
    await rig.driver.heartbeat()
    await rig.driver.allow_charging(True)
    rig.sim.step(T0 + 0.1)
    status = await rig.driver.read()
    assert rig.sim.emergency
    assert status.estop is EstopReason.HOST_COMMAND
    assert status.present_a == 0.0
    await rig.driver.reset_faults()
    assert not rig.sim.emergency
    assert rig.sim.bank.get_holding(reg.COMMANDS["fault_reset"].address, 1) == [0]
    rig.sim.step(T0 + 0.2)
    status = await rig.driver.read()
    assert status.estop is EstopReason.NONE
    assert status.present_a == pytest.approx(80.0)


async def test_isolation_fault_shows_and_clears(rig: Rig) -> None:
    await start_charging(rig)
    rig.sim.inject_isolation_fault(True)
    rig.sim.step(T0 + 0.1)
    status = await rig.driver.read()
    assert status.isolation is Isolation.FAULT
    assert DcError.ISOLATION in status.errors
    assert status.estop is EstopReason.ISOLATION
    assert fault_codes(status) == ["isolation_fault"]
    assert status.present_a == 0.0
    rig.sim.inject_isolation_fault(False)
    await rig.driver.heartbeat()
    rig.sim.step(T0 + 0.2)
    status = await rig.driver.read()
    assert status.isolation is Isolation.VALID
    assert status.errors == DcError.NONE
    assert status.present_a == pytest.approx(80.0)


# ---------------------------------------------------------------------------------------------- comms faults


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("silent", DeviceTimeout),
        ("garbage", CommunicationFault),
        ("crc_error", CommunicationFault),
        ("exception", CommunicationFault),
        ("wrong_function", FrameError),
        ("wrong_unit", FrameError),
        ("wrong_transaction", FrameError),
        ("truncate", FrameError),
        ("close_mid_frame", FrameError),
    ],
)
async def test_comms_fault_then_recovery_reapplies_setpoints(
    rig: Rig, fault: str, error: type[CommunicationFault]
) -> None:
    if fault == "wrong_transaction" and rig.url.startswith("/"):
        pytest.skip("RTU frames carry no transaction id")
    await rig.driver.set_limits(50.0, 20_000.0)
    await rig.driver.allow_charging(True)
    first = await rig.driver.read()
    if fault == "exception":
        rig.server.faults.exception_code = 4
    else:
        setattr(rig.server.faults, fault, True)
    with pytest.raises(error) as info:
        await rig.driver.read()
    if fault == "exception":
        assert not isinstance(info.value, DeviceTimeout)
        assert "exception 4" in str(info.value)
    kind = {"silent": "timeout", "exception": "exception_code", "truncate": "truncated",
            "close_mid_frame": "truncated"}.get(fault, fault)
    if isinstance(info.value, FrameError):
        assert info.value.kind == kind or fault in ("garbage", "crc_error")
    if fault not in ("garbage", "crc_error"):
        assert rig.driver.error_counts()[kind] == 1
    stale = rig.driver.last_reading()
    assert stale is not None and stale.stale
    assert stale.read_monotonic == first.read_monotonic  # old values keep their old time
    # a command during the outage fails, but the driver keeps it
    with pytest.raises(CommunicationFault):
        await rig.driver.set_limits(32.0, 11_000.0)
    assert rig.driver.resync_pending
    rig.sim.reboot()  # the controller power-cycled meanwhile: its setpoints are the defaults again
    assert not rig.sim.charging_allowed
    rig.server.faults = Faults()
    status = await recover(rig.driver)
    assert not status.stale
    assert rig.driver.last_reading() == status
    assert not rig.driver.resync_pending
    assert rig.sim.charging_allowed
    assert rig.sim.limit_a == pytest.approx(32.0)
    assert rig.sim.limit_w == pytest.approx(11_000.0)
    assert rig.sim.heartbeat_timeout_s == pytest.approx(HEARTBEAT_TIMEOUT_S)
    assert status.charging_allowed and status.limit_a == pytest.approx(32.0)  # the read shows them applied


async def test_status_with_a_lying_byte_count_is_refused_and_counted(rig: Rig) -> None:
    first = await rig.driver.read()
    rig.server.faults.byte_count = True  # reads only: a write answer carries no byte count
    with pytest.raises(FrameError) as info:
        await rig.driver.read()
    assert info.value.kind == "byte_count" and rig.driver.error_counts()["byte_count"] == 1
    stale = rig.driver.last_reading()
    assert stale is not None and stale.stale and stale.read_monotonic == first.read_monotonic
    rig.server.faults = Faults()
    assert not (await recover(rig.driver)).stale


async def test_controller_reboot_during_outage_gets_setpoints_back(rig: Rig) -> None:
    await rig.driver.set_limits(50.0, 20_000.0)
    await rig.driver.allow_charging(True)
    rig.server.faults.silent = True
    with pytest.raises(DeviceTimeout):
        await rig.driver.read()
    rig.sim.reboot()  # no command was attempted during the outage: only the fault says "re-apply"
    rig.server.faults.silent = False
    status = await recover(rig.driver)
    assert status.charging_allowed and rig.sim.charging_allowed
    assert rig.sim.limit_a == pytest.approx(50.0)
    assert rig.sim.heartbeat_timeout_s == pytest.approx(HEARTBEAT_TIMEOUT_S)


async def test_emergency_during_outage_is_sent_when_device_is_back(rig: Rig) -> None:
    await start_charging(rig)
    rig.server.faults.silent = True
    with pytest.raises(DeviceTimeout):
        await rig.driver.emergency_shutdown()
    assert not rig.sim.emergency
    rig.server.faults.silent = False
    status = await recover(rig.driver)
    assert rig.sim.emergency
    assert status.estop is EstopReason.HOST_COMMAND
    assert not status.charging_allowed


async def test_wrong_device_is_refused_before_any_write(rig: Rig) -> None:
    allow = reg.COMMANDS["allow_charging"].address
    rig.sim.bank.set_holding(allow, [1])
    rig.sim.bank.set_input(reg.STATUS["magic"].address, [0x1234])
    with pytest.raises(ConfigError, match=r"not an evse-agent DC controller.*0x1234"):
        await rig.driver.read()
    with pytest.raises(ConfigError):
        await rig.driver.allow_charging(False)
    assert rig.sim.bank.get_holding(allow, 1) == [1]  # nothing written to a device we do not know
    rig.sim.bank.set_input(reg.STATUS["magic"].address, [reg.MAGIC])
    rig.sim.bank.set_input(reg.STATUS["map_version"].address, [9])
    with pytest.raises(UnsupportedDriver, match="version 9"):
        await rig.driver.read()
    assert rig.sim.bank.get_holding(allow, 1) == [1]


# ---------------------------------------------------------------------------------------------- config


async def test_from_config_builds_a_working_driver(rig: Rig) -> None:
    pool = BusPool()
    options = {"driver": "modbus_dc", "url": rig.url, "device_id": rig.sim.device_id, "timeout_s": TIMEOUT_S,
               "heartbeat_timeout_s": 2.5, "baudrate": 19200, "parity": "N", "stopbits": 1}
    driver = ModbusDcController.from_config("dc-a", options, pool)
    try:
        assert driver.heartbeat_timeout_s == 2.5
        status = await driver.read()
        assert status.protocol is ChargeProtocol.CCS
        assert rig.sim.heartbeat_timeout_s == pytest.approx(2.5)
    finally:
        await driver.close()
        await pool.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"url": "tcp://127.0.0.1:502", "device_id": 1, "slave": 2}, r"unknown option.*slave.*allowed: dri"),
        ({"device_id": 1}, "url is required"),
        ({"url": "tcp://127.0.0.1:502"}, "device_id is required"),
        ({"url": "tcp://127.0.0.1:502", "device_id": 300}, "device_id must be"),
        ({"url": "tcp://127.0.0.1:502", "device_id": 1, "driver": "eastron_sdm630"}, "driver must be"),
        ({"url": "/dev/ttyUSB0", "device_id": 1, "parity": "X"}, "parity"),
        ({"url": "tcp://127.0.0.1:502", "device_id": 1, "heartbeat_timeout_s": 0}, "heartbeat_timeout_s"),
        ({"url": "localhost", "device_id": 1}, "tcp://host:port"),
    ],
)
def test_from_config_refuses_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        ModbusDcController.from_config("dc-a", options, BusPool())
    assert info.value.device == "dc-a"


def test_unknown_option_lists_every_allowed_key() -> None:
    with pytest.raises(ConfigError) as info:
        options = {"url": "tcp://127.0.0.1:1", "device_id": 1, "x": 1}
        ModbusDcController.from_config("dc-a", options, BusPool())
    for key in ALLOWED_OPTIONS:
        assert key in str(info.value)


# ---------------------------------------------------------------------------------------------- the map


def test_fault_codes_cover_every_bit_in_order() -> None:
    status = reg.decode_status(reg.encode_status(SimDcController().status()))
    every = DcStatus(**{**{f.name: getattr(status, f.name) for f in fields(DcStatus)},
                        "errors": DcError(sum(DcError))})
    assert fault_codes(every) == [
        "isolation_fault", "over_voltage", "over_current", "over_temperature", "ev_communication", "ev_error",
        "power_module", "contactor", "host_timeout", "pilot_fault", "internal",
    ]
    assert fault_codes(status) == []


def test_status_block_is_contiguous_and_complete() -> None:
    covered: list[int] = []
    for f in reg.STATUS_FIELDS:
        covered += range(f.address, f.address + f.width)
    assert covered == list(range(reg.STATUS_BASE, reg.STATUS_BASE + reg.STATUS_COUNT))
    status_names = {f.name for f in fields(DcStatus)} - {"read_monotonic", "read_wall", "stale", "detail"}
    assert status_names <= set(reg.STATUS)
    assert {f.name for f in fields(DcVehicleDetail)} <= set(reg.STATUS)
    v1 = [a for f in reg.fields_of(1) for a in range(f.address, f.address + f.width)]
    assert v1 == list(range(reg.STATUS_BASE, reg.STATUS_BASE + reg.STATUS_COUNT_V1))  # v2 only appends
    covered = []
    for f in reg.COMMAND_FIELDS:
        covered += range(f.address, f.address + f.width)
    assert covered == list(range(reg.COMMAND_BASE, reg.COMMAND_BASE + reg.COMMAND_COUNT))
    assert len(reg.default_commands()) == reg.COMMAND_COUNT


@pytest.mark.parametrize(
    ("name", "value", "raw"),
    [
        ("temperature_c", -12.5, [0xFF83]),
        ("temperature_c", None, [0x7FFF]),
        ("soc_pct", None, [0xFFFF]),
        ("limit_w", 150_000.0, [0x0002, 0x49F0]),
        ("present_v", 999.9, [9999]),
    ],
)
def test_encode_decode(name: str, value: float | None, raw: list[int]) -> None:
    field = reg.STATUS[name]
    assert reg.encode_value(field, value) == raw
    assert reg.decode_value(field, raw) == (None if value is None else pytest.approx(value))


def test_encode_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="present_a"):
        reg.encode_value(reg.STATUS["present_a"], -1.0)
    with pytest.raises(ValueError, match="soc_pct"):
        reg.encode_value(reg.STATUS["soc_pct"], 6553.5)  # would collide with the not-available marker


def test_document_matches_register_map() -> None:
    """docs/dc-controller.md is what firmware engineers implement: every row must match registers.py."""
    rows: dict[tuple[str, int], tuple[str, str, str]] = {}
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line
        m = ROW.match(line)
        if m:
            table = "input" if "input" in section.lower() else "holding"
            rows[(table, int(m.group(1), 16))] = (m.group(2), m.group(3).lower(), m.group(4).strip())
    for table, group in (("input", reg.STATUS_FIELDS), ("holding", reg.COMMAND_FIELDS)):
        for f in group:
            assert (table, f.address) in rows, f"{f.name} @0x{f.address:04X} missing from {DOC.name}"
            name, typ, scale = rows[(table, f.address)]
            assert name == f.name and typ == f.type.value, f.name
            if f.scale != 1.0:
                assert scale.startswith(f"{f.scale:g} {f.unit}"), (f.name, scale)
    assert len(rows) == len(reg.STATUS_FIELDS) + len(reg.COMMAND_FIELDS)
