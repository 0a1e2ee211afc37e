"""Meter readings to OCPP 1.6 sampledValue lists: measurand, unit, phase, context and location."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from agent.clock import iso
from drivers.base import MeterReading

PHASES = ("L1", "L2", "L3")
VOLTAGE_PHASES = ("L1-N", "L2-N", "L3-N")
# longest first, so "L1-N" is not read as "L1"
PHASE_SUFFIXES = ("L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1", "L1", "L2", "L3", "N")




def parse_csl(value: str) -> list[str]:
    """Split a comma-separated list of measurands, dropping empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class Sample:
    """What a connector measured at one moment (meter plus controller values)."""

    reading: MeterReading
    offered_a: float | None = None
    soc_pct: float | None = None


def billed_wh(value: float) -> int:
    """Energy as the integer Wh a bill uses: rounded down, one rule for meterStart, meterStop and every
    sampled register, so a register never looks as if it went backwards between them."""
    return math.floor(value + 1e-9)  # a float32 register of 1234.0 may decode as 1233.9999999


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def split_phase(entry: str) -> tuple[str, str | None]:
    """"Voltage.L1-N" -> ("Voltage", "L1-N"); an entry without a phase suffix -> (entry, None)."""
    for phase in PHASE_SUFFIXES:
        if entry.endswith("." + phase):
            return entry[: -len(phase) - 1], phase
    return entry, None


@dataclass(frozen=True, slots=True)
class MeasurandSource:
    """What one connector's devices can report (the meter's capabilities, and SoC from a DC controller)."""

    phases: int = 3
    export_energy: bool = False
    per_phase_power: bool = False
    soc: bool = False


def can_provide(entry: str, source: MeasurandSource) -> bool:
    """Whether a configured measurand (with an optional phase suffix) can be sent for this connector."""
    measurand, phase = split_phase(entry)
    own_phases = PHASES[: source.phases]
    if measurand in ("Energy.Active.Import.Register", "Current.Offered", "Frequency"):
        return phase is None
    if measurand == "Energy.Active.Export.Register":
        return phase is None and source.export_energy
    if measurand == "SoC":
        return phase is None and source.soc
    if measurand == "Current.Import":
        return phase is None or phase in own_phases
    if measurand == "Voltage":
        return phase is None or phase in own_phases or phase in VOLTAGE_PHASES[: source.phases]
    if measurand == "Power.Active.Import":
        return phase is None or (phase in own_phases and source.per_phase_power)
    return False


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


def next_aligned(now: float, interval_s: int) -> float:
    """The next clock-aligned instant: multiples of the interval since midnight UTC."""
    if interval_s <= 0:
        raise ValueError("interval must be positive")
    midnight = now - (now % 86400)
    offset = now - midnight
    return midnight + (int(offset // interval_s) + 1) * interval_s
