"""Samples to OCPP 2.0.1 meterValue elements: numbers with unitOfMeasure, measurand, phase, context, location."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.clock import iso
from agent.metering import PHASES, VOLTAGE_PHASES, Sample, billed_wh, split_phase
from agent.ports import SampleTrigger

CONTEXTS = {
    SampleTrigger.BEGIN: "Transaction.Begin",
    SampleTrigger.PERIODIC: "Sample.Periodic",
    SampleTrigger.CLOCK: "Sample.Clock",
    SampleTrigger.TRIGGER: "Trigger",
    SampleTrigger.END: "Transaction.End",
}
ENERGY = "Energy.Active.Import.Register"


def sampled_value(value: float, measurand: str, unit: str | None, context: str, phase: str | None = None,
                  location: str = "Outlet") -> dict[str, Any]:
    """One SampledValue; energy is the billed integer Wh (the same rule as meterStart and meterStop)."""
    item: dict[str, Any] = {"value": billed_wh(value) if unit == "Wh" else round(value, 3), "context": context,
                            "measurand": measurand, "location": location}
    if unit is not None:
        item["unitOfMeasure"] = {"unit": unit, "multiplier": 0}
    if phase:
        item["phase"] = phase
    return item


def sampled_values(sample: Sample, measurands: Iterable[str], context: str) -> list[dict[str, Any]]:
    """The sampledValue list for the configured measurands; values a device lacks are left out (a measurand
    with a phase suffix is sent for that phase only; without one, a per-phase quantity once per phase)."""
    r = sample.reading
    out: list[dict[str, Any]] = []

    def add(value: float | None, measurand: str, unit: str | None, phase: str | None = None,
            location: str = "Outlet") -> None:
        if value is not None:
            out.append(sampled_value(value, measurand, unit, context, phase, location))

    for entry in measurands:
        measurand, wanted = split_phase(entry)
        if measurand == ENERGY and wanted is None:
            add(r.energy_import_wh, measurand, "Wh")
        elif measurand == "Energy.Active.Export.Register" and wanted is None:
            add(r.energy_export_wh, measurand, "Wh")
        elif measurand == "Power.Active.Import":
            if wanted is None:
                add(r.power_w, measurand, "W")
            else:
                for phase, value in zip(PHASES, r.power_phase_w, strict=False):
                    if phase == wanted:
                        add(value, measurand, "W", phase)
        elif measurand == "Current.Import":
            for phase, value in zip(PHASES, r.current_a, strict=False):
                if wanted in (None, phase):
                    add(value, measurand, "A", phase)
        elif measurand == "Voltage":
            for phase, vphase, value in zip(PHASES, VOLTAGE_PHASES, r.voltage_v, strict=False):
                if wanted in (None, phase, vphase):
                    add(value, measurand, "V", vphase)
        elif measurand == "Current.Offered" and wanted is None:
            add(sample.offered_a, measurand, "A")
        elif measurand == "Frequency" and wanted is None:
            add(r.frequency_hz, measurand, "Hz")
        elif measurand == "SoC" and wanted is None:
            add(sample.soc_pct, measurand, "Percent", location="EV")
    return out


def meter_value(sample: Sample, measurands: Iterable[str], context: str, timestamp: float) -> dict[str, Any]:
    """One MeterValue element (timestamp + sampledValue)."""
    return {"timestamp": iso(timestamp), "sampledValue": sampled_values(sample, measurands, context)}


def energy_value(energy_wh: float, context: str, timestamp: float) -> dict[str, Any]:
    """A MeterValue with the energy register alone (the begin and end readings a bill is made of)."""
    return {"timestamp": iso(timestamp), "sampledValue": [sampled_value(energy_wh, ENERGY, "Wh", context)]}
