"""The real ModbusMeter against SimMeter over Modbus TCP and RTU on a pty, for every model and fault.

Adding a meter model: one file in drivers/meters/models/ plus its line in MODELS below.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from drivers import registry, transport
from drivers.base import MeterReading
from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout, FrameError, ImplausibleReading
from drivers.meters import codec, plausibility
from drivers.meters.modbus_meter import ModbusMeter
from drivers.transport import BusPool
from simulator.devices.meter import BACKWARDS_WH, SimMeter
from simulator.devices.modbus_server import Faults, ModbusDeviceServer

TIMEOUT_S = 0.2
RECOVERY_DEADLINE_S = 10.0  # generous: a shared 2-core machine; the loop exits at the first good read


def _words(regs: Sequence[int]) -> bytes:
    return struct.pack(f">{len(regs)}H", *regs)


# model -> (import energy PDU address, function code, registers, hand decoder to Wh), from meters.md
MODELS: dict[str, tuple[int, int, int, Callable[[Sequence[int]], float]]] = {
    "eastron_sdm630": (0x0048, 4, 2, lambda r: struct.unpack(">f", _words(r))[0] * 1000),
    "eastron_sdm72d_m_v2": (0x0048, 4, 2, lambda r: struct.unpack(">f", _words(r))[0] * 1000),
    "eastron_sdm120": (0x0048, 4, 2, lambda r: struct.unpack(">f", _words(r))[0] * 1000),
    "abb_b23": (0x5000, 3, 4, lambda r: struct.unpack(">Q", _words(r))[0] * 10.0),
    "carlo_gavazzi_em340": (0x0034, 4, 2, lambda r: struct.unpack(">i", _words(r[::-1]))[0] * 100.0),
    "acrel_djsf1352_rn": (0x000C, 3, 2, lambda r: struct.unpack(">I", _words(r))[0] * 0.1),  # DC, 0.1 Wh
}
KINDS = ["tcp", "rtu"]


@dataclass
class Rig:
    sim: SimMeter
    server: ModbusDeviceServer
    meter: ModbusMeter
    url: str
    kind: str


@pytest.fixture(autouse=True)
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorten the bus's reconnect backoff so fault-recovery tests stay quick; the logic is unchanged."""
    monkeypatch.setattr(transport, "RECONNECT_MIN_S", 0.05)


async def start(server: ModbusDeviceServer, kind: str) -> str:
    if kind == "tcp":
        return f"tcp://127.0.0.1:{await server.start_tcp()}"
    return await server.start_rtu()


@pytest.fixture
async def pool() -> AsyncIterator[BusPool]:
    bus_pool = BusPool()
    yield bus_pool
    await bus_pool.close()


@pytest.fixture(params=list(MODELS))
def model_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=KINDS)
async def rig(model_name: str, request: pytest.FixtureRequest, pool: BusPool) -> AsyncIterator[Rig]:
    sim = SimMeter(model_name, device_id=1)
    server = ModbusDeviceServer({1: sim.bank})
    url = await start(server, request.param)
    meter = ModbusMeter.from_config(
        "meter1", {"driver": model_name, "url": url, "device_id": 1, "timeout_s": TIMEOUT_S}, pool
    )
    yield Rig(sim, server, meter, url, request.param)
    await meter.close()
    await server.stop()


def tolerance(model: codec.MeterModel, field: str) -> float:
    """One count of the register, plus float32 rounding at about 2e7 Wh."""
    spec = model.value(field)
    assert spec is not None
    return abs(spec.scale) + 20.0


def assert_matches(reading: MeterReading, sim: SimMeter) -> None:
    model = sim.model
    phases = model.phases
    import_tol = tolerance(model, "energy_import")
    assert reading.energy_import_wh == pytest.approx(sim.energy_import_wh, abs=import_tol)
    if model.value("energy_export") is not None:
        export_tol = tolerance(model, "energy_export")
        assert reading.energy_export_wh == pytest.approx(sim.energy_export_wh, abs=export_tol)
    else:
        assert reading.energy_export_wh is None
    assert reading.voltage_v == pytest.approx(sim.voltage_v[:phases], abs=0.1)
    assert reading.current_a == pytest.approx(sim.current_a[:phases], abs=0.01)
    if model.capabilities.per_phase_power:
        assert reading.power_phase_w == pytest.approx(sim.power_w[:phases], abs=0.1)
    else:
        assert reading.power_phase_w == ()
    assert reading.power_w == pytest.approx(sum(sim.power_w[:phases]), abs=0.1 * phases)
    if model.value("frequency") is not None:
        assert reading.frequency_hz == pytest.approx(sim.frequency_hz, abs=0.1)
    else:
        assert reading.frequency_hz is None  # a DC meter has none
    assert not reading.stale


