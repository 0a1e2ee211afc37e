"""Samples to OCPP 1.6 sampledValue lists: measurand, unit, phase, context and location."""

from __future__ import annotations

from collections.abc import Iterable

from agent.clock import iso
from agent.metering import (
    PHASES,
    VOLTAGE_PHASES,
    MeasurandSource,
    Sample,
    billed_wh,
    can_provide,
    next_aligned,
    split_phase,
)
from agent.settings import parse_csl

__all__ = ["MeasurandSource", "Sample", "billed_wh", "can_provide", "iso", "meter_value", "next_aligned",
           "parse_csl", "sampled_values", "split_phase"]



def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def sampled_values(sample: Sample, measurands: Iterable[str], context: str) -> list[dict[str, str]]:
    """Build the sampledValue list for the configured measurands; values a device lacks are left out.

    A measurand with a phase suffix is sent for that phase only, with its `phase` field; without one, a
    per-phase quantity is sent once per phase (a total is never sent under a phase name).
    """
    r = sample.reading
    out: list[dict[str, str]] = []

    def add(value: float | None, measurand: str, unit: str, digits: int, phase: str | None = None,
            location: str = "Outlet") -> None:
        if value is None:
            return
        text = str(billed_wh(value)) if unit == "Wh" else _fmt(value, digits)
        item = {"value": text, "context": context, "format": "Raw", "measurand": measurand,
                "location": location, "unit": unit}
        if phase:
            item["phase"] = phase
        out.append(item)

    for entry in measurands:
        measurand, wanted = split_phase(entry)
        if measurand == "Energy.Active.Import.Register" and wanted is None:
            add(r.energy_import_wh, measurand, "Wh", 1)
        elif measurand == "Energy.Active.Export.Register" and wanted is None:
            add(r.energy_export_wh, measurand, "Wh", 1)
        elif measurand == "Power.Active.Import":
            if wanted is None:
                add(r.power_w, measurand, "W", 1)
            else:
                for phase, value in zip(PHASES, r.power_phase_w, strict=False):
                    if phase == wanted:
                        add(value, measurand, "W", 1, phase)
        elif measurand == "Current.Import":
            for phase, value in zip(PHASES, r.current_a, strict=False):
                if wanted in (None, phase):
                    add(value, measurand, "A", 2, phase)
        elif measurand == "Voltage":
            for phase, vphase, value in zip(PHASES, VOLTAGE_PHASES, r.voltage_v, strict=False):
                if wanted in (None, phase, vphase):
                    add(value, measurand, "V", 1, vphase)
        elif measurand == "Current.Offered" and wanted is None:
            add(sample.offered_a, measurand, "A", 1)
        elif measurand == "Frequency" and wanted is None:
            if r.frequency_hz is not None:
                # Frequency has no unit in the 1.6 UnitOfMeasure enum: leave unit out
                out.append({"value": _fmt(r.frequency_hz, 2), "context": context, "format": "Raw",
                            "measurand": measurand, "location": "Outlet"})
        elif measurand == "SoC" and wanted is None:
            add(sample.soc_pct, measurand, "Percent", 0, location="EV")
    return out


def meter_value(sample: Sample, measurands: Iterable[str], context: str, timestamp: float) -> dict[str, object]:
    """One MeterValue element (timestamp + sampledValue)."""
    return {"timestamp": iso(timestamp), "sampledValue": sampled_values(sample, measurands, context)}
