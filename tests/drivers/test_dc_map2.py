"""Map version 2 of the DC controller (CHAdeMO and CCS detail) and version 1 beside it: the real driver against
SimDcController over real Modbus TCP and RTU."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

import pytest

from drivers.base import (
    CcsPhase,
    ChademoFault,
    ChademoStatus,
    ChargeProtocol,
    DcError,
    DcVehicleDetail,
    EvErrorCode,
)
from drivers.dc import registers as reg
from drivers.dc.modbus_dc import ModbusDcController, fault_codes, fault_details
from drivers.errors import FrameError, HardwareFault
from drivers.transport import ModbusBus, parse_endpoint
from simulator.devices.dc_controller import SimDcController
from simulator.devices.modbus_server import Faults, ModbusDeviceServer

TIMEOUT_S = 0.3


@dataclass
class Rig:
    """A simulated controller of one map version and the real driver talking to it."""

    sim: SimDcController
    server: ModbusDeviceServer
    bus: ModbusBus
    driver: ModbusDcController


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture(params=["tcp", "rtu"])
async def make_rig(request: pytest.FixtureRequest) -> AsyncIterator[RigFactory]:
    """Build rigs over the parametrised transport and tear them all down."""
    rigs: list[Rig] = []

    async def factory(protocol: ChargeProtocol = ChargeProtocol.CCS, map_version: int = 2) -> Rig:
        sim = SimDcController(5, protocol, map_version=map_version)
        server = ModbusDeviceServer({5: sim.bank}, Faults())
        url = f"tcp://127.0.0.1:{await server.start_tcp()}" if request.param == "tcp" else await server.start_rtu()
        bus = ModbusBus(parse_endpoint(url), timeout_s=TIMEOUT_S)
        rig = Rig(sim, server, bus, ModbusDcController("dc1", bus, 5, heartbeat_timeout_s=5.0))
        rigs.append(rig)
        return rig

    yield factory
    for rig in rigs:
        await rig.driver.close()
        await rig.bus.close()
        await rig.server.stop()


CHADEMO_DETAIL = DcVehicleDetail(
    chademo_protocol=2,
    chademo_status=ChademoStatus.CHARGING_ENABLED | ChademoStatus.STOP_REQUEST,
    chademo_faults=ChademoFault.NONE,
    max_charging_time_s=5400,
    estimated_charging_time_s=1860,
    battery_capacity_kwh=62.1,
)
CCS_DETAIL = DcVehicleDetail(
    ccs_phase=CcsPhase.CURRENT_DEMAND,
    ev_error_code=EvErrorCode.NO_DATA,
    full_soc_pct=95.5,
    bulk_soc_pct=80.0,
    ev_max_power_w=350_000.0,
)


@pytest.mark.parametrize(("protocol", "detail"), [(ChargeProtocol.CHADEMO, CHADEMO_DETAIL),
                                                  (ChargeProtocol.CCS, CCS_DETAIL)])
async def test_version_2_reads_every_detail_field(make_rig: RigFactory, protocol: ChargeProtocol,
                                                  detail: DcVehicleDetail) -> None:
    rig = await make_rig(protocol)
    rig.sim.detail = detail
    rig.sim.refresh()
    status = await rig.driver.read()
    assert status.map_version == 2 and rig.driver.map_version == 2
    assert status.detail is not None
    for f in fields(DcVehicleDetail):
        got, want = getattr(status.detail, f.name), getattr(detail, f.name)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=0.051), f.name
        else:
            assert got == want, f.name
    assert status.detail.charging_enabled is (protocol is ChargeProtocol.CHADEMO)
    assert fault_codes(status) == []


async def test_version_2_not_available_markers(make_rig: RigFactory) -> None:
    rig = await make_rig()
    status = await rig.driver.read()  # nothing plugged: every marker
    assert status.detail == DcVehicleDetail()


async def test_version_1_reads_as_before_without_detail(make_rig: RigFactory) -> None:
    rig = await make_rig(ChargeProtocol.CHADEMO, map_version=1)
    rig.sim.detail = CHADEMO_DETAIL  # a version 1 controller has nowhere to put it
    rig.sim.set_error(DcError.EV_ERROR, True)
    status = await rig.driver.read()
    assert (status.map_version, status.detail, rig.driver.map_version) == (1, None, 1)
    assert fault_codes(status) == ["ev_error"]  # version 1 can say only that the EV has an error
    assert reg.STATUS["chademo_protocol"].address not in rig.sim.bank.input


async def test_firmware_going_back_to_version_1_and_forward_again(make_rig: RigFactory) -> None:
    rig = await make_rig()
    assert (await rig.driver.read()).map_version == 2
    rig.sim.set_map_version(1)
    with pytest.raises(FrameError) as info:  # the long read gets exception 2 once ...
        await rig.driver.read()
    assert info.value.exception_code == 2
    assert rig.driver.map_version is None
    status = await rig.driver.read()  # ... then the controller is identified again
    assert (status.map_version, status.detail) == (1, None)
    rig.sim.set_map_version(2)
    rig.sim.detail = CCS_DETAIL
    rig.sim.refresh()
    status = await rig.driver.read()  # the short read sees version 2 and reads the whole block
    assert status.map_version == 2 and status.detail is not None
    assert status.detail.ev_max_power_w == pytest.approx(350_000.0)


# every vehicle fault: its flag or code in the registers -> its stable code, and the name of the flag
VEHICLE_FAULTS: list[tuple[ChargeProtocol, DcVehicleDetail, str, str]] = [
    *[(ChargeProtocol.CHADEMO, DcVehicleDetail(chademo_faults=bit), code, name)
      for bit, code, name in reg.CHADEMO_FAULT_CODES],
    (ChargeProtocol.CHADEMO, DcVehicleDetail(chademo_status=ChademoStatus.CHARGING_SYSTEM_FAULT),
     *reg.CHADEMO_SYSTEM_FAULT_CODE),
    *[(ChargeProtocol.CCS, DcVehicleDetail(ev_error_code=err), code, name)
      for err, (code, name) in reg.EV_ERROR_CODES.items()],
]


@pytest.mark.parametrize(("protocol", "detail", "code", "name"), VEHICLE_FAULTS,
                         ids=[f"{c}-{n}" for _, _, c, n in VEHICLE_FAULTS])
async def test_each_vehicle_fault_is_named(make_rig: RigFactory, protocol: ChargeProtocol,
                                           detail: DcVehicleDetail, code: str, name: str) -> None:
    rig = await make_rig(protocol)
    rig.sim.detail = detail
    rig.sim.set_error(DcError.EV_ERROR | DcError.OVER_TEMPERATURE, True)
    status = await rig.driver.read()
    # the named vehicle fault replaces the generic ev_error bit, in its place among the error bits
    assert fault_details(status) == [("over_temperature", "over_temperature"), (code, name)]
    rig.sim.set_error(DcError.EV_ERROR | DcError.OVER_TEMPERATURE, False)
    assert fault_codes(await rig.driver.read()) == [code]  # shown even without the ev_error bit


def test_every_code_is_unique_per_flag() -> None:
    codes = [code for _, _, code, _ in VEHICLE_FAULTS]
    reserved = [c for c in codes if c == "ccs_reserved_error"]
    assert len(set(codes)) == len(codes) - len(reserved) + 1
    assert all(c.startswith(("chademo_", "ccs_")) for c in codes)


# garbage in a version 2 register: (field, raw registers)
GARBAGE: list[tuple[str, list[int]]] = [
    ("chademo_protocol", [256]),
    ("chademo_status", [0x0020]),  # undefined status bit
    ("chademo_faults", [0x0040]),  # undefined fault bit
    ("max_charging_time_s", [15301]),
    ("estimated_charging_time_s", [40000]),
    ("battery_capacity_kwh", [10001]),  # 1000.1 kWh
    ("ccs_phase", [10]),
    ("ev_error_code", [12]),
    ("full_soc_pct", [1001]),
    ("bulk_soc_pct", [0xFFFE]),
    ("ev_max_power_w", [0x004C, 0x4B41]),  # 5 000 001 W
]


@pytest.mark.parametrize(("name", "raw"), GARBAGE, ids=[g[0] for g in GARBAGE])
async def test_garbage_in_a_detail_register_faults_the_device(make_rig: RigFactory, name: str,
                                                              raw: list[int]) -> None:
    rig = await make_rig()
    await rig.driver.read()
    before = rig.driver.error_counts()["implausible"]
    rig.sim.bank.set_input(reg.STATUS[name].address, raw)
    with pytest.raises(HardwareFault) as info:
        await rig.driver.read()
    assert info.value.code == "invalid_register"
    assert name in str(info.value)
    assert rig.driver.error_counts()["implausible"] == before + 1


@pytest.mark.parametrize(("name", "raw"), [("chademo_protocol", [255]), ("max_charging_time_s", [15300]),
                                           ("battery_capacity_kwh", [10000]), ("full_soc_pct", [1000]),
                                           ("ev_max_power_w", [0x004C, 0x4B40])])
def test_top_of_each_range_is_accepted(name: str, raw: list[int]) -> None:
    block = reg.encode_status(SimDcController().status())
    field = reg.STATUS[name]
    block[field.address:field.address + field.width] = raw
    detail = reg.decode_status(block).detail
    assert detail is not None and getattr(detail, name) is not None


def test_version_1_block_decodes_and_a_short_version_2_block_is_refused() -> None:
    v1 = reg.encode_status(SimDcController(map_version=1).status())
    assert len(v1) == reg.STATUS_COUNT_V1
    assert reg.decode_status(v1).detail is None
    v2 = reg.encode_status(SimDcController().status())
    assert len(v2) == reg.STATUS_COUNT_V2
    with pytest.raises(reg.DecodeError, match="expected 36"):
        reg.decode_status(v2[:reg.STATUS_COUNT_V1])


def _set_fields(detail: DcVehicleDetail) -> dict[str, Any]:
    """The fields of a detail that differ from the defaults."""
    blank = DcVehicleDetail()
    return {f.name: getattr(detail, f.name) for f in fields(DcVehicleDetail)
            if getattr(detail, f.name) != getattr(blank, f.name)}


def test_encode_decode_round_trip_of_the_detail() -> None:
    sim = SimDcController(protocol=ChargeProtocol.CHADEMO)
    sim.detail = DcVehicleDetail(**_set_fields(CHADEMO_DETAIL), **_set_fields(CCS_DETAIL))
    detail = reg.decode_status(reg.encode_status(sim.status())).detail
    assert detail is not None
    assert detail.ccs_phase is CcsPhase.CURRENT_DEMAND and detail.chademo_protocol == 2
    assert detail.battery_capacity_kwh == pytest.approx(62.1)


@pytest.mark.parametrize("version", [1, 2])
def test_random_blocks_decode_or_are_refused_never_crash(version: int) -> None:
    import random

    rnd = random.Random(version)
    for _ in range(3000):
        block = [rnd.choice((0, 1, 2, 5, 11, 255, 1000, 0x7FFF, 0xFFFF, rnd.randrange(0x10000)))
                 for _ in range(reg.status_count(version))]
        block[0:2] = [reg.MAGIC, version]
        try:
            status = reg.decode_status(block)
        except reg.DecodeError:
            continue
        assert status.map_version == version and (status.detail is None) is (version == 1)