async def read_until_ok(meter: ModbusMeter) -> MeterReading:
    """Poll like the agent does until the meter answers again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_DEADLINE_S
    while True:
        try:
            return await meter.read()
        except CommunicationFault:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------- reading


async def test_reads_state_in_si_units(rig: Rig) -> None:
    rig.sim.frequency_hz = 49.9
    rig.sim.voltage_v = [229.5, 231.0, 232.5]
    rig.sim.add_energy([1000.0, 2000.0, 3000.0], 3600.0)
    rig.sim.energy_export_wh = 4500.0
    rig.sim.update()
    assert rig.meter.last_reading() is None
    reading = await rig.meter.read()
    assert_matches(reading, rig.sim)
    gained_wh = 6000.0 if rig.sim.model.phases == 3 else 1000.0  # one hour at the phases' power
    assert reading.energy_import_wh == pytest.approx(12_345_600.0 + gained_wh, abs=101.0)
    assert reading.read_monotonic > 0 and reading.read_wall > 0
    assert rig.meter.last_reading() == reading
    assert rig.meter.capabilities.phases == rig.sim.model.phases


async def test_reads_in_planned_blocks(rig: Rig) -> None:
    bus = rig.meter.bus
    await rig.meter.read()  # the first read polls twice: two agreeing readings set the baseline
    assert bus.requests == 2 * len(rig.sim.model.blocks)
    before = bus.requests
    await rig.meter.read()
    assert bus.requests - before == len(rig.sim.model.blocks) <= 2


FAULTS: dict[str, tuple[dict[str, Any], type[Exception]]] = {
    "silent": ({"silent": True}, DeviceTimeout),
    "slow": ({"slow_s": TIMEOUT_S * 3}, DeviceTimeout),
    "crc_error": ({"crc_error": True}, CommunicationFault),
    "garbage": ({"garbage": True}, CommunicationFault),
    "exception": ({"exception_code": 4}, CommunicationFault),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_transport_fault_then_recovery(rig: Rig, fault: str) -> None:
    first = await rig.meter.read()
    switches, expected = FAULTS[fault]
    rig.server.faults = Faults(**switches)
    with pytest.raises(expected) as info:
        await rig.meter.read()
    if fault == "exception":
        assert isinstance(info.value, FrameError) and info.value.exception_code == 4
        assert "exception 4" in str(info.value)
    kinds = {"silent": "timeout", "slow": "timeout", "exception": "exception_code",
             "crc_error": "crc" if rig.kind == "rtu" else "truncated"}
    if fault in kinds:
        assert rig.meter.error_counts()[kinds[fault]] == 1
    stale = rig.meter.last_reading()
    assert stale is not None and stale.stale
    assert (stale.read_monotonic, stale.energy_import_wh) == (first.read_monotonic, first.energy_import_wh)
    rig.server.faults = Faults()
    if fault == "slow":
        await asyncio.sleep(TIMEOUT_S * 3)  # the late answer lands and is discarded before the next poll
    rig.sim.add_energy([500.0, 500.0, 500.0], 60.0)
    again = await read_until_ok(rig.meter)
    assert_matches(again, rig.sim)
    assert again.read_monotonic > first.read_monotonic
    assert rig.meter.last_reading() == again


async def test_stuck_meter_reads_fresh_but_unchanged(rig: Rig) -> None:
    """A stuck meter still answers: the values freeze while the read time advances. Only plausibility
    checks above the driver (power drawn but energy flat) can tell; the driver cannot."""
    first = await rig.meter.read()
    rig.sim.stuck = True
    rig.sim.add_energy([3000.0, 3000.0, 3000.0], 10.0)
    second = await rig.meter.read()
    assert second.read_monotonic > first.read_monotonic and not second.stale
    assert (second.energy_import_wh, second.power_w) == (first.energy_import_wh, first.power_w)
    rig.sim.stuck = False
    rig.sim.update()
    assert_matches(await rig.meter.read(), rig.sim)


async def test_energy_backwards_is_refused_until_it_catches_up(rig: Rig) -> None:
    first = await rig.meter.read()
    rig.sim.backwards = True
    rig.sim.update()
    for _ in range(2):  # refused while the register stays below the last accepted value
        with pytest.raises(ImplausibleReading) as info:
            await rig.meter.read()
        assert info.value.reason == "energy_backwards"
        last = rig.meter.last_reading()
        assert last is not None and last.stale and last.energy_import_wh == first.energy_import_wh
    assert rig.meter.backwards_for_s() > 0
    assert rig.meter.backwards_energy_wh == pytest.approx(first.energy_import_wh - BACKWARDS_WH, abs=101.0)
    rig.sim.add_energy([100.0, 0.0, 0.0], 36.0)  # rising, but still below the old value
    with pytest.raises(ImplausibleReading):
        await rig.meter.read()
    rig.sim.backwards = False  # the register is true again (a few Wh above the old value)
    rig.sim.update()
    reading = await rig.meter.read()
    assert reading.energy_import_wh >= first.energy_import_wh and not reading.stale
    assert rig.meter.backwards_for_s() == 0 and rig.meter.backwards_energy_wh is None
    assert rig.meter.implausible_counts() == {"energy_backwards": 3}
    assert rig.meter.error_counts()["implausible"] == 3


async def test_one_absurd_frame_does_not_poison_the_baseline(rig: Rig) -> None:
    first = await rig.meter.read()
    rig.sim.corrupt = {"energy_import": 1e30}
    rig.sim.update()
    with pytest.raises(ImplausibleReading) as info:
        await rig.meter.read()
    # An integer register clamps 1e30 to its largest value; below the energy range (a u32 of 0.1 Wh holds
    # 429 MWh) that is refused as a jump instead
    spec = rig.sim.model.value("energy_import")
    assert spec is not None
    vtype = codec.TYPES[spec.type]
    register_max_wh = math.inf if vtype.is_float else (2.0 ** (16 * vtype.registers)) * abs(spec.scale)
    expected = "energy_range" if register_max_wh > plausibility.ENERGY_MAX_WH else "energy_jump"
    assert info.value.reason == expected and info.value.registers
    rig.sim.corrupt = {}
    rig.sim.add_energy([1000.0, 1000.0, 1000.0], 1.0)
    reading = await rig.meter.read()
    assert reading.energy_import_wh >= first.energy_import_wh


async def test_energy_faster_than_the_connector_is_refused(rig: Rig) -> None:
    await rig.meter.read()
    rig.meter.configure_limits(nominal_voltage_v=230.0, max_current_a=16.0)
    rig.sim.add_energy([3680.0, 3680.0, 3680.0], 3600.0)  # an hour's energy within a second
    with pytest.raises(ImplausibleReading) as info:
        await rig.meter.read()
    assert info.value.reason == "energy_jump"


async def test_accept_baseline_accepts_a_replaced_meter(rig: Rig) -> None:
    await rig.meter.read()
    rig.sim.energy_import_wh = 1000.0
    rig.sim.update()
    with pytest.raises(ImplausibleReading):
        await rig.meter.read()
    rig.meter.accept_baseline()
    assert (await rig.meter.read()).energy_import_wh == pytest.approx(1000.0, abs=100.0)


@pytest.mark.parametrize("model_name", ["eastron_sdm630", "abb_b23"])
@pytest.mark.parametrize("rig", ["tcp"], indirect=True)
async def test_not_available_markers(rig: Rig) -> None:
    rig.sim.na_fields = {"voltage_l2", "frequency"}
    rig.sim.update()
    reading = await rig.meter.read()
    assert reading.voltage_v[1] is None and reading.frequency_hz is None
    assert reading.voltage_v[0] == pytest.approx(230.0, abs=0.1)
    rig.sim.na_fields = {"energy_import"}
    rig.sim.update()
    with pytest.raises(ImplausibleReading, match="not-available"):
        await rig.meter.read()


# ---------------------------------------------------------------- plain clients, no project code


async def test_plain_pymodbus_client_reads_sdm630_voltage() -> None:
    sim = SimMeter("eastron_sdm630")
    server = ModbusDeviceServer({1: sim.bank})
    port = await server.start_tcp()
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
    try:
        assert await client.connect()
        rr = await client.read_input_registers(0, count=2, device_id=1)
        volts = struct.unpack(">f", struct.pack(">HH", *rr.registers))[0]
        assert volts == pytest.approx(230.0)
    finally:
        client.close()
        await server.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_energy_register_decodes_by_hand(model_name: str, kind: str) -> None:
    address, function, count, by_hand = MODELS[model_name]
    sim = SimMeter(model_name)
    sim.energy_import_wh = 23_456_700.0  # 23456.7 kWh
    sim.update()
    server = ModbusDeviceServer({1: sim.bank})
    url = await start(server, kind)
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if kind == "tcp":
        client = AsyncModbusTcpClient("127.0.0.1", port=int(url.rsplit(":", 1)[1]), timeout=1.0, retries=0)
    else:
        client = AsyncModbusSerialClient(url, framer=FramerType.RTU, timeout=1.0, retries=0)
    try:
        assert await client.connect()
        read = client.read_input_registers if function == 4 else client.read_holding_registers
        rr = await read(address, count=count, device_id=1)
        assert by_hand(rr.registers) == pytest.approx(23_456_700.0, abs=2.0)
    finally:
        client.close()
        await server.stop()


async def test_two_meters_share_one_rtu_line(pool: BusPool) -> None:
    sdm = SimMeter("eastron_sdm630", device_id=1)
    em = SimMeter("carlo_gavazzi_em340", device_id=2)
    em.energy_import_wh = 777_700.0
    em.set_load([10.0, 0.0, 0.0])
    server = ModbusDeviceServer({1: sdm.bank, 2: em.bank})
    path = await server.start_rtu()
    try:
        m1 = ModbusMeter.from_config("m1", {"driver": "eastron_sdm630", "url": path, "device_id": 1}, pool)
        m2 = ModbusMeter.from_config(
            "m2", {"driver": "carlo_gavazzi_em340", "url": path, "device_id": 2}, pool
        )
        assert m1.bus is m2.bus
        r1, r2 = await asyncio.gather(m1.read(), m2.read())
        assert_matches(r1, sdm)
        assert_matches(r2, em)
        assert r2.current_a[0] == pytest.approx(10.0)
    finally:
        await server.stop()


# ---------------------------------------------------------------- config and codec


def test_every_model_file_is_tested_and_registered() -> None:
    assert sorted(MODELS) == codec.model_names()
    for name in MODELS:
        assert registry.resolve(name) is ModbusMeter


def test_from_config_refuses_bad_options(pool: BusPool) -> None:
    with pytest.raises(ConfigError, match="allowed: driver, url, device_id"):
        ModbusMeter.from_config("m", {"driver": "eastron_sdm630", "url": "/dev/ttyX", "speed": 1}, pool)
    with pytest.raises(ConfigError, match="no meter model"):
        ModbusMeter.from_config("m", {"driver": "eastron_sdm999", "url": "/dev/ttyX"}, pool)
    with pytest.raises(ConfigError, match="device_id"):
        ModbusMeter.from_config("m", {"driver": "abb_b23", "url": "/dev/ttyX", "device_id": 0}, pool)
    with pytest.raises(ConfigError, match="'url' is required"):
        ModbusMeter.from_config("m", {"driver": "abb_b23"}, pool)


@pytest.mark.parametrize(
    ("type_name", "value", "order", "registers"),
    [
        ("u16", 0xBEEF, "big", [0xBEEF]),
        ("s16", -2, "big", [0xFFFE]),
        ("u32", 0x12345678, "big", [0x1234, 0x5678]),
        ("u32", 0x12345678, "little", [0x5678, 0x1234]),
        ("s32", -100, "big", [0xFFFF, 0xFF9C]),
        ("int32_lsw", 0x00010002, None, [0x0002, 0x0001]),
        ("u64", 0x0102030405060708, "big", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("s64", -1, "big", [0xFFFF] * 4),
        ("float32", 230.0, "big", [0x4366, 0x0000]),
        ("float32", 230.0, "little", [0x0000, 0x4366]),
    ],
)
def test_codec_encode_decode(type_name: str, value: float, order: str | None, registers: list[int]) -> None:
    assert codec.encode(type_name, value, order) == registers
    assert codec.decode(type_name, registers, order) == value


def test_word_order_is_per_value_not_per_block() -> None:
    """pymodbus's word_order="little" reverses the whole list; the codec swaps within each value."""
    specs = [codec.ValueSpec("voltage_l1", 0, "int32_lsw", "little", 0.1),
             codec.ValueSpec("voltage_l2", 2, "int32_lsw", "little", 0.1)]
    block = codec.plan_blocks(specs)[0]
    registers = specs[0].encode(230.0) + specs[1].encode(231.5)
    assert block.decode(registers) == {"voltage_l1": pytest.approx(230.0), "voltage_l2": pytest.approx(231.5)}


