"""Meter readings to OCPP 1.6 sampledValue lists: phases, units, which measurands a connector can provide."""

from __future__ import annotations

import pytest

from agent.ocpp.v16.metering import MeasurandSource, Sample, billed_wh, can_provide, sampled_values, split_phase
from drivers.base import MeterReading

READING = MeterReading(energy_import_wh=1234.9, energy_export_wh=5.0, power_w=6900.0,
                       voltage_v=(230.1, 231.2, 229.3), current_a=(10.0, 10.5, 9.5),
                       power_phase_w=(2300.0, 2400.0, 2200.0), frequency_hz=50.01)
THREE = MeasurandSource(phases=3, export_energy=True, per_phase_power=True)
ONE = MeasurandSource(phases=1)


def values(*measurands: str) -> list[tuple[str, str | None, str]]:
    return [(sv["measurand"], sv.get("phase"), sv["value"])
            for sv in sampled_values(Sample(READING, offered_a=16.0), measurands, "Sample.Periodic")]


def test_split_phase_reads_the_longest_suffix() -> None:
    assert split_phase("Voltage.L1-N") == ("Voltage", "L1-N")
    assert split_phase("Current.Import.L2") == ("Current.Import", "L2")
    assert split_phase("Energy.Active.Import.Register") == ("Energy.Active.Import.Register", None)


def test_per_phase_measurands_are_sent_per_phase_with_the_phase_field() -> None:
    assert values("Current.Import") == [("Current.Import", "L1", "10.00"), ("Current.Import", "L2", "10.50"),
                                        ("Current.Import", "L3", "9.50")]
    assert values("Current.Import.L2") == [("Current.Import", "L2", "10.50")]
    assert values("Voltage.L3-N") == [("Voltage", "L3-N", "229.3")]
    assert values("Voltage.L1") == [("Voltage", "L1-N", "230.1")]
    # a per-phase power is the phase's own value, never the total under a phase name
    assert values("Power.Active.Import.L1") == [("Power.Active.Import", "L1", "2300.0")]
    assert values("Power.Active.Import") == [("Power.Active.Import", None, "6900.0")]


def test_energy_registers_are_integer_wh_rounded_down() -> None:
    assert values("Energy.Active.Import.Register") == [("Energy.Active.Import.Register", None, "1234")]
    assert billed_wh(1234.9999) == 1234 and billed_wh(1233.9999999999) == 1234


@pytest.mark.parametrize(("entry", "three", "one"), [
    ("Energy.Active.Import.Register", True, True),
    ("Energy.Active.Export.Register", True, False),
    ("Current.Import.L3", True, False),
    ("Voltage.L2-N", True, False),
    ("Power.Active.Import.L1", True, False),
    ("SoC", False, False),
    ("Temperature", False, False),
    ("Energy.Active.Import.Register.L1", False, False),
    ("Frequency", True, True),
])
def test_can_provide_follows_the_meter_capabilities(entry: str, three: bool, one: bool) -> None:
    assert can_provide(entry, THREE) is three
    assert can_provide(entry, ONE) is one


def test_soc_comes_from_a_dc_controller() -> None:
    assert can_provide("SoC", MeasurandSource(soc=True))
