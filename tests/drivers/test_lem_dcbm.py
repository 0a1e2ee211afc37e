"""The real LemDcbm driver against the simulated LEM DCBM over its HTTP API; OCMF checked with pyocmf, not our code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pyocmf
import pytest

from drivers import registry
from drivers.base import LegalTransaction, MeterReading
from drivers.errors import CommunicationFault, ConfigError, DeviceTimeout, ImplausibleReading
from drivers.http import MAX_BODY_BYTES, HttpFault
from drivers.meters import lem_dcbm, ocmf
from drivers.meters.lem_dcbm import LemDcbm
from simulator.devices.lem_dcbm import SimLemDcbm

TIMEOUT_S = 0.3
RECOVERY_DEADLINE_S = 10.0
TX = LegalTransaction(transaction_id="tx-0001", evse_id="DE*EVS*E0001*1", client_id="04A2B3C4D5E6F7",
                      tariff_id=2, cable_id=0, user_data="")


@dataclass
class Rig:
    sim: SimLemDcbm
    meter: LemDcbm
    url: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = SimLemDcbm()
    url = await sim.start()
    meter = LemDcbm.from_config("dcbm", {"driver": "lem_dcbm400600", "url": url, "timeout_s": TIMEOUT_S})
    yield Rig(sim, meter, url)
    await meter.close()
    await sim.stop()


def verifies(text: str, public_key: str) -> bool:
    """Independent verification: pyocmf parses the data set strictly and checks its signature."""
    try:
        return pyocmf.OCMF.from_string(text, strict=True).verify_signature(public_key)
    except pyocmf.PyOCMFError:
        return False


def charge(sim: SimLemDcbm, power_w: float, seconds: float) -> None:
    """Let energy flow through the simulated meter."""
    sim.set_dc(400.0, power_w / 400.0)
    sim.add_energy([power_w], seconds)


async def read_until_ok(meter: LemDcbm) -> MeterReading:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_DEADLINE_S
    while True:
        try:
            return await meter.read()
        except CommunicationFault:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


# ---- live values --------------------------------------------------------------------------------


async def test_reads_live_dc_values(rig: Rig) -> None:
    rig.sim.set_dc(400.0, 125.0)
    reading = await rig.meter.read()
    assert reading.voltage_v == (400.0,)
    assert reading.current_a == (125.0,)
    assert reading.power_w == pytest.approx(50_000.0)
    assert reading.energy_import_wh == pytest.approx(rig.sim.energy_import_wh, abs=0.1)
    assert reading.energy_export_wh == 0.0
    assert not reading.stale
    assert rig.meter.capabilities.signed and rig.meter.capabilities.phases == 1


async def test_registry_and_config(rig: Rig) -> None:
    assert registry.resolve("lem_dcbm400600") is LemDcbm
    with pytest.raises(ConfigError, match="unknown option"):
        LemDcbm.from_config("dcbm", {"driver": "lem_dcbm400600", "url": rig.url, "device_id": 1})
    with pytest.raises(ConfigError, match="https"):
        LemDcbm.from_config("dcbm", {"driver": "lem_dcbm400600", "url": "https://10.0.0.5"})
    with pytest.raises(ConfigError, match="timeout_s"):
        LemDcbm.from_config("dcbm", {"driver": "lem_dcbm400600", "url": rig.url, "timeout_s": 0})


# ---- signed transactions ------------------------------------------------------------------------


async def test_signed_transaction_verifies_with_pyocmf(rig: Rig) -> None:
    key = await rig.meter.public_key()
    assert key == rig.sim.public_key_hex
    begin = await rig.meter.begin_transaction(TX)
    assert begin is not None and begin.begin_wh is not None and begin.end_wh is None
    assert await rig.meter.open_transaction()
    charge(rig.sim, 50_000.0, 72.0)  # 1 kWh
    end = await rig.meter.end_transaction(TX.transaction_id)
    assert not await rig.meter.open_transaction()
    assert end.transaction_id == TX.transaction_id and end.encoding == "OCMF"
    assert end.signing_method == "ECDSA-secp256r1-SHA256" and end.public_key == key
    assert end.begin_wh == begin.begin_wh
    assert end.end_wh is not None and end.end_wh - begin.begin_wh == pytest.approx(1000.0, abs=1.0)

    assert rig.sim.produced == [begin.data, end.data]  # the driver passes the data sets through untouched
    for text in rig.sim.produced:
        assert verifies(text, key), text
        record = pyocmf.OCMF.from_string(text, strict=True)
        assert record.check_eichrecht(errors_only=True) == []
    # The end data set holds the begin and the end reading: it is a complete transaction on its own.
    first, last = (pyocmf.OCMF.from_string(t, strict=True) for t in (begin.data, end.data))
    assert [str(r.TX) for r in first.payload.RD] == ["B"]
    payload = last.payload
    assert payload.PG == "T1" and first.payload.PG == "T0"
    assert (rig.sim.meter_id, TX.client_id, True) == (payload.MS, payload.ID, payload.IS)
    assert [str(r.TX) for r in payload.RD] == ["B", "E"]
    assert all(str(r.TM.status) == "S" for r in payload.RD)  # the driver set the meter's clock first
    assert {str(r.RU) for r in payload.RD} == {"kWh"} and {str(r.RT) for r in payload.RD} == {"DC"}


async def test_one_changed_byte_fails_verification(rig: Rig) -> None:
    key = await rig.meter.public_key()
    await rig.meter.begin_transaction(TX)
    charge(rig.sim, 20_000.0, 30.0)
    await rig.meter.end_transaction(TX.transaction_id)
    assert len(rig.sim.produced) == 2
    for text in rig.sim.produced:
        assert verifies(text, key)
        # Every byte of the payload section and of the signature data (SD). The rest of the signature
        # section is unsigned metadata by design: renaming its "SA" key, say, falls back to the default.
        payload_end = text.index("|", len("OCMF|"))
        sd_start = text.index('"SD":"') + len('"SD":"')
        positions = [*range(len("OCMF|"), payload_end), *range(sd_start, text.rindex('"'))]
        assert len(positions) > 400
        for position in positions:
            replacement = "1" if text[position] != "1" else "2"
            tampered = text[:position] + replacement + text[position + 1:]
            assert not verifies(tampered, key), f"byte {position} ({text[position]!r}) changed and still verifies"
    assert not verifies(rig.sim.produced[0], ocmf.public_key_hex(SimLemDcbm().key.public_key()))  # another key


async def test_end_again_returns_the_meters_record(rig: Rig) -> None:
    await rig.meter.begin_transaction(TX)
    first = await rig.meter.end_transaction(TX.transaction_id)
    again = await rig.meter.end_transaction(TX.transaction_id)  # the first answer "lost": the meter refuses
    assert again.data == first.data


async def test_power_cut_record_is_fetched_after_restart(rig: Rig) -> None:
    await rig.meter.begin_transaction(TX)
    charge(rig.sim, 30_000.0, 60.0)
    rig.sim.power_cut()
    restarted = LemDcbm.from_config("dcbm", {"driver": "lem_dcbm400600", "url": rig.url, "timeout_s": TIMEOUT_S})
    assert not await restarted.open_transaction()
    record = await restarted.transaction_record(TX.transaction_id)
    assert record is not None and record.end_wh is not None and record.begin_wh is not None
    assert record.end_wh - record.begin_wh == pytest.approx(500.0, abs=1.0)
    parsed = pyocmf.OCMF.from_string(record.data, strict=True)
    assert [str(r.TX) for r in parsed.payload.RD] == ["B", "P"]  # ended by a power failure
    assert verifies(record.data, await restarted.public_key())
    last = await restarted.last_transaction()
    assert last is not None and last.data == record.data
    assert await restarted.transaction_record("never-started") is None


async def test_no_record_in_an_empty_logbook(rig: Rig) -> None:
    assert await rig.meter.last_transaction() is None
    assert not await rig.meter.open_transaction()


async def test_bad_signature_is_refused_then_recovers(rig: Rig) -> None:
    await rig.meter.begin_transaction(TX)
    rig.sim.set_fault("bad_signature", True)
    with pytest.raises(ImplausibleReading) as err:
        await rig.meter.end_transaction(TX.transaction_id)
    assert err.value.reason == "signature"
    assert rig.meter.implausible_counts()["signature"] == 1
    assert rig.meter.error_counts()["implausible"] == 1
    rig.sim.set_fault("bad_signature", False)
    again = await rig.meter.end_transaction(TX.transaction_id)  # the meter ended it; the record is fetched
    assert verifies(again.data, await rig.meter.public_key())


async def test_signed_energy_going_backwards_is_refused(rig: Rig) -> None:
    await rig.meter.begin_transaction(TX)
    charge(rig.sim, 20_000.0, 36.0)
    await rig.meter.end_transaction(TX.transaction_id)
    rig.sim.energy_import_wh -= 5_000.0  # a register below what it signed before
    with pytest.raises(ImplausibleReading) as err:
        await rig.meter.begin_transaction(LegalTransaction("tx-0002", TX.evse_id, TX.client_id))
    assert err.value.reason == "energy_backwards"


# ---- faults -------------------------------------------------------------------------------------

FAULTS = {
    # fault: (value, error class, counted kind, implausible reason)
    "silent": (None, DeviceTimeout, "timeout", None),
    "slow": (2.0, DeviceTimeout, "timeout", None),
    "http_500": (None, HttpFault, "http_status", None),
    "garbage": (None, HttpFault, "garbage", None),
    "oversized": (None, HttpFault, "oversized", None),
    "backwards": (None, ImplausibleReading, "implausible", "energy_backwards"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_marks_stale_and_recovers(rig: Rig, fault: str) -> None:
    value, error, kind, reason = FAULTS[fault]
    rig.sim.set_dc(400.0, 50.0)
    good = await rig.meter.read()
    rig.sim.set_fault(fault, True, value)
    with pytest.raises(error) as err:
        await rig.meter.read()
    if reason is not None:
        assert isinstance(err.value, ImplausibleReading) and err.value.reason == reason
    stale = rig.meter.last_reading()
    assert stale is not None and stale.stale and stale.read_monotonic == good.read_monotonic
    assert rig.meter.error_counts()[kind] >= 1
    rig.sim.set_fault(fault, False)
    recovered = await read_until_ok(rig.meter)
    assert not recovered.stale and recovered.energy_import_wh >= good.energy_import_wh
    last = rig.meter.last_reading()
    assert last is not None and not last.stale


async def test_fault_during_begin_is_a_communication_fault(rig: Rig) -> None:
    rig.sim.set_fault("http_500", True)
    with pytest.raises(HttpFault):
        await rig.meter.begin_transaction(TX)
    rig.sim.set_fault("http_500", False)
    assert await rig.meter.begin_transaction(TX) is not None


async def test_oversized_answer_is_refused_before_reading_it(rig: Rig) -> None:
    rig.sim.set_fault("oversized", True)
    with pytest.raises(HttpFault, match=f"more than {MAX_BODY_BYTES}"):
        await rig.meter.read()


async def test_implausible_live_values(rig: Rig) -> None:
    rig.meter.configure_limits(nominal_voltage_v=1000.0, max_current_a=200.0)
    rig.sim.set_dc(400.0, 10.0)
    await rig.meter.read()
    rig.sim.set_dc(2000.0, 10.0)  # 2 kV on a 1000 V connector
    with pytest.raises(ImplausibleReading) as err:
        await rig.meter.read()
    assert err.value.reason == "voltage"


def test_timeout_option_default() -> None:
    meter = LemDcbm.from_config("dcbm", {"driver": "lem_dcbm400600", "url": "http://192.0.2.10"})
    assert meter.client.timeout_s == lem_dcbm.DEFAULT_TIMEOUT_S and meter.client.port == 80


@pytest.mark.parametrize("text, problem", [
    ("OCMF|{}|{}|{}", "section"),
    ("OCMF|{\"PG\":\"T1\",\"MS\":\"X\",\"RD\":[]}|{\"SD\":\"00\"}", "RD"),
    ("XXXX|{}|{}", "section"),
    ("OCMF|[1]|{}", "not a JSON object"),
    ("OCMF|" + "[" * 100_000 + "|{}", "longer than"),
    ("OCMF|{\"PG\":\"T01x\",\"MS\":\"X\",\"RD\":[{}]}|{\"SD\":\"00\"}", "PG"),
])
def test_ocmf_parser_refuses(text: str, problem: str) -> None:
    with pytest.raises(ImplausibleReading, match=problem):
        ocmf.parse("dcbm", text)


def test_ocmf_time_format() -> None:
    assert ocmf.format_time(1_532_438_524.0, "S") == "2018-07-24T13:22:04,000+0000 S"
    with pytest.raises(ValueError):
        ocmf.format_time(0.0, "X")