def test_block_planning() -> None:
    def spec(field: str, address: int) -> codec.ValueSpec:
        return codec.ValueSpec(field, address, "float32", "big", 1.0)

    values = [spec("voltage_l1", 0), spec("voltage_l2", 10), spec("frequency", 60),
              spec("energy_import", 300)]
    blocks = codec.plan_blocks(values, max_block=100, max_gap=40)
    assert [(b.address, b.count) for b in blocks] == [(0, 12), (60, 2), (300, 2)]
    blocks = codec.plan_blocks(values, max_block=62, max_gap=48)
    assert [(b.address, b.count) for b in blocks] == [(0, 62), (300, 2)]
    blocks = codec.plan_blocks(values, max_block=61, max_gap=48)
    assert [(b.address, b.count) for b in blocks] == [(0, 12), (60, 2), (300, 2)]
    for name in MODELS:
        model = codec.load_model(name)
        covered = [v for b in model.blocks for v in b.values]
        assert sorted(covered, key=lambda v: v.address) == sorted(model.values, key=lambda v: v.address)
        for b in model.blocks:
            assert b.count <= codec.MAX_BLOCK_REGS
            assert all(b.address <= v.address and v.end <= b.address + b.count for v in b.values)


GOOD = """
model = "{stem}"
function = 4
phases = 1
[capabilities]
export_energy = false
per_phase_power = false
[[values]]
field = "energy_import"
address = 0x48
type = "float32"
scale = 1000
"""


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("function = 4", "function = 5", "function must be 3"),
        ('type = "float32"', 'type = "float16"', "unknown type"),
        ('field = "energy_import"', 'field = "energy"', "unknown field"),
        ("scale = 1000", "scale = 0", "scale"),
        ("scale = 1000", 'scale = 1000\nword_order = "middle"', "word_order"),
        ("scale = 1000", "scale = 1000\nunit = 'kWh'", "unknown keys"),
        ("phases = 1", "phases = 1\nvendor = 'x'", "unknown keys"),
        ("export_energy = false", "export_energy = true", "export_energy disagrees"),
        ("address = 0x48", "address = -1", "address"),
        ('type = "float32"', 'type = "int32_lsw"\nword_order = "big"', "always word_order"),
        ("scale = 1000", "scale = 1000\nna = [0x1FFFFFFFF]", "na must be"),
        ('field = "energy_import"', 'field = "voltage_l2"', "phase beyond"),
        ("phases = 1", "phases = [", "not valid TOML"),
    ],
)
def test_malformed_model_file_names_file_and_problem(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    path = tmp_path / "broken_meter.toml"
    text = GOOD.format(stem="broken_meter")
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=problem) as info:
        codec.load_model_file(path)
    assert str(path) in str(info.value)


