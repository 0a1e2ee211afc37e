"""Meter values: sampled, clock-aligned, Transaction.Begin/End, meterStop against the meter (OCTT-named)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

from agent.ocpp.v16.metering import billed_wh
from tests.integration.harness import Rig

PHASES = {"Current.Import": {"L1", "L2", "L3"}, "Voltage": {"L1-N", "L2-N", "L3-N"}}
UNITS = {"Energy.Active.Import.Register": "Wh", "Power.Active.Import": "W", "Current.Import": "A",
         "Voltage": "V", "SoC": "Percent"}


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _tx_id(start: dict[str, Any]) -> int:
    return int(start["response"]["payload"]["transactionId"])


def _values(rig: Rig, tx: int, context: str) -> list[dict[str, Any]]:
    """Every meterValue element of a transaction whose sampled values carry this context."""
    return [v for m in rig.calls("MeterValues") if m["payload"].get("transactionId") == tx
            for v in m["payload"]["meterValue"] if v["sampledValue"][0].get("context") == context]


async def test_tc_070_sampled_meter_values(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={
        "MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 0,
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"})
    start = await rig.start_session()
    tx = _tx_id(start)
    await rig.wait_status(1, "Charging")
    await rig.office.wait_for(lambda: len(_values(rig, tx, "Sample.Periodic")) >= 3, timeout=10)
    periodic = _values(rig, tx, "Sample.Periodic")
    for value in periodic:
        by_measurand: dict[str, list[dict[str, Any]]] = {}
        for sv in value["sampledValue"]:
            assert sv["context"] == "Sample.Periodic"
            assert sv["unit"] == UNITS[sv["measurand"]], sv
            assert sv["location"] == ("EV" if sv["measurand"] == "SoC" else "Outlet"), sv
            float(sv["value"])
            by_measurand.setdefault(sv["measurand"], []).append(sv)
        assert set(by_measurand) == set(UNITS), sorted(by_measurand)
        for measurand, phases in PHASES.items():
            assert {sv["phase"] for sv in by_measurand[measurand]} == phases
    stamps = [_epoch(v["timestamp"]) for v in periodic]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    energies = [float(sv["value"]) for v in periodic for sv in v["sampledValue"]
                if sv["measurand"] == "Energy.Active.Import.Register"]
    assert energies[-1] > energies[0], "energy did not rise while charging"
    powers = [float(sv["value"]) for sv in periodic[-1]["sampledValue"] if sv["measurand"] == "Power.Active.Import"]
    assert powers[0] > 1000.0


async def test_tc_071_clock_aligned_meter_values(rig_factory: Any) -> None:
    interval = 2
    rig: Rig = await rig_factory(ocpp={"MeterValueSampleInterval": 0, "ClockAlignedDataInterval": interval})
    # outside a transaction: sent without transactionId
    await rig.office.wait_for(lambda: any("transactionId" not in m["payload"] for m in rig.calls("MeterValues")),
                              timeout=10)
    start = await rig.start_session()
    tx = _tx_id(start)
    await rig.office.wait_for(lambda: len(_values(rig, tx, "Sample.Clock")) >= 2, timeout=10)
    for m in rig.calls("MeterValues"):
        for value in m["payload"]["meterValue"]:
            contexts = {sv["context"] for sv in value["sampledValue"]}
            if contexts == {"Sample.Clock"}:
                ts = _epoch(value["timestamp"])
                assert ts % interval == 0, f"{value['timestamp']} is not aligned to {interval} s"
            else:
                assert contexts == {"Transaction.Begin"}, contexts  # no periodic samples with interval 0


async def test_transaction_begin_end_and_meter_stop_equals_register(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"MeterValueSampleInterval": 0, "ClockAlignedDataInterval": 0,
                                       "StopTxnSampledData": "Energy.Active.Import.Register,Power.Active.Import"})
    start = await rig.start_session()
    tx = _tx_id(start)
    await rig.wait_status(1, "Charging")
    begin = await rig.office.wait_for(lambda: _values(rig, tx, "Transaction.Begin"), timeout=10)
    energy = [sv for sv in begin[0]["sampledValue"] if sv["measurand"] == "Energy.Active.Import.Register"]
    assert int(energy[0]["value"]) == start["payload"]["meterStart"]
    await asyncio.sleep(2.0)
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    await rig.wait_contactor(False)
    await asyncio.sleep(0.5)
    register = rig.meter_wh()
    assert stop["payload"]["meterStop"] == billed_wh(register), (stop["payload"], register)
    # enough energy per poll that a stale meterStop would differ from the register
    assert stop["payload"]["meterStop"] - start["payload"]["meterStart"] > 10, stop["payload"]
    data = stop["payload"]["transactionData"]
    assert len(data) == 1
    end = {sv["measurand"]: sv for sv in data[0]["sampledValue"]}
    assert set(end) == {"Energy.Active.Import.Register", "Power.Active.Import"}
    assert all(sv["context"] == "Transaction.End" for sv in end.values())
    assert int(end["Energy.Active.Import.Register"]["value"]) == stop["payload"]["meterStop"]
    assert data[0]["timestamp"] == stop["payload"]["timestamp"]


async def test_periodic_meter_values_continue_after_the_sample_interval_changes(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 0})
    start = await rig.start_session()
    tx = _tx_id(start)
    await rig.office.wait_for(lambda: len(_values(rig, tx, "Sample.Periodic")) >= 2, timeout=10)
    answer = await rig.cs_call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "2"}, timeout=10)
    assert answer["payload"]["status"] == "Accepted", answer
    changed_at = asyncio.get_running_loop().time()
    before = len(_values(rig, tx, "Sample.Periodic"))
    await rig.office.wait_for(lambda: len(_values(rig, tx, "Sample.Periodic")) >= before + 3, timeout=12)
    stamps = [_epoch(v["timestamp"]) for v in _values(rig, tx, "Sample.Periodic")][before:]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(1.5 <= gap <= 3.0 for gap in gaps), gaps  # the new interval, not the old one, not stopped
    assert asyncio.get_running_loop().time() - changed_at < 12


async def test_stop_transaction_carries_sampled_and_aligned_transaction_data(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={
        "MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 2, "MeterValuesSampledData": "Power.Active.Import",
        "StopTxnSampledData": "Energy.Active.Import.Register", "StopTxnAlignedData": "Energy.Active.Import.Register"})
    start = await rig.start_session()
    await rig.wait_status(1, "Charging")
    await asyncio.sleep(5.0)
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    data = stop["payload"]["transactionData"]
    contexts = [v["sampledValue"][0]["context"] for v in data]
    assert contexts.count("Sample.Periodic") >= 3, contexts  # every MeterValueSampleInterval from the start
    assert contexts.count("Sample.Clock") >= 1, contexts  # at every ClockAlignedDataInterval
    assert contexts[-1] == "Transaction.End"
    stamps = [_epoch(v["timestamp"]) for v in data]
    assert stamps == sorted(stamps), stamps
    energies = [int(v["sampledValue"][0]["value"]) for v in data]
    assert energies == sorted(energies) and energies[0] >= start["payload"]["meterStart"], energies
    assert energies[-1] == stop["payload"]["meterStop"]
    assert all(sv["measurand"] == "Energy.Active.Import.Register" for v in data for sv in v["sampledValue"])


async def test_measurands_the_meter_cannot_provide_are_rejected_and_phases_are_sent_per_phase(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 0})
    for key in ("MeterValuesSampledData", "MeterValuesAlignedData", "StopTxnSampledData", "StopTxnAlignedData"):
        answer = await rig.cs_call("ChangeConfiguration", {"key": key, "value": "Energy.Active.Import.Register,"
                                                           "Temperature"}, timeout=10)
        assert answer["payload"]["status"] == "Rejected", (key, answer)  # a valid 1.6 measurand, not measured here
    answer = await rig.cs_call("ChangeConfiguration", {"key": "MeterValuesSampledData",
                                                       "value": "Current.Import.L2,Voltage.L1-N"}, timeout=10)
    assert answer["payload"]["status"] == "Accepted"
    start = await rig.start_session()
    tx = _tx_id(start)
    await rig.office.wait_for(lambda: len(_values(rig, tx, "Sample.Periodic")) >= 2, timeout=10)
    for value in _values(rig, tx, "Sample.Periodic"):
        assert [(sv["measurand"], sv.get("phase")) for sv in value["sampledValue"]] == [
            ("Current.Import", "L2"), ("Voltage", "L1-N")], value


async def test_periodic_aligned_and_triggered_samples_leave_in_time_order_with_a_slow_meter(
        rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"MeterValueSampleInterval": 1, "ClockAlignedDataInterval": 1})
    start = await rig.start_session(2)
    tx = _tx_id(start)
    await rig.wait_status(2, "Charging")
    rig.fault("meter", "slow", connector=2, value=0.3)  # the AC meter shares its RS-485 line with the pilot
    for _ in range(12):
        answer = await rig.cs_call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 2},
                                   timeout=10)
        assert answer["payload"]["status"] == "Accepted"
        await asyncio.sleep(0.7)
    rig.fault("meter", "slow", on=False, connector=2)
    rig.card()
    stop = await rig.wait_call("StopTransaction")
    await rig.wait_contactor(False, connector=2)
    await asyncio.sleep(0.5)
    # AC (the RS-485 meter of connector 2): the billed numbers follow the same rule as on DC
    assert stop["payload"]["meterStop"] == billed_wh(rig.meter_wh(2)), (stop["payload"], rig.meter_wh(2))
    assert start["payload"]["meterStart"] < stop["payload"]["meterStop"]
    arrived = [v for m in rig.calls("MeterValues") if m["payload"].get("transactionId") == tx
               for v in m["payload"]["meterValue"]]
    contexts = {v["sampledValue"][0]["context"] for v in arrived}
    assert {"Sample.Periodic", "Sample.Clock", "Trigger"} <= contexts, contexts
    stamps = [_epoch(v["timestamp"]) for v in arrived]
    assert stamps == sorted(stamps), [(v["sampledValue"][0]["context"], v["timestamp"]) for v in arrived]