def test_good_model_file_loads_and_checks_its_name(tmp_path: Path) -> None:
    path = tmp_path / "tiny_meter.toml"
    path.write_text(GOOD.format(stem="tiny_meter"))
    model = codec.load_model_file(path)
    assert [(b.address, b.count) for b in model.blocks] == [(0x48, 2)]
    path.write_text(GOOD.format(stem="other_name"))
    with pytest.raises(ConfigError, match="must match the file name"):
        codec.load_model_file(path)


def test_a_jump_within_the_connector_maximum_but_beyond_the_measured_power_needs_a_second_reading() -> None:
    from drivers.meters.plausibility import MeterLimits, Plausibility

    check = Plausibility("meter1", MeterLimits(230.0, 3, 32.0))  # 22 kW connector
    base = MeterReading(energy_import_wh=10_000.0, power_w=3000.0, read_monotonic=100.0)
    check.check(base)
    corrupted = MeterReading(energy_import_wh=10_040.0, power_w=3000.0, read_monotonic=100.5)  # +40 Wh at 3 kW
    with pytest.raises(ImplausibleReading) as info:
        check.check(corrupted)
    assert info.value.reason == "energy_unconfirmed" and check.baseline == base
    true = MeterReading(energy_import_wh=10_001.0, power_w=3000.0, read_monotonic=101.0)
    check.check(true)  # the true register follows the baseline, not the corrupted frame
    assert check.baseline == true
    # a real jump (the EV took more than the last power reading said) is confirmed by the next reading
    jumped = MeterReading(energy_import_wh=10_060.0, power_w=3000.0, read_monotonic=101.5)
    with pytest.raises(ImplausibleReading):
        check.check(jumped)
    follows = MeterReading(energy_import_wh=10_062.0, power_w=3000.0, read_monotonic=102.0)
    check.check(follows)
    assert check.baseline == follows
